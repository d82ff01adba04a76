"""The one schema of `results.json`: a run's record, alone or in a report of runs.

A run's record (what `train_and_evaluate` returns and what each run of a report holds):

  {"accuracy", "nll", "brier", "num_examples", "noise_std",     the classification figures
   "ece", "ece_paper", "confidence_gap", "mean_confidence",      the calibration headline
   "temperature", "<figure>_ts"..., "ece_num_bins",
   "objective", "dataset", "best_step",                          the run
   "evaluation": {evaluator name: figures, "meta": {...}},       every figure of every evaluator
   "skipped_nonfinite_steps"}                                    training's, where it trained

Files: a training workdir's `results.json` is `{"schema": 1, **record}`; a report folder's
(`experiments.evaluate`, the demo) is `{"schema": 1, "runs": {run name: record}}`. `runs`
reads either as `{run name: record}`. The schema is documented in docs/results.rst.
"""

from __future__ import annotations

from typing import Any, Mapping

from ngebm_jax.evaluation.evaluators.calibration import CALIBRATION_FIGURES

SCHEMA = 1

# The calibration evaluator's figures that a record repeats at its top level.
HEADLINE_CALIBRATION = (
    "ece", "ece_paper", "confidence_gap", "mean_confidence", "temperature",
    *(f"{k}_ts" for k in CALIBRATION_FIGURES))


def headline(figures: Mapping[str, Any]) -> dict:
  """The flat figures of a record: classification and calibration, then the run.

  `ece` is the mean-confidence ECE on the noisy test images, `ece_paper` NG-EBM's variant (bin
  centres, clean images), `confidence_gap` mean confidence - accuracy, `temperature` the `T`
  fitted on validation NLL, and `*_ts` every calibration figure after dividing the logits by `T`
  (see `ngebm_jax.evaluation.evaluators.calibration.evaluate`).
  """
  out = dict(figures.get("classification", {}))
  calibration = figures.get("calibration")
  if calibration:
    out.update({k: calibration[k] for k in HEADLINE_CALIBRATION},
               ece_num_bins=calibration["num_bins"])
  meta = figures.get("meta", {})
  out.update(objective=meta.get("objective"), dataset=meta.get("dataset"),
             best_step=meta.get("best_step"))
  return out


def run_record(figures: Mapping[str, Any], **training: Any) -> dict:
  """A run's record: `headline(figures)`, `"evaluation": figures`, then `training`'s fields."""
  return {**headline(figures), "evaluation": dict(figures), **training}


def run_file(record: Mapping[str, Any]) -> dict:
  """The contents of a training workdir's `results.json`."""
  return {"schema": SCHEMA, **record}


def report_file(records: Mapping[str, Mapping[str, Any]]) -> dict:
  """The contents of a report folder's `results.json`: run name -> record."""
  return {"schema": SCHEMA, "runs": dict(records)}


def runs(contents: Mapping[str, Any]) -> dict[str, dict]:
  """`{run name: record}` of a `results.json` of either kind (a run's is named "run").

  Raises:
    ValueError: the contents are not of this schema.
  """
  if contents.get("schema") != SCHEMA:
    raise ValueError(f"results.json of schema {contents.get('schema')!r}; this version reads "
                     f"schema {SCHEMA} (see docs/results.rst).")
  if "runs" in contents:
    return dict(contents["runs"])
  return {"run": {k: v for k, v in contents.items() if k != "schema"}}


__all__ = ["HEADLINE_CALIBRATION", "SCHEMA", "headline", "report_file", "run_file", "run_record",
           "runs"]
