"""`make gpu-check`'s program, run whole on the CPU with the override and a tiny model.

The whole run is configs/gpu_check.py's documented command, which tests/readme_test.py runs
once per session with its size overrides (`shared_outputs`); these tests read what it wrote.
"""

import json
import os
import pathlib
import subprocess
import sys

import pytest

from configs import gpu_check as gpu_check_config
from ngebm_jax.workflows import gpu_check

from tests import conftest
from tests import readme_test
from tests.readme_test import downloads, shared_outputs  # pylint: disable=unused-import (fixtures)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# configs/gpu_check.py's command (what `make gpu-check` runs): run once per session with the
# README test's size overrides (a WRN-10-1, batch 8 in two dtypes, baseline and SGLD-EBM K = 1,
# then 4 training steps on a little data), which these tests also use.
COMMAND = ("python", "-m", "experiments.gpu_check", "--config=configs/gpu_check.py",
           "--output=runs/gpu_check")
TINY = readme_test.PROGRAMS["experiments.gpu_check"].overrides


def _run(tmp_path, *flags):
  return subprocess.run([sys.executable, "-m", "experiments.gpu_check",
                         "--config=configs/gpu_check.py", f"--output={tmp_path / 'out'}",
                         *flags], cwd=ROOT, capture_output=True, text=True, timeout=600,
                        env=conftest.program_env())


def test_gpu_check_runs_whole_on_cpu_with_the_override(shared_outputs):
  out = pathlib.Path(shared_outputs(COMMAND)) / "runs" / "gpu_check"
  results = json.loads((out / "gpu_check.json").read_text())
  settings = [(g["setup"]["batch_size"], g["setup"]["dtype"]) for g in results["grid"]]
  assert settings == [(8, "bfloat16"), (8, "float32")]
  assert not results["grid_skipped_for_time"]
  for g in results["grid"]:
    assert [r["name"] for r in g["steps"]] == ["baseline", "sgld_k1"]
    for r in g["steps"]:
      assert r["median_s"] > 0 and r["back_to_back_s"] > 0 and r["images_per_s"] > 0
      assert r["compile_s"] > 0 and r["peak_memory_bytes"] > 0 and r["mfu"] is None  # CPU
    forward = g["setup"]["forward_flops_per_image"]
    assert forward["analytic"] <= forward["xla"] <= 1.02 * forward["analytic"]
  train = results["train"]
  assert train["steps"] == 4 and train["images_per_s"] > 0 and train["intervals"] == 1
  assert train["loop_over_step_alone"] == pytest.approx(
      train["images_per_s"] / train["step_alone_images_per_s"])
  assert (out / "train" / "results.json").exists()
  md = (out / "gpu_check.md").read_text()
  assert "| 8 | float32 | sgld_k1 |" in md and "## Training loop: 4 steps of baseline" in md
  assert (out / "benchmark" / "b8_float32" / "benchmark.md").exists()
  assert "counted by hand" in (out / "benchmark" / "b8_bfloat16" / "benchmark.md").read_text()


def test_gpu_check_refuses_the_cpu_and_a_bad_grid(tmp_path):
  proc = _run(tmp_path)
  assert proc.returncode != 0 and "--config.on_cpu=run" in proc.stderr
  assert not (tmp_path / "out").exists()
  config = gpu_check_config.get_config()
  config.on_cpu = "run"
  config.gpu_check.train_objective = "sgld_k5"
  with pytest.raises(ValueError, match="train_objective"):
    gpu_check.check_config(config)
  config.gpu_check.train_objective, config.batch_size = "ngebm", 32
  with pytest.raises(ValueError, match="config.batch_size in gpu_check.batch_sizes"):
    gpu_check.check_config(config)


def test_settings_past_the_budget_are_left_out_and_listed(tmp_path):
  proc = _run(tmp_path, *TINY, "--config.gpu_check.budget_s=0", "--config.gpu_check.train_share_s=0")
  assert proc.returncode == 0, proc.stderr[-4000:]
  results = json.loads((tmp_path / "out" / "gpu_check.json").read_text())
  assert not results["grid"] and results["grid_skipped_for_time"] == [
      {"batch_size": 8, "dtype": "bfloat16"}, {"batch_size": 8, "dtype": "float32"}]
  assert results["train"]["images_per_s"] > 0  # the training run still runs
  assert "Left out for time: batch 8 bfloat16, batch 8 float32." in (
      tmp_path / "out" / "gpu_check.md").read_text()
