"""Wall-clock benchmark of the train step: baseline, NG-EBM and SGLD-EBM (JEM) on one footing,
beside the calibration peers (label smoothing, focal loss) that cost a baseline step.

The NG-EBM paper's claim is "the benefits of an EBM without SGLD's cost". This workflow measures
that cost on the user's hardware, in one process tree, for one model, batch, device set and
dtype (or a grid of batches and dtypes), with the pieces of `ngebm_jax.benchmarking`:

- step times (`timing.step_benchmark`): the real SPMD train step of every objective variant
  (`step_programs`), compiled ahead of time, timed round-robin; median, p10 and p90, images/s,
  ratio to the baseline; XLA's FLOPs, planned memory and the allocator's peak (`xla_costs`),
  and the MFU against the device's peak where it is known;
- the PyTorch peer (`pytorch_peer`): the reference's steps in PyTorch, each timed right after
  ours of the same name, when torch is installed (CPU runs);
- the training loop's own throughput (`train_loop.throughput`): the real input pipeline feeding
  the baseline's step, images/s beside the step alone, and their ratio `pipeline_efficiency`;
- the pieces of a step (`timing.component_times`), ours and PyTorch's, to show where the time
  goes;
- the largest batch that fits a memory budget (`memory_fit`), optionally;
- end to end, the race (`race.time_to_accuracy`, settings in `config.race`): training seconds
  and steps until a validation accuracy, and accuracy and ECE at a common training budget;
- the report (`report.write_report`): `benchmark.json`, `benchmark.md`, `benchmark.png`.

Targets (measured and reported, never asserted): an NG-EBM step at most 2x the baseline step,
an SGLD-EBM step at most the PyTorch reference's ratios to its baseline on a 2-core CPU (4.9x
for K = 5, 11.9x for K = 20; the line through them for other K), and each of our steps no
slower than the PyTorch step beside it.
"""

from __future__ import annotations

import os
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from ngebm_jax import config_validation
from ngebm_jax import data as data_lib
from ngebm_jax.benchmarking import analytic_flops
from ngebm_jax.benchmarking import memory_fit
from ngebm_jax.benchmarking import pytorch_peer
from ngebm_jax.benchmarking import race
from ngebm_jax.benchmarking import report
from ngebm_jax.benchmarking import timing
from ngebm_jax.benchmarking import train_loop
from ngebm_jax.benchmarking import xla_costs
from ngebm_jax.benchmarking.step_programs import DEFAULT_SGLD_STEPS
from ngebm_jax.benchmarking.step_programs import build_step
from ngebm_jax.benchmarking.step_programs import make_variants
from ngebm_jax.training import loop
from ngebm_jax.training import objective_registry
from ngebm_jax.training import spmd
from ngebm_jax.workflows import launch

# The PyTorch reference's SGLD-EBM steps on a 2-core CPU, as multiples of its baseline step.
_SGLD_TARGETS = {5: 4.9, 20: 11.9}


def target_ratio(objective: str, sgld_steps: int | None = None) -> float | None:
  """The step-time target of `objective` as a multiple of the baseline step, or None."""
  if objective == "ngebm":
    return 2.0
  if objective == "sgld" and sgld_steps:
    (k0, r0), (k1, r1) = sorted(_SGLD_TARGETS.items())
    return r0 + (r1 - r0) * (sgld_steps - k0) / (k1 - k0)
  return None


def _model_description(config) -> str:
  m = config.model
  if m.name == "wide_resnet":
    return f"WRN-{m.depth}-{m.width}"
  return f"{m.name} (width {m.width})"


