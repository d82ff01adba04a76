"""Evaluates training runs: best checkpoint of each workdir -> evaluators -> one report.

The library side of `python -m experiments.evaluate`: for each workdir it loads the run's config
and best parameters (`ngebm_jax.training.checkpoints.load_run`), its test and OOD sets
(`ngebm_jax.data.load_eval_data`), runs the evaluators its config names
(`config.eval.evaluators`), and finally writes `results.json`, `report.md` and the plots into
one report folder (`report.write_report`).

Settings come, in this order of precedence, from the caller's `overrides`, the run's
`config.eval` (fields named as in `EvalOptions`, plus `evaluators`, `max_examples`, `ood_sets`,
`epsilons_linf`, `epsilons_l2`), and the protocol's defaults; the input noise defaults to the
run's own `config.dataset.noise_std` (0.03 in the recipe).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Mapping, Sequence

from absl import logging
import jax
import numpy as np

from ngebm_jax.evaluation import evaluators as evaluators_lib
from ngebm_jax.evaluation import report as report_lib
from ngebm_jax.evaluation import robustness

# EvalOptions fields that a config or the caller may set, besides the three below.
_OPTION_FIELDS = tuple(f.name for f in dataclasses.fields(evaluators_lib.EvalOptions))


def uint8_to_model(images: np.ndarray) -> np.ndarray:
  """uint8 `[N, H, W, C]` -> float32 in [-1, 1]: `x / 127.5 - 1` (the pipeline's scaling)."""
  images = np.asarray(images)
  if images.dtype != np.uint8:
    raise ValueError(f"expected uint8 images; got {images.dtype}.")
  return images.astype(np.float32) / 127.5 - 1.0


def _setting(name: str, overrides: Mapping[str, Any], config, default: Any) -> Any:
  if overrides.get(name) is not None:
    return overrides[name]
  value = config.eval.get(name) if "eval" in config else None
  return default if value is None else value


def eval_options(config, overrides: Mapping[str, Any] | None = None
                 ) -> evaluators_lib.EvalOptions:
  """The `EvalOptions` of one run: overrides, then `config.eval`, then defaults."""
  overrides = dict(overrides or {})
  unknown = set(overrides) - set(_OPTION_FIELDS) - {
      "evaluators", "max_examples", "ood_sets", "epsilons_linf", "epsilons_l2", "seed"}
  if unknown:
    raise ValueError(f"unknown evaluation settings {sorted(unknown)}.")
  defaults = evaluators_lib.EvalOptions(
      noise_std=float(config.dataset.get("noise_std", 0.03)) if "dataset" in config else 0.03)
  values = {}
  for name in _OPTION_FIELDS:
    if name == "epsilons":
      continue
    values[name] = _setting(name, overrides, config, getattr(defaults, name))
  epsilons = {}
  for norm in robustness.NORMS:
    value = _setting(f"epsilons_{norm}", overrides, config, None)
    if value is not None:
      epsilons[norm] = tuple(float(e) for e in value)
  values["epsilons"] = epsilons
  for name in ("ood_scores", "robustness_norms"):
    values[name] = tuple(values[name])
  return evaluators_lib.EvalOptions(**values)


def _describe_model(config) -> str:
  m = config.model
  extras = [f"{k}={m[k]}" for k in ("depth", "width") if k in m]
  return m.name + (f" ({', '.join(extras)})" if extras else "")


def _best_checkpoint_info(workdir: str) -> dict:
  """Step and validation metrics of the best checkpoint (empty if they cannot be read)."""
  from ngebm_jax.training import checkpoints as ckpt_lib  # pylint: disable=g-import-not-at-top
  try:
    ckpts = ckpt_lib.Checkpoints(workdir, use_async=False)
    try:
      return dict(best_step=ckpts.best.latest_step(),
                  best_metrics=ckpts.best_metrics() or {})
    finally:
      ckpts.close()
  except Exception as e:  # pylint: disable=broad-except
    logging.warning("Could not read the best checkpoint's metrics in %s: %s", workdir, e)
    return {}


def evaluate_workdir(workdir: str, output_dir: str, *,
                     overrides: Mapping[str, Any] | None = None) -> dict:
  """Runs the evaluators on the best checkpoint of one training run.

  Args:
    workdir: a training workdir (config.json and best/ checkpoints).
    output_dir: folder for this run's plots.
    overrides: settings that win over the run's `config.eval` (see the module docstring).

  Returns:
    evaluator name -> figures, plus `"meta"` (dataset, objective, model, workdir, best step,
    options).
  """
  # Imported here so that the metrics of this package load without the trainer.
  from ngebm_jax import data as data_lib  # pylint: disable=g-import-not-at-top
  from ngebm_jax.training import checkpoints as ckpt_lib  # pylint: disable=g-import-not-at-top

  overrides = dict(overrides or {})
  config, fns, params = ckpt_lib.load_run(workdir)
  options = eval_options(config, overrides)
  names = list(_setting("evaluators", overrides, config, list(evaluators_lib.EVALUATORS)))
  max_examples = _setting("max_examples", overrides, config, None)
  keep_sets = _setting("ood_sets", overrides, config, None)

  data = data_lib.load_eval_data(config)
  images, labels = data["test"]
  ood_sets = dict(data.get("ood", {}))
  if keep_sets is not None:
    missing = sorted(set(keep_sets) - set(ood_sets))
    if missing:
      raise ValueError(f"OOD sets {missing} are not available for {config.dataset.name}; "
                       f"choose from {sorted(ood_sets)}.")
    ood_sets = {k: ood_sets[k] for k in keep_sets}
  if max_examples is not None:
    images, labels = images[:max_examples], labels[:max_examples]
    ood_sets = {k: v[:max_examples] for k, v in ood_sets.items()}
  inputs = evaluators_lib.EvalInputs(
      apply_fn=lambda p, x: fns.apply_fn(p, x),
      params=params,
      images=uint8_to_model(images),
      labels=np.asarray(labels, np.int32),
      ood_images={k: uint8_to_model(v) for k, v in ood_sets.items()},
      key=jax.random.key(int(overrides.get("seed") or 0)),
      options=options)
  logging.info("Evaluating %s (%s, %s) on %d test images and OOD sets %s with %s.", workdir,
               config.dataset.name, config.objective, len(labels), sorted(ood_sets), names)
  figures = evaluators_lib.run_evaluators(names, inputs, output_dir)
  figures["meta"] = dict(
      workdir=os.path.abspath(workdir),
      dataset=config.dataset.name,
      objective=config.objective,
      model=_describe_model(config),
      num_params=int(sum(np.size(a) for a in jax.tree.leaves(params))),
      evaluators=names,
      options=report_lib.to_jsonable(dataclasses.asdict(options)),
      **_best_checkpoint_info(workdir))
  return figures


def run_names(workdirs: Sequence[str], names: Sequence[str] | None = None) -> list[str]:
  """Report names of the runs: `names` if given, else the workdirs' basenames, made unique."""
  if names:
    if len(names) != len(workdirs):
      raise ValueError(f"give one name per workdir: {len(names)} names for {len(workdirs)} "
                       f"workdirs.")
    if len(set(names)) != len(names):
      raise ValueError(f"run names must be unique; got {list(names)}.")
    return list(names)
  out = []
  for w in workdirs:
    base = os.path.basename(os.path.normpath(w)) or "run"
    name, i = base, 2
    while name in out:
      name, i = f"{base}_{i}", i + 1
    out.append(name)
  return out


def evaluate_workdirs(workdirs: Sequence[str], output_dir: str, *,
                      names: Sequence[str] | None = None,
                      overrides: Mapping[str, Any] | None = None) -> dict[str, str]:
  """Evaluates each run and writes the report.

  Args:
    workdirs: training workdirs.
    output_dir: the report folder: results.json, report.md, cross-run plots, and one subfolder
      of plots per run.
    names: run names for the report (default: the workdirs' basenames).
    overrides: evaluation settings that win over each run's `config.eval`.

  Returns:
    The paths written (see `report.write_report`).
  """
  if not workdirs:
    raise ValueError("give at least one workdir.")
  results = {}
  for name, workdir in zip(run_names(workdirs, names), workdirs):
    results[name] = evaluate_workdir(
        workdir, os.path.join(output_dir, report_lib.run_subdir(name)), overrides=overrides)
  written = report_lib.write_report(results, output_dir)
  logging.info("Wrote %s and %s.", written["results_json"], written["report_md"])
  return written
