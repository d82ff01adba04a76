"""Tests of temperature scaling and the calibration figures against slow NumPy references."""

from __future__ import annotations

import numpy as np
import pytest

from ngebm_jax.evaluation import calibration
from ngebm_jax.evaluation import temperature
from tests import calibration_references as ref


def sampled_logits(rng, n, k, true_scale, shown_scale):
  """Logits `shown_scale * z` of a model whose labels are drawn from `softmax(true_scale * z)`:
  the temperature that calibrates it is about `shown_scale / true_scale`."""
  z = rng.normal(size=(n, k))
  p = ref.softmax_rows(true_scale * z)
  labels = np.array([rng.choice(k, p=row) for row in p])
  return (shown_scale * z).astype(np.float32), labels


@pytest.mark.parametrize("true_scale,shown_scale,seed", [
    (1.0, 3.0, 0),   # over-confident: T about 3
    (2.0, 1.0, 1),   # under-confident: T about 0.5
    (1.5, 1.5, 2),   # calibrated: T about 1
])
def test_fitted_temperature_matches_brute_force(true_scale, shown_scale, seed):
  logits, labels = sampled_logits(np.random.default_rng(seed), 400, 5, true_scale, shown_scale)
  t = temperature.fit_temperature(logits, labels)
  t_grid, spacing = ref.brute_force_temperature(logits, labels)
  assert abs(np.log(t) - np.log(t_grid)) <= spacing
  # No grid point has a lower NLL than the fitted temperature.
  assert ref.slow_nll(logits / t, labels) <= ref.slow_nll(logits / t_grid, labels) + 1e-12
  assert temperature.temperature_nll(logits, labels, t) == pytest.approx(
      ref.slow_nll(np.float64(logits) / t, labels), rel=1e-10)
  assert 0.5 < t / (shown_scale / true_scale) < 2  # near the scale that generated the labels


def test_separable_data_gives_the_lower_bound():
  # Every prediction right: the NLL falls as T -> 0, so the search ends on its lower bound.
  logits = np.array([[2.0, 0.0], [0.0, 1.0], [3.0, 1.0]], np.float32)
  assert temperature.fit_temperature(logits, np.array([0, 1, 0])) == pytest.approx(
      temperature.T_MIN)
  assert temperature.fit_temperature(logits, np.array([0, 1, 0]), t_min=0.1) == pytest.approx(0.1)


def test_scaling_keeps_the_prediction():
  rng = np.random.default_rng(3)
  logits = rng.normal(size=(50, 7))
  np.testing.assert_array_equal(temperature.scale_logits(logits, 2.7).argmax(1), logits.argmax(1))
  np.testing.assert_allclose(temperature.scale_logits(logits, 2.0), logits / 2.0)


def test_bad_arguments_raise():
  logits, labels = np.zeros((3, 2), np.float32), np.array([0, 1, 0])
  with pytest.raises(ValueError, match="temperature"):
    temperature.scale_logits(logits, 0.0)
  with pytest.raises(ValueError, match="t_min"):
    temperature.fit_temperature(logits, labels, t_min=2.0, t_max=1.0)
  with pytest.raises(ValueError, match="NaN"):
    temperature.fit_temperature(np.full((3, 2), np.nan, np.float32), labels)
  with pytest.raises(ValueError, match="labels"):
    temperature.fit_temperature(logits, np.array([0, 1]))


@pytest.mark.parametrize("seed", [0, 1])
def test_calibration_figures_match_slow_references(seed):
  rng = np.random.default_rng(seed)
  logits, labels = sampled_logits(rng, 300, 10, 1.0, 2.5)
  f = calibration.calibration_figures(logits, labels, num_bins=15)
  probs = ref.softmax_rows(logits)
  assert f["accuracy"] == pytest.approx(np.mean(probs.argmax(1) == labels))
  assert f["mean_confidence"] == pytest.approx(np.mean(probs.max(1)))
  assert f["confidence_gap"] == pytest.approx(ref.slow_confidence_gap(logits, labels), abs=1e-12)
  assert f["confidence_gap"] > 0.05  # logits 2.5x too large: over-confident
  assert f["ece"] == pytest.approx(ref.slow_ece(probs, labels, 15), abs=1e-12)
  assert f["ece_center"] == pytest.approx(ref.reference_paper_ece(logits, labels), abs=1e-6)
  assert f["nll"] == pytest.approx(ref.slow_nll(logits, labels), rel=1e-10)
  assert f["brier"] == pytest.approx(ref.slow_brier(logits, labels), rel=1e-10)
  assert sum(f["bins"]["count"]) == 300 and len(f["bins"]["edges"]) == 16
  assert abs(f["confidence_gap"]) <= f["ece"] + 1e-12  # ECE bounds the signed gap


def test_paper_ece_counts_confidence_one_in_the_last_bin():
  # Saturated softmax (confidence exactly 1.0 in float64) as over-fitted models produce.
  logits = np.array([[800.0, 0.0], [0.0, 800.0], [1.0, 0.0]])
  labels = np.array([0, 0, 0])
  got = calibration.calibration_figures(logits, labels, num_bins=20)["ece_center"]
  assert got == pytest.approx(ref.reference_paper_ece(logits, labels), abs=1e-5)