def forward_flops(config, model_fns, params, image_shape) -> dict:
  """One image's forward FLOPs: XLA's count, and for a Wide-ResNet the hand count beside it."""
  x = jax.ShapeDtypeStruct((1, *image_shape), jnp.float32)
  params = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), params)
  out = {"xla": xla_costs.known_flops(
      (jax.jit(model_fns.apply_fn).lower(params, x).cost_analysis() or {}).get("flops"))}
  m = config.model
  if m.name == "wide_resnet":
    num_classes = data_lib.dataset_info(config).num_classes
    out["analytic"] = analytic_flops.wide_resnet_forward_flops(m.depth, m.width, num_classes,
                                                               image_shape)
    out["analytic_dense"] = analytic_flops.wide_resnet_forward_flops(
        m.depth, m.width, num_classes, image_shape, valid=False)
  return out


def _jax_row(program, times: dict, config, per_device_batch: int, image_shape,
             device_peak: float | None, forward: dict | None = None) -> dict:
  v = program.variant
  row = {"name": v.name, "framework": "jax", "objective": v.objective, "sgld_steps": v.sgld_steps,
         "lower_s": program.lower_s, "compile_s": program.compile_s,
         **{k: val for k, val in times.items() if k != "pytorch"},
         **timing.summarize_times(times["times_s"], config.batch_size),
         "memory": xla_costs.memory_figures(program.compiled),
         **xla_costs.step_flops(program, per_device_batch, image_shape)}
  # Peak memory per device: the allocator's own peak where it has one (GPU/TPU), else XLA's plan.
  if times.get("allocator_peak_bytes") is not None:
    row["peak_memory_bytes"], row["peak_memory_source"] = (times["allocator_peak_bytes"],
                                                           "allocator")
  else:
    row["peak_memory_bytes"] = row["memory"].get("peak_bytes")
    row["peak_memory_source"] = "xla_memory_analysis"
  if v.objective == "sgld":
    row["sgld_unroll_config"] = v.config.sgld.unroll
    row["sgld_separate_unlabelled_batch"] = bool(v.config.sgld.separate_unlabelled_batch)
  row["mfu"] = xla_costs.mfu(row.get("flops"), row["median_s"], device_peak)
  if row.get("back_to_back_s"):
    row["back_to_back_images_per_s"] = config.batch_size / row["back_to_back_s"]
    row["mfu_back_to_back"] = xla_costs.mfu(row.get("flops"), row["back_to_back_s"], device_peak)
  if v.objective == "baseline" and forward and forward.get("analytic"):
    row["flops_analytic"] = per_device_batch * analytic_flops.baseline_step_flops(
        forward["analytic"])
  return row


def _pytorch_row(program, times: dict, global_batch: int) -> dict:
  v, t = program.variant, times["pytorch"]
  losses = [x for x in t["losses"] if x is not None]
  return {"name": v.name, "framework": "pytorch", "objective": v.objective,
          "sgld_steps": v.sgld_steps, "times_s": t["times_s"], "first_call_s": t["first_call_s"],
          **timing.summarize_times(t["times_s"], global_batch),
          "loss_first": losses[0] if losses else None, "loss_last": losses[-1] if losses else None}


def _add_ratios(rows: list[dict]) -> dict:
  """Ratios to each framework's own baseline, targets, ours / PyTorch; the summary ratios."""
  by = {(r["framework"], r["name"]): r for r in rows}
  for r in rows:
    base = by.get((r["framework"], "baseline"))
    r["ratio_to_baseline"] = r["median_s"] / base["median_s"] if base else None
    if r["framework"] != "jax":
      continue
    r["target_ratio"] = target_ratio(r["objective"], r["sgld_steps"])
    r["meets_target"] = (r["ratio_to_baseline"] <= r["target_ratio"]
                         if r["target_ratio"] and r["ratio_to_baseline"] else None)
    peer = by.get(("pytorch", r["name"]))
    r["pytorch_median_s"] = peer["median_s"] if peer else None
    r["ratio_to_pytorch"] = r["median_s"] / peer["median_s"] if peer else None
  ours = {name: r for (fw, name), r in by.items() if fw == "jax"}
  ratios = {}
  if "sgld_k20" in ours and "ngebm" in ours:
    ratios["sgld_k20_over_ngebm"] = ours["sgld_k20"]["median_s"] / ours["ngebm"]["median_s"]
  # The cheaper NG-EBM (penalty on a share of each batch) and the other gradient form, against
  # the config's NG-EBM step.
  over_ngebm = {n: r["median_s"] / ours["ngebm"]["median_s"] for n, r in ours.items()
                if n.startswith("ngebm_") and "ngebm" in ours}
  if over_ngebm:
    ratios["over_ngebm"] = over_ngebm
  if "sgld_k1" in ours and "sgld_k5" in ours:
    ratios["sgld_k1_over_k5"] = ours["sgld_k1"]["median_s"] / ours["sgld_k5"]["median_s"]
  ratios["jax_over_pytorch"] = {n: r["ratio_to_pytorch"] for n, r in ours.items()
                                if r.get("ratio_to_pytorch")}
  return ratios


