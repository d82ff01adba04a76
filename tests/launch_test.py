"""Program start-up: when `jax.distributed` starts, and where compiled programs are cached."""

from __future__ import annotations

import os

import jax
import pytest

from ngebm_jax.training import distributed
from ngebm_jax.workflows import launch

_LAUNCHER_VARIABLES = ("NGEBM_NO_DISTRIBUTED", "JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES",
                       "JAX_PROCESS_ID", "SLURM_JOB_ID", "SLURM_NTASKS", "SLURM_STEP_NUM_TASKS",
                       "OMPI_COMM_WORLD_SIZE", "TPU_WORKER_HOSTNAMES",
                       "MEGASCALE_COORDINATOR_ADDRESS")


@pytest.mark.parametrize("environ,expected", [
    ({}, (None, 1)),
    ({"SLURM_JOB_ID": "7"}, ("slurm", 1)),                                  # salloc, then python
    ({"SLURM_JOB_ID": "7", "SLURM_NTASKS": "1"}, ("slurm", 1)),
    ({"SLURM_JOB_ID": "7", "SLURM_NTASKS": "4"}, ("slurm", 4)),             # srun -n 4
    ({"SLURM_JOB_ID": "7", "SLURM_NTASKS": "4", "SLURM_STEP_NUM_TASKS": "1"}, ("slurm", 1)),
    ({"OMPI_COMM_WORLD_SIZE": "2"}, ("openmpi", 2)),
    ({"TPU_WORKER_HOSTNAMES": "localhost"}, ("tpu", 1)),
    ({"TPU_WORKER_HOSTNAMES": "10.0.0.1,10.0.0.2"}, ("tpu", 2)),
    ({"JAX_COORDINATOR_ADDRESS": "h:1", "JAX_NUM_PROCESSES": "2"}, ("explicit", 2)),
])
def test_cluster_processes(environ, expected):
  assert distributed.cluster_processes(environ) == expected


@pytest.fixture
def calls(monkeypatch):
  """The `jax.distributed.initialize` calls of the test (none really starts)."""
  for name in _LAUNCHER_VARIABLES:
    monkeypatch.delenv(name, raising=False)
  made = []
  monkeypatch.setattr(jax.distributed, "initialize", lambda **kwargs: made.append(kwargs))
  return made


def test_single_task_slurm_job_runs_without_jax_distributed(calls, monkeypatch):
  monkeypatch.setenv("SLURM_JOB_ID", "7")
  monkeypatch.setenv("SLURM_NTASKS", "1")
  assert not distributed.initialize_if_needed() and calls == []
  monkeypatch.setenv("SLURM_NTASKS", "2")
  assert distributed.initialize_if_needed() and calls == [{}]  # JAX's SLURM plugin does the rest
  monkeypatch.setenv("NGEBM_NO_DISTRIBUTED", "1")
  assert not distributed.initialize_if_needed() and len(calls) == 1


def test_explicit_coordinator(calls, monkeypatch):
  monkeypatch.setenv("JAX_COORDINATOR_ADDRESS", "node0:1234")
  with pytest.raises(ValueError, match="JAX_PROCESS_ID"):
    distributed.initialize_if_needed()
  monkeypatch.setenv("JAX_NUM_PROCESSES", "2")
  monkeypatch.setenv("JAX_PROCESS_ID", "1")
  assert distributed.initialize_if_needed()
  assert calls == [dict(coordinator_address="node0:1234", num_processes=2, process_id=1)]


def test_compilation_cache_dir(monkeypatch, tmp_path):
  monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR", raising=False)
  monkeypatch.setenv("HOME", os.fspath(tmp_path))
  assert launch.compilation_cache_dir("", "/runs/a") is None
  assert launch.compilation_cache_dir("/scratch/cache", "/runs/a") == "/scratch/cache"
  assert launch.compilation_cache_dir("auto", "/runs/a") == os.fspath(
      tmp_path / ".cache" / "ngebm_jax" / "jax_compilation_cache")
  assert launch.compilation_cache_dir("auto", "gs://b/run") == "gs://b/run/compilation_cache"
  monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", "/from/env")
  assert launch.compilation_cache_dir("auto", "gs://b/run") == "/from/env"
  assert launch.compilation_cache_dir("", "gs://b/run") is None


def test_use_compilation_cache_sets_jax_config(monkeypatch, tmp_path):
  updates = []
  monkeypatch.setattr(jax.config, "update", lambda name, value: updates.append((name, value)))
  folder = launch.use_compilation_cache(os.fspath(tmp_path / "cache"), "/runs/a")
  assert folder == os.fspath(tmp_path / "cache") and os.path.isdir(folder)
  assert updates == [("jax_compilation_cache_dir", folder)]
  assert launch.use_compilation_cache("", "/runs/a") is None and len(updates) == 1
