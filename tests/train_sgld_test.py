"""SGLD-EBM in the trainer: the sharded replay buffer is checkpointed and resumes intact."""

import jax
import numpy as np
import pytest

from configs import smoke_sgld
from ngebm_jax.training import checkpoints as ckpt_lib
from ngebm_jax.training import loop


def _config(**overrides):
  config = smoke_sgld.get_config()
  config.tensorboard = False
  config.sgld.num_steps = 2
  config.update(overrides)
  return config


def _saved(workdir, step=None):
  ckpts = ckpt_lib.Checkpoints(workdir, use_async=False)
  try:
    return ckpts.read_state(step)
  finally:
    ckpts.close()


@pytest.mark.parametrize("num_devices", [1, 8])
def test_sgld_resumes_with_its_buffer_intact(tmp_path, num_devices):
  devices = jax.devices()[:num_devices]
  straight, split = str(tmp_path / "straight"), str(tmp_path / "split")
  loop.train(_config(num_steps=20), straight, devices=devices)
  loop.train(_config(num_steps=10), split, devices=devices)

  saved = _saved(split, 10)
  buffer = np.asarray(saved["objective_state"]["replay_buffer"]["samples"])
  assert buffer.shape == (256, 32, 32, 3)
  # The buffer as the trainer restores it (sharded over the devices) equals the saved one.
  fresh = ckpt_lib.Checkpoints(split, use_async=False)
  try:
    restored, _, step = fresh.restore_latest(saved)
  finally:
    fresh.close()
  assert step == 10
  np.testing.assert_array_equal(
      np.asarray(restored["objective_state"]["replay_buffer"]["samples"]), buffer)

  result = loop.train(_config(num_steps=20), split, devices=devices)
  assert result.resumed_from_step == 10
  a, b = _saved(split), _saved(straight)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(x, y)


def test_sgld_chain_moves_the_drawn_buffer_slots(tmp_path):
  workdir = str(tmp_path / "run")
  loop.train(_config(num_steps=10), workdir, devices=jax.devices()[:1])
  samples = np.asarray(_saved(workdir)["objective_state"]["replay_buffer"]["samples"])
  # Untouched slots are still uniform in [-1, 1]; the chain moved the ones it drew (the
  # gradient steps leave the cube), and 10 steps of 32 draws touch at most 320 of 256 slots.
  moved = np.abs(samples).reshape(256, -1).max(-1) > 1.0
  assert 0 < moved.sum() < 256
