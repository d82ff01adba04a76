"""Timing train steps: round-robin over programs, summaries, and the pieces of a step.

Programs are timed round-robin (each timed call of one program is followed by one of the next),
so load from other processes spreads over all of them and their ratios stay meaningful on a
shared machine; `jax.block_until_ready` closes every timed call.
"""

from __future__ import annotations

import datetime
import functools
import math
import os
import platform
import time
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ngebm_jax import objectives as objectives_lib
from ngebm_jax.benchmarking.step_programs import StepProgram
from ngebm_jax.benchmarking.xla_costs import allocator_peak_bytes
from ngebm_jax.energy import log_density_input_grad

def _block(tree):
  return jax.block_until_ready(tree)


def step_benchmark(programs: Sequence[StepProgram], batches: Sequence[dict], *, steps: int,
                   warmup: int = 1, devices=None) -> list[dict]:
  """Times every program `steps` times, round-robin, after `warmup` untimed calls each.

  Args:
    programs: compiled steps (`build_step`).
    batches: one global batch per program (device arrays), reused by every call: the step's
      compute is timed, not the input pipeline.
    steps: timed calls per program.
    warmup: untimed calls per program before timing (the first call initializes buffers).
    devices: devices whose allocator peaks are read (default: the local devices).

  Returns:
    One dict per program: `times_s` and the allocator's peak after its warm-up.
  """
  if steps < 1:
    raise ValueError(f"steps must be >= 1; got {steps}.")
  devices = devices if devices is not None else jax.local_devices()
  states, rows = [], []
  # Warm-up program by program, in order: the allocator's high-water mark after each one is an
  # upper bound of that program's peak (exact for the first one and any that raises the mark).
  for program, batch in zip(programs, batches):
    state = program.init_state()
    t0 = time.perf_counter()
    for _ in range(max(warmup, 0)):
      state, metrics = _block(program.compiled(state, batch))
    first_s = (time.perf_counter() - t0) / max(warmup, 1) if warmup > 0 else None
    states.append(state)
    rows.append({"times_s": [], "first_call_s": first_s,
                 "allocator_peak_bytes": allocator_peak_bytes(devices)})
  for _ in range(steps):
    for i, (program, batch) in enumerate(zip(programs, batches)):
      t0 = time.perf_counter()
      states[i], metrics = _block(program.compiled(states[i], batch))
      rows[i]["times_s"].append(time.perf_counter() - t0)
    del metrics
  for row, state in zip(rows, states):
    row["final_step"] = int(state.step)
  return rows


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

  Timed round-robin with the zero-argument callables of `extra` (e.g. a whole train step), so
  that pieces and steps see the same load.

  - `forward`: logits.
  - `param_grad`: value and parameter gradient of the cross-entropy (the baseline step's
    network work, without the optimizer).
  - `input_grad`: `d log p~(x)/dx` with the parameters constant: one SGLD step, and the first
    half of NG-EBM's forward-over-reverse penalty.
  - `jvp`: logits and their directional derivative along an input direction.
  - `jvp_param_grad`: parameter gradient through the `jvp` (NG-EBM's second half).
  """
  apply_fn = model_fns.apply_fn
  u = jnp.ones_like(x) / math.sqrt(x[0].size)
  # Arrays are arguments, not closed-over constants, so XLA compiles what a train step runs.
  args = (params, x, y, u)

  def jvp_scalar(p, x, u):
    logits, tangent = jax.jvp(lambda x_: apply_fn(p, x_), (x,), (u,))
    return jnp.sum(jax.nn.softmax(logits.astype(jnp.float32)) * tangent.astype(jnp.float32))

  fns = {
      "forward": jax.jit(lambda p, x, y, u: apply_fn(p, x)),
      "param_grad": jax.jit(jax.grad(
          lambda p, x, y, u: objectives_lib.cross_entropy_loss(apply_fn, p, x, y)[0])),
      "input_grad": jax.jit(lambda p, x, y, u: log_density_input_grad(
          apply_fn, jax.lax.stop_gradient(p), x)[0]),
      "jvp": jax.jit(lambda p, x, y, u: jax.jvp(lambda x_: apply_fn(p, x_), (x,), (u,))),
      "jvp_param_grad": jax.jit(lambda p, x, y, u: jax.grad(jvp_scalar)(p, x, u)),
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


def environment() -> dict:
  devices = jax.devices()
  try:
    load = list(os.getloadavg())
  except OSError:
    load = None
  return {"jax_version": jax.__version__, "backend": jax.default_backend(),
          "device_kind": devices[0].device_kind, "device_count": len(devices),
          "process_count": jax.process_count(), "cpu_count": os.cpu_count(),
          "platform": platform.platform(), "python": platform.python_version(),
          "time_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
          "load_average_start": load}
