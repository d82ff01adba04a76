"""Tests of ngebm_jax.evaluation.robustness: PGD L-inf / L2 attacks and robust accuracy."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ngebm_jax.evaluation import robustness


def tiny_cnn(params, x):
  h = jax.lax.conv_general_dilated(x, params["conv"], (1, 1), "SAME",
                                   dimension_numbers=("NHWC", "HWIO", "NHWC"))
  h = jax.nn.leaky_relu(h, 0.2).mean(axis=(1, 2))
  return h @ params["dense"]


def linear(params, x):
  return x.reshape(x.shape[0], -1) @ params["w"] + params["b"]


def key(seed):
  # The "rbg" generator compiles about 1 s faster than threefry on CPU, per jitted function;
  # the code under test takes any key.
  return jax.random.key(seed, impl="rbg")


def toy_problem(seed, n, shape=(4, 4, 3)):
  """Two classes of images: pixels about -0.3 (class 0) or +0.3 (class 1), noise 0.2."""
  rng = np.random.default_rng(seed)
  y = rng.integers(0, 2, n).astype(np.int32)
  mean = np.where(y == 1, 0.3, -0.3)[:, None, None, None]
  x = np.clip(mean + 0.2 * rng.normal(size=(n,) + shape), -1.0, 1.0).astype(np.float32)
  return x, y


def train_linear(x, y, steps=100, lr=0.5):
  params = dict(w=jnp.zeros((int(np.prod(x.shape[1:])), 2)), b=jnp.zeros(2))

  def loss(p):
    logp = jax.nn.log_softmax(linear(p, x))
    return -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1))

  @jax.jit
  def train(p):
    def step(p, _):
      return jax.tree.map(lambda a, g: a - lr * g, p, jax.grad(loss)(p)), None
    return jax.lax.scan(step, p, None, length=steps)[0]

  return train(params)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_pgd_stays_in_the_ball_and_the_pixel_range(norm):
  k1, k2, k3 = jax.random.split(key(0), 3)
  params = dict(conv=jax.random.normal(k1, (3, 3, 3, 4)), dense=jax.random.normal(k2, (4, 3)))
  # Inputs on and near the box boundary, where clipping is active.
  x = jnp.clip(1.3 * jax.random.uniform(k3, (8, 5, 5, 3), minval=-1, maxval=1), -1.0, 1.0)
  y = jnp.arange(8, dtype=jnp.int32) % 3
  attack = robustness.make_pgd_attack(tiny_cnn, norm=norm, num_steps=10)
  eps = 8 / 255 if norm == "linf" else 0.5
  # The default step, and 0.5 pixel units: far larger than the ball, always projected back.
  for step_size in (robustness.default_step_size(eps, 10), 0.5):
    x_adv = np.asarray(attack(params, x, y, key(1), eps, step_size))
    delta = (x_adv - np.asarray(x)).reshape(8, -1)
    radius = 2 * eps  # [0, 1] pixel units -> [-1, 1] model units
    if norm == "linf":
      assert np.abs(delta).max() <= radius * (1 + 1e-6)
      assert np.abs(delta).max() >= 0.9 * radius  # the attack moved
    else:
      assert np.linalg.norm(delta, axis=1).max() <= radius * (1 + 1e-5)
      assert np.linalg.norm(delta, axis=1).max() >= 0.5 * radius
    assert x_adv.min() >= -1.0 and x_adv.max() <= 1.0


def test_pgd_raises_the_loss():
  k1, k2, k3 = jax.random.split(key(2), 3)
  params = dict(conv=jax.random.normal(k1, (3, 3, 3, 4)), dense=jax.random.normal(k2, (4, 3)))
  x = jax.random.uniform(k3, (8, 5, 5, 3), minval=-0.5, maxval=0.5)
  y = jnp.argmax(tiny_cnn(params, x), axis=1)  # the attack starts from correct predictions

  def ce(x_):
    return -jnp.take_along_axis(jax.nn.log_softmax(tiny_cnn(params, x_)), y[:, None], 1)[:, 0]

  x_adv = jax.jit(lambda p, x, y, k: robustness.pgd_attack(
      tiny_cnn, p, x, y, key=k, epsilon=16 / 255, num_steps=10))(params, x, y, key(3))
  assert np.all(np.asarray(ce(x_adv)) > np.asarray(ce(x)))


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_pgd_on_a_binary_linear_model_reaches_the_worst_case(norm):
  # For logits W x + b with two classes, the cross-entropy of class y grows along
  # d = w_other - w_y everywhere, so the worst case in the ball (away from the box faces) is
  # x + r sign(d) (L-inf) or x + r d / ||d|| (L2), with r = 2 eps in model units.
  k1, k2 = jax.random.split(key(4))
  params = dict(w=jax.random.normal(k1, (12, 2)), b=jnp.zeros(2))
  x = jax.random.uniform(k2, (6, 2, 2, 3), minval=-0.5, maxval=0.5)
  y = jnp.array([0, 1, 0, 1, 1, 0], dtype=jnp.int32)
  eps = 0.05
  x_adv = robustness.pgd_attack(linear, params, x, y, key=key(5), epsilon=eps,
                                norm=norm, num_steps=40, random_start=(norm == "linf"))
  w = np.asarray(params["w"])
  d = np.where(np.asarray(y)[:, None] == 0, w[:, 1] - w[:, 0], w[:, 0] - w[:, 1])
  if norm == "linf":
    expected = np.asarray(x).reshape(6, -1) + 2 * eps * np.sign(d)
  else:
    expected = np.asarray(x).reshape(6, -1) + 2 * eps * d / np.linalg.norm(d, axis=1,
                                                                          keepdims=True)
  np.testing.assert_allclose(np.asarray(x_adv).reshape(6, -1), expected, atol=1e-5)


def test_pgd_lowers_the_accuracy_of_a_trained_model():
  x, y = toy_problem(6, 256)
  params = train_linear(x, y)
  x_test, y_test = toy_problem(7, 100)
  linf = robustness.robust_accuracy(linear, params, x_test, y_test, key=key(8),
                                    norm="linf", epsilons=[0.0, 0.05, 0.2], num_steps=20,
                                    batch_size=64)
  assert list(linf) == [0.0, 0.05, 0.2]
  assert linf[0.0] >= 0.95
  assert linf[0.2] <= 0.1 < linf[0.0]
  assert linf[0.0] >= linf[0.05] >= linf[0.2]
  # With test-time noise 0.03 the clean accuracy of this easy problem does not move.
  l2 = robustness.robust_accuracy(linear, params, x_test, y_test, key=key(9),
                                  norm="l2", epsilons=[0.0, 1.5], num_steps=20, batch_size=64,
                                  noise_std=0.03)
  assert l2[0.0] >= 0.95 and l2[1.5] <= 0.1


def test_zero_step_without_random_start_is_the_identity():
  x, y = toy_problem(10, 4)
  params = dict(w=jnp.ones((48, 2)), b=jnp.zeros(2))
  x_adv = robustness.pgd_attack(linear, params, x, y, key=key(0), epsilon=0.1,
                                step_size=0.0, random_start=False, num_steps=3)
  np.testing.assert_array_equal(np.asarray(x_adv), np.asarray(x))


def test_default_epsilon_grids():
  assert robustness.DEFAULT_EPSILONS["linf"][0] == 0.0
  assert robustness.DEFAULT_EPSILONS["linf"][-1] == pytest.approx(30 / 255)
  assert robustness.DEFAULT_EPSILONS["l2"][-1] == 5.0
  for norm in robustness.NORMS:
    grid = robustness.DEFAULT_EPSILONS[norm]
    assert list(grid) == sorted(grid)
    assert set(robustness.STANDARD_EPSILONS[norm]) <= set(grid)


def test_bad_arguments_raise():
  x, y = toy_problem(11, 4)
  params = dict(w=jnp.ones((48, 2)), b=jnp.zeros(2))
  k = key(0)
  with pytest.raises(ValueError, match="norm"):
    robustness.pgd_attack(linear, params, x, y, key=k, epsilon=0.1, norm="l1")
  with pytest.raises(ValueError, match="epsilon"):
    robustness.pgd_attack(linear, params, x, y, key=k, epsilon=-0.1)
  with pytest.raises(ValueError, match="num_steps"):
    robustness.pgd_attack(linear, params, x, y, key=k, epsilon=0.1, num_steps=0)
  with pytest.raises(ValueError, match="labels"):
    robustness.pgd_attack(linear, params, x, y[:2], key=k, epsilon=0.1)
  with pytest.raises(ValueError, match="epsilon"):
    robustness.robust_accuracy(linear, params, x, y, key=k, epsilons=[0.1, -1.0])
