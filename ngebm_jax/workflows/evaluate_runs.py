"""Evaluates training runs: best checkpoint of each workdir -> `evaluation.entry` -> one report.

What `python -m experiments.evaluate` runs: for each workdir it loads the run's config, model
and best parameters (`ngebm_jax.training.checkpoints.load_best`), reads the split to evaluate
and the OOD sets, runs the evaluators its config names through the one evaluation entry
(`ngebm_jax.evaluation.entry.evaluate`, which `train_and_evaluate` also calls, with the
parameters training holds in memory), and writes `results.json` (docs/results.rst),
`report.md` and the plots into one report folder (`report.write_report`).

Settings: the run's `config.eval` and `config.dataset`, with the caller's `overrides` in place
(`with_overrides`): each names a field of `config.eval` (`batch_size`, `pgd_steps`, ...), or is
`noise_std` (the run's `config.dataset.noise_std`) or `data_dir` (its
`config.dataset.data_dir`: data prepared elsewhere than where the run trained). No other
defaults.

OOD sets: every chosen set that is prepared is evaluated (default: all of the protocol's, see
`ngebm_jax.data.ood_data`); a missing one is left out, logged with the command that prepares
it, and listed under `meta.ood_missing` and in the report. `ood_strict` makes a missing set an
error. The calibration evaluator also gets the run's validation split, to fit its temperature
scaling on.
"""

from __future__ import annotations

import os
from typing import Any, Mapping, Sequence

from absl import logging
import jax
import ml_collections

from ngebm_jax import config_validation
from ngebm_jax.evaluation import entry
from ngebm_jax.evaluation import report as report_lib
from ngebm_jax.evaluation.inputs import EvalOptions
from ngebm_jax.training import checkpoints as ckpt_lib

SPLITS = entry.SPLITS
# Overrides that are not fields of config.eval, and the config field each replaces.
_DATASET_OVERRIDES = {"noise_std": "noise_std", "data_dir": "data_dir"}


def with_overrides(config, overrides: Mapping[str, Any] | None = None
                   ) -> ml_collections.ConfigDict:
  """A copy of the run's `config` with the caller's evaluation `overrides` in place.

  Raises:
    ValueError: an override names no field of `config.eval` (nor `noise_std`, `data_dir`).
  """
  overrides = dict(overrides or {})
  unknown = set(overrides) - set(config.eval) - set(_DATASET_OVERRIDES)
  if unknown:
    raise ValueError(f"unknown evaluation settings {sorted(unknown)}; each must be a field of "
                     f"config.eval, or one of {sorted(_DATASET_OVERRIDES)}.")
  out = ml_collections.ConfigDict(config.to_dict(), type_safe=False)
  for name, value in overrides.items():
    if name == "data_dir":
      out.dataset.data_dir = os.fspath(value)
    elif name in _DATASET_OVERRIDES:
      out.dataset[_DATASET_OVERRIDES[name]] = value
    else:
      out.eval[name] = tuple(value) if isinstance(value, list) else value
  return out


def check_settings(config, overrides: Mapping[str, Any] | None = None) -> None:
  """Raises ValueError on a setting of the evaluation that is not allowed: the run's config with
  the caller's `overrides` in place (`config_validation`), before anything is read or written."""
  checked = with_overrides(config, overrides)
  config_validation.validate_model(checked)
  config_validation.validate_dataset(checked)
  config_validation.validate_evaluation(checked)
  EvalOptions.from_config(checked)  # its own checks (noise_std)


def evaluate_workdir(workdir, output_dir, *, overrides: Mapping[str, Any] | None = None,
                     split: str = "test") -> dict:
  """Runs the evaluators on the best checkpoint of one training run.

  Every process of a multi-host run must call it (restoring a checkpoint is collective); only
  process 0 writes plots into `output_dir`.

  Args:
    workdir: a training workdir (config.json and best/ checkpoints).
    output_dir: folder for this run's plots.
    overrides: settings that win over the run's config (see `with_overrides`).
    split: "test" (with the OOD sets) or "validation" (the split that chose the checkpoint;
      its test-time noise is the one training validated with).

  Returns:
    evaluator name -> figures, plus `"meta"` (dataset, objective, model, workdir, best step,
    options); see `entry.evaluate`.
  """
  if split not in SPLITS:
    raise ValueError(f"split must be one of {SPLITS}; got {split!r}.")
  config, fns, params, best = ckpt_lib.load_best(workdir)
  config = with_overrides(config, overrides)
  data = entry.read_eval_data(config, split)
  return entry.evaluate(config, fns, params, data, output_dir,
                        meta=dict(workdir=os.fspath(workdir), **best))


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
    overrides: evaluation settings that win over each run's config (see `with_overrides`).
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


__all__ = ["SPLITS", "check_settings", "evaluate_workdir", "evaluate_workdirs", "run_names",
           "with_overrides"]
