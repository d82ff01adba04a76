"""The five salience measures on synthetic cases where their values are known."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.ndimage
from skimage.metrics import structural_similarity

from ngebm_jax import salience
from ngebm_jax.salience import transforms


def _pool4(x):
  b, h, w, c = x.shape
  return x.reshape(b, h // 4, 4, w // 4, 4, c).mean(axis=(2, 4))


# Features are a per-pixel function of the input, average-pooled on an aligned 4x4 grid, and the
# head pools globally: Grad-CAM then commutes exactly with flips and 90-degree rotations.
def _features(params, x):
  return _pool4(jnp.tanh(x @ params["w1"] + params["b1"]))


def _head(params, a):
  return jnp.mean(jax.nn.leaky_relu(a, 0.2), axis=(1, 2)) @ params["w2"]


FNS = (_features, _head)
_rng = np.random.default_rng(0)
PARAMS = {
    "w1": jnp.asarray(_rng.normal(size=(3, 6)), jnp.float32),
    "b1": jnp.asarray(_rng.normal(size=(6,)), jnp.float32),
    "w2": jnp.asarray(_rng.normal(size=(6, 3)), jnp.float32),
}


_salt_and_pepper = jax.jit(salience.salt_and_pepper)
_degrade = jax.jit(salience.degrade, static_argnames=("mode", "max_sigma", "smooth_sigma"))


def _images(seed, n=4, side=32):
  return np.random.default_rng(seed).uniform(-1, 1, size=(n, side, side, 3)).astype(np.float32)


# --- (a) entropy ------------------------------------------------------------------------------


def _reference_entropy(maps_uint8):
  out = []
  for m in maps_uint8:
    _, counts = np.unique(m, return_counts=True)
    p = counts / m.size
    out.append(-(p * np.log2(p)).sum() / np.log2(m.size))
  return np.asarray(out)


def test_entropy_of_constant_and_distinct_maps():
  const = np.stack([np.zeros((8, 8)), np.full((8, 8), 0.5), np.ones((8, 8))]).astype(np.float32)
  res = salience.entropy_measure(const)
  np.testing.assert_allclose(res["per_image"], 0.0, atol=1e-7)
  distinct = np.arange(64, dtype=np.float32).reshape(1, 8, 8) / 63.0  # 64 distinct uint8 levels
  assert salience.entropy_measure(distinct)["mean"] == pytest.approx(1.0, abs=1e-6)
  distinct16 = np.arange(256, dtype=np.uint8).reshape(1, 16, 16)
  assert salience.entropy_measure(distinct16)["mean"] == pytest.approx(1.0, abs=1e-6)


def test_entropy_matches_numpy_reference():
  maps = np.random.default_rng(1).uniform(size=(5, 8, 8)).astype(np.float32) ** 3
  res = salience.entropy_measure(maps)
  want = _reference_entropy(np.asarray(salience.to_uint8(maps)))
  np.testing.assert_allclose(res["per_image"], want, atol=1e-6)
  assert res["mean"] == pytest.approx(want.mean(), abs=1e-6)


# --- (b) salt and pepper, out-of-set ----------------------------------------------------------


@pytest.mark.parametrize("amount", [0.0, 0.01, 0.25, 1.0])
def test_salt_and_pepper_replaces_the_stated_fraction(amount):
  x = jnp.asarray(_images(2) * 0.5)  # no pixel is black or white before the noise
  noisy = np.asarray(_salt_and_pepper(jax.random.key(0), x, amount))
  changed = np.any(noisy != np.asarray(x), axis=-1)
  black = np.all(noisy == -1.0, axis=-1)
  white = np.all(noisy == 1.0, axis=-1)
  assert np.all(changed.sum(axis=(1, 2)) == round(amount * 32 * 32))
  np.testing.assert_array_equal(changed, black | white)  # whole pixels, black or white
  if amount == 1.0:
    assert 0.4 < white.mean() < 0.6


def test_salt_and_pepper_does_not_depend_on_batching():
  x = jnp.asarray(_images(3))
  key = jax.random.key(1)
  whole = _salt_and_pepper(key, x, 0.3)
  tail = _salt_and_pepper(key, jnp.concatenate([x[2:], x[:2]]), 0.3, first_index=2)
  np.testing.assert_array_equal(np.asarray(whole[2:]), np.asarray(tail[:2]))
  with pytest.raises(ValueError, match="amount"):
    salience.salt_and_pepper(key, x, 1.5)


def test_out_of_set_measure_is_exact_at_amount_zero():
  x = _images(4, n=3)
  res = salience.out_of_set_measure(FNS, PARAMS, x, jax.random.key(0), amounts=(0.0, 0.5, 1.0),
                                    batch_size=2)
  clean = salience.grad_cam_batched(FNS, PARAMS, x)
  assert res["ssim"][0] == pytest.approx(1.0, abs=1e-5)
  assert res["entropy"][0] == pytest.approx(salience.entropy_measure(clean)["mean"], abs=1e-6)
  assert res["ssim"].shape == res["entropy"].shape == (3,)
  assert np.all(res["ssim"] <= 1.0 + 1e-6) and np.all((0 <= res["entropy"]) & (res["entropy"] <= 1))


# --- (c) equivariance -------------------------------------------------------------------------


def test_transforms_match_numpy():
  z = np.random.default_rng(5).uniform(size=(2, 32, 32, 3)).astype(np.float32)
  ts = transforms.equivariance_transforms(32)
  assert len(ts) == 12 and transforms.translation_shift(32) == 2
  assert transforms.translation_shift(224) == 16
  np.testing.assert_array_equal(ts["hflip"](z), z[:, :, ::-1])
  np.testing.assert_array_equal(ts["vflip"](z), z[:, ::-1])
  np.testing.assert_array_equal(ts["rot+90"](z), np.rot90(z, 1, axes=(1, 2)))
  np.testing.assert_array_equal(ts["rot-90"](z), np.rot90(z, -1, axes=(1, 2)))
  padded = np.pad(z, [(0, 0), (2, 2), (2, 2), (0, 0)], mode="edge")
  for name, (dy, dx) in {"left": (0, -2), "right": (0, 2), "up": (-2, 0), "down": (2, 0),
                         "up_left": (-2, -2), "down_right": (2, 2), "up_right": (-2, 2),
                         "down_left": (2, -2)}.items():
    want = padded[:, 2 - dy:34 - dy, 2 - dx:34 - dx]
    np.testing.assert_array_equal(ts[f"shift_{name}"](z), want, err_msg=name)
  # Content moves in the named direction.
  assert ts["shift_right"](z)[0, 5, 10, 0] == z[0, 5, 8, 0]


def test_an_exactly_equivariant_model_scores_one_under_flips_and_rotations():
  res = salience.equivariance_measure(FNS, PARAMS, _images(6, n=3), batch_size=2)
  assert list(res["per_transform"]) == list(transforms.equivariance_transforms(32))
  for name in ("hflip", "vflip", "rot+90", "rot-90"):
    assert res["per_transform"][name] == pytest.approx(1.0, abs=1e-4), name
  assert all(v <= 1.0 + 1e-6 for v in res["per_transform"].values())
  assert res["overall"] == pytest.approx(np.mean(list(res["per_transform"].values())), abs=1e-6)
  assert res["per_image"].shape == (3,)


# --- (d) stability ----------------------------------------------------------------------------


def test_identical_runs_are_stable():
  maps = np.random.default_rng(7).uniform(size=(4, 8, 8)).astype(np.float32)
  res = salience.stability_measure(np.stack([maps] * 3))
  assert res["num_pairs"] == 3
  assert res["mean"] == pytest.approx(1.0, abs=1e-6)


def test_stability_matches_skimage_pairs():
  runs = np.random.default_rng(8).uniform(size=(3, 2, 8, 8)).astype(np.float32)
  res = salience.stability_measure(runs)
  want = np.mean([[structural_similarity(runs[r, n], runs[s, n], data_range=1.0)
                   for r, s in itertools.combinations(range(3), 2)] for n in range(2)], axis=1)
  np.testing.assert_allclose(res["per_image"], want, atol=2e-5)
  with pytest.raises(ValueError, match="2 runs"):
    salience.stability_measure(runs[:1])


# --- (e) degradation --------------------------------------------------------------------------


@pytest.mark.parametrize("sigma", [0.0, 0.3, 1.43])
def test_gaussian_blur_matches_scipy(sigma):
  x = np.random.default_rng(9).uniform(size=(2, 12, 12, 3)).astype(np.float32)
  got = np.asarray(salience.gaussian_blur(jnp.asarray(x), sigma))
  want = scipy.ndimage.gaussian_filter(x.astype(np.float64), (0, sigma, sigma, 0), mode="nearest")
  np.testing.assert_allclose(got, want, atol=1e-5)


def test_salience_guided_blur_selects_from_the_blurred_stack():
  rng = np.random.default_rng(10)
  x = rng.uniform(size=(2, 12, 12, 3)).astype(np.float32)
  levels = rng.integers(0, 101, size=(2, 12, 12))
  got = np.asarray(jax.jit(salience.salience_guided_blur, static_argnames="max_sigma")(
      jnp.asarray(x), jnp.asarray(levels), max_sigma=1.5))
  sigmas = 1.5 * ((10 - np.arange(101) / 10) / 10) ** 4
  want = np.zeros_like(x)
  for b, i, j in itertools.product(range(2), range(12), range(12)):
    s = sigmas[levels[b, i, j]]
    want[b, i, j] = scipy.ndimage.gaussian_filter(x[b].astype(np.float64), (s, s, 0),
                                                  mode="nearest")[i, j]
  np.testing.assert_allclose(got, want, atol=1e-5)


def test_blur_leaves_the_other_region_unchanged_in_both_modes():
  # Map 1 on the left half, 0 on the right: after upsampling and smoothing the map stays exactly
  # 1 (level 10) for columns <= 10 and exactly 0 for columns >= 21.
  maps = np.zeros((2, 8, 8), np.float32)
  maps[:, :, :4] = 1.0
  x = _images(11, n=2)
  background = np.asarray(_degrade(jnp.asarray(x), jnp.asarray(maps), mode="background"))
  obj = np.asarray(_degrade(jnp.asarray(x), jnp.asarray(maps), mode="object"))
  np.testing.assert_array_equal(background[:, :, :11], x[:, :, :11])
  np.testing.assert_array_equal(obj[:, :, 21:], x[:, :, 21:])
  assert np.abs(background[:, :, 21:] - x[:, :, 21:]).mean() > 0.1
  assert np.abs(obj[:, :, :11] - x[:, :, :11]).mean() > 0.1
  # Where the map is 0, background mode blurs with the full sigma (10 px at 224 = 1.43 at 32).
  full = scipy.ndimage.gaussian_filter(x.astype(np.float64), (0, 10 / 7, 10 / 7, 0),
                                       mode="nearest")
  np.testing.assert_allclose(background[:, :, 21:], full[:, :, 21:], atol=1e-5)
  levels = np.asarray(salience.degradation_levels(jnp.asarray(maps), (32, 32)))
  assert levels.min() == 0 and levels.max() == 100


def test_all_zero_map_blurs_everything_in_background_mode_only():
  x = jnp.asarray(_images(12, n=2))
  zeros = jnp.zeros((2, 8, 8))
  np.testing.assert_array_equal(np.asarray(_degrade(x, zeros, mode="object")), x)
  assert float(jnp.abs(_degrade(x, zeros, mode="background") - x).mean()) > 0.1


def test_degradation_measure():
  x, y = _images(13, n=3), np.array([0, 1, 2], np.int32)
  none = salience.degradation_measure(FNS, PARAMS, x, y, max_sigma=0.0, batch_size=2)
  assert none["ssim"] == pytest.approx(1.0, abs=1e-5)
  assert none["score_change"] == pytest.approx(0.0, abs=1e-6)
  curve = salience.degradation_curve(FNS, PARAMS, x, y, max_sigmas=(2.0,), batch_size=2)
  for mode in ("background", "object"):
    assert curve[mode]["ssim"].shape == (1,)
    assert np.all(curve[mode]["ssim"] <= 1.0 + 1e-6)
    assert np.all(np.abs(curve[mode]["score_change"]) <= 1.0)
  with pytest.raises(ValueError, match="mode"):
    salience.degradation_measure(FNS, PARAMS, x, y, mode="sideways")
