"""Wall-clock benchmark of the train step: baseline, NG-EBM and SGLD-EBM (JEM) on one footing.

The NG-EBM paper's claim is "the benefits of an EBM without SGLD's cost". This workflow measures
that cost on the user's hardware, in one process, for one model, batch, device set and dtype,
with the pieces of `ngebm_jax.benchmarking`:

- step times (`timing.step_benchmark`): the real SPMD train step of every objective variant
  (`step_programs`), compiled ahead of time, timed round-robin; median, p10 and p90, images/s,
  ratio to the baseline; XLA's FLOPs, planned memory and the allocator's peak (`xla_costs`),
  and the MFU against the device's peak where it is known;
- the pieces of a step (`timing.component_times`), to show where the time goes;
- end to end, the race (`race.time_to_accuracy`, settings in `config.race`): training seconds
  and steps until a validation accuracy, and accuracy and ECE at a common training budget;
- the report (`report.write_report`): `benchmark.json`, `benchmark.md`, `benchmark.png`.

Targets (from the project's benchmark issue; measured and reported, never asserted): an NG-EBM
step at most 2.5x the baseline step (one input-gradient pass and one `jvp` on top of it), an
SGLD-EBM step with K Langevin steps at most `1 + 0.65 K` times the baseline step (each Langevin
step is one input-gradient pass, cheaper than a training step).
"""

from __future__ import annotations

import os
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from ngebm_jax import data as data_lib
from ngebm_jax.benchmarking import race
from ngebm_jax.benchmarking import timing
from ngebm_jax.benchmarking import xla_costs
from ngebm_jax.benchmarking.step_programs import DEFAULT_SGLD_STEPS
from ngebm_jax.benchmarking.step_programs import build_step
from ngebm_jax.benchmarking.step_programs import make_variants
from ngebm_jax.training import loop
from ngebm_jax.training import objective_registry
from ngebm_jax.training import spmd


def target_ratio(objective: str, sgld_steps: int | None = None) -> float | None:
  """The step-time target of `objective` as a multiple of the baseline step, or None."""
  if objective == "ngebm":
    return 2.5
  if objective == "sgld" and sgld_steps:
    return 1.0 + 0.65 * sgld_steps
  return None


def _model_description(config) -> str:
  m = config.model
  if m.name == "wide_resnet":
    return f"WRN-{m.depth}-{m.width}"
  return f"{m.name} (width {m.width})"


def check_race_config(config) -> None:
  """Fails on a bad `config.race` before the step timing, not after."""
  r = config.race
  if r.target_accuracy > 1:
    raise ValueError(f"config.race.target_accuracy must be <= 1; got {r.target_accuracy}.")
  for field in ("max_steps", "eval_every"):
    if r[field] < 1:
      raise ValueError(f"config.race.{field} must be >= 1; got {r[field]}.")
  if r.budget_s is not None and (r.budget_s <= 0 or 0 < r.max_seconds < r.budget_s):
    raise ValueError(f"config.race.budget_s must be > 0 and at most config.race.max_seconds "
                     f"({r.max_seconds}); got {r.budget_s}.")


def race_objectives(config, programs, sources, mesh) -> dict | None:
  """The race of `config.race` over the compiled `programs`; None when it is skipped.

  Every runner is a variant of the same config (same model, data, seed, optimizer and
  schedule); only the objective differs, and for SGLD-EBM the chain length K.
  """
  r = config.race
  check_race_config(config)
  if r.target_accuracy <= 0:
    return None
  max_seconds = r.max_seconds if r.max_seconds > 0 else None
  names = [p.variant.name for p in programs]
  wanted = list(r.objectives) if r.objectives else names
  unknown = sorted(set(wanted) - set(names))
  if unknown:
    logging.warning("Race: variants %s were not timed, skipped (timed: %s).", unknown, names)
  e2e = {"target_accuracy": float(r.target_accuracy), "max_steps": int(r.max_steps),
         "eval_every": int(r.eval_every), "max_seconds": max_seconds,
         "budget_s": None if r.budget_s is None else float(r.budget_s),
         "ece_num_bins": int(config.eval.num_bins), "runs": {}}
  for program in programs:
    if program.variant.name in wanted:
      e2e["runs"][program.variant.name] = race.time_to_accuracy(
          program, program.variant.config, sources, mesh, target_accuracy=r.target_accuracy,
          max_steps=r.max_steps, eval_every=r.eval_every, max_seconds=max_seconds,
          budget_s=r.budget_s)
  return e2e


