"""The five salience measures on synthetic cases where their values are known."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.ndimage
import skimage.util
from PIL import Image
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


_salt_and_pepper = jax.jit(salience.salt_and_pepper, static_argnames=("per_channel",))
_degrade = jax.jit(salience.degrade, static_argnames=(
    "mode", "schedule", "sigma_factor", "map_scaling", "upsample_method", "boundary"))
OURS = dict(map_scaling="min_max", upsample_method="bilinear", boundary="nearest",
            schedule="scaled")  # the first implementation (variant "ours")


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


@pytest.mark.parametrize("rounding", ["floor", "nearest"])
def test_entropy_matches_numpy_reference(rounding):
  maps = np.random.default_rng(1).uniform(size=(5, 8, 8)).astype(np.float32) ** 3
  res = salience.entropy_measure(maps, rounding=rounding)
  quantize = np.floor if rounding == "floor" else np.round
  want = _reference_entropy(quantize(maps * np.float32(255)).astype(np.uint8))
  np.testing.assert_allclose(res["per_image"], want, atol=1e-6)
  assert res["mean"] == pytest.approx(want.mean(), abs=1e-6)


def test_entropy_is_the_authors_shannon_entropy_of_their_8_bit_maps():
  # Measures/Entropy: skimage.measure.shannon_entropy of the 8-bit 7x7 map (truncated by
  # torchvision's to_pil_image), divided by 5.614 = log2(49).
  import skimage.measure  # pylint: disable=g-import-not-at-top
  maps = np.random.default_rng(20).uniform(size=(4, 7, 7)).astype(np.float32) ** 2
  stored = (maps * np.float32(255)).astype(np.uint8)  # float -> uint8 truncates, as .byte()
  want = [skimage.measure.shannon_entropy(m) / np.log2(49) for m in stored]
  np.testing.assert_allclose(salience.entropy_measure(maps)["per_image"], want, atol=1e-6)


# --- (b) salt and pepper, out-of-set ----------------------------------------------------------


@pytest.mark.parametrize("amount", [0.0, 0.01, 0.25, 1.0])
def test_whole_pixel_salt_and_pepper_replaces_the_stated_fraction(amount):
  x = jnp.asarray(_images(2) * 0.5)  # no pixel is black or white before the noise
  noisy = np.asarray(_salt_and_pepper(jax.random.key(0), x, amount, per_channel=False))
  changed = np.any(noisy != np.asarray(x), axis=-1)
  black = np.all(noisy == -1.0, axis=-1)
  white = np.all(noisy == 1.0, axis=-1)
  assert np.all(changed.sum(axis=(1, 2)) == round(amount * 32 * 32))
  np.testing.assert_array_equal(changed, black | white)  # whole pixels, black or white
  if amount == 1.0:
    assert 0.4 < white.mean() < 0.6


@pytest.mark.parametrize("amount", [0.05, 0.5])
def test_per_channel_salt_and_pepper_is_scikit_images_on_the_same_draws(amount):
  # Explain2Me's code calls skimage.util.random_noise(image, mode="s&p", amount=...), which draws
  # rng.random(shape) twice (flipped, then salted): feed the same draws to ours.
  image = np.random.default_rng(14).uniform(0.1, 0.9, size=(9, 11, 3))
  draws = np.random.default_rng(15)
  flip_u, salt_u = draws.random(image.shape), draws.random(image.shape)
  want = skimage.util.random_noise(image, mode="s&p", amount=amount, rng=15)
  got = salience.salt_and_pepper_from_uniforms(jnp.asarray(image * 2 - 1, jnp.float32),
                                               jnp.asarray(flip_u), jnp.asarray(salt_u), amount)
  np.testing.assert_allclose((np.asarray(got) + 1) / 2, want, atol=1e-6)


def test_per_channel_salt_and_pepper_replaces_channel_values():
  x = jnp.asarray(_images(16) * 0.5)
  noisy = np.asarray(_salt_and_pepper(jax.random.key(2), x, 0.25))
  changed = noisy != np.asarray(x)
  assert abs(changed.mean() - 0.25) < 0.02  # Bernoulli(0.25) per value, 12,288 values
  assert set(np.unique(noisy[changed])) == {-1.0, 1.0}
  assert abs((noisy[changed] == 1.0).mean() - 0.5) < 0.05
  per_pixel = changed.sum(axis=-1)
  assert np.any(per_pixel == 1) and np.any(per_pixel == 3)  # coloured specks, not whole pixels
  np.testing.assert_array_equal(np.asarray(_salt_and_pepper(jax.random.key(2), x, 0.0)), x)
  assert np.all(np.abs(np.asarray(_salt_and_pepper(jax.random.key(2), x, 1.0))) == 1.0)


def test_salt_and_pepper_does_not_depend_on_batching():
  x = jnp.asarray(_images(3))
  key = jax.random.key(1)
  for per_channel in (True, False):
    whole = _salt_and_pepper(key, x, 0.3, per_channel=per_channel)
    tail = _salt_and_pepper(key, jnp.concatenate([x[2:], x[:2]]), 0.3, first_index=2,
                            per_channel=per_channel)
    np.testing.assert_array_equal(np.asarray(whole[2:]), np.asarray(tail[:2]))
  with pytest.raises(ValueError, match="amount"):
    salience.salt_and_pepper(key, x, 1.5)


@pytest.mark.parametrize("per_channel", [True, False])
def test_out_of_set_measure_is_exact_at_amount_zero(per_channel):
  x = _images(4, n=3)
  res = salience.out_of_set_measure(FNS, PARAMS, x, jax.random.key(0), amounts=(0.0, 0.5, 1.0),
                                    per_channel=per_channel, batch_size=2)
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


@pytest.mark.parametrize("boundary", ["reflect", "nearest"])
@pytest.mark.parametrize("sigma", [0.0, 0.3, 1.43, 10.0])
def test_gaussian_blur_matches_scipy(sigma, boundary):
  # sigma 10 has a radius of 40 px: the kernel folds back over the 12-px image several times.
  x = np.random.default_rng(9).uniform(size=(2, 12, 10, 3)).astype(np.float32)
  got = np.asarray(salience.gaussian_blur(jnp.asarray(x), sigma, boundary=boundary))
  want = scipy.ndimage.gaussian_filter(x.astype(np.float64), (0, sigma, sigma, 0), mode=boundary)
  np.testing.assert_allclose(got, want, atol=1e-5)


@pytest.mark.parametrize("boundary", ["reflect", "nearest"])
def test_salience_guided_blur_selects_from_the_blurred_stack(boundary):
  rng = np.random.default_rng(10)
  x = rng.uniform(size=(2, 12, 12, 3)).astype(np.float32)
  levels = rng.integers(0, 101, size=(2, 12, 12))
  sigmas = tuple(1.5 * ((10 - np.arange(101) / 10) / 10) ** 4)
  got = np.asarray(jax.jit(salience.salience_guided_blur, static_argnames=("sigmas", "boundary"))(
      jnp.asarray(x), jnp.asarray(levels), sigmas=sigmas, boundary=boundary))
  want = np.zeros_like(x)
  for b, i, j in itertools.product(range(2), range(12), range(12)):
    s = sigmas[levels[b, i, j]]
    want[b, i, j] = scipy.ndimage.gaussian_filter(x[b].astype(np.float64), (s, s, 0),
                                                  mode=boundary)[i, j]
  np.testing.assert_allclose(got, want, atol=1e-5)


def _authors_degrade(image, cam, *, mode, sigma_at_side):
  """Explain2Me's Measures/Degradation/main.py, written again in float64 for one image.

  `cam` is the Grad-CAM map at feature-map resolution in [0, 1]. Their code resizes it with PIL's
  BICUBIC filter, inverts it for "object" mode, and calls blur_image on each colour channel:
  gaussian_filter(map, 5) (scipy's default boundary, "reflect"), divide by the maximum to [0, 10],
  round to 0.1, and for each level v blur the channel with get_curve(10, round(10 - v, 1)) =
  (10 - v)^4 / 10^3 where that is not 0. `sigma_at_side` carries their 224-px sigmas to the side.
  """
  side = image.shape[0]
  up = np.asarray(Image.fromarray(cam.astype(np.float32), mode="F").resize((side, side),
                                                                         Image.BICUBIC))
  guide = np.clip(up.astype(np.float64), 0, 1)  # their 8-bit map is clipped to 0..255
  if mode == "object":
    guide = 1.0 - guide
  smoothed = scipy.ndimage.gaussian_filter(guide, sigma_at_side(5.0))
  scaled = np.around(smoothed / (smoothed.max() / 10), decimals=1)
  out = image.copy()
  for c in range(image.shape[-1]):
    for v in np.unique(scaled):
      amount = round(10 - v, 1)
      sigma = amount ** 4 / 10 ** 3
      if sigma != 0:
        where = np.where(scaled == v)
        out[..., c][where] = scipy.ndimage.gaussian_filter(image[..., c],
                                                           sigma_at_side(sigma))[where]
  return out


def _octaves(sigma, side):
  # The rule of the "octaves" schedule, written from its statement: the same fraction of the
  # image's log2(side / 2) octaves removed as log2(pi sigma) of 224 px's log2(112).
  if np.pi * sigma <= 1:
    return sigma
  return 2 ** (np.log2(np.pi * sigma) * np.log2(side / 2) / np.log2(112)) / np.pi


@pytest.mark.parametrize("side,schedule", [(224, "scaled"), (32, "literal"), (32, "octaves"),
                                           (32, "scaled")])
@pytest.mark.parametrize("mode", ["background", "object"])
def test_degrade_reproduces_the_authors_code(side, schedule, mode):
  carry = {"scaled": lambda s: s * side / 224, "literal": lambda s: s,
           "octaves": lambda s: _octaves(s, side)}[schedule]
  if schedule == "octaves":
    carry_smooth = lambda s: s * side / 224  # the map smoothing stays proportional
  else:
    carry_smooth = carry
  cam_side = 7 if side == 224 else 8
  rng = np.random.default_rng(17)
  cam = rng.uniform(size=(cam_side, cam_side)) ** 3
  cam = (cam - cam.min()) / (cam.max() - cam.min())  # Grad-CAM maps are min-max normalized
  image = rng.uniform(-1, 1, size=(side, side, 3))
  want = _authors_degrade(image, cam, mode=mode,
                          sigma_at_side=lambda s: carry_smooth(s) if s == 5.0 else carry(s))
  got = np.asarray(_degrade(jnp.asarray(image[None], jnp.float32),
                            jnp.asarray(cam[None], jnp.float32), mode=mode,
                            schedule=schedule))[0]
  # float32 against float64: a pixel whose scaled map lies on a rounding boundary (x.x5) can take
  # the next level; everywhere else the images agree.
  off = np.any(np.abs(got - want) > 1e-4, axis=-1)
  assert off.mean() < 0.003, off.mean()
  if mode == "background":  # (the literal 5-px smoothing flattens an inverted 8x8 map: no blur)
    assert np.abs(got - image).max() > 0.1


def test_blur_schedules():
  for schedule in ("scaled", "octaves", "literal"):
    sigmas, smooth = salience.blur_schedule(224, schedule)
    np.testing.assert_allclose(sigmas, 10 * ((10 - np.arange(101) / 10) / 10) ** 4, rtol=1e-12)
    assert smooth == 5.0
  scaled, smooth = salience.blur_schedule(32, "scaled")
  assert scaled[0] == pytest.approx(10 / 7) and smooth == pytest.approx(5 / 7)
  literal, smooth = salience.blur_schedule(32, "literal", factor=2.0)
  assert literal[0] == 20.0 and smooth == 5.0
  octaves, smooth = salience.blur_schedule(32, "octaves")
  assert octaves[0] == pytest.approx(_octaves(10.0, 32)) and smooth == pytest.approx(5 / 7)
  assert 2.40 < octaves[0] < 2.42  # the blur where the map is 0 at 32 px
  # The rule: the same fraction of octaves; blurs below 1 / pi px are kept as they are.
  reference = 10 * ((10 - np.arange(101) / 10) / 10) ** 4
  big = np.pi * reference > 1
  np.testing.assert_allclose(np.log2(np.pi * np.asarray(octaves)[big]) / np.log2(16),
                             np.log2(np.pi * reference[big]) / np.log2(112), rtol=1e-9)
  np.testing.assert_allclose(np.asarray(octaves)[~big], reference[~big])
  assert np.all(np.diff(octaves) <= 0)
  with pytest.raises(ValueError, match="schedule"):
    salience.blur_schedule(32, "linear")


def test_blur_leaves_the_other_region_unchanged_in_both_modes():
  # Map 1 on the left half, 0 on the right: after bilinear upsampling and smoothing the map stays
  # exactly 1 (level 10) for columns <= 10 and exactly 0 for columns >= 21.
  maps = np.zeros((2, 8, 8), np.float32)
  maps[:, :, :4] = 1.0
  x = _images(11, n=2)
  background = np.asarray(_degrade(jnp.asarray(x), jnp.asarray(maps), mode="background", **OURS))
  obj = np.asarray(_degrade(jnp.asarray(x), jnp.asarray(maps), mode="object", **OURS))
  np.testing.assert_array_equal(background[:, :, :11], x[:, :, :11])
  np.testing.assert_array_equal(obj[:, :, 21:], x[:, :, 21:])
  assert np.abs(background[:, :, 21:] - x[:, :, 21:]).mean() > 0.1
  assert np.abs(obj[:, :, :11] - x[:, :, :11]).mean() > 0.1
  # Where the map is 0, background mode blurs with the full sigma (10 px at 224 = 1.43 at 32).
  full = scipy.ndimage.gaussian_filter(x.astype(np.float64), (0, 10 / 7, 10 / 7, 0),
                                       mode="nearest")
  np.testing.assert_allclose(background[:, :, 21:], full[:, :, 21:], atol=1e-5)
  levels = np.asarray(salience.degradation_levels(
      jnp.asarray(maps), (32, 32), map_scaling="min_max", upsample_method="bilinear",
      boundary="nearest"))
  assert levels.min() == 0 and levels.max() == 100


def test_max_scaling_keeps_the_maps_minimum_off_level_zero():
  # A map in [0.5, 1]: max scaling puts its minimum near level 50, min-max at level 0.
  maps = jnp.asarray(0.5 + 0.5 * np.random.default_rng(18).uniform(size=(1, 8, 8)), jnp.float32)
  by_max = np.asarray(salience.degradation_levels(maps, (32, 32)))
  by_min_max = np.asarray(salience.degradation_levels(maps, (32, 32), map_scaling="min_max"))
  assert by_max.max() == 100 and by_max.min() > 30  # (bicubic overshoot: a bit below 50)
  assert by_min_max.min() == 0 and by_min_max.max() == 100


def test_all_zero_map():
  x = jnp.asarray(_images(12, n=2))
  zeros = jnp.zeros((2, 8, 8))
  # min-max: "no object", everything is background.
  np.testing.assert_array_equal(np.asarray(_degrade(x, zeros, mode="object", **OURS)), x)
  assert float(jnp.abs(_degrade(x, zeros, mode="background", **OURS) - x).mean()) > 0.1
  # max scaling: the authors' 0 / 0 matches no level and leaves the image as it is; the
  # inverted map is constant, at level 10 everywhere.
  for mode in ("background", "object"):
    np.testing.assert_array_equal(np.asarray(_degrade(x, zeros, mode=mode)), x)


@pytest.mark.parametrize("degraded_cam_class", ["degraded", "original"])
def test_degradation_measure(degraded_cam_class):
  x, y = _images(13, n=3), np.array([0, 1, 2], np.int32)
  none = salience.degradation_measure(FNS, PARAMS, x, y, sigma_factor=0.0, batch_size=2,
                                      degraded_cam_class=degraded_cam_class)
  assert none["ssim"] == pytest.approx(1.0, abs=1e-5)
  assert none["score_change"] == pytest.approx(0.0, abs=1e-6)
  assert none["max_sigma"] == 0.0
  curve = salience.degradation_curve(FNS, PARAMS, x, y, sigma_factors=(2.0,), batch_size=2,
                                     degraded_cam_class=degraded_cam_class, **OURS)
  for mode in ("background", "object"):
    assert curve[mode]["ssim"].shape == (1,)
    assert curve[mode]["max_sigma"][0] == pytest.approx(20 / 7)
    assert np.all(curve[mode]["ssim"] <= 1.0 + 1e-6)
    assert np.all(np.abs(curve[mode]["score_change"]) <= 1.0)
  with pytest.raises(ValueError, match="mode"):
    salience.degradation_measure(FNS, PARAMS, x, y, mode="sideways")
  with pytest.raises(ValueError, match="degraded_cam_class"):
    salience.degradation_measure(FNS, PARAMS, x, y, degraded_cam_class="true")


def test_degraded_cam_class_changes_only_images_whose_prediction_changes():
  # With a strong blur some predictions change; where none does, both choices give the same SSIM.
  x, y = _images(19, n=6), np.zeros(6, np.int32)
  kw = dict(sigma_factor=4.0, schedule="literal", batch_size=3)
  own = salience.degradation_measure(FNS, PARAMS, x, y, degraded_cam_class="degraded", **kw)
  same = salience.degradation_measure(FNS, PARAMS, x, y, degraded_cam_class="original", **kw)
  clean = np.argmax(np.asarray(FNS[1](PARAMS, FNS[0](PARAMS, jnp.asarray(x)))), -1)
  degraded_x = _degrade(jnp.asarray(x), jnp.asarray(salience.grad_cam_batched(FNS, PARAMS, x)),
                        schedule="literal", sigma_factor=4.0)
  after = np.argmax(np.asarray(FNS[1](PARAMS, FNS[0](PARAMS, degraded_x))), -1)
  kept = clean == after
  np.testing.assert_allclose(own["per_image_ssim"][kept], same["per_image_ssim"][kept],
                             atol=1e-6)
  np.testing.assert_allclose(own["per_image_score_change"], same["per_image_score_change"])
  if not kept.all():
    assert np.any(np.abs(own["per_image_ssim"][~kept] - same["per_image_ssim"][~kept]) > 1e-4)


# --- variants ---------------------------------------------------------------------------------


def test_variants():
  authors, ours = salience.get_variant("authors"), salience.get_variant("ours")
  assert authors.degradation_options() == dict(
      schedule="scaled", map_scaling="max", upsample_method="bicubic", boundary="reflect",
      degraded_cam_class="degraded")
  assert authors.noise_options() == {"per_channel": True, "rounding": "floor"}
  assert ours.noise_options() == {"per_channel": False, "rounding": "nearest"}
  assert ours.entropy_options() == {"rounding": "nearest"}
  assert ours.degradation_options()["map_scaling"] == "min_max"
  literal = salience.get_variant("default:literal")
  assert literal.name == "default:literal" and literal.schedule == "literal"
  assert "schedule=literal" in literal.describe()
  with pytest.raises(ValueError, match="variant"):
    salience.get_variant("theirs")
  with pytest.raises(ValueError, match="schedule"):
    salience.get_variant("default:linear")
