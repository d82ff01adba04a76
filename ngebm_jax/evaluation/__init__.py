"""Evaluation of classifiers read as EBMs: calibration, OOD detection, adversarial robustness.

See docs/method.rst. Data flows one way: a trained model -> `evaluators` (chosen by
name) -> per-run figures -> `report` (results.json, report.md, plots).

Modules:
  calibration: expected_calibration_error, calibration_bins, negative_log_likelihood, brier_score,
    confidence_gap, calibration_figures (every figure of one set of logits).
  temperature: temperature scaling, fit_temperature (one T fitted on validation NLL).
  ood: OOD scores (log_density, max_softmax, approximate_mass) and metrics (AUROC, AUPR, FPR@95).
  robustness: PGD L-inf / L2 attacks, robust_accuracy (fixed epsilons) and minimal_epsilons
    (the NG-EBM code's protocol: smallest successful epsilon by foolbox 1.8's search).
  plots: reliability diagram, OOD histograms, ROC and robustness curves (PNG files).
  inputs: EvalOptions (read from config.eval), EvalInputs, the logits the evaluators share.
  evaluators: the EVALUATORS registry and run_evaluators; one module per evaluator
    (classification, calibration, ood, robustness, focus_detection).
  entry: the one evaluation entry, `evaluate(config, model, params, data, output_dir)`.
  validation: the Validator training validates with (the classification and calibration
    evaluators).
  results: the one schema of results.json (a run's record; a report of runs).
  report: write_report (results.json and report.md).
  inference: the one batched, noisy prediction path (validation, test, OOD, PGD, salience).
  focus_task: detection AUROC and CAM statistics on the authentic-vs-generated task.

The metrics and attacks import only NumPy and JAX (scikit-learn on the first OOD metric). The
evaluators and report, which need matplotlib, and temperature scaling, which needs SciPy, load on
first use of their names here (`ngebm_jax.evaluation.EvalInputs`, ...).
"""

from __future__ import annotations

import importlib

from ngebm_jax.evaluation.calibration import accuracy
from ngebm_jax.evaluation.calibration import brier_score
from ngebm_jax.evaluation.calibration import calibration_bins
from ngebm_jax.evaluation.calibration import calibration_figures
from ngebm_jax.evaluation.calibration import confidence_gap
from ngebm_jax.evaluation.calibration import expected_calibration_error
from ngebm_jax.evaluation.calibration import negative_log_likelihood
from ngebm_jax.evaluation.ood import SCORE_NAMES
from ngebm_jax.evaluation.ood import fpr_at_tpr
from ngebm_jax.evaluation.ood import make_score_fn
from ngebm_jax.evaluation.ood import ood_metrics
from ngebm_jax.evaluation.ood import ood_scores
from ngebm_jax.evaluation.robustness import DEFAULT_EPSILONS
from ngebm_jax.evaluation.robustness import STANDARD_EPSILONS
from ngebm_jax.evaluation.robustness import make_pgd_attack
from ngebm_jax.evaluation.robustness import minimal_epsilons
from ngebm_jax.evaluation.robustness import pgd_attack
from ngebm_jax.evaluation.robustness import robust_accuracy

# Heavier names, imported on first access (PEP 562).
_LAZY = {
    "EVALUATORS": "evaluators",
    "EvalInputs": "inputs",
    "EvalOptions": "inputs",
    "run_evaluators": "evaluators",
    "evaluate": "entry",
    "read_eval_data": "entry",
    "fit_temperature": "temperature",
    "write_report": "report",
}


def __getattr__(name):
  if name in _LAZY:
    module = importlib.import_module(f"ngebm_jax.evaluation.{_LAZY[name]}")
    return getattr(module, name)
  raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "DEFAULT_EPSILONS", "EVALUATORS", "EvalInputs", "EvalOptions", "SCORE_NAMES",
    "STANDARD_EPSILONS", "accuracy", "brier_score", "calibration_bins", "calibration_figures",
    "confidence_gap", "evaluate", "expected_calibration_error", "fit_temperature", "fpr_at_tpr",
    "make_pgd_attack", "make_score_fn", "minimal_epsilons", "negative_log_likelihood",
    "ood_metrics", "ood_scores", "pgd_attack", "robust_accuracy", "read_eval_data",
    "run_evaluators", "write_report",
]
