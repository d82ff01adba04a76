"""`make demo`: trains the baseline and NG-EBM on the embedded data, then reports.

  python -m experiments.demo --output=runs/demo [--objectives=baseline,ngebm,sgld]
      [--config=configs/demo.py --config.num_steps=500]

SGLD-EBM (JEM) is opt-in (`--objectives=baseline,ngebm,sgld`, or `make demo
OBJECTIVES=baseline,ngebm,sgld`): it costs several times the other two together, and at the
demo's learning rate (1e-3, needed to learn anything in 2,000 steps) it diverges, as JEM does at
high learning rates (its log p~(data) runs away within a few hundred steps; the paper recipe,
configs/cifar*_sgld.py, uses 1e-4 and K = 20).

Every objective gets the same config (model, data, steps, seed) but `objective`; each run goes
to `OUTPUT/<objective>` (re-running resumes or reuses finished runs), and the evaluation report
of all of them to `OUTPUT/report/report.md`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from ngebm_jax import experiment
from ngebm_jax.training import logging_utils
from ngebm_jax.training import objectives

_CONFIG = config_flags.DEFINE_config_file(
    "config", os.path.join(os.path.dirname(__file__), "..", "configs", "demo.py"),
    "Config shared by every objective.", lock_config=False)
_OUTPUT = flags.DEFINE_string("output", "runs/demo", "Folder for the runs and the report.")
_OBJECTIVES = flags.DEFINE_list("objectives", ["baseline", "ngebm"],
                                "Objectives to train (those not available are skipped).")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  logging_utils.quiet_library_logs()
  output = os.path.abspath(_OUTPUT.value)
  wanted = [o for o in _OBJECTIVES.value if o in objectives.names()]
  missing = sorted(set(_OBJECTIVES.value) - set(wanted))
  if missing:
    logging.warning("Objectives not available in this version, skipped: %s", missing)
  summary = {}
  for objective in wanted:
    config = _CONFIG.value.copy_and_resolve_references()
    config.objective = objective
    print(f"== training {objective} ({config.num_steps} steps) -> {output}/{objective}",
          flush=True)
    summary[objective] = experiment.train_and_evaluate(config, os.path.join(output, objective))
    if summary[objective].get("preempted"):
      print(f"Stopped by a signal; run the same command again to resume {objective}.")
      return
  command = [sys.executable, "-m", "experiments.evaluate", f"--output={output}/report"]
  command += [f"--workdir={output}/{o}" for o in wanted]
  print("== evaluating:", " ".join(command[1:]), flush=True)
  subprocess.run(command, check=True)
  print(json.dumps({o: {k: r.get(k) for k in ("accuracy", "nll", "ece")}
                    for o, r in summary.items()}, indent=2))
  print(f"Report: {output}/report/report.md")


if __name__ == "__main__":
  app.run(main)
