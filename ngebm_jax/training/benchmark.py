"""Wall-clock benchmark of the train step: baseline, NG-EBM and SGLD-EBM (JEM) on one footing.

The NG-EBM paper's claim is "the benefits of an EBM without SGLD's cost". This module measures
that cost on the user's hardware, in one process, for one model, batch, device set and dtype:

- `step_benchmark`: the real SPMD train step (`spmd.make_train_step`: value and gradient of the
  objective, Adam update, state donated) of every objective, compiled ahead of time
  (`jit(...).lower(...).compile()`, lowering and compilation timed apart), then timed
  round-robin over the objectives (so load from other processes spreads over all of them) with
  `jax.block_until_ready` after every call. Per objective: median, p10 and p90 of the step time,
  images/s, ratio to the baseline, XLA's FLOPs per step (`compiled.cost_analysis()`), the
  model-FLOPs utilization (MFU) against the device's peak where it is known (`PEAK_FLOPS`), the
  memory XLA plans for the step (`compiled.memory_analysis()`) and, where the backend reports
  one (GPU, TPU), the allocator's high-water mark (`device.memory_stats()`).
- `time_to_accuracy`: seconds of training until the validation accuracy first reaches a
  target, the honest comparison when objectives converge at different speeds. It runs the same
  compiled step on the real input pipeline (augmentation, noise, JEM's second batch) and
  evaluates with the loop's own `predict_logits`; the clock runs over training steps only (input
  pipeline included, compilation and validation excluded), with a cap on steps so it always
  ends. (`loop.train`'s logged `step_time_s` also counts evaluation and checkpoint writes,
  which would blur a comparison between objectives of different step costs.)
- `component_times`: the pieces a step is made of (forward, parameter backward, input-gradient
  pass, `jvp`), to show where the time goes when a target is missed.
- `write_report`: `benchmark.json`, `benchmark.md` (Markdown tables) and `benchmark.png`.

Targets (from the project's benchmark issue; measured and reported, never asserted): an NG-EBM
step at most 2.5x the baseline step (one input-gradient pass and one `jvp` on top of it), an
SGLD-EBM step with K Langevin steps at most `1 + 0.65 K` times the baseline step (each Langevin
step is one input-gradient pass, cheaper than a training step).
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import json
import math
import os
import platform
import time
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

from ngebm_jax import data as data_lib
from ngebm_jax.data import pipeline
from ngebm_jax.training import checkpoints as ckpt_lib
from ngebm_jax.training import loop
from ngebm_jax.training import objectives
from ngebm_jax.training import spmd
from ngebm_jax.training.state import TrainState, make_optimizer

# Dense peak FLOP/s of one device, by a substring of `device.device_kind` and the model dtype.
# GPU float32 convolutions and matmuls run as TF32 at JAX's default precision, so TF32 is the
# float32 peak there. Unlisted devices (CPUs included) get no MFU.
PEAK_FLOPS: dict[str, dict[str, float]] = {
    "H200": {"bfloat16": 989e12, "float32": 495e12},
    "H100": {"bfloat16": 989e12, "float32": 495e12},  # SXM; the PCIe card is ~25% lower
    "A100": {"bfloat16": 312e12, "float32": 156e12},
    "L4": {"bfloat16": 121e12, "float32": 60e12},
    "TPU v4": {"bfloat16": 275e12},
    "TPU v5 lite": {"bfloat16": 197e12},
    "TPU v5p": {"bfloat16": 459e12},
    "TPU v6 lite": {"bfloat16": 918e12},
}

# SGLD chain lengths K timed by default (JEM uses K = 20).
DEFAULT_SGLD_STEPS = (1, 5, 10, 20, 40)


def target_ratio(objective: str, sgld_steps: int | None = None) -> float | None:
  """The step-time target of `objective` as a multiple of the baseline step, or None."""
  if objective == "ngebm":
    return 2.5
  if objective == "sgld" and sgld_steps:
    return 1.0 + 0.65 * sgld_steps
  return None


def peak_flops(device_kind: str, dtype: str) -> float | None:
  """Dense peak FLOP/s of a device of kind `device_kind` in `dtype`, or None if unknown."""
  for name in sorted(PEAK_FLOPS, key=len, reverse=True):  # "TPU v5 lite" before "TPU v5"
    if name.lower() in device_kind.lower():
      return PEAK_FLOPS[name].get(dtype)
  return None


# ---------------------------------------------------------------------------------------------
# Variants: one train step each.


@dataclasses.dataclass(frozen=True)
class Variant:
  """One timed train step: an objective, and for SGLD its chain length K."""
  name: str  # "baseline", "ngebm", "sgld_k20", ...
  objective: str
  config: ml_collections.ConfigDict
  sgld_steps: int | None = None


def make_variants(config, objective_names: Sequence[str],
                  sgld_steps: Sequence[int] = DEFAULT_SGLD_STEPS,
                  ) -> tuple[list[Variant], list[str]]:
  """The variants of `config` to time, and the requested objectives that are not registered.

  `config.objective` is replaced by each name in turn; "sgld" becomes one variant per K in
  `sgld_steps` (`config.sgld.num_steps = K`). Everything else stays as in `config`.
  """
  available = objectives.names()
  variants, skipped = [], []
  for name in objective_names:
    if name not in available:
      skipped.append(name)
      continue
    if name == "sgld":
      if not sgld_steps:
        raise ValueError("sgld_steps must name at least one chain length K to time 'sgld'.")
      for k in sgld_steps:
        if int(k) < 1:
          raise ValueError(f"sgld_steps must be >= 1; got {k}.")
        c = config.copy_and_resolve_references()
        c.objective = "sgld"
        c.sgld.num_steps = int(k)
        variants.append(Variant(f"sgld_k{int(k)}", "sgld", c, int(k)))
    else:
      c = config.copy_and_resolve_references()
      c.objective = name
      variants.append(Variant(name, name, c))
  if skipped:
    logging.warning("Objectives not registered in this version, skipped: %s (available: %s).",
                    skipped, available)
  return variants, skipped


def _needs_unlabelled_batch(config) -> bool:
  fn = getattr(objectives, "needs_unlabelled_batch", None)
  return bool(fn(config)) if fn is not None else False


def train_iterator(config, source, *, seed_offset: int = 0):
  """The training batches `loop.train` would draw for `config` (this process's slice)."""
  options = pipeline.PipelineOptions(
      batch_size=config.batch_size // jax.process_count(), augment=config.dataset.augment,
      noise_std=config.dataset.noise_std, num_workers=config.dataset.get("num_workers", 0),
      seed=config.seed + seed_offset, unlabelled_batch=_needs_unlabelled_batch(config))
  return iter(pipeline.train_dataset(source, options, process_index=jax.process_index(),
                                     process_count=jax.process_count()))


@dataclasses.dataclass
class StepProgram:
  """A variant's compiled train step, and how to make a fresh train state for it."""
  variant: Variant
  compiled: Any  # jax.stages.Compiled: (state, batch) -> (state, metrics); state donated
  init_state: Callable[[], TrainState]
  lower_s: float
  compile_s: float
  model_fns: Any
  params_template: Any  # the initial parameters, host (NumPy) arrays


def build_step(variant: Variant, mesh, example_batch: dict, *, num_classes: int,
               image_shape: Sequence[int]) -> StepProgram:
  """Builds and compiles (timed) the SPMD train step of `variant` for batches like the example."""
  config = variant.config
  fns, params = ckpt_lib.model_from_config(config, num_classes)
  # A host copy: the step donates its state, so every fresh state needs buffers of its own.
  params = jax.device_get(params)
  objective = objectives.make_objective(config, fns)
  opt = config.optimizer
  optimizer = make_optimizer(opt.learning_rate, opt.warmup_steps, b1=opt.b1, b2=opt.b2,
                             weight_decay=opt.get("weight_decay", 0.0))

  def init_state() -> TrainState:
    root = jax.random.key(config.seed)
    state = TrainState(
        step=jnp.zeros((), jnp.int32), params=jax.tree.map(jnp.array, params),
        opt_state=optimizer.init(params),
        key=jax.random.key_data(jax.random.fold_in(root, 1)),
        objective_state=objective.init_state(jax.random.fold_in(root, 2), tuple(image_shape),
                                             mesh.size))
    return spmd.put_state(state, mesh)

  state = init_state()
  step = spmd.make_train_step(objective.loss_fn, optimizer, mesh, state)
  t0 = time.perf_counter()
  lowered = step.lower(state, example_batch)
  t1 = time.perf_counter()
  compiled = lowered.compile()
  t2 = time.perf_counter()
  del state
  logging.info("%s: lowered in %.1f s, compiled in %.1f s.", variant.name, t1 - t0, t2 - t1)
  return StepProgram(variant, compiled, init_state, t1 - t0, t2 - t1, fns, params)


# ---------------------------------------------------------------------------------------------
# What XLA says about a compiled step.


def memory_figures(compiled) -> dict:
  """Bytes XLA plans for one call of `compiled` (per device), from its memory analysis.

  `peak_bytes` = arguments + outputs - aliased (donated) + temporaries: the device memory one
  step needs with its inputs resident. XLA's own `peak_memory_in_bytes` is kept as
  `xla_peak_memory_bytes` where reported; on CPU it leaves out the temporaries, so it is not the
  headline figure. Empty when the backend has no memory analysis.
  """
  try:
    m = compiled.memory_analysis()
  except Exception as e:  # pylint: disable=broad-except  # not implemented on some backends
    logging.warning("No memory analysis on this backend (%s: %s).", type(e).__name__, e)
    return {}
  if m is None:
    return {}
  out = {}
  for field in ("argument", "output", "temp", "alias", "generated_code"):
    value = getattr(m, f"{field}_size_in_bytes", None)
    if value is not None:
      out[f"{field}_bytes"] = int(value)
  out["peak_bytes"] = int(out.get("argument_bytes", 0) + out.get("output_bytes", 0)
                          - out.get("alias_bytes", 0) + out.get("temp_bytes", 0))
  xla_peak = getattr(m, "peak_memory_in_bytes", None)
  if xla_peak is not None:
    out["xla_peak_memory_bytes"] = int(xla_peak)
  return out


def allocator_peak_bytes(devices) -> int | None:
  """The largest `peak_bytes_in_use` over `devices` (a process-lifetime high-water mark)."""
  peaks = []
  for d in devices:
    try:
      stats = d.memory_stats()
    except Exception:  # pylint: disable=broad-except
      stats = None
    if stats and "peak_bytes_in_use" in stats:
      peaks.append(int(stats["peak_bytes_in_use"]))
  return max(peaks) if peaks else None


def _cost(compiled) -> dict:
  try:
    cost = compiled.cost_analysis()
  except Exception as e:  # pylint: disable=broad-except
    logging.warning("No cost analysis on this backend (%s: %s).", type(e).__name__, e)
    return {}
  if isinstance(cost, (list, tuple)):  # older JAX: one dict per program
    cost = cost[0] if cost else {}
  return dict(cost or {})


def langevin_step_flops(model_fns, params, x, *, step_size: float, noise_std: float
                        ) -> float | None:
  """XLA's FLOPs of one SGLD step on `x`: input-gradient pass, Langevin noise, update.

  Measured as the difference between XLA's counts of a 2-step and a 1-step chain (both without
  a loop), so everything a step does is in it (the Gaussian noise's random-bit generation is a
  sizeable share of it for small models).
  """
  from ngebm_jax import sgld  # pylint: disable=g-import-not-at-top
  key = jax.random.key(0)
  counts = []
  for k in (1, 2):
    fn = jax.jit(lambda p, x_, key_, k=k: sgld.sgld_sample(
        model_fns.apply_fn, p, x_, key_, num_steps=k, step_size=step_size, noise_std=noise_std,
        unroll=k))
    counts.append(_cost(fn.lower(params, x, key).compile()).get("flops"))
  if None in counts:
    return None
  return float(counts[1] - counts[0])


def step_flops(program: StepProgram, per_device_batch: int, image_shape: Sequence[int]) -> dict:
  """FLOPs of one step on one device: XLA's count, corrected for a rolled SGLD loop.

  XLA's cost analysis counts the body of a while loop once, whatever its trip count. A rolled
  SGLD chain (`lax.scan` with unroll u < K, the default off CPU) is a loop of K // u iterations
  of u Langevin steps (then K % u more), so about `(K // u - 1) * u` Langevin steps are missing
  from the count; they are added here, at XLA's own count for one step (`langevin_step_flops`).
  """
  flops_xla = _cost(program.compiled).get("flops")
  if flops_xla is None:
    return {}
  out = {"flops_xla": float(flops_xla), "flops": float(flops_xla)}
  v = program.variant
  if v.objective == "sgld" and v.sgld_steps:
    from ngebm_jax import sgld  # pylint: disable=g-import-not-at-top
    unroll = sgld.resolve_unroll(v.config.sgld.get("unroll"), v.sgld_steps)
    missing = (v.sgld_steps // unroll - 1) * unroll
    out["sgld_unroll"] = unroll
    if missing > 0:
      x = jnp.zeros((per_device_batch, *image_shape), jnp.float32)
      per_step = langevin_step_flops(program.model_fns, program.params_template, x,
                                     step_size=v.config.sgld.step_size,
                                     noise_std=v.config.sgld.noise_std)
      if per_step is not None:
        out["flops"] = float(flops_xla) + missing * per_step
        out["flops_note"] = (f"rolled loop: {missing} Langevin steps of {per_step:.3g} FLOPs "
                             "added to XLA's count")
  return out


# ---------------------------------------------------------------------------------------------
# Step timing.


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


# ---------------------------------------------------------------------------------------------
# End to end: seconds to a validation accuracy.


def time_to_accuracy(program: StepProgram, config, sources: dict, mesh, predict, *,
                     target_accuracy: float, max_steps: int, eval_every: int,
                     max_seconds: float | None = None) -> dict:
  """Trains `program`'s variant from its initial state until validation accuracy >= target.

  The clock accumulates the wall time of training steps only: each interval of `eval_every`
  steps is dispatched as the loop does (asynchronously, the input pipeline overlapping the
  device) and closed with `block_until_ready`; validation runs with the clock stopped.
  Stops at the first evaluation that reaches `target_accuracy`, after `max_steps` steps, or once
  the clock passes `max_seconds`.

  Returns:
    A dict with `reached`, `steps_to_target`, `seconds_to_target` (None when not reached),
    `curve` (`[{step, train_s, val_accuracy, val_nll}]`), `nonfinite_steps`, and the last and
    best validation accuracies.
  """
  if max_steps < 1 or eval_every < 1:
    raise ValueError(f"max_steps and eval_every must be >= 1; got {max_steps}, {eval_every}.")
  val_labels = loop.labels_of(sources["validation"])
  train_iter = train_iterator(config, sources["train"])
  state = program.init_state()
  train_s, step, curve, nonfinite = 0.0, 0, [], 0
  reached_at = None
  while step < max_steps:
    pending = []
    t0 = time.perf_counter()
    for _ in range(min(eval_every, max_steps - step)):
      batch = spmd.host_to_global(mesh, next(train_iter))
      state, metrics = program.compiled(state, batch)
      pending.append(metrics["finite"])
      step += 1
    _block(state)
    train_s += time.perf_counter() - t0
    nonfinite += int(sum(float(f) < 1 for f in jax.device_get(pending)))
    logits = loop.predict_logits(predict, state.params, sources["validation"], mesh=mesh,
                                 batch_size=config.eval.batch_size,
                                 noise_std=config.dataset.noise_std, seed=config.seed)
    val = loop.classification_metrics(logits, val_labels)
    curve.append({"step": step, "train_s": train_s, "val_accuracy": val["accuracy"],
                  "val_nll": val["nll"]})
    logging.info("%s: step %d, %.1f s of training, validation accuracy %.4f",
                 program.variant.name, step, train_s, val["accuracy"])
    if val["accuracy"] >= target_accuracy:
      reached_at = curve[-1]
      break
    if max_seconds is not None and train_s >= max_seconds:
      break
  accs = [c["val_accuracy"] for c in curve]
  return {"target_accuracy": float(target_accuracy), "reached": reached_at is not None,
          "steps_to_target": reached_at["step"] if reached_at else None,
          "seconds_to_target": reached_at["train_s"] if reached_at else None,
          "steps_run": step, "train_s": train_s, "last_val_accuracy": accs[-1] if accs else None,
          "best_val_accuracy": max(accs) if accs else None, "nonfinite_steps": nonfinite,
          "max_steps": int(max_steps), "eval_every": int(eval_every), "curve": curve}


# ---------------------------------------------------------------------------------------------
# Components of a step.


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
  from ngebm_jax import objectives as objectives_lib  # pylint: disable=g-import-not-at-top
  from ngebm_jax.energy import log_density_input_grad  # pylint: disable=g-import-not-at-top
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


# ---------------------------------------------------------------------------------------------
# The whole benchmark.


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


def _model_description(config) -> str:
  m = config.model
  if m.name == "wide_resnet":
    return f"WRN-{m.depth}-{m.width}"
  return f"{m.name}" + (f" (width {m.width})" if "width" in m else "")


def run(config, *, objective_names: Sequence[str] = ("baseline", "ngebm", "sgld"),
        sgld_steps: Sequence[int] = DEFAULT_SGLD_STEPS, steps: int = 20, warmup: int = 1,
        end_to_end_accuracy: float | None = 0.5,
        end_to_end_objectives: Sequence[str] | None = None, end_to_end_max_steps: int = 500,
        end_to_end_eval_every: int = 25, end_to_end_max_seconds: float | None = None,
        components: bool = False, devices=None) -> dict:
  """Runs the benchmark of `config` and returns its results (what `benchmark.json` holds).

  Args:
    config: a training config (configs/default.py); `objective` is set per variant.
    objective_names: objectives to time; names not registered are skipped (listed in
      `skipped`).
    sgld_steps: the chain lengths K timed for "sgld".
    steps: timed calls per variant (after `warmup` untimed calls).
    warmup: untimed calls per variant.
    end_to_end_accuracy: target validation accuracy for the end-to-end runs; None skips them.
    end_to_end_objectives: variant names ("baseline", "ngebm", "sgld_k20") to train end to end;
      None means every timed variant.
    end_to_end_max_steps: cap on training steps per end-to-end run.
    end_to_end_eval_every: steps between validation evaluations.
    end_to_end_max_seconds: cap on training seconds per end-to-end run (None: no cap).
    components: also time the pieces of a step (`component_times`).
    devices: the devices of the data-parallel mesh (default: all).
  """
  loop.validate_config(config, len(devices) if devices is not None else None)
  env = environment()
  mesh = spmd.make_mesh(devices)
  info = data_lib.dataset_info(config)
  sources = data_lib.get_sources(config)
  variants, skipped = make_variants(config, objective_names, sgld_steps)
  if not variants:
    raise ValueError(f"None of the objectives {list(objective_names)} is registered; "
                     f"available: {objectives.names()}.")

  programs, batches = [], []
  for v in variants:
    batch = spmd.host_to_global(mesh, next(train_iterator(v.config, sources["train"])))
    programs.append(build_step(v, mesh, batch, num_classes=info.num_classes,
                               image_shape=info.image_shape))
    batches.append(batch)

  timings = step_benchmark(programs, batches, steps=steps, warmup=warmup,
                           devices=mesh.local_devices)
  dtype = config.model.get("dtype", "float32")
  device_peak = peak_flops(env["device_kind"], dtype) if env["backend"] != "cpu" else None
  per_device_batch = config.batch_size // mesh.size
  rows = []
  for program, timing in zip(programs, timings):
    v = program.variant
    row = {"name": v.name, "objective": v.objective, "sgld_steps": v.sgld_steps,
           "lower_s": program.lower_s, "compile_s": program.compile_s, **timing,
           **summarize_times(timing["times_s"], config.batch_size),
           "memory": memory_figures(program.compiled),
           **step_flops(program, per_device_batch, info.image_shape)}
    if v.objective == "sgld":
      row["sgld_unroll_config"] = v.config.sgld.get("unroll")
      row["sgld_separate_unlabelled_batch"] = bool(
          v.config.sgld.get("separate_unlabelled_batch", False))
    if row.get("flops") and device_peak:
      row["mfu"] = row["flops"] / row["median_s"] / device_peak
    else:
      row["mfu"] = None
    rows.append(row)
    logging.info("%s: median %.1f ms (p10 %.1f, p90 %.1f) over %d steps.", v.name,
                 1e3 * row["median_s"], 1e3 * row["p10_s"], 1e3 * row["p90_s"], len(
                     timing["times_s"]))

  base = next((r for r in rows if r["name"] == "baseline"), None)
  reference = dict(config.get("benchmark", {}).get("reference_ms", {}) or {})
  for r in rows:
    r["ratio_to_baseline"] = r["median_s"] / base["median_s"] if base else None
    r["target_ratio"] = target_ratio(r["objective"], r["sgld_steps"])
    r["meets_target"] = (r["ratio_to_baseline"] <= r["target_ratio"]
                         if r["target_ratio"] and r["ratio_to_baseline"] else None)
    ref = reference.get(r["name"])
    r["reference_ms"] = ref
    r["ratio_to_reference"] = 1e3 * r["median_s"] / ref if ref else None
  by_name = {r["name"]: r for r in rows}
  ratios = {}
  if "sgld_k20" in by_name and "ngebm" in by_name:
    ratios["sgld_k20_over_ngebm"] = by_name["sgld_k20"]["median_s"] / by_name["ngebm"]["median_s"]
  env["load_average_after_steps"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None

  comps = None
  if components:
    fns, params = programs[0].model_fns, programs[0].params_template
    x = jnp.asarray(np.asarray(jax.device_get(batches[0]["image"]))[:per_device_batch])
    y = jnp.asarray(np.asarray(jax.device_get(batches[0]["label"]))[:per_device_batch])
    extra = {}
    if programs[0].variant.name == "baseline" and mesh.size == 1:
      holder = [programs[0].init_state()]

      def baseline_step():
        holder[0], metrics = programs[0].compiled(holder[0], batches[0])
        return holder[0], metrics
      extra["train_step_baseline"] = baseline_step
    comps = component_times(fns, jax.device_put(params, mesh.devices.flat[0]), x, y,
                            repeats=max(3, min(steps, 10)), extra=extra)

  e2e = None
  if end_to_end_accuracy is not None:
    wanted = list(end_to_end_objectives) if end_to_end_objectives else [p.variant.name
                                                                        for p in programs]
    unknown = sorted(set(wanted) - {p.variant.name for p in programs})
    if unknown:
      logging.warning("End-to-end: variants %s were not timed, skipped.", unknown)
    predict = spmd.make_predict(programs[0].model_fns.apply_fn, mesh)
    e2e = {"target_accuracy": float(end_to_end_accuracy), "max_steps": int(end_to_end_max_steps),
           "eval_every": int(end_to_end_eval_every), "runs": {}}
    for program in programs:
      if program.variant.name not in wanted:
        continue
      e2e["runs"][program.variant.name] = time_to_accuracy(
          program, program.variant.config, sources, mesh, predict,
          target_accuracy=end_to_end_accuracy, max_steps=end_to_end_max_steps,
          eval_every=end_to_end_eval_every, max_seconds=end_to_end_max_seconds)
    env["load_average_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None

  return {
      "environment": env,
      "setup": {"model": _model_description(config), "model_config": config.model.to_dict(),
                "batch_size": int(config.batch_size), "per_device_batch": per_device_batch,
                "dtype": dtype, "dataset": config.dataset.name,
                "optimizer": config.optimizer.to_dict(), "steps": int(steps),
                "warmup": int(warmup), "device_peak_flops": device_peak,
                "objectives_requested": list(objective_names),
                "sgld_steps": [int(k) for k in sgld_steps]},
      "skipped": skipped,
      "steps": rows,
      "ratios": ratios,
      "components_s": comps,
      "end_to_end": e2e,
  }


# ---------------------------------------------------------------------------------------------
# Report.


def _fmt(value, spec: str, missing: str = "–") -> str:
  if value is None or (isinstance(value, float) and not math.isfinite(value)):
    return missing
  return format(value, spec)


def _mib(value) -> str:
  return _fmt(value / 2**20 if value is not None else None, ".1f")


def markdown(results: dict) -> str:
  """The results as Markdown: set-up, step table, ratios, components and end-to-end table."""
  env, setup = results["environment"], results["setup"]
  load = env.get("load_average_start")
  lines = [
      f"# Train-step benchmark: {setup['model']}, batch {setup['batch_size']}, {setup['dtype']}",
      "",
      f"{env['backend']} ({env['device_kind']}) x {env['device_count']}, JAX "
      f"{env['jax_version']}, {env['cpu_count']} CPU cores, load average at start "
      f"{' / '.join(f'{x:.2f}' for x in load) if load else 'unknown'}; {env['time_utc']}. "
      f"Median of {setup['steps']} timed steps per objective (round-robin, after "
      f"{setup['warmup']} warm-up step), spread p10-p90.",
      "",
      "| objective | compile s | median ms | p10-p90 ms | images/s | x baseline | target | "
      "reference ms | x reference | step memory MiB | allocator peak MiB | GFLOP/step | MFU |",
      "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
  ]
  for r in results["steps"]:
    target = "–"
    if r.get("target_ratio"):
      target = f"<= {r['target_ratio']:.2f}x " + ("(met)" if r["meets_target"] else "(missed)")
    flops = r.get("flops")
    lines.append(
        f"| {r['name']} | {r['lower_s'] + r['compile_s']:.1f} | {1e3 * r['median_s']:.1f} | "
        f"{1e3 * r['p10_s']:.1f}-{1e3 * r['p90_s']:.1f} | {_fmt(r['images_per_s'], '.0f')} | "
        f"{_fmt(r.get('ratio_to_baseline'), '.2f')} | {target} | "
        f"{_fmt(r.get('reference_ms'), '.0f')} | {_fmt(r.get('ratio_to_reference'), '.2f')} | "
        f"{_mib(r['memory'].get('peak_bytes'))} | {_mib(r.get('allocator_peak_bytes'))} | "
        f"{_fmt(flops / 1e9 if flops else None, '.1f')} | "
        f"{_fmt(100 * r['mfu'] if r.get('mfu') is not None else None, '.1f')}"
        + ("%" if r.get("mfu") is not None else "") + " |")
  lines.append("")
  if results["ratios"].get("sgld_k20_over_ngebm"):
    lines.append(f"SGLD-EBM (K = 20) / NG-EBM step time: "
                 f"**{results['ratios']['sgld_k20_over_ngebm']:.2f}x**.")
    lines.append("")
  if results.get("skipped"):
    lines.append(f"Not registered in this version, skipped: {', '.join(results['skipped'])}.")
    lines.append("")
  lines.append("Compile s = lowering + XLA compilation. Step memory: what XLA plans for one step "
               "(arguments + outputs - donated + temporaries, from XLA's memory analysis; per "
               "device). Allocator peak: the process's "
               "high-water mark after the objective's warm-up (GPU/TPU only; objectives are "
               "warmed up in table order, so it is an upper bound). FLOPs: XLA's cost analysis "
               "per device (rolled SGLD loops corrected). MFU: FLOPs / median step / the "
               "device's dense peak, for known accelerators only.")
  lines.append("")
  comps = results.get("components_s")
  if comps:
    lines += ["## Where the time goes (one device's batch, jitted, median)", "",
              "| piece | ms |", "| --- | ---: |"]
    lines += [f"| {k} | {1e3 * v:.1f} |" for k, v in comps.items()]
    lines.append("")
  e2e = results.get("end_to_end")
  if e2e and e2e["runs"]:
    lines += [f"## End to end: training time to {100 * e2e['target_accuracy']:.0f}% "
              f"validation accuracy", "",
              f"Same step as above on the real input pipeline; validation every "
              f"{e2e['eval_every']} steps (clock stopped), at most {e2e['max_steps']} steps. "
              "Seconds count training steps only (input pipeline included, compilation and "
              "validation excluded).", "",
              "| objective | reached | steps | train s | best val acc | steps run | "
              "non-finite steps |", "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    for name, r in e2e["runs"].items():
      lines.append(
          f"| {name} | {'yes' if r['reached'] else 'no'} | {_fmt(r['steps_to_target'], 'd')} | "
          f"{_fmt(r['seconds_to_target'], '.1f')} | {_fmt(r['best_val_accuracy'], '.3f')} | "
          f"{r['steps_run']} | {r['nonfinite_steps']} |")
    lines.append("")
  return "\n".join(lines)


def plot(results: dict, path: str) -> None:
  """Bar plot of median step times (p10-p90 whiskers) and, if run, end-to-end seconds."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top
  rows = results["steps"]
  e2e = results.get("end_to_end")
  panels = 2 if e2e and e2e["runs"] else 1
  fig, axes = plt.subplots(1, panels, figsize=(6 * panels, 4), squeeze=False)
  ax = axes[0, 0]
  names = [r["name"] for r in rows]
  med = np.array([1e3 * r["median_s"] for r in rows])
  err = np.array([[1e3 * (r["median_s"] - r["p10_s"]) for r in rows],
                  [1e3 * (r["p90_s"] - r["median_s"]) for r in rows]])
  x = np.arange(len(rows))
  ax.bar(x, med, yerr=err, capsize=3, color="#4c72b0", label="ours (median, p10-p90)")
  base = next((r for r in rows if r["name"] == "baseline"), None)
  targets = [(i, 1e3 * r["target_ratio"] * base["median_s"]) for i, r in enumerate(rows)
             if base and r.get("target_ratio")]
  if targets:
    ax.scatter(*zip(*targets), marker="_", s=500, color="#c44e52", zorder=3,
               label="target (x baseline)")
  refs = [(i, r["reference_ms"]) for i, r in enumerate(rows) if r.get("reference_ms")]
  if refs:
    ax.scatter(*zip(*refs), marker="x", color="black", zorder=3, label="PyTorch reference")
  for i, r in enumerate(rows):
    if r.get("ratio_to_baseline"):
      ax.annotate(f"{r['ratio_to_baseline']:.1f}x", (i, 1e3 * r["p90_s"]), xytext=(0, 3),
                  textcoords="offset points", ha="center", va="bottom", fontsize=8)
  ax.set_xticks(x, names)
  ax.legend(fontsize=7, loc="upper left")
  ax.set_ylabel("train step, ms (median, p10-p90)")
  setup = results["setup"]
  ax.set_title(f"{setup['model']}, batch {setup['batch_size']}, "
               f"{results['environment']['backend']}")
  ax.tick_params(axis="x", rotation=45)
  if panels == 2:
    ax = axes[0, 1]
    runs = e2e["runs"]
    names = list(runs)
    secs = [runs[n]["seconds_to_target"] if runs[n]["reached"] else runs[n]["train_s"]
            for n in names]
    colors = ["#55a868" if runs[n]["reached"] else "#c44e52" for n in names]
    ax.bar(names, secs, color=colors)
    ax.set_ylabel(f"training s to {100 * e2e['target_accuracy']:.0f}% val. acc.\n"
                  "(red: not reached, s of the capped run)")
    ax.tick_params(axis="x", rotation=45)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def _jsonable(x):
  if isinstance(x, dict):
    return {str(k): _jsonable(v) for k, v in x.items()}
  if isinstance(x, (list, tuple)):
    return [_jsonable(v) for v in x]
  if isinstance(x, (np.floating, float)):
    return float(x) if math.isfinite(float(x)) else str(float(x))
  if isinstance(x, (np.integer,)):
    return int(x)
  return x


def write_report(results: dict, output: str) -> dict[str, str]:
  """Writes `benchmark.json`, `benchmark.md` and `benchmark.png` in `output`; returns paths."""
  os.makedirs(output, exist_ok=True)
  paths = {k: os.path.join(output, f"benchmark.{k}") for k in ("json", "md", "png")}
  with open(paths["json"], "w") as f:
    json.dump(_jsonable(results), f, indent=1)
  with open(paths["md"], "w") as f:
    f.write(markdown(results) + "\n")
  plot(results, paths["png"])
  return paths
