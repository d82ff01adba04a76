"""Timing train steps: round-robin over programs, summaries, and the pieces of a step.

Programs are timed round-robin (each timed call of one program is followed by one of the next),
so load from other processes spreads over all of them and their ratios stay meaningful on a
shared machine; `jax.block_until_ready` closes every timed call.
"""

from __future__ import annotations

import datetime
import functools
import os
import platform
import time
from typing import Any, Callable, Sequence

import jax
import numpy as np

from ngebm_jax import _checks
from ngebm_jax import objectives as objectives_lib
from ngebm_jax.benchmarking.step_programs import StepProgram
from ngebm_jax.benchmarking.xla_costs import allocator_peak_bytes
from ngebm_jax.benchmarking.xla_costs import memory_figures
from ngebm_jax.energy import log_density_input_grad
from ngebm_jax.training import spmd


def _block(tree):
  return jax.block_until_ready(tree)


def allocator_peaks(programs: Sequence[StepProgram], batches: Sequence[dict], *, warmup: int,
                    devices) -> list[dict]:
  """Each program's allocator high-water mark, measured with only its own state in memory.

  The device allocators keep one process-lifetime peak (`allocator_peak_bytes`), which cannot
  be reset; so the programs run one at a time, in increasing order of XLA's planned step
  memory, each freeing its state before the next starts. A program whose run raised the mark
  has its own peak (`allocator_peak_exact`); otherwise its peak is at most the figure given.
  Empty dicts on backends without allocator statistics (CPU).
  """
  if allocator_peak_bytes(devices) is None:
    return [{} for _ in programs]
  planned = [memory_figures(p.compiled).get("peak_bytes", 0) for p in programs]
  peaks = [{} for _ in programs]
  for i in sorted(range(len(programs)), key=lambda i: planned[i]):
    before = allocator_peak_bytes(devices)
    state = programs[i].init_state()
    for _ in range(max(warmup, 1)):
      state, metrics = _block(programs[i].compiled(state, batches[i]))
    after = allocator_peak_bytes(devices)
    del state, metrics
    peaks[i] = {"allocator_peak_bytes": after, "allocator_peak_exact": after > before}
  return peaks


def step_benchmark(programs: Sequence[StepProgram], batches: Sequence[dict], *, steps: int,
                   warmup: int = 1, devices=None, peer=None) -> list[dict]:
  """Times every program `steps` times, round-robin, after `warmup` untimed calls each.

  With a `peer` (`pytorch_peer.PytorchPeer`), every call of a program whose name the peer
  knows is followed by one PyTorch step of that name, timed in the worker, so both sides see
  the same load.

  Args:
    programs: compiled steps (`build_step`).
    batches: one global batch per program (device arrays), reused by every call: the step's
      compute is timed, not the input pipeline.
    steps: timed calls per program.
    warmup: untimed calls per program before timing (the first call initializes buffers).
    devices: devices whose allocator peaks are read (default: the local devices).
    peer: a started PyTorch peer, or None.

  Returns:
    One dict per program: `times_s` (each call timed alone, blocked), `back_to_back_s` (the
    mean of `steps` more calls dispatched back to back, one block at the end, as in training),
    `first_call_s`, `final_step`, the allocator's peak
    (`allocator_peaks`; GPU/TPU), and for a program the peer runs, `pytorch`: its `times_s`,
    `losses` and `first_call_s`.
  """
  _checks.check_positive_int(steps, "steps")
  devices = devices if devices is not None else jax.local_devices()
  peer_names = set(peer.names) if peer is not None else set()
  rows = allocator_peaks(programs, batches, warmup=warmup, devices=devices)
  states = []
  for program, batch, row in zip(programs, batches, rows):
    state = program.init_state()
    t0 = time.perf_counter()
    for _ in range(max(warmup, 0)):
      state, metrics = _block(program.compiled(state, batch))
    row.update(times_s=[], first_call_s=(time.perf_counter() - t0) / warmup if warmup > 0
               else None)
    states.append(state)
    if program.variant.name in peer_names:
      first = [peer.step(program.variant.name) for _ in range(max(warmup, 0))]
      row["pytorch"] = {"times_s": [], "losses": [],
                        "first_call_s": first[0][0] if first else None}
  for _ in range(steps):
    for i, (program, batch) in enumerate(zip(programs, batches)):
      t0 = time.perf_counter()
      states[i], metrics = _block(program.compiled(states[i], batch))
      rows[i]["times_s"].append(time.perf_counter() - t0)
      if "pytorch" in rows[i]:
        seconds, loss = peer.step(program.variant.name)
        rows[i]["pytorch"]["times_s"].append(seconds)
        rows[i]["pytorch"]["losses"].append(loss)
    del metrics
  # Back to back, as in training: `steps` calls dispatched one after another, one block at the
  # end, so the host's dispatch of a step overlaps the device's work on the one before.
  for i, (program, batch) in enumerate(zip(programs, batches)):
    t0 = time.perf_counter()
    for _ in range(steps):
      states[i], metrics = program.compiled(states[i], batch)
    _block((states[i], metrics))
    rows[i]["back_to_back_s"] = (time.perf_counter() - t0) / steps
  for row, state in zip(rows, states):
    row["final_step"] = int(state.step)
  return rows


