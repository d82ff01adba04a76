"""Evaluators chosen by name, one module each (the big_vision pattern: one small job each).

Each evaluator module has `evaluate(inputs: EvalInputs, output_dir: str) -> dict`, which
computes its figures on a trained classifier, writes its plots under `output_dir`, and returns
a JSON-able dict (Python floats, ints, strings and lists; plot paths relative to `output_dir`
under the key `"plots"`), and `plan(inputs) -> dict`, what it will compute (logged before it
starts). `EVALUATORS` maps the names a config lists (`config.eval.evaluators`) to them;
`run_evaluators` runs a list of names. Their settings are `EvalOptions`, read from `config.eval`.

  classification    accuracy, NLL, Brier score
  calibration       ECE (standard and NG-EBM's), temperature scaling, reliability diagrams
  ood               AUROC, AUPR, FPR@95 of each OOD score on each OOD set
  robustness        accuracy under PGD (fixed epsilons, or NG-EBM's minimal epsilons)
  focus_detection   the focus task's detection AUROC and CAM statistics
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

from absl import logging
from etils import epath

from ngebm_jax.evaluation.evaluators import calibration
from ngebm_jax.evaluation.evaluators import classification
from ngebm_jax.evaluation.evaluators import focus_detection
from ngebm_jax.evaluation.evaluators import ood
from ngebm_jax.evaluation.evaluators import robustness
from ngebm_jax.evaluation.inputs import EvalInputs
from ngebm_jax.evaluation.inputs import EvalOptions

_MODULES = {"classification": classification, "calibration": calibration, "ood": ood,
            "robustness": robustness, "focus_detection": focus_detection}
EVALUATORS: dict[str, Callable[[EvalInputs, str], dict]] = {
    name: module.evaluate for name, module in _MODULES.items()}


def _check_names(names: Sequence[str]) -> None:
  unknown = [n for n in names if n not in EVALUATORS]
  if unknown:
    raise ValueError(f"unknown evaluators {unknown}; choose from {sorted(EVALUATORS)}.")


def evaluation_plan(names: Sequence[str], inputs: EvalInputs) -> dict[str, dict]:
  """What each named evaluator will compute, before it starts: images, sets, epsilons, steps."""
  _check_names(names)
  return {name: _MODULES[name].plan(inputs) for name in names}


def describe_plan(plan: Mapping[str, Mapping[str, Any]]) -> str:
  """One line per evaluator of `evaluation_plan`, for the log."""
  lines = []
  for name, entry in plan.items():
    if name == "robustness":
      lines.append(robustness.describe(entry))
    else:
      lines.append(f"{name}: " + ", ".join(f"{k} {v}" for k, v in entry.items()))
  return "\n  ".join(lines)


def run_evaluators(names: Sequence[str], inputs: EvalInputs, output_dir: str) -> dict:
  """Runs the named evaluators in order; returns name -> figures (JSON-able).

  Args:
    names: keys of `EVALUATORS`.
    inputs: the model, data, key and options.
    output_dir: folder for this run's plots (created).

  Returns:
    dict evaluator name -> its dict of figures, plot paths relative to `output_dir`.
  """
  _check_names(names)
  epath.Path(output_dir).mkdir(parents=True, exist_ok=True)  # a gs:// folder too
  results = {}
  for name in names:
    logging.info("Running evaluator %r.", name)
    results[name] = EVALUATORS[name](inputs, output_dir)
  return results


__all__ = ["EVALUATORS", "EvalInputs", "EvalOptions", "describe_plan", "evaluation_plan",
           "run_evaluators"]
