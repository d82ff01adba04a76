"""Salience-guided degradation of images: measure (e) of Explain2Me (arXiv 2303.11969).

The recipe of the authors' code, scaled from their 224-pixel images to an image side `S`:

1. upsample the Grad-CAM map to the image size (bilinear); in "object" mode invert it (1 - map);
2. smooth it with a Gaussian of sigma 5 px at 224 px (`5 * S / 224`, ~0.71 px at 32 px);
3. rescale it to [0, 10] (min-max per image; a constant map keeps its value, clipped to [0, 1],
   so an all-zero map means "no object": fully blurred in "background" mode, untouched in
   "object" mode) and round to 0.1: a level `s` in {0, 0.1, ..., 10} per pixel (101 levels);
4. replace each pixel by its value in a Gaussian-blurred copy of the image (every colour channel)
   with `sigma_blur(s) = max_sigma * ((10 - s) / 10)^4`, i.e. `(10 - s)^4 / 1000` at 224 px when
   `max_sigma = 10 * S / 224` (the default; ~1.43 px at 32 px): sigma `max_sigma` where the map
   is 0, about 0 where it is 10.

"background" mode blurs where the model does not look; "object" mode where it looks.

Implementation choices (open in the spec): the blur is a separable Gaussian written in JAX
(jittable, batched), with scipy.ndimage's discretization (`gaussian_filter` with `truncate=4`:
taps `exp(-t^2 / 2 sigma^2)`, normalized, radius `int(4 sigma + 0.5)`) and its "nearest" boundary
mode (replicate the border pixels, as the translations of measure (c) do). The per-pixel
selection runs a `lax.scan` over the 101 levels, blurring the whole image at each level and
keeping the pixels of that level, so memory stays that of one image batch. Levels whose sigma
gives a zero radius (every level s >= 10 - 10 * (0.125 / max_sigma)^(1/4)) copy the pixel
exactly, so a map at its maximum leaves the pixel unchanged in "background" mode.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ngebm_jax import _checks
from ngebm_jax.salience.grad_cam import upsample

NUM_LEVELS = 101  # s in {0, 0.1, ..., 10}
REFERENCE_SIDE = 224  # the paper's image side, at which its pixel sizes are given
MODES = ("background", "object")


def default_max_sigma(side: int) -> float:
  """Blur sigma where the map is 0: 10 px at 224 px, scaled to `side`."""
  return 10.0 * side / REFERENCE_SIDE


def default_smooth_sigma(side: int) -> float:
  """Sigma of the map smoothing: 5 px at 224 px, scaled to `side`."""
  return 5.0 * side / REFERENCE_SIDE


def gaussian_kernel1d(sigma: float, *, truncate: float = 4.0, radius: int | None = None):
  """scipy.ndimage's 1D Gaussian taps `[2 r + 1]` (r = int(truncate * sigma + 0.5)), sum 1.

  With `radius` larger than the Gaussian's own radius, the kernel is zero-padded to that
  radius (so kernels of several sigmas stack into one table).
  """
  if sigma < 0:
    raise ValueError(f"sigma must be >= 0; got {sigma}.")
  r = int(truncate * sigma + 0.5)
  full = r if radius is None else int(radius)
  if full < r:
    raise ValueError(f"radius {full} is smaller than the Gaussian's radius {r}.")
  taps = np.zeros((2 * full + 1,), np.float64)
  if r == 0:
    taps[full] = 1.0
    return taps
  t = np.arange(-r, r + 1, dtype=np.float64)
  phi = np.exp(-0.5 * (t / sigma) ** 2)
  taps[full - r:full + r + 1] = phi / phi.sum()
  return taps


def _blur_axis(z: jax.Array, taps: jax.Array, axis: int) -> jax.Array:
  """Convolve `z` along `axis` with symmetric `taps [2R+1]`, replicating the border."""
  radius = (taps.shape[0] - 1) // 2
  if radius == 0:
    return z * taps[0]
  n = z.shape[axis]
  pad = [(0, 0)] * z.ndim
  pad[axis] = (radius, radius)
  padded = jnp.pad(z, pad, mode="edge")
  out = 0.0
  for t in range(2 * radius + 1):
    out = out + taps[t] * jax.lax.slice_in_dim(padded, t, t + n, axis=axis)
  return out


def gaussian_blur(x: jax.Array, sigma: float, *, truncate: float = 4.0) -> jax.Array:
  """Gaussian blur of `x: [B, H, W, ...]` over axes 1, 2 (each channel on its own).

  Equals `scipy.ndimage.gaussian_filter(x, (0, sigma, sigma, 0, ...), mode="nearest",
  truncate=truncate)`. `sigma` is a Python float (it fixes the kernel size).
  """
  taps = jnp.asarray(gaussian_kernel1d(float(sigma), truncate=truncate), jnp.float32)
  return _blur_axis(_blur_axis(x, taps, 1), taps, 2)


def level_sigmas(max_sigma: float) -> np.ndarray:
  """Blur sigma of each level `s = l / 10`, `l = 0..100`: `max_sigma * ((10 - s) / 10)^4`."""
  s = np.arange(NUM_LEVELS) / 10.0
  return max_sigma * ((10.0 - s) / 10.0) ** 4


def salience_guided_blur(x: jax.Array, levels: jax.Array, *, max_sigma: float) -> jax.Array:
  """Replace each pixel by its value in the image blurred at that pixel's level.

  Args:
    x: `[B, H, W, C]` float images.
    levels: `[B, H, W]` integer levels in 0..100 (level `l` is `s = l / 10`).
    max_sigma: blur sigma (px) at level 0 (Python float); level `l` uses `level_sigmas`.

  Returns:
    `[B, H, W, C]` degraded images, dtype of `x`.
  """
  _checks.check_images(x)
  if jnp.shape(levels) != x.shape[:3]:
    raise ValueError(f"levels must have shape {x.shape[:3]} (one per pixel); got "
                     f"{jnp.shape(levels)}.")
  _checks.check_positive(max_sigma, "max_sigma")
  sigmas = level_sigmas(float(max_sigma))
  radius = int(4.0 * sigmas[0] + 0.5)
  table = jnp.asarray(
      np.stack([gaussian_kernel1d(s, radius=radius) for s in sigmas]), jnp.float32)
  xf = x.astype(jnp.float32)
  levels = jnp.asarray(levels, jnp.int32)

  def one_level(out, level_and_taps):
    level, taps = level_and_taps
    blurred = _blur_axis(_blur_axis(xf, taps, 1), taps, 2)
    return jnp.where((levels == level)[..., None], blurred, out), None

  out, _ = jax.lax.scan(one_level, xf, (jnp.arange(NUM_LEVELS), table))
  return out.astype(x.dtype)


def degradation_levels(
    maps: jax.Array, size: tuple[int, int], *, mode: str = "background",
    smooth_sigma: float | None = None,
) -> jax.Array:
  """Steps 1-3 of the recipe: the level `l = round(10 * s)` in 0..100 of each image pixel.

  Args:
    maps: `[B, h, w]` salience maps in [0, 1] (Grad-CAM resolution or image resolution).
    size: the image size `(H, W)`.
    mode: "background" (the map as is) or "object" (the inverted map).
    smooth_sigma: sigma (px) of the map smoothing; default `5 * H / 224`.

  Returns:
    `[B, H, W]` int32 levels.
  """
  if mode not in MODES:
    raise ValueError(f"mode must be one of {MODES}; got {mode!r}.")
  if smooth_sigma is None:
    smooth_sigma = default_smooth_sigma(size[0])
  _checks.check_positive(smooth_sigma, "smooth_sigma")
  m = upsample(maps, size)
  if mode == "object":
    m = 1.0 - m
  m = gaussian_blur(m, float(smooth_sigma))
  lo = jnp.min(m, axis=(1, 2), keepdims=True)
  hi = jnp.max(m, axis=(1, 2), keepdims=True)
  spread = hi - lo
  m = jnp.where(spread > 0, (m - lo) / jnp.where(spread > 0, spread, 1.0), jnp.clip(m, 0, 1))
  return jnp.round(m * (NUM_LEVELS - 1)).astype(jnp.int32)


def degrade(
    x: jax.Array, maps: jax.Array, *, mode: str = "background",
    max_sigma: float | None = None, smooth_sigma: float | None = None,
) -> jax.Array:
  """Salience-guided degradation of `x` (the whole recipe of the module docstring).

  Args:
    x: `[B, H, W, C]` float images.
    maps: `[B, h, w]` salience maps of `x` in [0, 1].
    mode: "background" (blur where the map is low) or "object" (blur where it is high).
    max_sigma: blur sigma (px) where the (inverted) map is 0; default `10 * H / 224`.
    smooth_sigma: sigma (px) of the map smoothing; default `5 * H / 224`.

  Returns:
    `[B, H, W, C]` degraded images. Jit with `static_argnames=("mode", "max_sigma",
    "smooth_sigma")`.
  """
  _checks.check_images(x)
  if jnp.ndim(maps) != 3 or jnp.shape(maps)[0] != x.shape[0]:
    raise ValueError(f"maps must have shape [B={x.shape[0]}, h, w]; got {jnp.shape(maps)}.")
  if max_sigma is None:
    max_sigma = default_max_sigma(x.shape[1])
  levels = degradation_levels(maps, x.shape[1:3], mode=mode, smooth_sigma=smooth_sigma)
  return salience_guided_blur(x, levels, max_sigma=max_sigma)
