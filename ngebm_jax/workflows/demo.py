"""The demo (`make demo`): the same config trained once per objective, then one report.

Every objective gets the same config (model, data, steps, seed) but `objective`; each run goes
to `OUTPUT/<objective>` (re-running reuses finished runs and resumes interrupted ones). The demo's
config puts the baseline where NG-EBM's calibration claim is about: a small training set, no
augmentation, trained long enough to fit it, so that its confidence outgrows its accuracy. Each
run is measured on its way (`train_and_evaluate.train_in_stages`), and the report,
`OUTPUT/report/report.md`, leads with calibration: ECE, confidence gap and training accuracy
against training steps, then every run before and after temperature scaling with its reliability
diagrams, then the rest of the evaluation (OOD detection, robustness) of the best checkpoints.
"""

from __future__ import annotations

import os
from typing import Sequence

from absl import logging

from ngebm_jax import config_validation
from ngebm_jax.evaluation import report as report_lib
from ngebm_jax.evaluation import study_report
from ngebm_jax.evaluation import study_statistics
from ngebm_jax.training import objective_registry
from ngebm_jax.workflows import train_and_evaluate

REPORT_DIR = "report"
NUM_STAGES = 6


def default_stages(config, num_stages: int = NUM_STAGES) -> list[int]:
  """About `num_stages` evenly spaced multiples of `config.eval_every_steps` up to the end."""
  evals = max(int(config.num_steps) // int(config.eval_every_steps), 1)
  every = max(round(evals / num_stages), 1)
  return [k * config.eval_every_steps for k in range(every, evals + 1, every)]


def _preamble(stages: dict, plot_name: str) -> list[str]:
  lines = ["", "## Calibration against training steps", "",
           "Each run's newest parameters at steps along the way: as the baseline fits its small "
           "training set its confidence outgrows its accuracy (confidence gap > 0); what NG-EBM's "
           "penalties change there. Test figures on the noisy test images; training figures on "
           "the first training images (not augmented). The tables further down are of each "
           "run's best checkpoint (by validation accuracy).", "",
           f"![ECE, confidence gap and training accuracy against steps]({plot_name})", ""]
  return lines + study_report.stage_table(stages)


def run(config, output, objectives: Sequence[str] = ("baseline", "ngebm"),
        stages: Sequence[int] | None = None) -> dict[str, str]:
  """Trains `config` with each objective, evaluates them side by side; returns the paths.

  Args:
    config: the config shared by every objective (configs/demo.py).
    output: folder for the runs (`OUTPUT/<objective>`) and the report (`OUTPUT/report`).
    objectives: objectives to train (`objective_registry.names()`).
    stages: steps at which each run is measured on its way; default `default_stages(config)`.
  """
  unknown = sorted(set(objectives) - set(objective_registry.names()))
  if unknown:
    raise ValueError(f"unknown objectives {unknown}; choose from {objective_registry.names()}.")
  for objective in objectives:  # every run's config checked before the first is trained
    run_config = config.copy_and_resolve_references()
    run_config.objective = objective
    config_validation.validate_config(run_config)
  output = os.fspath(output)
  stages = default_stages(config) if stages is None else list(stages)
  evaluator = train_and_evaluate.StageEvaluator(config)  # same data for every objective
  figures, records = {}, {}
  for objective in objectives:
    run_config = config.copy_and_resolve_references()
    run_config.objective = objective
    workdir = os.path.join(output, objective)
    print(f"== {objective} ({run_config.num_steps} steps, measured at {stages}) -> {workdir}",
          flush=True)
    results, records[objective] = train_and_evaluate.train_in_stages(
        run_config, workdir, stages, evaluator=evaluator)
    # The end-of-run evaluation wrote its plots into the workdir: link them from the report.
    evaluation = dict(results["evaluation"])
    evaluation["meta"] = dict(evaluation["meta"], plot_dir=os.path.join("..", objective))
    figures[objective] = evaluation
  report_dir = os.path.join(output, REPORT_DIR)
  by_objective = {o: study_statistics.aggregate_stages([r]) for o, r in records.items()}
  plot = study_report.stage_plot(by_objective, os.path.join(report_dir, "calibration_vs_steps.png"))
  written = report_lib.write_report(
      figures, report_dir, title="NG-EBM demo: an over-fitted baseline and NG-EBM",
      preamble=_preamble(by_objective, os.path.basename(plot)))
  written["calibration_vs_steps"] = plot
  logging.info("Demo report: %s", written["report_md"])
  return written
