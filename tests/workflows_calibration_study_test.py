"""The calibration study and the demo end to end on smoke-sized runs, and training in stages."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from configs import calibration_study_smoke
from ngebm_jax.evaluation import study_report
from ngebm_jax.evaluation import study_statistics
from ngebm_jax.workflows import calibration_study
from ngebm_jax.workflows import demo
from ngebm_jax.workflows import train_and_evaluate
from tests import conftest
from tests.readme_test import downloads, shared_outputs  # pylint: disable=unused-import (fixtures)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO_COMMAND = ("python", "-m", "experiments.demo", "--output=runs/demo")  # what `make demo` runs


def small_config(**overrides):
  config = calibration_study_smoke.get_config()
  config.update(overrides)
  return config


def small_study(**study):
  config = small_config()
  config.study.update(study)
  return config


def test_plan_merges_equal_runs_and_checks_its_arguments():
  config = small_study(variants=("baseline", "ngebm", "beta_only"), seeds=(0, 1),
                       sweep_seeds=(0, 1), stages=(10,), gammas=(0.0, 0.5, 1.0),
                       train_sizes=(256,))
  runs = calibration_study.plan_runs(config)
  # gamma 0 and 1 at beta 1 are the beta_only and ngebm runs: one run, two roles.
  assert ("gamma", 1.0) in runs["ngebm_s0"]["roles"]
  assert ("gamma", 0.0) in runs["beta_only_s1"]["roles"]
  assert "gamma0.5_beta1_s0" in runs and "gamma1_beta1_s0" not in runs
  assert runs["ngebm_s0"]["stages"] == [10] and runs["gamma0.5_beta1_s0"]["stages"] == []
  assert runs["baseline_n256_s1"]["config"].dataset.num_train == 256
  assert runs["beta_only_s0"]["config"].ngebm.gamma == 0.0
  assert runs["ngebm_s1"]["config"].seed == 1
  assert len(runs) == 2 * (3 + 1 + 2)
  # The study block is the study's, not the runs': a new seed leaves finished runs reusable.
  assert all("study" not in run["config"] for run in runs.values())
  with pytest.raises(ValueError, match="study.seeds"):
    calibration_study.plan_runs(small_study(seeds=()))
  with pytest.raises(ValueError, match="size_variants"):
    calibration_study.plan_runs(small_study(variants=("baseline",), train_sizes=(100,)))
  with pytest.raises(ValueError, match="study.variants"):
    calibration_study.plan_runs(small_study(variants=("baseline", "jem")))
  with pytest.raises(ValueError, match="penalty_fractions"):
    calibration_study.plan_runs(small_study(penalty_fractions=(1.5,)))
  with pytest.raises(ValueError, match="multiples"):
    calibration_study.plan_runs(small_study(stages=(7,)))
  with pytest.raises(ValueError, match="variant"):
    calibration_study.variant_config(small_config(), dict(objective="ngebm", alpha=1), 0)
  with pytest.raises(ValueError, match="multiples"):
    train_and_evaluate.stage_steps(small_config(), [7])


def test_mean_sd():
  assert study_statistics.mean_sd([1.0, 3.0, None]) == (2.0, pytest.approx(np.sqrt(2)), 2)
  assert study_statistics.mean_sd([0.5]) == (0.5, None, 1)
  assert study_statistics.mean_sd([]) == (None, None, 0)


def test_training_in_stages_measures_the_newest_parameters(tmp_path):
  config = small_config(objective="baseline")
  workdir = str(tmp_path / "run")
  results, records = train_and_evaluate.train_in_stages(config, workdir, [10])
  assert [r["step"] for r in records] == [10, 20]
  assert results["best_step"] in (10, 20)
  for r in records:
    assert 0 <= r["train"]["accuracy"] <= 1 and 0 <= r["test"]["ece"] <= 1
    assert r["test"]["temperature"] > 0 and r["test"]["ece_paper_ts"] is not None
    assert r["num_train_evaluated"] == config.dataset.num_train
  # The stage at the end measures the same checkpoint the run ended with.
  lines = [json.loads(l) for l in open(os.path.join(workdir, "metrics.jsonl"))]
  assert max(l["step"] for l in lines) == 20
  # Re-running reuses the records and the finished run.
  mtime = os.path.getmtime(os.path.join(workdir, train_and_evaluate.STAGES_FILE))
  again, records_again = train_and_evaluate.train_in_stages(config, workdir, [10])
  assert records_again == records and again == results
  assert os.path.getmtime(os.path.join(workdir, train_and_evaluate.STAGES_FILE)) == mtime


@pytest.fixture(scope="session")
def program_study(tmp_path_factory):
  """The study program's output folder: baseline and NG-EBM on seeds 0, 1 and a gamma sweep.

  Written once per session (shared by the xdist workers): its NG-EBM runs are also the
  finished runs that the study with peers reuses.
  """
  def build(folder):
    out = os.path.join(folder, "study")
    cmd = [sys.executable, "-m", "experiments.calibration_study",
           "--config=configs/calibration_study_smoke.py", f"--output={out}",
           "--config.study.variants=('baseline','ngebm')", "--config.study.seeds=0,1",
           "--config.study.gammas=0.5,", "--config.study.train_sizes=()",
           "--config.study.stages=()", "--config.num_steps=10"]  # the peers: their own test
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900,
                          env=conftest.program_env())
    assert proc.returncode == 0, proc.stderr[-3000:]
  return os.path.join(conftest.shared_folder(tmp_path_factory, "program_study", build), "study")


def test_study_program_writes_its_report(program_study):
  out = program_study
  with open(os.path.join(out, "results.json")) as f:
    results = json.load(f)
  assert set(results["variants"]) == {"baseline", "ngebm"}
  base = results["variants"]["baseline"]
  assert base["ece"]["n"] == 2 and base["ece"]["sd"] is not None
  runs = results["runs"]
  assert base["ece"]["mean"] == pytest.approx(
      np.mean([runs["baseline_s0"]["ece"], runs["baseline_s1"]["ece"]]))
  assert set(results["gamma"]) == {"0.5"} and results["gamma"]["0.5"]["ece"]["n"] == 2
  assert set(results["stages"]["ngebm"]) == {"10"}  # measured at the end only
  for name in ("calibration_vs_steps.png", "ece_vs_gamma.png", "reliability.png"):
    assert os.path.getsize(os.path.join(out, name)) > 1000, name
  with open(os.path.join(out, "report.md")) as f:
    md = f.read()
  # 10 steps fit nothing: the report must say so, and so not claim the regime.
  assert "## The regime" in md and "Over-fitted (training accuracy >= 95%): no;" in md
  assert "the regime of the claim: yes" not in md
  assert "| baseline + TS |" in md and "## Gamma sweep (beta = 1.0)" in md
  assert "## In numbers" in md and "x lower" in md


def test_demo_reports_calibration_first(shared_outputs):
  # `make demo`'s command, which the README test runs once per session (size overrides appended,
  # each run's figures drawn): the report as the demo wrote it.
  report_dir = os.path.join(shared_outputs(DEMO_COMMAND), "runs", "demo", demo.REPORT_DIR)
  with open(os.path.join(report_dir, "report.md")) as f:
    md = f.read()
  order = [md.index(h) for h in ("## Calibration against training steps",
                                 "## Calibration, before and after temperature scaling",
                                 "## Side by side")]
  assert order == sorted(order)
  assert "| figure | baseline | baseline + TS | ngebm | ngebm + TS |" in md
  assert "(../baseline/reliability_ts.png)" in md
  assert os.path.exists(os.path.join(report_dir, "../baseline/reliability_ts.png"))
  for name in ("calibration_vs_steps", "reliability", "robustness_linf"):
    assert os.path.getsize(os.path.join(report_dir, f"{name}.png")) > 1000, name
  assert demo.default_stages(small_config(num_steps=3000, eval_every_steps=250)) == [
      500, 1000, 1500, 2000, 2500, 3000]


def test_peer_sweep_plans_chooses_on_validation_and_pairs_by_seed():
  runs = calibration_study.plan_runs(small_study(variants=("ngebm",), stages=(), gammas=(),
                                                 train_sizes=()))
  calibration_study.plan_peer_sweep(runs, small_config(), calibration_study.PEER_SWEEPS, [0], [])
  assert runs["focal_FLSD-53_s0"]["config"].focal.schedule == "flsd53"
  assert runs["focal_gamma_1_s0"]["config"].focal.gamma == 1.0
  assert runs["label_smoothing_alpha_0.2_s0"]["config"].label_smoothing.alpha == 0.2
  assert len(runs) == 2 + 6
  # A chosen setting for the sweep's seed is the sweep's run (one run, two roles).
  variant = calibration_study.PEER_SWEEPS["focal"]["FLSD-53"]
  name = calibration_study.add_run(runs, "focal_s0", calibration_study.variant_config(
      small_config(), variant, 0), 0, ("variant", "focal"), [])
  assert name == "focal_FLSD-53_s0" and ("variant", "focal") in runs[name]["roles"]
  with pytest.raises(ValueError, match="not a config field"):
    calibration_study.variant_config(small_config(), {"objective": "focal", "focal.gama": 1}, 0)

  figures = {n: dict(val_nll=1.0, val_ece=0.1, nll=0.0) for n in runs}
  figures["focal_gamma_3_s0"]["val_nll"] = 0.5    # the lowest validation NLL of its family
  figures["focal_gamma_1_s0"]["nll"] = -9.0       # a test figure: must not be looked at
  choice = calibration_study.choose_peers(runs, figures)
  assert choice["focal"]["label"] == "gamma=3"
  assert choice["focal"]["validation"]["gamma=3"] == 0.5
  with pytest.raises(ValueError, match="never on test"):
    calibration_study.choose_peers(runs, figures, select_on="nll")

  # Paired by seed: NG-EBM minus the peer, with a 95% Student-t interval.
  pairs = {"ngebm": {0: 0.10, 1: 0.20, 2: 0.12}, "focal": {0: 0.15, 1: 0.26, 2: 0.16}}
  per_run, study = {}, {}
  for variant, by_seed in pairs.items():
    for seed, ece in by_seed.items():
      per_run[f"{variant}{seed}"] = dict(ece=ece)
      study[f"{variant}{seed}"] = dict(seed=seed, roles=[("variant", variant)])
  d = study_statistics.paired_differences(per_run, study, "ngebm", "focal", ["ece"])["ece"]
  diffs = np.array([-0.05, -0.06, -0.04])
  half = 4.302652729911275 * diffs.std(ddof=1) / np.sqrt(3)  # t(0.975, 2 dof)
  assert d["mean"] == pytest.approx(diffs.mean()) and d["n"] == 3
  assert (d["low"], d["high"]) == (pytest.approx(diffs.mean() - half),
                                   pytest.approx(diffs.mean() + half))
  assert study_report.verdict("ece", d, "NG-EBM", "focal") == "NG-EBM better"
  assert study_report.verdict("accuracy", d, "NG-EBM", "focal") == "focal better"
  wide = dict(mean=0.0, low=-1.0, high=1.0)
  assert study_report.verdict("ece", wide, "a", "b") == "no difference resolved"


def test_study_with_peers_writes_the_comparison(tmp_path, program_study):
  config = small_study(variants=("ngebm",), seeds=(0, 1), stages=(), gammas=(), train_sizes=(),
                       peers=("label_smoothing",), peer_sweep_seeds=(0,))
  config.num_steps = 10
  # NG-EBM's two runs are those of the study program (the same run configs): reused, as a
  # re-run study reuses its finished runs; the peers' four runs train here.
  for name in ("ngebm_s0", "ngebm_s1"):
    shutil.copytree(os.path.join(program_study, "runs", name), tmp_path / "study" / "runs" / name)
  paths = calibration_study.run(config, tmp_path / "study")
  with open(paths["results"]) as f:
    results = json.load(f)
  chosen = results["peer_choice"]["label_smoothing"]["label"]
  assert chosen in calibration_study.PEER_SWEEPS["label_smoothing"]
  roles = results["roles"]
  # The chosen setting ran for both seeds; the others only for the sweep's seed.
  assert sum(["variant", "label_smoothing"] in r for r in roles.values()) == 2
  assert len(roles) == 2 + 3 + 1
  vals = results["runs"]
  assert all(vals[n]["val_nll"] is not None and vals[n]["step_time_s"] > 0 for n in vals)
  assert all(vals[n]["train_seconds"] > 0 for n in vals)
  d = results["comparisons"]["ngebm − label_smoothing"]["ece"]
  assert d["n"] == 2 and d["low"] <= d["mean"] <= d["high"]
  assert results["study"]["peers"] == ["label_smoothing"]
  with open(paths["report"]) as f:
    md = f.read()
  assert "## NG-EBM against the calibration peers" in md and "(chosen)" in md
  assert "| ngebm − label_smoothing |" in md and "Verdicts, NG-EBM against label_smoothing" in md
