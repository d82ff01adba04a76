"""Tests for SGLD sampling, the replay buffer and the SGLD-EBM (JEM) loss (ngebm_jax/sgld.py).

Most tests use a model whose input gradient is known in closed form, a mixture of quadratics:
`f(x)[k] = -0.5 ||x - mu_k||^2 + b_k`, so `d log p~(x)/dx = sum_k softmax(f(x))_k (mu_k - x)`, and
compare with NumPy loops in float64.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
from jax.test_util import check_grads
import numpy as np
import optax
import pytest

from ngebm_jax import sgld

IMAGE_SHAPE = (4, 4, 3)
DIM = int(np.prod(IMAGE_SHAPE))
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# --- the closed-form model and NumPy references ---------------------------------------------


def quad_apply(params, x):
  """`f(x)[k] = -0.5 ||x - mu_k||^2 + b_k`; `params = {'mu': [K, D], 'b': [K]}`."""
  xf = x.reshape(x.shape[0], -1)
  d = xf[:, None, :] - params["mu"][None]
  return -0.5 * jnp.sum(d * d, axis=-1) + params["b"]


def quad_params(num_classes=3, seed=0):
  rng = np.random.default_rng(seed)
  return {"mu": jnp.asarray(rng.uniform(-0.8, 0.8, (num_classes, DIM)), jnp.float32),
          "b": jnp.asarray(rng.normal(size=(num_classes,)), jnp.float32)}


def np_logits(params, x):
  mu, b = np.asarray(params["mu"], np.float64), np.asarray(params["b"], np.float64)
  xf = np.asarray(x, np.float64).reshape(len(x), -1)
  out = np.zeros((len(x), len(b)))
  for i in range(len(x)):
    for k in range(len(b)):
      out[i, k] = -0.5 * np.sum((xf[i] - mu[k]) ** 2) + b[k]
  return out


def np_logsumexp(logits):
  m = logits.max(axis=-1, keepdims=True)
  return (m + np.log(np.exp(logits - m).sum(axis=-1, keepdims=True)))[:, 0]


def np_log_density_grad(params, x):
  mu = np.asarray(params["mu"], np.float64)
  logits = np_logits(params, x)
  p = np.exp(logits - np_logsumexp(logits)[:, None])
  xf = np.asarray(x, np.float64).reshape(len(x), -1)
  g = np.zeros_like(xf)
  for i in range(len(x)):
    for k in range(len(mu)):
      g[i] += p[i, k] * (mu[k] - xf[i])
  return g.reshape(np.shape(x))


def np_sgld(params, x0, *, num_steps, step_size, clip=None):
  """Noise-free SGLD trajectory: `x <- x + step_size * grad log p~(x)` (then clip)."""
  x = np.asarray(x0, np.float64)
  for _ in range(num_steps):
    x = x + step_size * np_log_density_grad(params, x)
    if clip is not None:
      x = np.clip(x, *clip)
  return x


def np_jem_loss(params, x, y, x_samples, x_unlabelled=None, energy_l2=0.0):
  logits = np_logits(params, x)
  lse = np_logsumexp(logits)
  ce = np.mean([lse[i] - logits[i, y[i]] for i in range(len(y))])
  data = x if x_unlabelled is None else x_unlabelled
  energy_data = -np_logsumexp(np_logits(params, data))
  energy_samples = -np_logsumexp(np_logits(params, x_samples))
  log_p_data, log_p_samples = -np.mean(energy_data), -np.mean(energy_samples)
  # Du & Mordatch's regularizer: the mean squared energy of data and of samples.
  energy_sq = (sum(e * e for e in energy_data) / len(energy_data)
               + sum(e * e for e in energy_samples) / len(energy_samples))
  loss = ce - log_p_data + log_p_samples + energy_l2 * energy_sq
  return loss, ce, log_p_data, log_p_samples, energy_sq


def uniform_images(seed, n, shape=IMAGE_SHAPE):
  return jnp.asarray(np.random.default_rng(seed).uniform(-1, 1, (n,) + shape), jnp.float32)


# Shared jitted entry points: few compilations keep the file fast on a loaded 2-core machine.
_sample = jax.jit(sgld.sgld_sample, static_argnums=0, static_argnames=("num_steps", "clip",
                                                                      "unroll"))
_loss = jax.jit(sgld.sgld_ebm_loss, static_argnums=0, static_argnames=("num_steps", "clip",
                                                                      "unroll", "axis_name"))


# --- sgld_sample -----------------------------------------------------------------------------


@pytest.mark.parametrize("clip,unroll", [(None, 1), (None, 5), ((-0.5, 0.5), 1)])
def test_sgld_sample_matches_closed_form_trajectory(clip, unroll):
  params = quad_params()
  x0 = uniform_images(1, 6)
  got = _sample(quad_apply, params, x0, jax.random.key(0), num_steps=5, step_size=0.3,
                noise_std=0.0, clip=clip, unroll=unroll)
  want = np_sgld(params, x0, num_steps=5, step_size=0.3, clip=clip)
  assert got.shape == x0.shape and got.dtype == x0.dtype
  np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-5)
  if clip is not None:
    # The unclipped chain leaves the box, so the clip did something.
    assert np.abs(np_sgld(params, x0, num_steps=5, step_size=0.3)).max() > 0.5


def test_sgld_noise_statistics_and_keys():
  # step_size = 0: each step adds noise_std * N(0, I), so after K = 2 independent steps the
  # increment is N(0, 2 noise_std^2) (a key reused across steps would give 4 noise_std^2).
  params = quad_params()
  x0 = uniform_images(4, 512)
  sample = lambda key: _sample(quad_apply, params, x0, key, num_steps=2, step_size=0.0,
                               noise_std=0.1)
  a = sample(jax.random.key(5))
  inc = np.asarray(a - x0, np.float64).ravel()
  n = inc.size  # 24,576 values
  sd = 0.1 * np.sqrt(2)
  assert abs(inc.mean()) < 5 * sd / np.sqrt(n)
  assert abs(inc.std() / sd - 1) < 5 / np.sqrt(2 * n)
  assert abs(np.mean(inc ** 4) / sd ** 4 - 3) < 0.2  # Gaussian kurtosis
  # Same key, same chain; another key, another chain.
  np.testing.assert_array_equal(np.asarray(a), np.asarray(sample(jax.random.key(5))))
  assert not np.allclose(np.asarray(a), np.asarray(sample(jax.random.key(7))))


def test_sgld_does_not_differentiate_the_chain():
  params = quad_params()
  x0 = uniform_images(1, 6)
  grads = jax.grad(lambda p: jnp.sum(_sample(quad_apply, p, x0, jax.random.key(0), num_steps=5,
                                             step_size=0.3, noise_std=0.0, unroll=1)))(params)
  assert all(np.all(np.asarray(g) == 0) for g in jax.tree.leaves(grads))


def test_sgld_raises_density_of_uniform_noise():
  # A fixed model with a clear density (the quadratic mixture).
  params = quad_params()
  x0 = uniform_images(9, 64)
  lp = lambda x: float(jnp.mean(jax.nn.logsumexp(quad_apply(params, x), axis=-1)))
  x = _sample(quad_apply, params, x0, jax.random.key(0), num_steps=20, step_size=0.1,
              noise_std=0.01, unroll=1)
  assert lp(x) > lp(x0) + 1.0


def _mlp_apply(params, x):
  h = jax.nn.leaky_relu(x.reshape(x.shape[0], -1) @ params["w1"] + params["b1"], 0.2)
  return h @ params["w2"] + params["b2"]


def test_sgld_raises_density_on_a_small_trained_classifier():
  # Two classes of 4x4x3 images (bright and dark), a 2-layer MLP trained for 100 Adam steps,
  # then JEM's chain (K = 20, alpha = 1, sigma = 0.01) from uniform noise.
  rng = np.random.default_rng(0)
  y = rng.integers(0, 2, 256).astype(np.int32)
  x = np.where(y[:, None, None, None] == 0, 0.5, -0.5) + 0.2 * rng.normal(size=(256,) + IMAGE_SHAPE)
  x, y = jnp.asarray(x, jnp.float32), jnp.asarray(y)
  k1, k2 = jax.random.split(jax.random.key(0))
  params = {"w1": jax.random.normal(k1, (DIM, 32)) / np.sqrt(DIM), "b1": jnp.zeros(32),
            "w2": jax.random.normal(k2, (32, 2)) / np.sqrt(32), "b2": jnp.zeros(2)}
  opt = optax.adam(1e-2)

  @jax.jit
  def train_and_sample(params, x0, key):
    def step(carry, _):
      params, state = carry
      grads = jax.grad(lambda p: jnp.mean(optax.softmax_cross_entropy_with_integer_labels(
          _mlp_apply(p, x), y)))(params)
      updates, state = opt.update(grads, state)
      return (optax.apply_updates(params, updates), state), None
    params = jax.lax.scan(step, (params, opt.init(params)), None, length=100)[0][0]
    return params, sgld.sgld_sample(_mlp_apply, params, x0, key, unroll=1)

  x0 = uniform_images(10, 64)
  params, x_k = train_and_sample(params, x0, jax.random.key(1))
  logits = np.asarray(_mlp_apply(params, x))
  assert np.mean(np.argmax(logits, -1) == np.asarray(y)) > 0.95
  lp = lambda x: float(jnp.mean(jax.nn.logsumexp(_mlp_apply(params, x), axis=-1)))
  assert lp(x_k) > lp(x0) + 1.0


# --- replay buffer -----------------------------------------------------------------------------

_init = jax.jit(sgld.init_replay_buffer, static_argnums=(1, 2, 3))
# The methods call the functions (which the loss tests exercise too).
_draw = jax.jit(lambda buf, key, n, reinit_prob: buf.draw(key, n, reinit_prob=reinit_prob),
                static_argnums=2)
_update = jax.jit(lambda buf, indices, x: buf.update(indices, x))


def test_init_replay_buffer():
  buf = _init(jax.random.key(0), 1000, IMAGE_SHAPE, jnp.float32)
  assert isinstance(buf, sgld.ReplayBuffer) and buf.size == 1000
  assert buf.samples.shape == (1000,) + IMAGE_SHAPE and buf.samples.dtype == jnp.float32
  s = np.asarray(buf.samples)
  assert s.min() >= -1 and s.max() <= 1
  assert abs(s.mean()) < 0.02 and abs(s.std() - 1 / np.sqrt(3)) < 0.01  # uniform on [-1, 1]
  again = _init(jax.random.key(0), 1000, IMAGE_SHAPE, jnp.float32)
  np.testing.assert_array_equal(s, np.asarray(again.samples))
  other = _init(jax.random.key(1), 1000, IMAGE_SHAPE, jnp.float32)
  assert not np.array_equal(s, np.asarray(other.samples))
  shapes = jax.eval_shape(lambda k: sgld.ReplayBuffer.init(k, 3, IMAGE_SHAPE, jnp.bfloat16),
                          jax.random.key(0))
  assert isinstance(shapes, sgld.ReplayBuffer) and shapes.samples.dtype == jnp.bfloat16
  # A pytree whose one leaf is the samples.
  leaves, treedef = jax.tree.flatten(buf)
  assert len(leaves) == 1 and leaves[0] is buf.samples
  assert isinstance(jax.tree.unflatten(treedef, [s]), sgld.ReplayBuffer)


def _slot_valued_buffer(n):
  """Slot i holds the constant 2 + i: outside [-1, 1], so re-initialized draws are recognizable."""
  values = np.broadcast_to(2.0 + np.arange(n, dtype=np.float32)[:, None, None, None],
                           (n,) + IMAGE_SHAPE)
  return sgld.ReplayBuffer(samples=jnp.asarray(values))


@pytest.mark.parametrize("reinit_prob", [0.0, 0.05, 0.3, 1.0])
def test_draw_statistics(reinit_prob):
  n, batch = 10, 20000
  buf = _slot_valued_buffer(n)
  x, idx = _draw(buf, jax.random.key(3), batch, reinit_prob=reinit_prob)
  x, idx = np.asarray(x), np.asarray(idx)
  assert x.shape == (batch,) + IMAGE_SHAPE and idx.shape == (batch,) and idx.dtype == np.int32
  reinit = np.all(np.abs(x) <= 1, axis=(1, 2, 3))
  kept = ~reinit
  # Kept draws are the buffer's slot; re-initialized ones are uniform noise in [-1, 1].
  np.testing.assert_array_equal(x[kept], np.asarray(buf.samples)[idx[kept]])
  sd = np.sqrt(reinit_prob * (1 - reinit_prob) / batch)
  assert abs(reinit.mean() - reinit_prob) <= 4 * sd + 1e-12
  if reinit.any():
    r = x[reinit]
    assert abs(r.mean()) < 0.02 and abs(r.std() - 1 / np.sqrt(3)) < 0.02
  # Indices uniform over the slots, with replacement.
  counts = np.bincount(idx, minlength=n)
  assert idx.min() >= 0 and idx.max() < n
  chi2 = np.sum((counts - batch / n) ** 2 / (batch / n))
  assert chi2 < 35  # 9 degrees of freedom: P(chi2 > 35) < 1e-4


def test_draw_is_reproducible_for_a_fixed_key():
  buf = _slot_valued_buffer(10)
  a = _draw(buf, jax.random.key(1), 20000, reinit_prob=0.5)
  b = _draw(buf, jax.random.key(1), 20000, reinit_prob=0.5)
  c = _draw(buf, jax.random.key(2), 20000, reinit_prob=0.5)
  for u, v in zip(a, b):
    np.testing.assert_array_equal(np.asarray(u), np.asarray(v))
  assert not np.array_equal(np.asarray(a[1]), np.asarray(c[1]))


def test_update_writes_exactly_the_drawn_slots():
  old = np.asarray(uniform_images(12, 40))
  buf = sgld.ReplayBuffer(samples=jnp.asarray(old))
  idx = np.random.default_rng(0).integers(0, 40, 30).astype(np.int32)  # with repeats
  assert len(np.unique(idx)) < len(idx) and len(np.unique(idx)) < 40
  new_x = np.asarray(uniform_images(11, 30)) + 5.0
  new = np.asarray(_update(buf, idx, new_x).samples)
  for slot in range(40):
    written = [new_x[j] for j in range(len(idx)) if idx[j] == slot]
    if written:  # one of the samples drawn from this slot
      assert any(np.array_equal(new[slot], w) for w in written)
    else:
      np.testing.assert_array_equal(new[slot], old[slot])


# --- the loss ----------------------------------------------------------------------------------


def _loss_setup(seed=0, batch=6, buffer_size=200, num_classes=3):
  rng = np.random.default_rng(seed)
  params = quad_params(num_classes, seed)
  x = uniform_images(seed + 100, batch)
  y = jnp.asarray(rng.integers(0, num_classes, batch), jnp.int32)
  buf = sgld.ReplayBuffer(samples=uniform_images(seed + 50, buffer_size))
  return params, x, y, buf


@pytest.mark.parametrize("unlabelled", [False, True])
def test_sgld_ebm_loss_matches_numpy(unlabelled):
  params, x, y, buf = _loss_setup()
  xu = uniform_images(200, 5) * 0.5 if unlabelled else None
  loss, (aux, new_buf) = _loss(quad_apply, params, x, y, buf, jax.random.key(1), num_steps=4,
                               step_size=0.3, noise_std=0.0, reinit_prob=0.0, x_unlabelled=xu)
  idx = np.asarray(aux["buffer_indices"])
  assert idx.shape == (6,) and len(np.unique(idx)) == 6
  # Noise 0 and no re-initialization: the samples are the closed-form chains from the slots.
  want_samples = np_sgld(params, np.asarray(buf.samples)[idx], num_steps=4, step_size=0.3)
  want_buf = np.asarray(buf.samples).copy()
  want_buf[idx] = want_samples
  np.testing.assert_allclose(np.asarray(new_buf.samples), want_buf, rtol=1e-5, atol=1e-5)
  want = np_jem_loss(params, np.asarray(x), np.asarray(y), want_samples,
                     None if xu is None else np.asarray(xu))
  np.testing.assert_allclose(float(loss), want[0], rtol=1e-5, atol=1e-4)
  for name, v in zip(("ce", "log_p_data", "log_p_samples", "energy_sq"), want[1:]):
    np.testing.assert_allclose(float(aux[name]), v, rtol=1e-5, atol=1e-4)
  np.testing.assert_allclose(np.asarray(aux["logits"]), np_logits(params, x), rtol=1e-5,
                             atol=1e-4)
  np.testing.assert_allclose(np.asarray(aux["energy_samples"]),
                             -np_logsumexp(np_logits(params, want_samples)), rtol=1e-5, atol=1e-4)
  if unlabelled:  # the unlabelled batch, not the labelled one, gives log p~(x_data)
    assert abs(float(aux["log_p_data"]) - np.mean(np_logsumexp(np_logits(params, x)))) > 0.1


def test_sgld_ebm_loss_with_noise_and_reinit_writes_the_drawn_slots():
  params, x, y, buf = _loss_setup(seed=1)
  loss, (aux, new_buf) = _loss(quad_apply, params, x, y, buf, jax.random.key(2), num_steps=4,
                               step_size=0.3, noise_std=0.01, reinit_prob=0.5,
                               x_unlabelled=None)
  idx = np.asarray(aux["buffer_indices"])
  changed = np.flatnonzero(np.any(np.asarray(new_buf.samples) != np.asarray(buf.samples),
                                  axis=(1, 2, 3)))
  assert set(changed) == set(idx.tolist())
  assert np.isfinite(float(loss))


def test_gradient_treats_samples_as_constants():
  params, x, y, buf = _loss_setup(seed=2)
  key = jax.random.key(3)

  @jax.jit
  def grads_and_reference(params):
    grads, (aux, new_buf) = jax.grad(
        lambda p: sgld.sgld_ebm_loss(quad_apply, p, x, y, buf, key, num_steps=4, step_size=0.3,
                                     noise_std=0.0, reinit_prob=0.0), has_aux=True)(params)
    samples = new_buf.samples[aux["buffer_indices"]]
    # The same loss with the samples as plain inputs.
    const = jax.grad(
        lambda p: sgld.sgld_ebm_loss_from_samples(quad_apply, p, x, y, samples)[0])(params)

    # The same loss with a chain that depends on the parameters: another gradient, so the
    # comparison above could fail.
    def leaky(p):
      xs = buf.samples[aux["buffer_indices"]]
      for _ in range(4):
        xs = xs + 0.3 * jax.grad(lambda z: jnp.sum(jax.nn.logsumexp(quad_apply(p, z), -1)))(xs)
      lg = quad_apply(p, jnp.concatenate([x, xs]))
      lse = jax.nn.logsumexp(lg, axis=-1)
      ce = jnp.mean(optax.softmax_cross_entropy_with_integer_labels(lg[:6], y))
      return ce - jnp.mean(lse[:6]) + jnp.mean(lse[6:])

    return grads, const, jax.grad(leaky)(params), aux["buffer_indices"]

  grads, const, leak, idx = grads_and_reference(params)
  assert len(np.unique(np.asarray(idx))) == len(idx)
  for g, c in zip(jax.tree.leaves(grads), jax.tree.leaves(const)):
    np.testing.assert_allclose(np.asarray(g), np.asarray(c), rtol=1e-5, atol=1e-6)
  assert not np.allclose(np.asarray(leak["mu"]), np.asarray(const["mu"]), atol=1e-3)


def test_loss_from_samples_gradients_numerically():
  params, x, y, _ = _loss_setup(seed=3)
  samples = uniform_images(300, 4)
  xu = uniform_images(301, 5)
  check_grads(jax.jit(lambda p: sgld.sgld_ebm_loss_from_samples(quad_apply, p, x, y, samples,
                                                                x_unlabelled=xu)[0]),
              (params,), order=1, modes=("rev",), eps=1e-2, atol=1e-2, rtol=1e-2)


@pytest.mark.parametrize("unlabelled", [False, True])
def test_energy_l2_penalty_matches_numpy(unlabelled):
  params, x, y, buf = _loss_setup(seed=4)
  xu = uniform_images(202, 5) * 0.5 if unlabelled else None
  out = {}
  for weight in (0.0, 0.1):
    loss, (aux, new_buf) = _loss(quad_apply, params, x, y, buf, jax.random.key(5), num_steps=3,
                                 step_size=0.3, noise_std=0.0, reinit_prob=0.0, x_unlabelled=xu,
                                 energy_l2=weight)
    samples = np.asarray(new_buf.samples)[np.asarray(aux["buffer_indices"])]
    want = np_jem_loss(params, np.asarray(x), np.asarray(y), samples,
                       None if xu is None else np.asarray(xu), energy_l2=weight)
    np.testing.assert_allclose(float(loss), want[0], rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(float(aux["energy_sq"]), want[4], rtol=1e-5)
    out[weight] = float(loss)
  assert out[0.1] - out[0.0] > 1.0  # the penalty is not negligible here, so the test can fail

  # Its gradient: the penalty's own, by finite differences on the loss from given samples.
  samples = uniform_images(302, 4)
  check_grads(jax.jit(lambda p: sgld.sgld_ebm_loss_from_samples(
      quad_apply, p, x, y, samples, x_unlabelled=xu, energy_l2=0.1)[0]),
              (params,), order=1, modes=("rev",), eps=1e-2, atol=1e-2, rtol=1e-2)


def test_resolve_unroll():
  assert sgld.resolve_unroll(None, 20) == (20 if jax.default_backend() == "cpu" else 1)
  assert sgld.resolve_unroll(True, 20) == 20 and sgld.resolve_unroll(False, 20) == 1
  assert sgld.resolve_unroll(4, 20) == 4 and sgld.resolve_unroll(50, 20) == 20


@pytest.mark.parametrize("num_steps", [1, 3])
def test_a_full_unroll_is_straight_line_code_with_the_numbers_of_the_scan(num_steps):
  params = quad_params()
  x0 = jax.random.uniform(jax.random.key(1), (5,) + IMAGE_SHAPE, minval=-1, maxval=1)
  key = jax.random.key(2)
  sample = lambda unroll: (lambda p, x: sgld.sgld_sample(
      quad_apply, p, x, key, num_steps=num_steps, step_size=0.1, noise_std=0.01, unroll=unroll))
  jaxpr = str(jax.make_jaxpr(sample(num_steps))(params, x0))
  assert "scan" not in jaxpr and "while" not in jaxpr
  if num_steps > 1:
    assert "scan" in str(jax.make_jaxpr(sample(1))(params, x0))
  np.testing.assert_allclose(jax.jit(sample(num_steps))(params, x0),
                             jax.jit(sample(1))(params, x0), rtol=1e-6, atol=1e-6)


def test_bad_arguments_raise():
  params, x, y, buf = _loss_setup()
  key = jax.random.key(0)
  # Checks run at trace time: eval_shape traces without compiling or running anything.
  def raises(f, *args, **kwargs):
    with pytest.raises(ValueError):
      jax.eval_shape(lambda: f(*args, **kwargs))

  loss = lambda **kw: sgld.sgld_ebm_loss(
      quad_apply, params, kw.pop("x", x), kw.pop("y", y), kw.pop("buf", buf), key, **kw)
  x_uint8 = np.zeros((6,) + IMAGE_SHAPE, np.uint8)
  other_shape = np.zeros((6, 8, 8, 3), np.float32)
  bad = [
      dict(num_steps=0), dict(num_steps=2.0), dict(step_size=-1.0), dict(noise_std=-0.1),
      dict(step_size=float("nan")), dict(reinit_prob=1.5), dict(reinit_prob=-0.1),
      dict(clip=(1.0, -1.0)), dict(clip=1.0), dict(unroll=0), dict(x=x_uint8), dict(x=x[0]),
      dict(y=y[:3]), dict(y=y.astype(jnp.float32)), dict(x_unlabelled=other_shape),
      dict(x_unlabelled=x_uint8), dict(buf=sgld.ReplayBuffer(samples=other_shape)),
      dict(buf=buf.samples), dict(energy_l2=-0.1), dict(energy_l2=float("inf")),
  ]
  for kw in bad:
    with pytest.raises(ValueError):
      jax.eval_shape(lambda: loss(**dict(kw)))
  raises(sgld.sgld_sample, quad_apply, params, x_uint8, key)
  raises(sgld.sgld_sample, quad_apply, params, x, key, num_steps=-3)
  for size, shape in [(0, IMAGE_SHAPE), (10, (4, 4)), (10, (4, 0, 3))]:
    raises(sgld.init_replay_buffer, key, size, shape)
  raises(sgld.init_replay_buffer, key, 10, IMAGE_SHAPE, jnp.int32)
  raises(sgld.draw, buf, key, 0)
  raises(sgld.draw, buf, key, 4, reinit_prob=2.0)
  raises(sgld.update, buf, jnp.arange(3), x)  # 3 indices, 6 samples
  raises(sgld.update, buf, jnp.arange(6), other_shape)
  raises(sgld.update, buf, jnp.arange(6.0), x)
  raises(sgld.sgld_ebm_loss_from_samples, quad_apply, params, x, y, other_shape)
  raises(sgld.sgld_ebm_loss_from_samples, quad_apply, params, x, y, x, energy_l2=-1.0)


# --- many devices ----------------------------------------------------------------------------

_SHARD_MAP_SCRIPT = textwrap.dedent("""
    import jax, jax.numpy as jnp, numpy as np
    from jax.sharding import PartitionSpec as P
    from ngebm_jax import sgld
    from tests.sgld_test import quad_apply, quad_params, uniform_images, IMAGE_SHAPE

    assert jax.device_count() == 8, jax.devices()
    mesh = jax.make_mesh((8,), ("data",))
    params = quad_params(3, 0)
    x = uniform_images(1, 16)
    xu = uniform_images(2, 16) * 0.5
    y = jnp.asarray(np.arange(16) % 3, jnp.int32)
    buf = sgld.init_replay_buffer(jax.random.key(0), 32, IMAGE_SHAPE)  # 4 slots per device
    hp = dict(num_steps=3, step_size=0.3, noise_std=0.0, reinit_prob=0.0)
    key = jax.random.key(7)

    put = lambda a: jax.device_put(a, jax.NamedSharding(mesh, P("data")))
    for xu_ in (xu,):  # the labelled-batch-only path is the same pmean
      def per_device(params, x, y, xu, buf, key):
        grad_fn = jax.value_and_grad(
            lambda p: sgld.sgld_ebm_loss(quad_apply, p, x, y, buf, key, x_unlabelled=xu,
                                         axis_name="data", **hp), has_aux=True)
        (loss, (aux, new_buf)), grads = grad_fn(params)
        return loss, grads, aux["buffer_indices"], aux["log_p_data"], new_buf

      fn = jax.jit(jax.shard_map(
          per_device, mesh=mesh,
          in_specs=(P(), P("data"), P("data"), P() if xu_ is None else P("data"), P("data"), P()),
          out_specs=(P(), P(), P("data"), P(), P("data"))))
      loss, grads, local_idx, log_p_data, new_buf = fn(
          params, put(x), put(y), None if xu_ is None else put(xu_), put(buf), key)
      # Global slots: device d owns slots [4 d, 4 d + 4) and drew 2 of them.
      idx = np.asarray(local_idx) + 4 * np.repeat(np.arange(8), 2)
      per_dev = np.asarray(local_idx).reshape(8, 2)
      assert len({tuple(r) for r in per_dev}) > 1, per_dev  # devices draw differently
      x_init = jnp.asarray(np.asarray(buf.samples)[idx])
      samples = sgld.sgld_sample(quad_apply, params, x_init, jax.random.key(0),
                                 num_steps=3, step_size=0.3, noise_std=0.0)
      (ref_loss, ref_aux), ref_grads = jax.value_and_grad(
          lambda p: sgld.sgld_ebm_loss_from_samples(quad_apply, p, x, y, samples,
                                                    x_unlabelled=xu_), has_aux=True)(params)
      np.testing.assert_allclose(float(loss), float(ref_loss), rtol=1e-5, atol=1e-5)
      np.testing.assert_allclose(float(log_p_data), float(ref_aux["log_p_data"]), rtol=1e-5)
      for g, r in zip(jax.tree.leaves(grads), jax.tree.leaves(ref_grads)):
        np.testing.assert_allclose(np.asarray(g), np.asarray(r), rtol=1e-4, atol=1e-5)
      new, old, samples = (np.asarray(a) for a in (new_buf.samples, buf.samples, samples))
      for slot in range(32):  # drawn slots hold their sample (one of them if drawn twice)
        drawn = np.flatnonzero(idx == slot)
        if len(drawn):
          assert any(np.allclose(new[slot], samples[k], atol=1e-5) for k in drawn)
        else:
          np.testing.assert_array_equal(new[slot], old[slot])
    print("OK")
""")


def test_shard_map_on_8_devices_equals_single_device():
  # A fresh process: the device count is fixed when JAX starts.
  xla_flags = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
  env = dict(os.environ, XLA_FLAGS=xla_flags.strip(),
             JAX_PLATFORMS="cpu",
             PYTHONPATH=os.pathsep.join([REPO_ROOT, os.environ.get("PYTHONPATH", "")]))
  proc = subprocess.run([sys.executable, "-c", _SHARD_MAP_SCRIPT], cwd=REPO_ROOT, env=env,
                        capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0 and "OK" in proc.stdout, proc.stdout + proc.stderr