def run(config, *, objective_names: Sequence[str] = ("baseline", "ngebm", "sgld"),
        sgld_steps: Sequence[int] = DEFAULT_SGLD_STEPS, steps: int = 20, warmup: int = 1,
        components: bool = False, devices=None) -> dict:
  """Runs the benchmark of `config` and returns its results (what `benchmark.json` holds).

  Args:
    config: a training config (configs/default.py); `objective` is set per variant. Its
      `race` block sets the end-to-end part: the variants to race (`race.objectives`, names
      such as "baseline", "ngebm", "sgld_k20"; empty: every timed variant), the target
      validation accuracy (`race.target_accuracy`, <= 0 skips the race), the common budget
      of training seconds (`race.budget_s`), the caps per runner (`race.max_steps`,
      `race.max_seconds`, <= 0: none) and the steps between validations (`race.eval_every`).
    objective_names: objectives to time; names not registered are skipped (listed in
      `skipped`).
    sgld_steps: the chain lengths K timed for "sgld".
    steps: timed calls per variant (after `warmup` untimed calls).
    warmup: untimed calls per variant.
    components: also time the pieces of a step (`component_times`).
    devices: the devices of the data-parallel mesh (default: all).
  """
  loop.validate_config(config, len(devices) if devices is not None else None)
  check_race_config(config)
  env = timing.environment()
  mesh = spmd.make_mesh(devices)
  info = data_lib.dataset_info(config)
  sources = data_lib.get_sources(config)
  variants, skipped = make_variants(config, objective_names, sgld_steps)
  if not variants:
    raise ValueError(f"None of the objectives {list(objective_names)} is registered; "
                     f"available: {objective_registry.names()}.")

  programs, batches = [], []
  for v in variants:
    batch = spmd.host_to_global(mesh, next(loop.train_iterator(v.config, sources["train"])))
    programs.append(build_step(
        v, mesh, batch, num_classes=info.num_classes, image_shape=info.image_shape,
        steps_per_epoch=loop.steps_per_epoch(v.config, len(sources["train"]))))
    batches.append(batch)

  timings = timing.step_benchmark(programs, batches, steps=steps, warmup=warmup,
                                  devices=mesh.local_devices)
  dtype = config.model.dtype
  device_peak = (xla_costs.peak_flops(env["device_kind"], dtype) if env["backend"] != "cpu"
                 else None)
  per_device_batch = config.batch_size // mesh.size
  rows = []
  for program, times in zip(programs, timings):
    v = program.variant
    row = {"name": v.name, "objective": v.objective, "sgld_steps": v.sgld_steps,
           "lower_s": program.lower_s, "compile_s": program.compile_s, **times,
           **timing.summarize_times(times["times_s"], config.batch_size),
           "memory": xla_costs.memory_figures(program.compiled),
           **xla_costs.step_flops(program, per_device_batch, info.image_shape)}
    if v.objective == "sgld":
      row["sgld_unroll_config"] = v.config.sgld.unroll
      row["sgld_separate_unlabelled_batch"] = bool(v.config.sgld.separate_unlabelled_batch)
    if row.get("flops") and device_peak:
      row["mfu"] = row["flops"] / row["median_s"] / device_peak
    else:
      row["mfu"] = None
    rows.append(row)
    logging.info("%s: median %.1f ms (p10 %.1f, p90 %.1f) over %d steps.", v.name,
                 1e3 * row["median_s"], 1e3 * row["p10_s"], 1e3 * row["p90_s"], len(
                     times["times_s"]))

  base = next((r for r in rows if r["name"] == "baseline"), None)
  for r in rows:
    r["ratio_to_baseline"] = r["median_s"] / base["median_s"] if base else None
    r["target_ratio"] = target_ratio(r["objective"], r["sgld_steps"])
    r["meets_target"] = (r["ratio_to_baseline"] <= r["target_ratio"]
                         if r["target_ratio"] and r["ratio_to_baseline"] else None)
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
    comps = timing.component_times(fns, jax.device_put(params, mesh.devices.flat[0]), x, y,
                                   repeats=max(3, min(steps, 10)), extra=extra)

  e2e = race_objectives(config, programs, sources, mesh)
  if e2e is not None:
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