def _peer_batch(batches: Sequence[dict]) -> dict:
  """The host copy of the batch with the most fields (an SGLD batch has its unlabelled half)."""
  batch = max(batches, key=len)
  return {k: np.asarray(jax.device_get(v)) for k, v in batch.items()}


def race_objectives(config, programs, sources, mesh) -> dict | None:
  """The race of `config.race` over the compiled `programs`; None when it is skipped.

  Every runner is a variant of the same config (same model, data, seed, optimizer and
  schedule); only the objective differs, and for SGLD-EBM the chain length K.
  """
  r = config.race  # checked by `run` (`config_validation.validate_race`) before the timing
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


def run(config, *, objective_names: Sequence[str] = ("baseline", "ngebm", "sgld",
                                                     "label_smoothing", "focal"),
        sgld_steps: Sequence[int] = DEFAULT_SGLD_STEPS, steps: int = 20, warmup: int = 1,
        ngebm_grad_modes: Sequence[str] = (), sgld_unrolls: Sequence[int] = (),
        ngebm_penalty_fractions: Sequence[float] = (), components: bool = False, devices=None,
        pytorch: bool = True,
        pytorch_python: str | None = None, pytorch_threads: int | None = None,
        fit_memory_gib: float | None = None, fit_objectives: Sequence[str] = ("ngebm",),
        profile_dir: str | None = None) -> dict:
  """Runs the benchmark of `config` and returns its results (what `benchmark.json` holds).

  Args:
    config: a benchmark config (configs/benchmark_*.py: a training config with a `race`
      block, configs/default.py's `race_config()`); `objective` is set per variant. The
      `race` block sets the end-to-end part: the variants to race (`race.objectives`, names
      such as "baseline", "ngebm", "sgld_k20"; empty: every timed variant), the target
      validation accuracy (`race.target_accuracy`, <= 0 skips the race), the common budget
      of training seconds (`race.budget_s`), the caps per runner (`race.max_steps`,
      `race.max_seconds`, <= 0: none) and the steps between validations (`race.eval_every`).
    objective_names: objectives to time; names not registered are skipped (listed in
      `skipped`). Empty: time nothing (e.g. only `fit_memory_gib`).
    sgld_steps: the chain lengths K timed for "sgld".
    steps: timed calls per variant (after `warmup` untimed calls).
    warmup: untimed calls per variant.
    ngebm_grad_modes: also time NG-EBM with these `grad_mode`s ("ngebm_<mode>").
    sgld_unrolls: also time SGLD with these `lax.scan` unroll factors ("sgld_k<K>_unroll<u>").
    ngebm_penalty_fractions: also time the cheaper NG-EBM with its penalty on these shares of
      each batch ("ngebm_f<f>", `config.ngebm.penalty_fraction`).
    components: also time the pieces of a step (`component_times`), and PyTorch's.
    devices: the devices of the data-parallel mesh (default: all).
    pytorch: time the PyTorch peer beside our steps (when torch can be imported).
    pytorch_python: the Python that runs the peer (default: this one).
    pytorch_threads: torch's intra-op threads (default: torch's own choice).
    fit_memory_gib: also find, for each of `fit_objectives`, the largest batch whose step fits
      this many GiB per device on this model (`memory_fit.fit_batch`); None: skip.
    fit_objectives: the objectives to size for `fit_memory_gib`.
    profile_dir: also write a profiler trace of a few steps of every variant there.
  """
  config_validation.validate_config(config, len(devices) if devices is not None else None)
  config_validation.validate_race(config)
  env = timing.environment()
  mesh = spmd.make_mesh(devices)
  info = data_lib.dataset_info(config)
  variants, skipped = make_variants(config, objective_names, sgld_steps,
                                    ngebm_grad_modes=ngebm_grad_modes, sgld_unrolls=sgld_unrolls,
                                    ngebm_penalty_fractions=ngebm_penalty_fractions)
  if objective_names and not variants:
    raise ValueError(f"None of the objectives {list(objective_names)} is registered; "
                     f"available: {objective_registry.names()}.")
  sources = data_lib.get_sources(config) if variants else None

  programs, batches = [], []
  for v in variants:
    batch = next(loop.train_iterator(v.config, sources["train"], mesh))
    programs.append(build_step(
        v, mesh, batch, num_classes=info.num_classes, image_shape=info.image_shape,
        steps_per_epoch=loop.steps_per_epoch(v.config, len(sources["train"]))))
    batches.append(batch)

  peer, peer_info = None, {"available": False, "reason": "not requested (--nopytorch)"}
  if pytorch and programs:
    peer, peer_info = pytorch_peer.start_peer(
        variants, programs[0].params_template, _peer_batch(batches),
        num_classes=info.num_classes, python=pytorch_python, threads=pytorch_threads)
    if peer is None:
      logging.warning("No PyTorch peer: %s. Timing our steps alone.", peer_info["reason"])
  dtype = config.model.dtype
  peak = xla_costs.peak(env["device_kind"], dtype) if env["backend"] != "cpu" else None
  device_peak = peak["flops"] if peak else None
  per_device_batch = config.batch_size // mesh.size
  forward = (forward_flops(config, programs[0].model_fns, programs[0].params_template,
                           info.image_shape) if programs else None)
  rows, comps, loop_figures = [], None, None
  try:
    timings = (timing.step_benchmark(programs, batches, steps=steps, warmup=warmup,
                                     devices=mesh.local_devices, peer=peer) if programs else [])
    for program, times in zip(programs, timings):
      rows.append(_jax_row(program, times, config, per_device_batch, info.image_shape,
                           device_peak, forward))
      if "pytorch" in times:
        rows.append(_pytorch_row(program, times, config.batch_size))
    ratios = _add_ratios(rows)
    for r in rows:
      logging.info("%s (%s): median %.1f ms (p10 %.1f, p90 %.1f), %.2fx its baseline.",
                   r["name"], r["framework"], 1e3 * r["median_s"], 1e3 * r["p10_s"],
                   1e3 * r["p90_s"], r["ratio_to_baseline"] or float("nan"))
    env["load_average_after_steps"] = timing.load_average()
    if programs:
      loop_program = next((p for p in programs if p.variant.name == "baseline"), programs[0])
      loop_figures = train_loop.throughput(loop_program, loop_program.variant.config,
                                           sources["train"], mesh, steps=max(2, steps // 2))
      loop_figures["load_average"] = timing.load_average()
      logging.info("Training loop (%s): %.0f images/s, step alone %.0f: pipeline efficiency "
                   "%.3f.", loop_figures["variant"], loop_figures["train_loop_images_per_s"],
                   loop_figures["step_alone_images_per_s"], loop_figures["pipeline_efficiency"])
    if components and programs:
      comps = _components(programs, batches, mesh, per_device_batch, steps, peer)
    if peer is not None:
      peer_info["peak_rss_bytes"] = peer.peak_rss_bytes()
  finally:
    if peer is not None:
      peer.close()
  if profile_dir and programs:
    timing.profile_steps(programs, batches, profile_dir)

  fit = None
  if fit_memory_gib:
    fit = [memory_fit.fit_batch(config, name, fit_memory_gib) for name in fit_objectives]
    for f in fit:
      logging.info("%s: largest batch within %.1f GiB: %d.", f["objective"], f["budget_gib"],
                   f["batch_size"])

  e2e = race_objectives(config, programs, sources, mesh)
  if e2e is not None:
    env["load_average_end"] = timing.load_average()

  return {
      "environment": env,
      "setup": {"model": _model_description(config), "model_config": config.model.to_dict(),
                "batch_size": int(config.batch_size), "per_device_batch": per_device_batch,
                "dtype": dtype, "dataset": config.dataset.name,
                "optimizer": config.optimizer.to_dict(), "steps": int(steps),
                "warmup": int(warmup), "device_peak_flops": device_peak,
                "device_peak": peak, "forward_flops_per_image": forward,
                "objectives_requested": list(objective_names),
                "sgld_steps": [int(k) for k in sgld_steps],
                "ngebm_grad_modes": list(ngebm_grad_modes),
                "sgld_unrolls": [int(u) for u in sgld_unrolls],
                "ngebm_penalty_fractions": [float(f) for f in ngebm_penalty_fractions]},
      "skipped": skipped,
      "pytorch": peer_info,
      "steps": rows,
      "ratios": ratios,
      "train_loop": loop_figures,
      "pipeline_efficiency": loop_figures["pipeline_efficiency"] if loop_figures else None,
      "components_s": comps,
      "memory_fit": fit,
      "end_to_end": e2e,
  }


def _components(programs, batches, mesh, per_device_batch: int, steps: int, peer) -> dict:
  """Our pieces of a step on one device's batch, the whole baseline step, and PyTorch's pieces."""
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
  if peer is not None:
    extra.update(peer.component_calls())
  return timing.component_times(fns, jax.device_put(params, mesh.devices.flat[0]), x, y,
                                repeats=max(3, min(steps, 10)), extra=extra)


def run_and_report(config, output: str, *, batch_sizes: Sequence[int] = (),
                   dtypes: Sequence[str] = (), **run_kwargs) -> list[dict]:
  """Runs `run` for `config`, or for every batch size x dtype given, and writes the reports.

  One setting writes `output/benchmark.{json,md,png}`; a grid writes each setting's report in
  `output/b<batch>_<dtype>/` and a summary table across settings in `output/benchmark.md` and
  `output/benchmark_grid.json`. Returns the results of every setting.
  """
  settings = [(b, d) for b in (batch_sizes or [config.batch_size])
              for d in (dtypes or [config.model.dtype])]
  config_validation.check_backend(config)  # before the cache folder is made
  # Compiled steps are cached: a second run (or the same step in the next setting's race) loads
  # them; `compile_s` is then the load time, and the report says that the cache was on.
  cache = launch.use_compilation_cache(config.compilation_cache_dir, output)
  if len(settings) == 1 and not batch_sizes and not dtypes:
    results = run(config, **run_kwargs)
    results["environment"]["compilation_cache"] = cache
    report.write_report(results, output)
    return [results]
  configs = []
  for batch_size, dtype in settings:
    c = config.copy_and_resolve_references()
    c.batch_size, c.model.dtype = int(batch_size), str(dtype)
    devices = run_kwargs.get("devices")
    config_validation.validate_config(c, len(devices) if devices is not None else None)
    configs.append(c)  # every setting checked before the first report is written
  all_results = []
  for (batch_size, dtype), c in zip(settings, configs):
    logging.info("Benchmark setting: batch %d, %s.", batch_size, dtype)
    profile_dir = run_kwargs.get("profile_dir")
    kwargs = dict(run_kwargs, profile_dir=(os.path.join(profile_dir, f"b{batch_size}_{dtype}")
                                           if profile_dir else None))
    results = run(c, **kwargs)
    results["environment"]["compilation_cache"] = cache
    report.write_report(results, os.path.join(output, f"b{batch_size}_{dtype}"))
    all_results.append(results)
  report.write_grid_report(all_results, output)
  return all_results
