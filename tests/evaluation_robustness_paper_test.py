"""The "paper" robustness protocol (smallest successful epsilon, foolbox 1.8's search) on a
two-class linear model, whose smallest adversarial perturbation has a closed form."""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

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
  got = robustness.minimal_epsilons(
      linear, params, x, y, key=jax.random.key(0), norm=norm, num_steps=40,
      binary_search_steps=20, random_start=False, batch_size=12)
  np.testing.assert_array_equal(got["clean_correct"], np.arange(12) < 10)
  np.testing.assert_array_equal(got["epsilons"][-2:], 0.0)
  np.testing.assert_allclose(got["epsilons"][:10], expected[:10], rtol=2e-3)
  # With foolbox's random start the search can only over-estimate: no adversarial image is
  # closer than the closed form, and a 40-step walk of eps/30 steps gets near the corner.
  rand = robustness.minimal_epsilons(
      linear, params, x, y, key=jax.random.key(1), norm=norm, num_steps=40,
      binary_search_steps=12, batch_size=12)
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


def test_evaluator_reports_the_protocol(tmp_path):
  params, x, y, _ = problem(2, n=8)
  options = evaluators.EvalOptions(
      noise_std=0.03, batch_size=8, robustness_protocol="paper", binary_search_steps=6,
      pgd_steps=10, epsilons={"linf": (0.0, 2 / 255, 8 / 255), "l2": (0.0, 0.5)})
  inputs = evaluators.EvalInputs(apply_fn=linear, params=params, images=x, labels=y,
                                 key=jax.random.key(0), options=options)
  out = evaluators.evaluate_robustness(inputs, str(tmp_path))
  assert out["protocol"] == "paper"
  linf, l2 = out["linf"], out["l2"]
  assert linf["attack_noise_std"] == 0.03 and linf["noise_copies"] == 5
  assert l2["attack_noise_std"] == 0.0 and l2["noise_copies"] == 1
  assert len(linf["minimal_epsilons"]) == 8
  assert linf["accuracy"] == robustness.accuracy_at(
      [np.inf if e is None else e for e in linf["minimal_epsilons"]], linf["epsilons"])
  assert linf["accuracy"][0] >= linf["accuracy"][-1]
  for rel in out["plots"].values():
    assert os.path.getsize(os.path.join(str(tmp_path), rel)) > 1000
  with pytest.raises(ValueError, match="robustness_protocol"):
    evaluators.EvalOptions(robustness_protocol="foolbox")