def profile_steps(programs: Sequence[StepProgram], batches: Sequence[dict], logdir: str, *,
                  steps: int = 3) -> str:
  """Writes a profiler trace (TensorBoard / Perfetto) of `steps` calls of every program.

  Each program runs once untraced first, so the trace holds no compilation or first-call work.
  Returns `logdir`.
  """
  states = []
  for program, batch in zip(programs, batches):
    state, _ = _block(program.compiled(program.init_state(), batch))
    states.append(state)
  with jax.profiler.trace(logdir):
    for i, (program, batch) in enumerate(zip(programs, batches)):
      with jax.profiler.TraceAnnotation(program.variant.name):
        for _ in range(steps):
          states[i], _ = _block(program.compiled(states[i], batch))
  return logdir


def summarize_times(times_s: Sequence[float], global_batch: int) -> dict:
  t = np.asarray(times_s, np.float64)
  p10, median, p90 = np.percentile(t, [10, 50, 90])
  return {"median_s": float(median), "p10_s": float(p10), "p90_s": float(p90),
          "min_s": float(t.min()), "mean_s": float(t.mean()),
          "spread": float((p90 - p10) / median) if median > 0 else None,
          "images_per_s": float(global_batch / median) if median > 0 else None,
          "num_timed_steps": int(t.size)}


def component_times(model_fns, params, x: jax.Array, y: jax.Array, *, repeats: int = 5,
                    extra: dict[str, Callable[[], Any]] | None = None) -> dict[str, float]:
  """Median seconds of the pieces of the train steps, jitted, on one device's batch `x, y`.

  Timed round-robin with the zero-argument callables of `extra` (a whole train step, the
  PyTorch peer's pieces), so that all see the same load. No optimizer update in any piece.

  - `forward`: logits (F).
  - `input_grad`: `d log p~(x)/dx` with the parameters constant: one SGLD step, and the first
    half of NG-EBM's penalty (F + the backward pass to the input, B_in).
  - `param_grad`: value and parameter gradient of the cross-entropy, the baseline step's
    network work (F + B_in + the weight-gradient convolutions, B_w).
  - `ngebm_grad`: value and parameter gradient of the NG-EBM loss (`ngebm_loss`, default mode).

  Differences give the backward convolutions: `input_grad - forward` is B_in, `param_grad -
  input_grad` is B_w (less the first layer's input gradient).
  """
  apply_fn = model_fns.apply_fn
  # Arrays are arguments, not closed-over constants, so XLA compiles what a train step runs.
  args = (params, x, y)
  # Compiled as the train step is (the same XLA options), so the pieces add up to its work.
  jit = functools.partial(jax.jit, compiler_options=spmd.compiler_options())
  value_and_grad = lambda loss: jit(jax.value_and_grad(
      lambda p, x, y: loss(apply_fn, p, x, y)[0]))
  fns = {
      "forward": jit(lambda p, x, y: apply_fn(p, x)),
      "input_grad": jit(lambda p, x, y: log_density_input_grad(
          apply_fn, jax.lax.stop_gradient(p), x)[0]),
      "param_grad": value_and_grad(objectives_lib.cross_entropy_loss),
      "ngebm_grad": value_and_grad(objectives_lib.ngebm_loss),
  }
  calls = {name: functools.partial(fn, *args) for name, fn in fns.items()}
  calls.update(extra or {})
  for call in calls.values():
    _block(call())
  times = {name: [] for name in calls}
  for _ in range(repeats):
    for name, call in calls.items():
      t0 = time.perf_counter()
      _block(call())
      times[name].append(time.perf_counter() - t0)
  return {name: float(np.median(t)) for name, t in times.items()}


def load_average() -> list[float] | None:
  """The 1, 5 and 15 minute load averages, or None where the OS has none."""
  try:
    return list(os.getloadavg())
  except (AttributeError, OSError):
    return None


def environment() -> dict:
  devices = jax.devices()
  load = load_average()
  return {"jax_version": jax.__version__, "backend": jax.default_backend(),
          "device_kind": devices[0].device_kind, "device_count": len(devices),
          "process_count": jax.process_count(), "cpu_count": os.cpu_count(),
          "platform": platform.platform(), "python": platform.python_version(),
          "time_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
          "load_average_start": load}
