"""`train_and_evaluate`: train a config in a workdir, then measure its best checkpoint on test.

Data flows one way: data -> train step -> checkpoints -> evaluators -> `results.json`. The test
figures come from the evaluate-runs workflow (`evaluate_runs.evaluate_workdir`, the evaluators
of `config.eval.evaluators`), so `results.json` agrees with the report of
`experiments.evaluate` for the same checkpoint, and its input noise is the one validation used.
"""

from __future__ import annotations

import dataclasses
import os
import time

import jax
from absl import logging
from etils import epath

from ngebm_jax import reporting
from ngebm_jax.training import checkpoints as ckpt_lib
from ngebm_jax.training import loop
from ngebm_jax.workflows import evaluate_runs
from ngebm_jax.workflows import launch

RESULTS_FILE = "results.json"


def headline(figures: dict) -> dict:
  """The flat figures of `results.json`: classification and calibration, then the run."""
  results = dict(figures.get("classification", {}))
  calibration = figures.get("calibration")
  if calibration:
    results.update(ece=calibration["ece"], ece_bin_center=calibration["ece_bin_center"],
                   ece_num_bins=calibration["num_bins"])
  meta = figures["meta"]
  results.update(objective=meta["objective"], dataset=meta["dataset"],
                 best_step=meta.get("best_step"))
  return results


def evaluate_test(workdir) -> dict:
  """`results.json`'s figures of the best checkpoint in `workdir` (plots into `workdir`).

  The flat keys (accuracy, NLL, Brier score, ECE: mean-confidence form, `config.eval.num_bins`
  bins, with the recipe's test-time input noise) are the headline; `evaluation` holds every
  evaluator's figures (OOD detection, robustness) as `experiments.evaluate` reports them.
  """
  figures = evaluate_runs.evaluate_workdir(workdir, workdir)
  return {**headline(figures), "evaluation": figures}


def train_and_evaluate(config, workdir, *, devices=None) -> dict:
  """Trains `config` in `workdir` (resuming if possible), then writes `results.json`.

  Returns the test results, or `{"preempted": True, ...}` when a signal stopped training.
  """
  launch.use_compilation_cache(config.compilation_cache_dir, workdir)
  result = loop.train(config, workdir, devices=devices)
  if result.preempted:
    return {"preempted": True, **dataclasses.asdict(result)}
  results = reporting.to_jsonable(evaluate_test(workdir))
  results["skipped_nonfinite_steps"] = result.skipped_nonfinite_steps
  if jax.process_index() == 0:
    reporting.write_json(os.path.join(os.fspath(workdir), RESULTS_FILE), results)
    logging.info("Test results of %s: %s", workdir,
                 {k: v for k, v in results.items() if k != "evaluation"})
  return results


def train_or_reuse(config, workdir) -> dict:
  """`train_and_evaluate`, unless `workdir` already holds a finished run of `config`.

  Studies made of many runs (the demo, the focus and calibration studies) call this, so that
  re-running them after an interruption retrains nothing that finished: a finished run's
  `results.json` is read back, an interrupted one resumes. A finished run of a different config
  is refused with the fields that differ.

  Raises:
    ValueError: `workdir` holds a finished run of another config.
    SystemExit: training was interrupted by a signal (run the same command again to resume).
  """
  done = epath.Path(workdir) / RESULTS_FILE
  if done.exists():
    diffs = ckpt_lib.config_differences(ckpt_lib.load_config(workdir), config,
                                        ignore=loop.RESUMABLE_FIELDS)
    if diffs:
      raise ValueError(f"{workdir} holds a finished run of another config; fields that "
                       "differ:\n  " + "\n  ".join(diffs) + "\nUse another output folder.")
    logging.info("%s is finished; reusing its results.", workdir)
    return reporting.read_json(done)
  start = time.time()
  results = train_and_evaluate(config, workdir)
  if results.get("preempted"):
    raise SystemExit(f"Training in {workdir} was interrupted; run the same command to resume.")
  logging.info("%s trained and evaluated in %.0f s.", workdir, time.time() - start)
  return results
