"""The five salience measures of Explain2Me (arXiv 2303.11969), one function each.

Each measure answers one question about a classifier's Grad-CAM maps over a whole dataset with
one number (or one curve), so that models can be compared without looking at their maps:

(a) `entropy_measure`: how spread out are the maps? (normalized histogram entropy)
(b) `out_of_set_measure`: do the maps stay structured on salt-and-pepper noise?
(c) `equivariance_measure`: do the maps follow flips, rotations and shifts of the image?
(d) `stability_measure`: do independently trained runs look at the same places?
(e) `degradation_measure`: does blurring what the map shows (or hides) change the model?

Comparisons are SSIM (`ngebm_jax.salience.ssim`, scikit-image's `structural_similarity`
defaults: uniform 7x7 window, sample covariance) with `data_range=1` on float maps in [0, 1];
the uint8 quantization of the maps (`to_uint8`) is used where a histogram is needed, i.e. in the
entropies of (a) and (b). The authors' code compares by SSIM in (d) and (e), on its 8-bit map
files (`structural_similarity(cam_1, cam_2)`, data range 255 from the dtype; we compare the
float maps); their code computes the maps of (b) and (c) but no comparison, and we compare those
by SSIM too. Their entropy (a) is `skimage.measure.shannon_entropy` of the 8-bit map divided by
`log2(49)` for their 7x7 maps, which is `map_entropy`.

Resolutions: (a), (b) and (d) compare maps at the feature-map resolution (8x8 for a 32-pixel
Wide-ResNet: 4 SSIM windows); (c) and (e) mix map and image, and compare maps upsampled to the
image size (bilinear in (c); in (e) bicubic as the authors' code, or bilinear).

Where the authors' released code and our first reading of the paper differ, in (a), (b) and
(e), the measure takes an option for each step, with the authors' choice as the default (see
`ngebm_jax.salience.variants`, which names sets of them).

The dataset-level functions loop over batches of `batch_size` images (the last one padded, so one
compilation serves every batch) and return plain Python floats and NumPy arrays. Results do not
depend on `batch_size`.
"""

from __future__ import annotations

import functools
import itertools
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ngebm_jax import _checks
from ngebm_jax.evaluation.inference import batched
# Names, not modules: the package re-exports functions named like their modules (grad_cam).
from ngebm_jax.salience.degrade import blur_schedule
from ngebm_jax.salience.degrade import DEFAULT_SCHEDULE
from ngebm_jax.salience.degrade import degrade
from ngebm_jax.salience.degrade import MODES
from ngebm_jax.salience.grad_cam import grad_cam
from ngebm_jax.salience.grad_cam import grad_cam_and_logits
from ngebm_jax.salience.grad_cam import grad_cam_batched
from ngebm_jax.salience.grad_cam import to_uint8
from ngebm_jax.salience.grad_cam import upsample
from ngebm_jax.salience.ssim import ssim
from ngebm_jax.salience.transforms import equivariance_transforms
from ngebm_jax.salience.transforms import salt_and_pepper
from ngebm_jax.salience.transforms import translation_shift

OUT_OF_SET_AMOUNTS = (0.0, 0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0)


# ----------------------------------------------------------------------------------------------
# (a) entropy


def map_entropy(maps: jax.Array, *, rounding: str = "floor") -> jax.Array:
  """Normalized Shannon entropy of each map's uint8 histogram (measure (a)).

  `H = -sum_v p_v log2 p_v` over the 256 intensity bins, divided by `log2(h * w)`, its maximum
  for `h * w` pixels (reached when all pixels differ). Maps with more than 256 pixels cannot
  reach 1 (at most `8 / log2(h * w)`): the paper's normalization, kept as is.

  Args:
    maps: `[B, h, w]` uint8 maps, or float maps in [0, 1] (quantized with `to_uint8`).
    rounding: how float maps are quantized, "floor" (the authors' code) or "nearest".

  Returns:
    `[B]` float32 entropies in [0, 1]; 0 for a constant map, 1 for `h * w <= 256` distinct values.
  """
  maps = jnp.asarray(maps)
  if maps.ndim != 3:
    raise ValueError(f"maps must have shape [B, h, w]; got {maps.shape}.")
  n = maps.shape[1] * maps.shape[2]
  if n < 2:
    raise ValueError(f"A map needs at least 2 pixels to have an entropy; got {maps.shape[1:]}.")
  q = to_uint8(maps, rounding=rounding).reshape(maps.shape[0], n).astype(jnp.int32)
  counts = jax.vmap(lambda v: jnp.bincount(v, length=256))(q)
  p = counts.astype(jnp.float32) / n
  bits = -jnp.sum(jnp.where(p > 0, p * jnp.log2(jnp.where(p > 0, p, 1.0)), 0.0), axis=-1)
  return bits / np.log2(n)


