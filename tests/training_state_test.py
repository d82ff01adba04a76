"""The optimizer of a config: warmup, then JEM's step decay, at the exact boundary steps."""

import jax.numpy as jnp
import numpy as np
import optax
import pytest

from configs import cifar10_sgld
from configs import smoke
from ngebm_jax.training.state import learning_rate_schedule
from ngebm_jax.training.state import optimizer_from_config


def _learning_rate_at(optimizer, step: int) -> float:
  """The learning rate Adam applies at 0-based `step`, read from a real update.

  With first and second moments equal to 1 and a unit gradient they stay 1; the update is
  `-learning_rate * m_hat / (sqrt(v_hat) + eps)` with Adam's bias corrections at `step + 1`.
  """
  state = optimizer.init(jnp.zeros(()))
  state = optax.tree_utils.tree_set(state, count=jnp.asarray(step, jnp.int32),
                                    mu=jnp.ones(()), nu=jnp.ones(()))
  update, _ = optimizer.update(jnp.ones(()), state)
  t = step + 1
  normalized = (1 / (1 - 0.9**t)) / (np.sqrt(1 / (1 - 0.999**t)) + 1e-8)
  return -float(update) / normalized


def test_schedule_warms_up_then_decays_from_the_first_step_of_each_decay_epoch():
  # 3 steps per epoch, warmup 2 steps, x0.3 at epochs 2 and 3 (steps 6 and 9).
  config = smoke.get_config()
  config.optimizer.learning_rate = 0.1
  config.optimizer.warmup_steps = 2
  config.optimizer.decay_epochs = (2, 3)
  config.optimizer.decay_rate = 0.3
  optimizer = optimizer_from_config(config, steps_per_epoch=3)
  # Run the real optimizer from its initial state on a constant gradient: Adam's normalized
  # step is then exactly the learning rate of each step (up to eps).
  params, state, got = jnp.zeros(()), optimizer.init(jnp.zeros(())), []
  for _ in range(12):
    update, state = optimizer.update(jnp.ones(()), state, params)
    got.append(-float(update))
  want = [0.0, 0.05] + [0.1] * 4 + [0.03] * 3 + [0.009] * 3
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-9)  # float32 bias correction


def test_jem_recipe_decays_at_epochs_160_and_180():
  config = cifar10_sgld.get_config()
  assert config.num_epochs == 200
  steps_per_epoch = 45_000 // 64  # 703 steps of the recipe's training split
  optimizer = optimizer_from_config(config, steps_per_epoch)
  first, second = 160 * steps_per_epoch, 180 * steps_per_epoch
  for step, want in [(999, 1e-4 * 999 / 1000), (1000, 1e-4), (first - 1, 1e-4), (first, 3e-5),
                     (second - 1, 3e-5), (second, 9e-6), (200 * steps_per_epoch - 1, 9e-6)]:
    np.testing.assert_allclose(_learning_rate_at(optimizer, step), want, rtol=1e-5,
                               err_msg=f"step {step}")


@pytest.mark.parametrize("kwargs", [dict(decay_steps=[5, 5]), dict(decay_steps=[6, 3]),
                                    dict(decay_steps=[0]), dict(decay_rate=0.0)])
def test_bad_decay_settings_raise(kwargs):
  with pytest.raises(ValueError):
    learning_rate_schedule(1e-3, 10, **kwargs)


def _reference_learning_rate(step, learning_rate, warmup_steps, decay_steps, decay_rate):
  """The schedule step by step: linear from 0 during the warmup, then decayed at each boundary."""
  if step < warmup_steps:
    return learning_rate * step / warmup_steps
  return learning_rate * decay_rate ** sum(step >= s for s in decay_steps)


@pytest.mark.parametrize("warmup_steps,decay_steps", [(0, ()), (0, (7,)), (10, ()),
                                                      (10, (15, 30)), (10, (4, 10, 25))])
def test_schedule_matches_the_step_by_step_reference_at_every_step(warmup_steps, decay_steps):
  # A decay boundary inside the warmup (4) takes effect when the warmup ends.
  schedule = learning_rate_schedule(1e-3, warmup_steps, decay_steps=decay_steps, decay_rate=0.3)
  for step in range(40):
    want = _reference_learning_rate(step, 1e-3, warmup_steps, decay_steps, 0.3)
    np.testing.assert_allclose(float(schedule(jnp.asarray(step, jnp.int32))), want, rtol=1e-6,
                               err_msg=f"step {step}")
