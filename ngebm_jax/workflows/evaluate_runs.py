"""Evaluates training runs: best checkpoint of each workdir -> evaluators -> one report.

What `python -m experiments.evaluate` runs, and what `train_and_evaluate` runs at the end of
training: for each workdir it loads the run's config and best parameters
(`ngebm_jax.training.checkpoints.load_run`), the split to evaluate and the OOD sets
(`ngebm_jax.data`), runs the evaluators its config names (`config.eval.evaluators`), and writes
`results.json`, `report.md` and the plots into one report folder (`report.write_report`).

Settings come, in this order of precedence, from the caller's `overrides`, the run's
`config.eval` (fields named as in `EvalOptions`, plus `evaluators`, `max_examples`, `ood_sets`,
`ood_strict`, `epsilons_linf`, `epsilons_l2`, `seed`), and the protocol's defaults; the input
noise defaults to the run's own `config.dataset.noise_std` (0.03 in the recipe). The override
`data_dir` replaces the run's `config.dataset.data_dir` (data prepared elsewhere than where the
run trained).

OOD sets: every chosen set that is prepared is evaluated (default: all of the protocol's, see
`ngebm_jax.data.ood`); a missing one is left out, logged with the command that prepares it, and
listed under `meta.ood_missing` and in the report. `ood_strict` makes a missing set an error.
The calibration evaluator also gets the run's validation split, to fit its temperature scaling
on.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from typing import Any, Mapping, Sequence

from absl import logging
import jax
import numpy as np

import ml_collections

from ngebm_jax import config_validation
from ngebm_jax import data as data_lib
from ngebm_jax.data import pipeline
from ngebm_jax.evaluation import evaluators as evaluators_lib
from ngebm_jax.evaluation import report as report_lib
from ngebm_jax.evaluation import robustness
from ngebm_jax.training import checkpoints as ckpt_lib

# EvalOptions fields that a config or the caller may set, besides the three below.
_OPTION_FIELDS = tuple(f.name for f in dataclasses.fields(evaluators_lib.EvalOptions))
_OTHER_SETTINGS = ("evaluators", "max_examples", "ood_sets", "ood_strict", "data_dir",
                   "epsilons_linf", "epsilons_l2", "seed")
SPLITS = ("test", "validation")


def _setting(name: str, overrides: Mapping[str, Any], config) -> Any:
  """The caller's override, else the run's `config.eval` field (None where neither has one)."""
  if overrides.get(name) is not None:
    return overrides[name]
  return config.eval[name] if name in config.eval else None


def eval_options(config, overrides: Mapping[str, Any] | None = None
                 ) -> evaluators_lib.EvalOptions:
  """The `EvalOptions` of one run: overrides, then `config.eval`, then defaults."""
  overrides = dict(overrides or {})
  unknown = set(overrides) - set(_OPTION_FIELDS) - set(_OTHER_SETTINGS)
  if unknown:
    raise ValueError(f"unknown evaluation settings {sorted(unknown)}.")
  values = {"noise_std": float(config.dataset.noise_std)}
  for name in _OPTION_FIELDS:
    value = _setting(name, overrides, config)
    if name != "epsilons" and value is not None:
      values[name] = value
  values["epsilons"] = {
      norm: tuple(float(e) for e in value) for norm in robustness.NORMS
      if (value := _setting(f"epsilons_{norm}", overrides, config)) is not None}
  for name in ("ood_scores", "robustness_norms"):
    if name in values:
      values[name] = tuple(values[name])
  return evaluators_lib.EvalOptions(**values)


def check_settings(config, overrides: Mapping[str, Any] | None = None) -> None:
  """Raises ValueError on a setting of the evaluation that is not allowed: the run's config with
  the caller's `overrides` in place (`config_validation`), before anything is read or written."""
  overrides = dict(overrides or {})
  eval_options(config, overrides)  # unknown settings, EvalOptions' own checks
  checked = ml_collections.ConfigDict(config.to_dict(), type_safe=False)
  for name, value in overrides.items():
    if name == "data_dir":
      checked.dataset.data_dir = os.fspath(value)
    elif name in checked.eval:
      checked.eval[name] = tuple(value) if isinstance(value, list) else value
  config_validation.validate_model(checked)
  config_validation.validate_dataset(checked)
  config_validation.validate_evaluation(checked)


def _describe_model(config) -> str:
  m = config.model
  if m.name == "wide_resnet":
    return f"wide_resnet (depth={m.depth}, width={m.width})"
  return f"{m.name} (width={m.width})"


def _best_checkpoint_info(workdir) -> dict:
  """Step and validation metrics of the best checkpoint (empty if they cannot be read)."""
  try:
    ckpts = ckpt_lib.Checkpoints(workdir, use_async=False)
    try:
      return dict(best_step=ckpts.best_step(), best_metrics=ckpts.best_metrics() or {})
    finally:
      ckpts.close()
  except Exception as e:  # pylint: disable=broad-except
    logging.warning("Could not read the best checkpoint's metrics in %s: %s", workdir, e)
    return {}


def _eval_data(config, split: str, ood_sets, max_examples, strict: bool) -> tuple:
  """`(images uint8, labels, {ood name: images uint8}, {missing ood name: command})` of `split`
  (OOD sets for "test" only)."""
  if split == "validation":
    images, labels = pipeline.read_split(data_lib.get_sources(config)["validation"])
    ood, missing = {}, {}
  else:
    data = data_lib.load_eval_data(config, ood_sets=ood_sets, strict=bool(strict),
                                   max_examples=max_examples)
    (images, labels), ood, missing = data["test"], dict(data["ood"]), data["ood_missing"]
  if max_examples is not None:
    images, labels = images[:max_examples], labels[:max_examples]
    ood = {k: v[:max_examples] for k, v in ood.items()}
  return images, labels, ood, missing


