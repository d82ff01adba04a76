"""Tests of ngebm_jax.evaluation.ood: OOD scores in jitted batches and detection metrics."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn import metrics as sk_metrics

from ngebm_jax.energy import approximate_mass
from ngebm_jax.evaluation import ood


def tiny_cnn(params, x):
  """conv 3x3 -> leaky relu -> global average pool -> dense: a model without batch statistics."""
  h = jax.lax.conv_general_dilated(x, params["conv"], (1, 1), "SAME",
                                   dimension_numbers=("NHWC", "HWIO", "NHWC"))
  h = jax.nn.leaky_relu(h, 0.2).mean(axis=(1, 2))
  return h @ params["dense"] + params["bias"]


def tiny_params(seed, channels=3, hidden=4, classes=5):
  rng = np.random.default_rng(seed)
  return dict(conv=jnp.asarray(rng.normal(size=(3, 3, channels, hidden)), jnp.float32),
              dense=jnp.asarray(rng.normal(size=(hidden, classes)), jnp.float32),
              bias=jnp.zeros(classes))


def test_auroc_and_aupr_match_sklearn_on_random_scores():
  rng = np.random.default_rng(0)
  s_in, s_out = rng.normal(0.5, 1, 300), rng.normal(0, 1, 200)
  m = ood.ood_metrics(s_in, s_out)
  y = np.r_[np.ones(300), np.zeros(200)]
  s = np.r_[s_in, s_out]
  assert m["auroc"] == pytest.approx(sk_metrics.roc_auc_score(y, s))
  assert m["aupr_in"] == pytest.approx(sk_metrics.average_precision_score(y, s))
  assert m["aupr_out"] == pytest.approx(sk_metrics.average_precision_score(1 - y, -s))
  # AUROC is the probability that an in-distribution score beats an OOD one (ties count 1/2).
  pairs = (s_in[:, None] > s_out[None, :]) + 0.5 * (s_in[:, None] == s_out[None, :])
  assert m["auroc"] == pytest.approx(pairs.mean())


def test_separable_and_identical_sets():
  rng = np.random.default_rng(1)
  s_out = rng.uniform(0, 1, 100)
  m = ood.ood_metrics(s_out + 2.0, s_out)
  assert m == dict(auroc=1.0, aupr_in=1.0, aupr_out=1.0, fpr_at_95_tpr=0.0)
  m = ood.ood_metrics(s_out, s_out.copy())
  assert m["auroc"] == pytest.approx(0.5)
  assert m["fpr_at_95_tpr"] == pytest.approx(0.95)


def test_fpr_at_95_tpr_hand_example():
  scores_in = np.arange(1, 21, dtype=float)  # 20 scores; 95% of them are the 19 largest, >= 2
  scores_out = np.array([0.0, 1.5, 2.0, 3.0])  # 2.0 (a tie with the threshold) and 3.0 accepted
  assert ood.fpr_at_tpr(scores_in, scores_out) == 0.5
  assert ood.ood_metrics(scores_in, scores_out)["fpr_at_95_tpr"] == 0.5
  assert ood.fpr_at_tpr(scores_in, scores_out, tpr=1.0) == 0.75  # threshold 1


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fpr_at_95_tpr_is_the_roc_point(seed):
  # The smallest false-positive rate on the ROC curve with a true-positive rate >= 0.95.
  rng = np.random.default_rng(seed)
  s_in = rng.integers(0, 30, 137).astype(float)  # integer scores: many ties
  s_out = rng.integers(-10, 20, 91).astype(float)
  fpr, tpr, _ = sk_metrics.roc_curve(np.r_[np.ones(137), np.zeros(91)], np.r_[s_in, s_out],
                                     drop_intermediate=False)
  assert ood.fpr_at_tpr(s_in, s_out) == pytest.approx(fpr[tpr >= 0.95].min())


def test_scores_match_the_definitions_and_do_not_depend_on_batching():
  params = tiny_params(0)
  x = np.random.default_rng(1).uniform(-1, 1, (10, 6, 6, 3)).astype(np.float32)
  score_fn = ood.make_score_fn(tiny_cnn)
  # 10 examples in batches of 4: the last batch is padded.
  got = ood.ood_scores(tiny_cnn, params, x, batch_size=4, score_fn=score_fn)
  logits = np.asarray(tiny_cnn(params, x), dtype=np.float64)
  lse = np.log(np.exp(logits).sum(axis=1))
  np.testing.assert_allclose(got["log_density"], lse, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(got["max_softmax"], np.exp(logits.max(axis=1) - lse), rtol=1e-5)
  np.testing.assert_allclose(got["approximate_mass"],
                             approximate_mass(tiny_cnn, params, x), rtol=1e-5, atol=1e-6)
  assert all(v.shape == (10,) for v in got.values())
  full = ood.ood_scores(tiny_cnn, params, x, batch_size=10, score_fn=score_fn)
  for name in ood.SCORE_NAMES:
    np.testing.assert_allclose(got[name], full[name], rtol=1e-5, atol=1e-6)
  only = ood.ood_scores(tiny_cnn, params, x, score_names=("max_softmax",))
  assert list(only) == ["max_softmax"]


def test_bad_inputs_raise():
  with pytest.raises(ValueError, match="score names"):
    ood.make_score_fn(tiny_cnn, ("energy",))
  with pytest.raises(ValueError, match="NaN"):
    ood.ood_metrics(np.array([1.0, np.nan]), np.array([0.0]))
  with pytest.raises(ValueError, match="non-empty"):
    ood.ood_metrics(np.array([]), np.array([0.0]))
  with pytest.raises(ValueError, match=r"\[B, H, W, C\]"):
    ood.ood_scores(tiny_cnn, tiny_params(0), np.zeros((4, 3)))
  with pytest.raises(ValueError, match="tpr"):
    ood.fpr_at_tpr(np.ones(3), np.ones(3), tpr=0.0)
