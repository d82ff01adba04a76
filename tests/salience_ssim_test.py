"""SSIM of ngebm_jax.salience against scikit-image's structural_similarity."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from skimage.metrics import structural_similarity

from ngebm_jax.salience import ssim

_ssim_jit = jax.jit(ssim, static_argnames=("data_range", "win_size", "gaussian_weights"))


def _pairs(rng, n, side, dtype):
  """Pairs of related maps (so SSIM spans a useful range, not only ~0)."""
  a = rng.uniform(size=(n, side, side))
  b = np.clip(a + rng.normal(scale=rng.uniform(0.05, 0.5, size=(n, 1, 1)), size=a.shape), 0, 1)
  if dtype == np.uint8:
    return (a * 255).round().astype(np.uint8), (b * 255).round().astype(np.uint8)
  return a.astype(np.float32), b.astype(np.float32)


@pytest.mark.parametrize("side", [8, 32])
@pytest.mark.parametrize("dtype", [np.float32, np.uint8])
def test_ssim_matches_skimage(side, dtype):
  rng = np.random.default_rng(side)
  a, b = _pairs(rng, 5, side, dtype)
  data_range = 255.0 if dtype == np.uint8 else 1.0
  got = np.asarray(_ssim_jit(a, b, data_range=data_range))
  want = [structural_similarity(p, q, data_range=data_range) for p, q in zip(a, b)]
  np.testing.assert_allclose(got, want, atol=2e-5)


def test_ssim_uint8_defaults_to_range_255_and_keeps_leading_dims():
  rng = np.random.default_rng(1)
  a, b = _pairs(rng, 6, 9, np.uint8)
  got = np.asarray(ssim(a.reshape(2, 3, 9, 9), b.reshape(2, 3, 9, 9)))
  want = [structural_similarity(p, q) for p, q in zip(a, b)]
  assert got.shape == (2, 3)
  np.testing.assert_allclose(got.reshape(-1), want, atol=2e-5)


def test_ssim_gaussian_window_matches_skimage():
  rng = np.random.default_rng(2)
  a, b = _pairs(rng, 3, 32, np.float32)
  got = np.asarray(_ssim_jit(a, b, data_range=1.0, gaussian_weights=True))
  want = [structural_similarity(p, q, data_range=1.0, gaussian_weights=True, sigma=1.5)
          for p, q in zip(a, b)]
  np.testing.assert_allclose(got, want, atol=2e-5)


def test_ssim_explicit_window():
  rng = np.random.default_rng(3)
  a, b = _pairs(rng, 3, 5, np.float32)
  got = np.asarray(ssim(a, b, data_range=1.0, win_size=3))
  want = [structural_similarity(p, q, data_range=1.0, win_size=3) for p, q in zip(a, b)]
  np.testing.assert_allclose(got, want, atol=2e-5)


def test_identical_maps_score_one():
  rng = np.random.default_rng(4)
  a = rng.uniform(size=(3, 8, 8)).astype(np.float32)
  np.testing.assert_allclose(np.asarray(ssim(a, a, data_range=1.0)), 1.0, atol=1e-6)
  zeros = np.zeros((2, 8, 8), np.float32)
  np.testing.assert_allclose(np.asarray(ssim(zeros, zeros, data_range=1.0)), 1.0, atol=1e-6)


def test_ssim_rejects_bad_arguments():
  a = np.zeros((2, 6, 6), np.float32)
  with pytest.raises(ValueError, match="smaller than"):
    ssim(a, a, data_range=1.0)
  b = np.zeros((2, 8, 8), np.float32)
  with pytest.raises(ValueError, match="data_range"):
    ssim(b, b)
  with pytest.raises(ValueError, match="one shape"):
    ssim(b, b[:1], data_range=1.0)
  with pytest.raises(ValueError, match="odd"):
    ssim(b, b, data_range=1.0, win_size=4)