def _validation_split(config) -> tuple[np.ndarray, np.ndarray]:
  """`(images uint8, labels)` of the split that chose the best checkpoint: the calibration
  evaluator fits its temperature on it."""
  return pipeline.read_split(data_lib.get_sources(config)["validation"])


def evaluate_workdir(workdir, output_dir, *, overrides: Mapping[str, Any] | None = None,
                     split: str = "test") -> dict:
  """Runs the evaluators on the best checkpoint of one training run.

  Every process of a multi-host run must call it (restoring a checkpoint is collective); only
  process 0 writes plots into `output_dir`.

  Args:
    workdir: a training workdir (config.json and best/ checkpoints).
    output_dir: folder for this run's plots.
    overrides: settings that win over the run's `config.eval` (see the module docstring).
    split: "test" (with the OOD sets) or "validation" (the split that chose the checkpoint;
      its test-time noise is the one training validated with).

  Returns:
    evaluator name -> figures, plus `"meta"` (dataset, objective, model, workdir, best step,
    options).
  """
  if split not in SPLITS:
    raise ValueError(f"split must be one of {SPLITS}; got {split!r}.")
  overrides = dict(overrides or {})
  config, fns, params = ckpt_lib.load_run(workdir)
  if overrides.get("data_dir") is not None:
    config.dataset.data_dir = os.fspath(overrides["data_dir"])
  options = eval_options(config, overrides)
  names = list(_setting("evaluators", overrides, config))
  if split == "validation":
    names = [n for n in names if n in ("classification", "calibration")]
  # OOD sets: none without the ood evaluator; the protocol's (those prepared) when none chosen.
  chosen = tuple(_setting("ood_sets", overrides, config) or ())
  images, labels, ood_sets, ood_missing = _eval_data(
      config, split, (chosen or None) if "ood" in names else (),
      _setting("max_examples", overrides, config), _setting("ood_strict", overrides, config))
  seed = _setting("seed", overrides, config)
  images = pipeline.to_model_space(images)
  validation = dict(validation_images=None, validation_labels=None)
  if "calibration" in names:  # temperature scaling is fitted on the validation split
    if split == "validation":
      validation = dict(validation_images=images, validation_labels=labels)
    else:
      val_images, val_labels = _validation_split(config)
      validation = dict(validation_images=pipeline.to_model_space(val_images),
                        validation_labels=val_labels)
  inputs = evaluators_lib.EvalInputs(
      apply_fn=lambda p, x: fns.apply_fn(p, x), params=params, images=images, labels=labels,
      ood_images={k: pipeline.to_model_space(v) for k, v in ood_sets.items()},
      key=jax.random.key(int(seed or 0)), options=options, split=split, **validation)
  plan = evaluators_lib.evaluation_plan(names, inputs)
  logging.info("Evaluating %s (%s, %s) on %d %s images and OOD sets %s. Plan:\n  %s", workdir,
               config.dataset.name, config.objective, len(labels), split, sorted(ood_sets),
               evaluators_lib.describe_plan(plan))
  plot_dir = output_dir if jax.process_index() == 0 else tempfile.mkdtemp()
  figures = evaluators_lib.run_evaluators(names, inputs, plot_dir)
  figures["meta"] = dict(
      workdir=os.fspath(workdir),
      dataset=config.dataset.name,
      split=split,
      objective=config.objective,
      model=_describe_model(config),
      num_params=int(sum(np.size(a) for a in jax.tree.leaves(params))),
      evaluators=names,
      plan=plan,
      ood_sets=list(ood_sets),
      ood_missing=ood_missing,
      data_dir=config.dataset.data_dir,
      options=dataclasses.asdict(options),
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
    base = os.path.basename(os.path.normpath(os.fspath(w))) or "run"
    name, i = base, 2
    while name in out:
      name, i = f"{base}_{i}", i + 1
    out.append(name)
  return out


def evaluate_workdirs(workdirs: Sequence[str], output_dir, *,
                      names: Sequence[str] | None = None,
                      overrides: Mapping[str, Any] | None = None,
                      split: str = "test") -> dict[str, str]:
  """Evaluates each run and writes the report.

  Args:
    workdirs: training workdirs.
    output_dir: the report folder: results.json, report.md, cross-run plots, and one subfolder
      of plots per run.
    names: run names for the report (default: the workdirs' basenames).
    overrides: evaluation settings that win over each run's `config.eval`.
    split: "test" or "validation" (see `evaluate_workdir`).

  Returns:
    The paths written (see `report.write_report`).
  """
  if not workdirs:
    raise ValueError("give at least one workdir.")
  if split not in SPLITS:
    raise ValueError(f"split must be one of {SPLITS}; got {split!r}.")
  ckpt_lib.require_storage_backend(output_dir)  # a gs:// report names the extra it needs
  for workdir in workdirs:  # every run's settings checked before the first is evaluated
    ckpt_lib.require_storage_backend(workdir)
    check_settings(ckpt_lib.load_config(workdir), overrides)
  results = {}
  for name, workdir in zip(run_names(workdirs, names), workdirs):
    results[name] = evaluate_workdir(
        workdir, os.path.join(os.fspath(output_dir), report_lib.run_subdir(name)),
        overrides=overrides, split=split)
  if jax.process_index() != 0:
    return {}
  written = report_lib.write_report(results, output_dir)
  logging.info("Wrote %s and %s.", written["results_json"], written["report_md"])
  return written


__all__ = ["SPLITS", "check_settings", "eval_options", "evaluate_workdir", "evaluate_workdirs",
           "run_names"]
