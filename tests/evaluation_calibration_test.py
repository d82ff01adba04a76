"""Tests of ngebm_jax.evaluation.calibration: ECE, reliability bins, NLL, Brier score."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ngebm_jax.evaluation import calibration
from tests.calibration_references import slow_ece


def random_probs(rng, n, k, temperature=3.0):
  z = temperature * rng.normal(size=(n, k))
  p = np.exp(z - z.max(axis=1, keepdims=True))
  return p / p.sum(axis=1, keepdims=True)


def sample_labels(rng, probs):
  """Labels drawn from the rows of probs (a perfectly calibrated predictor)."""
  u = rng.random(probs.shape[0])[:, None]
  return np.minimum((np.cumsum(probs, axis=1) < u).sum(axis=1), probs.shape[1] - 1)


def test_ece_hand_computed_example():
  probs = np.array([[0.9, 0.1], [0.85, 0.15], [0.3, 0.7], [0.6, 0.4], [0.5, 0.5]])
  labels = np.array([0, 1, 1, 0, 1])
  # 5 bins of width 0.2: bin 4 holds 0.9 (right) and 0.85 (wrong): |0.5 - 0.875| * 2/5 = 0.15;
  # bin 3 holds 0.7 (right): |1 - 0.7| * 1/5 = 0.06; bin 2 holds 0.6 (right, 0.6 closes the bin)
  # and 0.5 (a tie, predicted class 0, wrong): |0.5 - 0.55| * 2/5 = 0.02.
  assert calibration.expected_calibration_error(probs, labels, num_bins=5) == pytest.approx(0.23)
  # Bin centres 0.9, 0.7, 0.5: 0.4 * 2/5 + 0.3 * 1/5 + 0 = 0.22.
  assert calibration.expected_calibration_error(
      probs, labels, num_bins=5, bin_confidence="center") == pytest.approx(0.22)
  bins = calibration.calibration_bins(probs, labels, num_bins=5)
  np.testing.assert_array_equal(bins["count"], [0, 0, 2, 1, 2])
  np.testing.assert_allclose(bins["accuracy"], [0, 0, 0.5, 1.0, 0.5])
  np.testing.assert_allclose(bins["confidence"], [0, 0, 0.55, 0.7, 0.875])
  np.testing.assert_allclose(bins["edges"], np.linspace(0, 1, 6))


@pytest.mark.parametrize("num_bins,k,seed", [(20, 10, 0), (15, 3, 1), (7, 100, 2)])
@pytest.mark.parametrize("bin_confidence", ["mean", "center"])
def test_ece_matches_slow_loop(num_bins, k, seed, bin_confidence):
  rng = np.random.default_rng(seed)
  probs = random_probs(rng, 300, k)
  labels = rng.integers(0, k, size=300)
  expected = slow_ece(probs, labels, num_bins, bin_confidence)
  got = calibration.expected_calibration_error(probs, labels, num_bins=num_bins,
                                               bin_confidence=bin_confidence)
  assert isinstance(got, float)
  assert got == pytest.approx(expected, abs=1e-12)


def test_bin_edges_are_right_inclusive_and_zero_is_counted():
  conf = np.array([0.0, 0.1, 0.25, 0.26, 0.5, 0.75, 0.99, 1.0])
  np.testing.assert_array_equal(calibration.bin_indices(conf, 4), [0, 0, 0, 1, 1, 2, 3, 3])
  # Confidence exactly 1 lands in the last bin, exactly on an edge in the bin that edge closes.
  probs = np.array([[1.0, 0.0], [0.5, 0.5], [0.55, 0.45]])
  bins = calibration.calibration_bins(probs, np.array([0, 0, 1]), num_bins=20)
  assert bins["count"][19] == 1 and bins["count"][9] == 1 and bins["count"][10] == 1
  assert bins["count"].sum() == 3


def test_perfectly_calibrated_predictor_has_ece_near_zero():
  rng = np.random.default_rng(0)
  probs = random_probs(rng, 200_000, 10)
  labels = sample_labels(rng, probs)
  ece = calibration.expected_calibration_error(probs, labels)
  assert ece < 0.01


def test_overconfident_predictor_matches_closed_form():
  # Binary predictor with confidence c ~ U(0.5, 1) whose true accuracy is only
  # q(c) = 0.5 + (c - 0.5) / 2. The gap c - q(c) = (c - 0.5) / 2 has one sign, so binning
  # loses nothing: ECE -> E[(c - 0.5) / 2] = 0.125.
  rng = np.random.default_rng(1)
  n = 200_000
  c = rng.uniform(0.5, 1.0, size=n)
  predicted = rng.integers(0, 2, size=n)
  probs = np.where(predicted[:, None] == 0, np.stack([c, 1 - c], 1), np.stack([1 - c, c], 1))
  correct = rng.random(n) < 0.5 + (c - 0.5) / 2
  labels = np.where(correct, predicted, 1 - predicted)
  assert calibration.expected_calibration_error(probs, labels) == pytest.approx(0.125, abs=0.005)


def test_constant_confidence_closed_form():
  # 1000 predictions at confidence 0.88, exactly 600 right: ECE = 0.88 - 0.6; with the bin centre
  # of (0.85, 0.9], 0.875 - 0.6.
  probs = np.tile([[0.88, 0.12]], (1000, 1))
  labels = np.array([0] * 600 + [1] * 400)
  assert calibration.expected_calibration_error(probs, labels) == pytest.approx(0.28)
  assert calibration.expected_calibration_error(
      probs, labels, bin_confidence="center") == pytest.approx(0.275)


def test_nll_and_brier():
  probs = np.array([[0.7, 0.3], [0.2, 0.8], [0.5, 0.5]])
  labels = np.array([0, 0, 1])
  nll = -(math.log(0.7) + math.log(0.2) + math.log(0.5)) / 3
  assert calibration.negative_log_likelihood(probs, labels) == pytest.approx(nll)
  brier = ((0.3 ** 2 + 0.3 ** 2) + (0.8 ** 2 + 0.8 ** 2) + (0.5 ** 2 + 0.5 ** 2)) / 3
  assert calibration.brier_score(probs, labels) == pytest.approx(brier)
  logits = np.log(probs) + 3.0  # a shift does not change the softmax
  assert calibration.negative_log_likelihood(logits, labels, from_logits=True) == pytest.approx(nll)
  assert calibration.brier_score(logits, labels, from_logits=True) == pytest.approx(brier)
  assert calibration.accuracy(probs, labels) == pytest.approx(1 / 3)


def test_nll_from_logits_is_stable_for_large_logits():
  logits = np.array([[1000.0, 0.0]], dtype=np.float32)
  assert calibration.negative_log_likelihood(logits, np.array([1]), from_logits=True) == (
      pytest.approx(1000.0))


@pytest.mark.parametrize("probs,labels,match", [
    (np.array([0.5, 0.5]), np.array([0]), "shape"),
    (np.array([[1.2, -0.2]]), np.array([0]), r"\[0, 1\]"),
    (np.array([[0.5, 0.4]]), np.array([0]), "sum to 1"),
    (np.array([[np.nan, 0.5]]), np.array([0]), "NaN"),
    (np.array([[0.5, 0.5]]), np.array([0, 1]), "shape"),
    (np.array([[0.5, 0.5]]), np.array([2]), "labels must be in"),
    (np.array([[0.5, 0.5]]), np.array([0.0]), "integer"),
])
def test_bad_inputs_raise(probs, labels, match):
  with pytest.raises(ValueError, match=match):
    calibration.expected_calibration_error(probs, labels)


def test_bad_options_raise():
  probs, labels = np.array([[0.5, 0.5]]), np.array([0])
  with pytest.raises(ValueError, match="num_bins"):
    calibration.expected_calibration_error(probs, labels, num_bins=0)
  with pytest.raises(ValueError, match="bin_confidence"):
    calibration.expected_calibration_error(probs, labels, bin_confidence="median")
  with pytest.raises(ValueError, match="logits"):
    calibration.negative_log_likelihood(np.array([[3.0, -1.0]]), labels)