_map_entropy_jit = jax.jit(map_entropy, static_argnames=("rounding",))


def entropy_measure(maps: Any, *, rounding: str = "floor") -> dict[str, Any]:
  """Measure (a): average normalized entropy of the maps of a dataset.

  Args:
    maps: `[N, h, w]` uint8 maps or float maps in [0, 1] (e.g. from `grad_cam_batched`).
    rounding: quantization of float maps, "floor" (the authors' code) or "nearest".

  Returns:
    `{"mean": float, "per_image": [N] float32 array}`. Low: the model looks at few places.
  """
  per_image = np.asarray(_map_entropy_jit(maps, rounding=rounding))
  return {"mean": float(per_image.mean()), "per_image": per_image}


# ----------------------------------------------------------------------------------------------
# (b) out-of-set response


@functools.partial(jax.jit, static_argnames=("win_size", "rounding"))
def _entropy_and_ssim(maps, clean_maps, *, win_size, rounding):
  return (map_entropy(maps, rounding=rounding),
          ssim(maps, clean_maps, data_range=1.0, win_size=win_size))


_salt_and_pepper_jit = jax.jit(salt_and_pepper, static_argnames=("per_channel",))


def out_of_set_measure(
    model_fns: Any,
    params: Any,
    x: Any,
    key: jax.Array,
    *,
    amounts: Sequence[float] = OUT_OF_SET_AMOUNTS,
    per_channel: bool = True,
    rounding: str = "floor",
    batch_size: int = 128,
    win_size: int = 7,
) -> dict[str, Any]:
  """Measure (b): salience on inputs degraded by salt-and-pepper noise.

  For each amount, the images get salt-and-pepper noise in the model's input space (black -1,
  white +1; `salt_and_pepper`): by default scikit-image's rule, each channel value replaced with
  probability `amount`, as the authors' code does; with `per_channel=False`, exactly
  `round(amount * H * W)` whole pixels. We report the mean entropy (a) of the noisy images' maps,
  and the mean SSIM between each noisy image's map and its clean map (at map resolution). The
  authors' code computes the noisy images' maps but no comparison; SSIM is our choice, as in
  (d), (e).

  Args:
    model_fns, params: the model (see `grad_cam`).
    x: `[N, H, W, C]` float images in [-1, 1].
    key: `jax.random` key of the noise (amount `i` uses `fold_in(key, i)`, image `n` then
      `fold_in(., n)`).
    amounts: fractions of channel values (or of pixels) replaced.
    per_channel: scikit-image's per-value noise (True, the authors' code) or whole pixels.
    rounding: quantization of the maps for their entropy (`map_entropy`).
    batch_size: images per Grad-CAM call.
    win_size: SSIM window (maps smaller than 7x7 need a smaller odd one).

  Returns:
    `{"amounts": [A], "entropy": [A], "ssim": [A]}` NumPy arrays (means over the dataset).
    A model whose salience stays structured (low entropy) on pure noise is suspect.
  """
  _checks.check_images(x)
  amounts = [float(a) for a in amounts]
  if not amounts or not all(0.0 <= a <= 1.0 for a in amounts):
    raise ValueError(f"amounts must be fractions of pixels in [0, 1]; got {amounts}.")
  clean = grad_cam_batched(model_fns, params, x, batch_size=batch_size)
  entropies, ssims = [], []
  for i, amount in enumerate(amounts):
    k = jax.random.fold_in(key, i)

    def noisy_stats(xb, cb, idx, k=k, amount=amount):
      noisy = _salt_and_pepper_jit(k, jnp.asarray(xb), amount, per_channel=per_channel,
                                   first_index=int(idx[0]))
      return _entropy_and_ssim(grad_cam(model_fns, params, noisy), jnp.asarray(cb),
                               win_size=win_size, rounding=rounding)

    ent, sim = batched(noisy_stats, x, clean, np.arange(x.shape[0]), batch_size=batch_size)
    entropies.append(float(ent.mean()))
    ssims.append(float(sim.mean()))
  return {"amounts": np.asarray(amounts), "entropy": np.asarray(entropies),
          "ssim": np.asarray(ssims)}


