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


def _launch(workdir: str) -> list[subprocess.Popen]:
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
  return procs


def _wait(procs, timeout: float):
  """stderr of each process, or None if the pair did not finish in time (both killed)."""
  try:
    errors = [p.communicate(timeout=timeout)[1] for p in procs]
    for p, err in zip(procs, errors):
      assert p.returncode == 0, err[-3000:]
    return errors
  except subprocess.TimeoutExpired:
    for p in procs:
      p.kill()
    tails = [p.communicate()[1][-1500:] for p in procs]
    print("two-process run timed out; stderr tails:\n" + "\n----\n".join(tails))
    return None


def test_two_processes_train_one_run(tmp_path):
  # Once in four runs on a loaded 2-core machine the gloo pair stalled (seen once, cause not
  # found); a stalled pair is killed and the run repeated once in a fresh workdir, and a second
  # stall fails the test with both processes' stderr.
  errors = None
  for attempt in range(2):
    workdir = str(tmp_path / f"run{attempt}")
    errors = _wait(_launch(workdir), timeout=240)
    if errors is not None:
      break
  assert errors is not None, "two-process training stalled twice (stderr printed above)"
  assert "2 process(es), 4 device(s)" in errors[0]
  # One run: process 0 alone wrote the logs and results; the checkpoint holds step 10.
  with open(os.path.join(workdir, "results.json")) as f:
    results = json.load(f)
  assert results["best_step"] == 10 and results["num_examples"] == 128
  lines = [json.loads(l) for l in open(os.path.join(workdir, "metrics.jsonl"))]
  assert [l["step"] for l in lines if "train/loss" in l] == [5, 10]
  assert os.listdir(os.path.join(workdir, "checkpoints")) == ["10"]
