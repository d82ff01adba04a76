"""The "paper" robustness protocol (smallest successful epsilon, foolbox 1.8's search) on a
two-class linear model, whose smallest adversarial perturbation has a closed form."""

from __future__ import annotations

import dataclasses
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import default
from ngebm_jax.evaluation import evaluators
from ngebm_jax.evaluation import robustness

SHAPE = (2, 2, 3)


def linear(params, x):
  return x.reshape(x.shape[0], -1) @ params["w"] + params["b"]


def problem(seed, n=12):
  """Random weights, inputs near 0 (far from the pixel box, so it never binds) and labels the
  model predicts, except for the last two examples, which it gets wrong."""
  rng = np.random.default_rng(seed)
  d = int(np.prod(SHAPE))
  w = rng.normal(size=(d, 2)).astype(np.float32)
  b = np.zeros(2, np.float32)
  x = rng.uniform(-0.1, 0.1, (n,) + SHAPE).astype(np.float32)
  logits = x.reshape(n, -1) @ w + b
  y = logits.argmax(1).astype(np.int32)
  y[-2:] = 1 - y[-2:]
  return dict(w=jnp.asarray(w), b=jnp.asarray(b)), x, y, logits


def closed_form(w, logits, y, norm):
  """Smallest perturbation that flips a two-class linear model, in [0, 1] pixel units: the
  margin over the dual norm of the weight difference (L1 for L-inf, L2 for L2), halved because
  model space is 2x pixel space. Misclassified examples: 0."""
  n = len(y)
  margin = logits[np.arange(n), y] - logits[np.arange(n), 1 - y]
  diff = np.asarray(w)[:, 0] - np.asarray(w)[:, 1]
  dual = np.abs(diff).sum() if norm == "linf" else np.sqrt((diff ** 2).sum())
  return np.maximum(margin, 0) / dual / 2.0


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_minimal_epsilon_matches_the_closed_form(norm):
  params, x, y, logits = problem(0)
  expected = closed_form(params["w"], logits, y, norm)
  # Without a random start, PGD on a two-class linear model walks the optimal direction: the
  # search must find the closed form to its bisection's precision.
  # The search alone: no refinement step (it would move the inputs along log p~'s gradient).
  got = robustness.minimal_epsilons(
      linear, params, x, y, key=jax.random.key(0), norm=norm, num_steps=40,
      binary_search_steps=20, random_start=False, batch_size=12, refine_steps=0)
  np.testing.assert_array_equal(got["clean_correct"], np.arange(12) < 10)
  np.testing.assert_array_equal(got["epsilons"][-2:], 0.0)
  np.testing.assert_allclose(got["epsilons"][:10], expected[:10], rtol=2e-3)
  # With foolbox's random start the search can only over-estimate: no adversarial image is
  # closer than the closed form, and a 40-step walk of eps/30 steps gets near the corner.
  rand = robustness.minimal_epsilons(
      linear, params, x, y, key=jax.random.key(1), norm=norm, num_steps=40,
      binary_search_steps=12, batch_size=12, refine_steps=0)
  assert np.all(rand["epsilons"][:10] >= expected[:10] * (1 - 1e-5))
  assert np.all(rand["epsilons"][:10] <= expected[:10] * 1.3)


def test_accuracy_at_counts_images_not_yet_fooled():
  min_eps = np.array([0.0, 0.1, 0.2, np.inf])
  assert robustness.accuracy_at(min_eps, [0.0, 0.1, 0.15, 1.0]) == [0.75, 0.5, 0.5, 0.25]


def test_noisy_copies_average_the_logits():
  params, x, _, _ = problem(1, n=4)
  key = jax.random.key(3)
  got = robustness.averaged_noisy_logits(linear, params, jnp.asarray(x), key, num_copies=5,
                                         noise_std=0.03)
  noise = 0.03 * jax.random.normal(key, (5,) + x.shape)
  expected = np.mean([linear(params, x + noise[c]) for c in range(5)], axis=0)
  np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(
      robustness.averaged_noisy_logits(linear, params, jnp.asarray(x), key, num_copies=5,
                                       noise_std=0.0), linear(params, x), rtol=1e-6)