# ----------------------------------------------------------------------------------------------
# (c) geometric equivariance


@functools.partial(jax.jit, static_argnames=("shift",))
def _transform_all(x, *, shift):
  ts = equivariance_transforms(x.shape[1], shift=shift)
  return jnp.stack([t(x) for t in ts.values()])


@functools.partial(jax.jit, static_argnames=("shift", "size"))
def _equivariance_ssim(clean_maps, transformed_maps, *, shift, size):
  """SSIM of `up(cam(T x))` and `T(up(cam x))`, `[12, B]`."""
  ts = equivariance_transforms(size[0], shift=shift)
  up = upsample(clean_maps, size)
  expected = jnp.stack([t(up) for t in ts.values()])
  got = jax.vmap(lambda m: upsample(m, size))(transformed_maps)
  return ssim(got, expected, data_range=1.0)


def equivariance_measure(
    model_fns: Any,
    params: Any,
    x: Any,
    *,
    shift: int | None = None,
    batch_size: int = 128,
) -> dict[str, Any]:
  """Measure (c): SSIM between `cam(T(x))` and `T(cam(x))` for the 12 transforms.

  The transforms are those of `transforms.equivariance_transforms` (flips, +-90 degree
  rotations, 8 replicate-padded translations by `round(side / 14)` px). Both maps are compared
  at the image resolution: the maps are upsampled (bilinear) to the image size first and `T` is
  applied to the upsampled clean map, because a 2-px shift of a 32-px image is a quarter of a
  pixel of an 8x8 map and has no exact map-resolution counterpart. Flips and rotations commute
  with the upsampling, so for them this equals comparing at map resolution and upsampling both.
  The paper's code leaves the comparison open; SSIM (7x7 window, data range 1) is our choice.

  Args:
    model_fns, params: the model (see `grad_cam`).
    x: `[N, S, S, C]` float images in [-1, 1] (square).
    shift: translation in px; default `round(S / 14)`.
    batch_size: images per Grad-CAM call.

  Returns:
    `{"per_transform": {name: mean SSIM}, "overall": mean over the 12 transforms,
    "per_image": [N] mean over transforms}`. High: salience follows the object.
  """
  _checks.check_images(x)
  side = x.shape[1]
  if x.shape[2] != side:
    raise ValueError(f"equivariance_measure needs square images; got {x.shape[1:3]}.")
  shift = translation_shift(side) if shift is None else int(shift)
  names = list(equivariance_transforms(side, shift=shift))

  def batch_ssims(xb):
    xb = jnp.asarray(xb)
    clean = grad_cam(model_fns, params, xb)
    maps = jnp.stack([grad_cam(model_fns, params, xt) for xt in _transform_all(xb, shift=shift)])
    return _equivariance_ssim(clean, maps, shift=shift, size=(side, side)).T  # [B, 12]

  sims = batched(batch_ssims, x, batch_size=batch_size).T  # [12, N]
  per_transform = {name: float(v) for name, v in zip(names, sims.mean(axis=1))}
  return {"per_transform": per_transform, "overall": float(sims.mean()),
          "per_image": sims.mean(axis=0)}


