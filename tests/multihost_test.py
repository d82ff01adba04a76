"""Multi-host training: two processes over localhost (JAX's CPU multi-process support)."""

import json
import os
import socket
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def test_two_processes_train_one_run(tmp_path):
  workdir = str(tmp_path / "run")
  port = _free_port()
  procs = []
  for process_id in range(2):
    env = dict(os.environ, JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}", JAX_NUM_PROCESSES="2",
               JAX_PROCESS_ID=str(process_id), JAX_PLATFORMS="cpu",
               JAX_CPU_COLLECTIVES_IMPLEMENTATION="gloo",
               XLA_FLAGS="--xla_force_host_platform_device_count=2")
    procs.append(subprocess.Popen(
        [sys.executable, "-m", "experiments.train", "--config=configs/smoke.py",
         f"--workdir={workdir}", "--config.num_steps=10", "--config.tensorboard=False"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True))
  errors = [p.communicate(timeout=400)[1] for p in procs]
  for p, err in zip(procs, errors):
    assert p.returncode == 0, err[-3000:]
  assert "2 process(es), 4 device(s)" in errors[0]
  # One run: process 0 alone wrote the logs and results; the checkpoint holds step 10.
  with open(os.path.join(workdir, "results.json")) as f:
    results = json.load(f)
  assert results["best_step"] == 10 and results["num_examples"] == 128
  lines = [json.loads(l) for l in open(os.path.join(workdir, "metrics.jsonl"))]
  assert [l["step"] for l in lines if "train/loss" in l] == [5, 10]
  assert os.listdir(os.path.join(workdir, "checkpoints")) == ["10"]
