"""The demo (`make demo`): the same config trained once per objective, then one report.

Every objective gets the same config (model, data, steps, seed) but `objective`; each run goes
to `OUTPUT/<objective>` (re-running reuses finished runs and resumes interrupted ones), and the
evaluation report of all of them to `OUTPUT/report/report.md`.
"""

from __future__ import annotations

import os
from typing import Sequence

from absl import logging

from ngebm_jax.training import objective_registry
from ngebm_jax.workflows import evaluate_runs
from ngebm_jax.workflows import train_and_evaluate


def run(config, output, objectives: Sequence[str] = ("baseline", "ngebm")) -> dict[str, str]:
  """Trains `config` with each objective, evaluates them side by side; returns the paths."""
  unknown = sorted(set(objectives) - set(objective_registry.names()))
  if unknown:
    raise ValueError(f"unknown objectives {unknown}; choose from {objective_registry.names()}.")
  output = os.fspath(output)
  workdirs = []
  for objective in objectives:
    run_config = config.copy_and_resolve_references()
    run_config.objective = objective
    workdir = os.path.join(output, objective)
    print(f"== {objective} ({run_config.num_steps} steps) -> {workdir}", flush=True)
    train_and_evaluate.train_or_reuse(run_config, workdir)
    workdirs.append(workdir)
  written = evaluate_runs.evaluate_workdirs(workdirs, os.path.join(output, "report"))
  logging.info("Demo report: %s", written["report_md"])
  return written