# ----------------------------------------------------------------------------------------------
# (d) stability across runs


_ssim_jit = jax.jit(ssim, static_argnames=("data_range", "win_size"))


def stability_measure(maps_per_run: Any, *, win_size: int = 7) -> dict[str, Any]:
  """Measure (d): mean pairwise SSIM of the maps of independently trained runs.

  For each image, the mean SSIM of its maps over all `R (R - 1) / 2` pairs of runs (45 for the
  paper's 10 runs), at map resolution; then the mean over images.

  Args:
    maps_per_run: `[R, N, h, w]` maps in [0, 1] (or uint8) of the same images from `R >= 2` runs.
    win_size: SSIM window (maps smaller than 7x7 need a smaller odd one).

  Returns:
    `{"mean": float, "per_image": [N], "num_pairs": int}`. Identical runs score 1.
  """
  maps = np.asarray(maps_per_run)
  if maps.ndim != 4:
    raise ValueError(f"maps_per_run must have shape [R, N, h, w]; got {maps.shape}.")
  if maps.shape[0] < 2:
    raise ValueError(f"Stability needs maps from at least 2 runs; got {maps.shape[0]}.")
  if maps.dtype == np.uint8:
    maps = maps.astype(np.float32) / 255.0
  pairs = list(itertools.combinations(range(maps.shape[0]), 2))
  total = np.zeros((maps.shape[1],), np.float64)
  for r, s in pairs:
    total += np.asarray(_ssim_jit(maps[r], maps[s], data_range=1.0, win_size=win_size))
  per_image = (total / len(pairs)).astype(np.float32)
  return {"mean": float(per_image.mean()), "per_image": per_image, "num_pairs": len(pairs)}


# ----------------------------------------------------------------------------------------------
# (e) salience-guided degradation


_degrade_jit = jax.jit(degrade, static_argnames=(
    "mode", "schedule", "sigma_factor", "map_scaling", "upsample_method", "boundary"))
DEGRADED_CAM_CLASSES = ("degraded", "original")


@functools.partial(jax.jit, static_argnames=("size", "upsample_method"))
def _degradation_stats(clean_maps, degraded_maps, clean_logits, degraded_logits, y, *, size,
                       upsample_method):
  sim = ssim(upsample(degraded_maps, size, method=upsample_method),
             upsample(clean_maps, size, method=upsample_method), data_range=1.0)
  p_clean = jnp.take_along_axis(jax.nn.softmax(clean_logits), y[:, None], axis=-1)[:, 0]
  p_degraded = jnp.take_along_axis(jax.nn.softmax(degraded_logits), y[:, None], axis=-1)[:, 0]
  return sim, p_clean, p_degraded


