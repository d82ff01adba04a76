"""Long runs: resume after a signal, damaged checkpoints, non-finite steps, bad inputs.

The resumed runs are given their workdir as an `etils.epath.Path` (what a gs:// workdir is
inside the library), the first runs as a string.
"""

import glob
import json
import os
import signal
import subprocess
import sys
import time

import chex
from etils import epath
import jax
import numpy as np
import pytest

from configs import smoke
from ngebm_jax.data import pipeline
from ngebm_jax.training import checkpoints as ckpt_lib
from ngebm_jax.training import loop

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _config(**overrides):
  config = smoke.get_config()
  config.tensorboard = False
  config.update(overrides)
  return config


def _final_params(workdir):
  ckpts = ckpt_lib.Checkpoints(workdir, use_async=False)
  try:
    return ckpts.read_state()["params"], ckpts.latest.latest_step()
  finally:
    ckpts.close()


def test_interrupted_run_resumes_to_identical_parameters(tmp_path):
  overrides = dict(num_steps=40, log_every_steps=1, checkpoint_every_steps=100,
                   eval_every_steps=100)
  reference = str(tmp_path / "uninterrupted")
  loop.train(_config(**overrides), reference)

  interrupted = str(tmp_path / "interrupted")
  args = [sys.executable, "-m", "experiments.train", "--config=configs/smoke.py",
          f"--workdir={interrupted}", "--config.tensorboard=False"]
  args += [f"--config.{k}={v}" for k, v in overrides.items()]
  proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
  metrics = os.path.join(interrupted, "metrics.jsonl")
  deadline = time.time() + 300
  while time.time() < deadline and proc.poll() is None:
    if os.path.exists(metrics) and sum(1 for _ in open(metrics)) >= 5:
      proc.send_signal(signal.SIGTERM)
      break
    time.sleep(0.05)
  _, err = proc.communicate(timeout=300)
  assert proc.returncode == 0, err.decode()[-2000:]
  stopped_at = ckpt_lib.Checkpoints(interrupted, use_async=False).latest.latest_step()
  assert 5 <= stopped_at < 40, "the signal must stop the run before its end"
  assert not os.path.exists(os.path.join(interrupted, "results.json"))

  result = loop.train(_config(**overrides), epath.Path(interrupted))
  assert result.resumed_from_step == stopped_at and result.last_step == 40
  got, got_step = _final_params(interrupted)
  want, want_step = _final_params(reference)
  assert got_step == want_step == 40
  chex.assert_trees_all_equal(got, want)


def test_damaged_newest_checkpoint_falls_back_to_the_previous(tmp_path, caplog):
  workdir = str(tmp_path / "run")
  loop.train(_config(num_steps=20), workdir)  # checkpoints at 10 and 20
  for path in glob.glob(os.path.join(workdir, "checkpoints", "20", "state", "**", "*"),
                        recursive=True):
    if os.path.isfile(path):
      with open(path, "wb") as f:
        f.write(b"damaged")
  result = loop.train(_config(num_steps=30), epath.Path(workdir))
  assert result.resumed_from_step == 10
  assert result.last_step == 30
  assert "could not be restored" in caplog.text
  assert [d.split("-")[0] for d in os.listdir(os.path.join(workdir, "damaged_checkpoints"))] == [
      "20"]  # set aside, for inspection


def test_non_finite_step_stops_and_keeps_the_last_good_checkpoint(tmp_path):
  workdir = str(tmp_path / "run")
  config = _config(num_steps=20)
  config.dataset.poison_batch = 12
  with pytest.raises(loop.NonFiniteLossError, match="at step 12"):
    loop.train(config, workdir)
  params, step = _final_params(workdir)
  assert step == 10
  assert all(np.all(np.isfinite(p)) for p in jax.tree.leaves(params))


def test_skip_nonfinite_counts_skipped_steps(tmp_path):
  config = _config(num_steps=20, skip_nonfinite=True)
  config.dataset.poison_batch = 12
  result = loop.train(config, str(tmp_path / "run"))
  assert result.skipped_nonfinite_steps == 1 and result.last_step == 20
  params, _ = _final_params(str(tmp_path / "run"))
  assert all(np.all(np.isfinite(p)) for p in jax.tree.leaves(params))
  lines = [json.loads(l) for l in open(tmp_path / "run" / "metrics.jsonl")]
  assert max(l.get("train/skipped_nonfinite_steps", 0) for l in lines) == 1


def test_changed_config_is_refused_with_the_differences(tmp_path):
  workdir = str(tmp_path / "run")
  loop.train(_config(num_steps=5, checkpoint_every_steps=5, eval_every_steps=5), workdir)
  changed = _config(num_steps=10, checkpoint_every_steps=5, eval_every_steps=5)
  changed.optimizer.learning_rate = 0.5
  with pytest.raises(loop.ConfigMismatchError, match=r"optimizer\.learning_rate: 0\.001 -> 0\.5"):
    loop.train(changed, epath.Path(workdir))
  changed.allow_config_change = True
  assert loop.train(changed, epath.Path(workdir)).resumed_from_step == 5


def test_unwritable_workdir_is_refused(tmp_path):
  blocker = tmp_path / "file"
  blocker.write_text("not a directory")
  with pytest.raises(PermissionError, match="not writable"):
    loop.train(_config(), str(blocker / "run"))


def test_unscaled_images_are_refused():
  batch = {"image": np.full((4, 32, 32, 3), 200.0, np.float32), "label": np.zeros(4, np.int32)}
  with pytest.raises(ValueError, match="unscaled"):
    loop._check_first_batch(batch)
  source = pipeline.ArraySource({"image": np.zeros((8, 32, 32, 3), np.float32),
                                 "label": np.zeros(8, np.int32)})
  with pytest.raises(ValueError, match="uint8"):
    pipeline.read_split(source)


def test_missing_config_file_is_a_clear_error(tmp_path):
  proc = subprocess.run(
      [sys.executable, "-m", "experiments.train", "--config=configs/does_not_exist.py",
       f"--workdir={tmp_path}"], cwd=ROOT, capture_output=True, text=True, timeout=120)
  assert proc.returncode != 0
  assert "does_not_exist.py" in proc.stderr
