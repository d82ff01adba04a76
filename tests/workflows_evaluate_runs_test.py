"""End to end: `python -m experiments.evaluate` on a smoke-sized run writes the whole report."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from configs import smoke
from ngebm_jax import models
from ngebm_jax.evaluation import evaluators
from ngebm_jax.workflows import evaluate_runs
from ngebm_jax.training import checkpoints as ckpt_lib
from tests import conftest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def make_workdir(path, objective):
  """A workdir as training leaves it: config.json and a best checkpoint (untrained weights)."""
  config = smoke.get_config()
  config.objective = objective
  config.dataset.num_test = 32
  os.makedirs(path)
  ckpt_lib.save_config(path, config)
  _, params = models.from_config(config, 10)
  ckpts = ckpt_lib.Checkpoints(path, use_async=False)
  ckpts.save_best(10, params, {"val/accuracy": 0.1})
  ckpts.wait()
  ckpts.close()
  return path


def test_program_writes_the_report(tmp_path):
  workdir = make_workdir(str(tmp_path / "ngebm run"), "ngebm")
  out = str(tmp_path / "report")
  cmd = [sys.executable, "-m", "experiments.evaluate", f"--workdir={workdir}", f"--output={out}",
         "--ood_sets=interp,uniform", "--max_examples=24", "--batch_size=16", "--pgd_steps=2",
         "--robustness_num_examples=8", "--epsilons_linf=0,8/255", "--epsilons_l2=0,0.5",
         "--noise_std=0", "--evaluators=classification,calibration,ood,robustness"]
  proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600,
                        env=conftest.program_env())
  assert proc.returncode == 0, proc.stderr[-3000:]
  with open(os.path.join(out, "results.json")) as f:
    results = json.load(f)
  assert results["schema"] == 1 and list(results["runs"]) == ["ngebm run"]
  r = results["runs"]["ngebm run"]["evaluation"]
  assert set(r) == {"meta", "classification", "calibration", "ood", "robustness"}
  assert r["meta"]["objective"] == "ngebm" and r["meta"]["best_step"] == 10
  assert r["meta"]["options"]["pgd_steps"] == 2 and r["meta"]["options"]["noise_std"] == 0
  assert r["classification"]["num_examples"] == 24
  assert set(r["ood"]["metrics"]) == {"interp", "uniform"}
  assert r["robustness"]["linf"]["epsilons"] == [0.0, 8 / 255]
  run_dir = os.path.join(out, "ngebm_run")
  for rel in [*r["calibration"]["plots"].values(), *r["ood"]["plots"].values()]:
    assert os.path.getsize(os.path.join(run_dir, rel)) > 1000, rel
  for name in ("report.md", "robustness_linf.png", "robustness_l2.png"):
    assert os.path.getsize(os.path.join(out, name)) > 100, name
  with open(os.path.join(out, "report.md")) as f:
    md = f.read()
  assert "| figure | ngebm run |" in md and "| interp, log p~(x) |" in md


def test_run_names_and_options():
  assert evaluate_runs.run_names(["a/x", "b/x/", "y"]) == ["x", "x_2", "y"]
  config = smoke.get_config()
  changed = evaluate_runs.with_overrides(
      config, dict(pgd_steps=7, epsilons_l2=[0, 1], noise_std=0.0, data_dir="/data"))
  options = evaluators.EvalOptions.from_config(changed)
  # Overrides win; every other setting comes from the run's config.eval.
  assert options.pgd_steps == 7 and options.epsilons == {
      "l2": (0.0, 1.0), "linf": tuple(config.eval.epsilons_linf)}
  assert options.noise_std == 0.0 and changed.dataset.data_dir == "/data"
  assert options.batch_size == config.eval.batch_size
  assert config.eval.pgd_steps != 7  # the run's config is left as it was
  with pytest.raises(ValueError, match="unknown evaluation settings"):
    evaluate_runs.with_overrides(config, dict(pgd_step=3))


def test_max_examples_caps_the_attacked_images_and_the_plan_says_so(tmp_path):
  """`--config.eval.max_examples` sizes every evaluator: PGD attacks at most that many images
  (not `robustness_num_examples`, 1,000 by default), and the plan logged first says so."""
  config = smoke.get_config()
  config.dataset.num_test = 32
  config.eval.max_examples = 6
  config.eval.robustness_num_examples = 1000
  config.eval.evaluators = ("classification", "robustness")
  config.eval.pgd_steps = 1
  config.eval.robustness_norms = ("linf",)
  config.eval.epsilons_linf = (8 / 255,)
  workdir = str(tmp_path / "run")
  os.makedirs(workdir)
  ckpt_lib.save_config(workdir, config)
  _, params = models.from_config(config, 10)
  ckpts = ckpt_lib.Checkpoints(workdir, use_async=False)
  ckpts.save_best(1, params, {"val/accuracy": 0.1})
  ckpts.wait()
  ckpts.close()
  figures = evaluate_runs.evaluate_workdir(workdir, str(tmp_path / "eval"))
  assert figures["classification"]["num_examples"] == 6
  assert figures["robustness"]["num_examples"] == 6
  plan = figures["meta"]["plan"]
  assert plan["robustness"] == dict(images=6, protocol="fixed_epsilon", pgd_steps=1,
                                    epsilons={"linf": 1})
  assert plan["classification"] == dict(images=6)
  # A smaller robustness_num_examples caps the attack further.
  inputs = evaluators.EvalInputs(
      apply_fn=None, params=None, images=np.zeros((6, 32, 32, 3), np.float32),
      labels=np.zeros(6, np.int32), key=None, options=dataclasses.replace(
          evaluators.EvalOptions.from_config(config), robustness_num_examples=3,
          robustness_protocol="paper"))
  plan = evaluators.evaluation_plan(["robustness"], inputs)["robustness"]
  assert plan["images"] == evaluators.robustness.attacked_examples(inputs) == 3
  assert plan["max_tries"] == 40 and plan["refine_steps"] == 1
  assert "3 images" in evaluators.describe_plan({"robustness": plan})