def degradation_measure(
    model_fns: Any,
    params: Any,
    x: Any,
    y: Any,
    *,
    mode: str = "background",
    schedule: str = DEFAULT_SCHEDULE,
    sigma_factor: float = 1.0,
    map_scaling: str = "max",
    upsample_method: str = "bicubic",
    boundary: str = "reflect",
    degraded_cam_class: str = "degraded",
    batch_size: int = 128,
) -> dict[str, Any]:
  """Measure (e): blur the image where the model does not look (or looks), and measure.

  Each image is degraded by `degrade` (the authors' recipe, its options and blur schedules are
  described in `ngebm_jax/salience/degrade.py`) using its Grad-CAM map for the predicted class.
  We report the SSIM between the Grad-CAM of the degraded image and that of the original, both
  upsampled to the image size (`upsample_method`, as for the map that guides the blur; the
  authors compare their bicubically upscaled 8-bit maps), and the change of the softmax
  probability of the true class. The degraded image's map is taken for its own predicted class
  (`degraded_cam_class="degraded"`, what the authors' code does: every map is for the predicted
  class of its image), or for the class predicted on the original ("original": the same
  question asked of both images); a change of prediction shows in the score either way.

  Args:
    model_fns, params: the model (see `grad_cam`).
    x: `[N, S, S, C]` float images in [-1, 1] (square).
    y: `[N]` int true labels.
    mode: "background" (blur where the map is low) or "object" (blur where it is high).
    schedule: "octaves", "scaled" or "literal": the authors' 224-px sigmas carried to side `S`
      (`blur_schedule`).
    sigma_factor: multiplies the authors' blur sigmas (a sweep: `degradation_curve`).
    map_scaling: "max" (the authors' code) or "min_max".
    upsample_method: "bicubic" (the authors' code) or "bilinear".
    boundary: "reflect" (the authors' code) or "nearest".
    degraded_cam_class: "degraded" (the authors' code) or "original".
    batch_size: images per call.

  Returns:
    `{"ssim": mean, "score_change": mean of p_degraded(y) - p(y), "score_clean": mean p(y),
    "score_degraded": mean p_degraded(y), "max_sigma": the blur (px) where the map is 0,
    "smooth_sigma": px, "per_image_ssim": [N], "per_image_score_change": [N]}`. A model that
    relies on what its map shows loses more score in object mode than in background mode.
  """
  _checks.check_images(x)
  n = x.shape[0]
  y = np.asarray(y)
  _checks.check_labels(y, n)
  if mode not in MODES:
    raise ValueError(f"mode must be one of {MODES}; got {mode!r}.")
  if degraded_cam_class not in DEGRADED_CAM_CLASSES:
    raise ValueError(f"degraded_cam_class must be one of {DEGRADED_CAM_CLASSES}; got "
                     f"{degraded_cam_class!r}.")
  side = x.shape[1]
  sigmas, smooth_sigma = blur_schedule(side, schedule, factor=sigma_factor)
  options = dict(mode=mode, schedule=schedule, sigma_factor=float(sigma_factor),
                 map_scaling=map_scaling, upsample_method=upsample_method, boundary=boundary)

  def batch_stats(xb, yb):
    xb = jnp.asarray(xb)
    clean, logits = grad_cam_and_logits(model_fns, params, xb)
    degraded = _degrade_jit(xb, clean, **options)
    class_index = None if degraded_cam_class == "degraded" else jnp.argmax(logits, axis=-1)
    deg_maps, deg_logits = grad_cam_and_logits(model_fns, params, degraded,
                                               class_index=class_index)
    return _degradation_stats(clean, deg_maps, logits, deg_logits, jnp.asarray(yb),
                              size=tuple(x.shape[1:3]), upsample_method=upsample_method)

  sims, p0s, p1s = batched(batch_stats, x, y, batch_size=batch_size)
  return {
      "ssim": float(sims.mean()),
      "score_change": float((p1s - p0s).mean()),
      "score_clean": float(p0s.mean()),
      "score_degraded": float(p1s.mean()),
      "max_sigma": sigmas[0],
      "smooth_sigma": smooth_sigma,
      "per_image_ssim": sims,
      "per_image_score_change": p1s - p0s,
  }


def degradation_curve(
    model_fns: Any,
    params: Any,
    x: Any,
    y: Any,
    *,
    sigma_factors: Sequence[float],
    modes: Sequence[str] = MODES,
    batch_size: int = 128,
    **options,
) -> dict[str, dict[str, np.ndarray]]:
  """Measure (e) for a sweep of the blur, in multiples of the authors' sigmas, in each mode.

  `options` are the other keyword arguments of `degradation_measure` (schedule, map_scaling,
  ...).

  Returns:
    `{mode: {"sigma_factor": [S], "max_sigma": [S] px, "ssim": [S], "score_change": [S]}}`
    NumPy arrays.
  """
  out = {}
  for mode in modes:
    rows = [degradation_measure(model_fns, params, x, y, mode=mode, sigma_factor=f,
                                batch_size=batch_size, **options)
            for f in sigma_factors]
    out[mode] = {
        "sigma_factor": np.asarray([float(f) for f in sigma_factors]),
        "max_sigma": np.asarray([r["max_sigma"] for r in rows]),
        "ssim": np.asarray([r["ssim"] for r in rows]),
        "score_change": np.asarray([r["score_change"] for r in rows]),
    }
  return out
