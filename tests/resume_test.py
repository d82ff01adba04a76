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

from configs import default
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


def test_a_run_resumes_whatever_its_race_fields(tmp_path):
  # The race is the benchmark's: a training run neither reads it nor compares it on resuming,
  # whether the race block is changed, added or left out.
  workdir = str(tmp_path / "run")
  first = _config(num_steps=5, checkpoint_every_steps=5, eval_every_steps=5)
  first.race = default.race_config()
  loop.train(first, workdir)
  changed = _config(num_steps=10, checkpoint_every_steps=5, eval_every_steps=5)
  changed.race = default.race_config()
  changed.race.target_accuracy, changed.race.max_steps = -1.0, 7
  assert loop.train(changed, epath.Path(workdir)).resumed_from_step == 5
  without = _config(num_steps=15, checkpoint_every_steps=5, eval_every_steps=5)
  assert "race" not in without
  assert loop.train(without, epath.Path(workdir)).resumed_from_step == 10


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


# --- divergence: the finite blow-up guard and restarts ---------------------------------------


def _register_blowup(name, blows_up):
  """Registers `name`: cross-entropy, times 1e9 (finite) where `blows_up(step, key)` holds."""
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from ngebm_jax import objectives  # pylint: disable=g-import-not-at-top
  from ngebm_jax.training import objective_registry  # pylint: disable=g-import-not-at-top

  def builder(config, fns):
    def loss_fn(params, batch, key, objective_state, axis_name, step=None):
      loss, aux = objectives.cross_entropy_loss(fns.apply_fn, params, batch["image"],
                                                batch["label"], axis_name=axis_name)
      # The key differs per device: any device's blow-up is everybody's (one global loss).
      blow = jax.lax.pmax(jnp.asarray(blows_up(step, key), jnp.int32), axis_name) > 0
      loss = loss * jnp.where(blow, 1e9, 1.0)
      return loss, ({"ce": aux["ce"], "accuracy": jnp.zeros(())}, objective_state)
    return objective_registry.Objective(loss_fn)

  objective_registry.register(name, builder)
  return name


def _first_step_key(config, step):
  """The key the train step gives the objective at `step` of a run never restarted."""
  run_key = jax.random.fold_in(jax.random.key(config.seed), 1)
  return jax.random.key_data(jax.random.fold_in(jax.random.fold_in(run_key, step), 0))


def test_finite_blow_up_stops_and_keeps_the_last_good_checkpoint(tmp_path):
  config = _config(num_steps=20, objective=_register_blowup(
      "test_blowup_at_12", lambda step, key: step == 12))
  assert config.max_abs_loss == 1e8  # JEM's bound is the default
  with pytest.raises(loop.NonFiniteLossError, match="at step 12") as raised:
    loop.train(config, str(tmp_path / "run"))
  assert raised.value.step == 12 and "loss=2" in str(raised.value)  # finite: about 2.3e9
  params, step = _final_params(str(tmp_path / "run"))
  assert step == 10
  assert all(np.all(np.isfinite(p)) for p in jax.tree.leaves(params))
  # The bound is what stopped it: above the blow-up, the same run trains to its end.
  result = loop.train(_config(num_steps=20, objective=config.objective, max_abs_loss=1e12),
                      str(tmp_path / "bound_1e12"))
  assert result.last_step == 20 and result.restarts == 0


def test_restart_resumes_from_the_last_good_checkpoint_with_a_new_key(tmp_path):
  # Blows up at step 12 with the run's own key only: a new key must get past it.
  config = _config(num_steps=20)
  original_key_12 = _first_step_key(config, 12)
  name = _register_blowup("test_blowup_with_the_first_key", lambda step, key: (step == 12) & (
      jax.numpy.all(jax.random.key_data(key) == original_key_12)))
  with pytest.raises(loop.NonFiniteLossError, match="at step 12"):
    loop.train(_config(num_steps=20, objective=name), str(tmp_path / "no_restarts"))

  workdir = str(tmp_path / "run")
  result = loop.train(_config(num_steps=20, objective=name, max_restarts=1), workdir)
  assert result.last_step == 20 and result.restarts == 1
  (record,) = loop.read_restarts(workdir)
  assert record["diverged_at_step"] == 12 and record["resumed_from_step"] == 10
  first_key = np.asarray(jax.random.key_data(jax.random.fold_in(jax.random.key(config.seed), 1)))
  new_key = loop.restart_key(first_key, 1)
  assert record["key"] == new_key.tolist() and not np.array_equal(new_key, first_key)
  ckpts = ckpt_lib.Checkpoints(workdir, use_async=False)
  try:
    np.testing.assert_array_equal(ckpts.read_state()["key"], new_key)
  finally:
    ckpts.close()
  lines = [json.loads(l) for l in open(os.path.join(workdir, "metrics.jsonl"))]
  assert [(l["step"], l["train/restart"]) for l in lines if "train/restart" in l] == [(10, 1)]

  # Back at the checkpoint of step 10 with the same data stream: cross-entropy does not use the
  # key, so the parameters equal those of a run that never blew up. Its objective is the same
  # program but for the key it waits for, which never comes (a program of another shape may be
  # fused otherwise by XLA, and round otherwise in the last bit).
  never = original_key_12 ^ 1
  reference = str(tmp_path / "reference")
  loop.train(_config(num_steps=20, objective=_register_blowup(
      "test_never_blows_up", lambda step, key: (step == 12) & (
          jax.numpy.all(jax.random.key_data(key) == never)))), reference)
  for a, b in zip(jax.tree.leaves(_final_params(workdir)[0]),
                  jax.tree.leaves(_final_params(reference)[0])):
    np.testing.assert_array_equal(a, b)


def test_restarts_are_bounded_and_counted_across_resumptions(tmp_path):
  name = _register_blowup("test_blowup_always_at_12", lambda step, key: step == 12)
  workdir = str(tmp_path / "run")
  with pytest.raises(loop.NonFiniteLossError, match="2 restarts"):
    loop.train(_config(num_steps=20, objective=name, max_restarts=2), workdir)
  records = loop.read_restarts(workdir)
  assert [(r["restart"], r["diverged_at_step"], r["resumed_from_step"]) for r in records] == [
      (1, 12, 10), (2, 12, 10)]
  assert records[0]["key"] != records[1]["key"]  # both went back to step 10, each new keys
  # A larger bound on the same workdir allows one more: the two before still count.
  with pytest.raises(loop.NonFiniteLossError, match="3 restarts"):
    loop.train(_config(num_steps=20, objective=name, max_restarts=3), workdir)
  assert len(loop.read_restarts(workdir)) == 3
  with pytest.raises(ValueError, match="max_restarts"):
    loop.train(_config(max_restarts=-1), str(tmp_path / "bad"))
