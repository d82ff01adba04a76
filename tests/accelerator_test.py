"""The accelerator path on a machine without one: `make` stops before installing anything, and a
config meant for accelerators refuses the CPU unless told otherwise (`config.on_cpu`)."""

import os
import subprocess
import sys
import time

import pytest

from configs import benchmark_gpu
from configs import cifar10_ngebm
from configs import smoke
from ngebm_jax import config_validation

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _no_accelerator_here():
  return subprocess.run(["sh", "tools/accelerator.sh"], cwd=ROOT, capture_output=True,
                        env={"PATH": os.environ["PATH"]}).returncode != 0


@pytest.mark.skipif(not _no_accelerator_here(), reason="this machine has an accelerator")
@pytest.mark.parametrize("target", ["gpu-check", "bench-gpu"])
def test_make_stops_at_once_without_an_accelerator_and_installs_nothing(tmp_path, target):
  venv = tmp_path / "venv"  # a fresh path: had make created or installed anything, it would exist
  start = time.monotonic()
  result = subprocess.run(["make", target, f"VENV={venv}", f"GPU_CHECK={tmp_path / 'out'}",
                           f"BENCH={tmp_path / 'out'}"], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
  assert time.monotonic() - start < 10
  assert result.returncode != 0
  assert "No accelerator found" in result.stderr and "nothing was installed" in result.stderr
  assert not venv.exists() and not (tmp_path / "out").exists()


@pytest.mark.parametrize("cuda, expected", [("12.8", "cuda12"), ("13.0", "cuda13")])
def test_the_cuda_build_follows_the_driver(tmp_path, cuda, expected):
  fake = tmp_path / "nvidia-smi"  # the header line of nvidia-smi's table
  fake.write_text(f"#!/bin/sh\necho '| NVIDIA-SMI 580.1   Driver Version: 580.1   "
                  f"CUDA Version: {cuda}     |'\n")
  fake.chmod(0o755)
  env = {"PATH": f"{tmp_path}:{os.environ['PATH']}"}
  out = subprocess.run(["sh", "tools/accelerator.sh"], cwd=ROOT, capture_output=True, text=True,
                       env=env, check=True).stdout
  assert out.strip() == expected


def test_an_explicit_accel_is_checked():
  run = lambda accel: subprocess.run(["sh", "tools/accelerator.sh"], cwd=ROOT, text=True,
                                     capture_output=True, env={"PATH": os.environ["PATH"],
                                                               "ACCEL": accel})
  assert run("tpu").stdout.strip() == "tpu"
  bad = run("rocm")
  assert bad.returncode != 0 and "cuda12, cuda13 or tpu" in bad.stderr


def test_accelerator_configs_refuse_the_cpu_with_the_install_command():
  config = benchmark_gpu.get_config()
  with pytest.raises(ValueError, match=r"only the CPU.*make gpu-check.*--config.on_cpu=run"):
    config_validation.check_backend(config, "cpu")
  config_validation.check_backend(config, "gpu")
  config.on_cpu = "run"  # the override
  config_validation.check_backend(config, "cpu")
  config.on_cpu = "sometimes"
  with pytest.raises(ValueError, match="config.on_cpu must be one of"):
    config_validation.check_backend(config, "gpu")


def test_paper_recipes_warn_on_the_cpu_and_run(caplog, monkeypatch):
  monkeypatch.setattr(config_validation, "_warned_on_cpu", False)
  config_validation.check_backend(cifar10_ngebm.get_config(), "cpu")
  config_validation.check_backend(cifar10_ngebm.get_config(), "cpu")  # a second layer
  assert caplog.text.count("meant for a GPU or TPU") == 1  # once per process
  caplog.clear()
  config_validation.check_backend(smoke.get_config(), "cpu")
  assert not caplog.text


def test_the_benchmark_program_refuses_the_gpu_config_on_the_cpu(tmp_path):
  result = subprocess.run(
      [sys.executable, "-m", "experiments.benchmark", "--config=configs/benchmark_gpu.py",
       f"--output={tmp_path / 'out'}", "--nopytorch"], cwd=ROOT, capture_output=True, text=True,
      timeout=300, env=dict(os.environ, JAX_PLATFORMS="cpu"))
  assert result.returncode != 0
  assert "pip install -e '.[cuda13]'" in result.stderr
  assert not (tmp_path / "out").exists()