def eval_options(**changes):
  """`config.eval` of the default config (the one home of the defaults), with `changes`."""
  return dataclasses.replace(evaluators.EvalOptions.from_config(default.get_config()),
                             **changes)


def test_evaluator_reports_the_protocol(tmp_path):
  params, x, y, _ = problem(2, n=8)
  options = eval_options(
      noise_std=0.03, batch_size=8, robustness_protocol="paper", binary_search_steps=6,
      pgd_steps=10, epsilons={"linf": (0.0, 2 / 255, 8 / 255), "l2": (0.0, 0.5)})
  inputs = evaluators.EvalInputs(apply_fn=linear, params=params, images=x, labels=y,
                                 key=jax.random.key(0), options=options)
  out = evaluators.robustness.evaluate(inputs, str(tmp_path))
  assert out["protocol"] == "paper"
  linf, l2 = out["linf"], out["l2"]
  assert linf["attack_noise_std"] == 0.03 and linf["noise_copies"] == 5
  # L2: no copy noise, but each copy's refinement step draws its own Langevin noise.
  assert l2["attack_noise_std"] == 0.0 and l2["noise_copies"] == 5
  assert linf["refine_steps"] == l2["refine_steps"] == 1
  assert linf["refine_noise_std"] == 0.01
  assert len(linf["minimal_epsilons"]) == 8
  assert linf["accuracy"] == robustness.accuracy_at(
      [np.inf if e is None else e for e in linf["minimal_epsilons"]], linf["epsilons"])
  assert linf["accuracy"][0] >= linf["accuracy"][-1]
  for rel in out["plots"].values():
    assert os.path.getsize(os.path.join(str(tmp_path), rel)) > 1000
  with pytest.raises(ValueError, match="robustness_protocol"):
    eval_options(robustness_protocol="foolbox")


def test_evaluator_without_refinement_attacks_one_clean_copy_under_l2(tmp_path):
  params, x, y, _ = problem(2, n=4)
  options = eval_options(
      noise_std=0.03, batch_size=4, robustness_protocol="paper", binary_search_steps=2,
      pgd_steps=2, robustness_norms=("l2",), refine_steps=0)
  inputs = evaluators.EvalInputs(apply_fn=linear, params=params, images=x, labels=y,
                                 key=jax.random.key(0), options=options)
  out = evaluators.robustness.evaluate(inputs, str(tmp_path))
  assert out["l2"]["noise_copies"] == 1 and out["l2"]["refine_steps"] == 0
  with pytest.raises(ValueError, match="refine_steps"):
    eval_options(refine_steps=-1)


# --------------------------------------------------------- the reference's refinement step --

def mlp(params, x):
  """A tiny non-linear classifier: log p~(x) has a gradient that depends on x."""
  h = jnp.tanh(x.reshape(x.shape[0], -1) @ params["w1"])
  return h @ params["w2"]


def mlp_problem(n=3):
  rng = np.random.default_rng(5)
  d = int(np.prod(SHAPE))
  params = dict(w1=jnp.asarray(rng.normal(size=(d, 8)), jnp.float32),
                w2=jnp.asarray(rng.normal(size=(8, 4)), jnp.float32))
  x = jnp.asarray(rng.uniform(-0.5, 0.5, (n,) + SHAPE), jnp.float32)
  return params, x, jnp.asarray(rng.integers(0, 4, n), jnp.int32)


def slow_refined_points(params, x, key, *, num_copies, noise_std, refine_steps,
                        refine_noise_std):
  """The reference's `refined_logits`, one image and one copy at a time: copy c of image i is
  x_i + noise_std n_ci, then each SGLD step adds the gradient of log p~ = logsumexp(logits) of
  that single image, and refine_noise_std times fresh noise. Returns [C, N, ...] points."""
  k_copies, k_refine = jax.random.split(key)
  copy_noise = np.asarray(jax.random.normal(k_copies, (num_copies,) + x.shape))
  n = x.shape[0]
  step_noise = [np.asarray(jax.random.normal(jax.random.fold_in(k_refine, s),
                                             (num_copies * n,) + x.shape[1:]))
                for s in range(refine_steps)]

  @jax.jit
  @jax.grad
  def grad_log_p(xi):  # one image
    return jax.scipy.special.logsumexp(mlp(params, xi[None])[0])

  points = np.zeros((num_copies,) + x.shape, np.float64)
  for c in range(num_copies):
    for i in range(n):
      xc = np.asarray(x[i], np.float64) + noise_std * copy_noise[c, i]
      for s in range(refine_steps):
        g = np.asarray(grad_log_p(jnp.asarray(xc, jnp.float32)), np.float64)
        xc = xc + g + refine_noise_std * step_noise[s][c * n + i]
      points[c, i] = xc
  return points


def test_refined_logits_match_the_slow_reference():
  params, x, _ = mlp_problem()
  key = jax.random.key(7)
  settings = dict(num_copies=5, noise_std=0.03, refine_steps=2, refine_noise_std=0.01)
  got = jax.jit(lambda x: robustness.averaged_noisy_logits(mlp, params, x, key, **settings))(x)
  points = slow_refined_points(params, x, key, **settings)
  expected = np.mean([np.asarray(mlp(params, jnp.asarray(p, jnp.float32))) for p in points], 0)
  np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
  # The step is real: without it the logits differ.
  unrefined = robustness.averaged_noisy_logits(mlp, params, x, key, num_copies=5, noise_std=0.03)
  assert not np.allclose(unrefined, expected, atol=1e-3)
  # L2's setting: no copy noise, yet 5 copies that differ by their Langevin noise.
  l2 = dict(num_copies=5, noise_std=0.0, refine_steps=1, refine_noise_std=0.01)
  points = slow_refined_points(params, x, key, **l2)
  assert not np.allclose(points[0], points[1])
  expected = np.mean([np.asarray(mlp(params, jnp.asarray(p, jnp.float32))) for p in points], 0)
  np.testing.assert_allclose(robustness.averaged_noisy_logits(mlp, params, x, key, **l2),
                             expected, rtol=1e-4, atol=1e-5)


def test_attack_gradients_pass_straight_through_the_refinement():
  """As in the reference (the SGLD step writes `.data`; no `create_graph`): the gradient with
  respect to x is the gradient at the refined points, each copy's Jacobian the identity."""
  params, x, y = mlp_problem()
  key = jax.random.key(11)
  settings = dict(num_copies=3, noise_std=0.03, refine_steps=1, refine_noise_std=0.01)

  def loss_of(logits):
    return -jnp.sum(jnp.take_along_axis(jax.nn.log_softmax(logits), y[:, None], axis=1))

  got = jax.grad(lambda x: loss_of(robustness.averaged_noisy_logits(
      mlp, params, x, key, **settings)))(x)
  points = jnp.asarray(slow_refined_points(params, x, key, **settings), jnp.float32)
  at_points = jax.grad(lambda p: loss_of(jnp.mean(jnp.stack([mlp(params, q) for q in p]), 0)))(
      points)
  np.testing.assert_allclose(got, at_points.sum(0), rtol=1e-4, atol=1e-6)
  # Differentiating through the SGLD step (which the reference does not) gives another answer.
  def through(x):
    k_copies, k_refine = jax.random.split(key)
    copies = (x[None] + 0.03 * jax.random.normal(k_copies, (3,) + x.shape)).reshape(
        (-1,) + x.shape[1:])
    refined = robustness.refine(mlp, params, copies, k_refine, num_steps=1, noise_std=0.01)
    return loss_of(mlp(params, refined).reshape(3, x.shape[0], -1).mean(0))
  assert not np.allclose(jax.grad(through)(x), got, rtol=1e-3, atol=1e-4)
