"""Structural similarity (SSIM) of batches of small maps, in JAX, matching scikit-image.

SSIM (Wang et al. 2004, eq. 13) compares two single-channel images window by window:

  SSIM(x, y) = (2 mu_x mu_y + C1)(2 s_xy + C2) / ((mu_x^2 + mu_y^2 + C1)(s_x^2 + s_y^2 + C2)),
  C1 = (K1 L)^2, C2 = (K2 L)^2, L = data_range,

averaged over the windows. Explain2Me (arXiv 2303.11969) measures salience stability and
salience-guided degradation with scikit-image's `structural_similarity`; this module computes the
same number with its defaults so that the whole measure runs batched under `jit`:

- a uniform 7x7 window (`gaussian_weights=False`), or scikit-image's Gaussian window
  (`gaussian_weights=True`: sigma 1.5, truncated at 3.5 sigma, i.e. 11x11);
- K1 = 0.01, K2 = 0.03, the sample covariance (`use_sample_covariance=True`: variances scaled by
  NP / (NP - 1), NP = win_size^2, also for the Gaussian window, as scikit-image does);
- the mean over the windows that lie fully inside the map. scikit-image filters the whole map
  and then crops a border of `(win_size - 1) // 2` pixels before averaging; what remains are
  exactly the windows fully inside, so the filter's boundary mode never matters and we only
  compute those ("valid") windows.

Small maps: a map smaller than the window (in either side) raises `ValueError`, like
scikit-image; we do not shrink the window silently, since SSIM with another window is another
number. An 8x8 map (a 32-pixel Wide-ResNet's Grad-CAM) is the smallest 2D map of practical use
with the default 7x7 window: it has 2x2 = 4 windows. Pass a smaller odd `win_size` explicitly (as
with scikit-image) for smaller maps.

Each window's variances and covariance are computed from the centred window values (two passes),
not as E[x^2] - E[x]^2, so float32 stays accurate for uint8-range data.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ngebm_jax import _checks

_GAUSSIAN_TRUNCATE = 3.5  # scikit-image's truncation of its Gaussian SSIM window


def _window_weights(win_size: int, gaussian_weights: bool, sigma: float) -> np.ndarray:
  """1D window weights `[win_size]` summing to 1 (the 2D window is their outer product)."""
  if not gaussian_weights:
    return np.full((win_size,), 1.0 / win_size)
  r = (win_size - 1) // 2
  t = np.arange(-r, r + 1, dtype=np.float64)
  w = np.exp(-0.5 * (t / sigma) ** 2)
  return w / w.sum()


def _resolve_window(win_size: int | None, gaussian_weights: bool, sigma: float) -> int:
  _checks.check_positive(sigma, "sigma", allow_zero=False)
  if gaussian_weights:
    natural = 2 * int(_GAUSSIAN_TRUNCATE * sigma + 0.5) + 1
    if win_size is None:
      return natural
    if win_size != natural:
      raise ValueError(
          f"With gaussian_weights=True the window is the Gaussian's support, "
          f"2 * int(3.5 * sigma + 0.5) + 1 = {natural} for sigma={sigma}; got win_size="
          f"{win_size}. Leave win_size=None or change sigma.")
    return natural
  if win_size is None:
    return 7
  if isinstance(win_size, bool) or not isinstance(win_size, (int, np.integer)):
    raise ValueError(f"win_size must be an odd integer >= 3; got {win_size!r}.")
  if win_size < 3 or win_size % 2 != 1:
    raise ValueError(f"win_size must be an odd integer >= 3; got {win_size}.")
  return int(win_size)


def ssim(
    a: jax.Array,
    b: jax.Array,
    *,
    data_range: float | None = None,
    win_size: int | None = None,
    gaussian_weights: bool = False,
    sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
) -> jax.Array:
  """Mean SSIM of each pair of maps, as `skimage.metrics.structural_similarity` computes it.

  Args:
    a: `[..., H, W]` maps (any leading batch dimensions), float or uint8.
    b: same shape as `a`.
    data_range: `L`, the range of the values (1.0 for maps in [0, 1], 255 for uint8 maps).
      Required for floating inputs; defaults to 255 when both inputs are uint8 (as scikit-image).
    win_size: odd side of the square window; default 7 (uniform) or the Gaussian's support.
    gaussian_weights: use scikit-image's Gaussian window (sigma `sigma`, truncated at 3.5 sigma)
      instead of the uniform one.
    sigma: the Gaussian window's standard deviation (only with `gaussian_weights=True`).
    k1: `K1` of the luminance constant `C1 = (K1 L)^2`.
    k2: `K2` of the contrast-structure constant `C2 = (K2 L)^2`.

  Returns:
    `[...]` float32 mean SSIM of each pair (1 for identical maps).

  Raises:
    ValueError: shapes differ, a map is smaller than the window, or a hyperparameter is invalid.
  """
  a = jnp.asarray(a)
  b = jnp.asarray(b)
  if a.shape != b.shape:
    raise ValueError(f"ssim compares maps of one shape; got {a.shape} and {b.shape}.")
  if a.ndim < 2:
    raise ValueError(f"ssim expects maps [..., H, W]; got shape {a.shape}.")
  if data_range is None:
    if a.dtype == jnp.uint8 and b.dtype == jnp.uint8:
      data_range = 255.0
    else:
      raise ValueError(
          "data_range is required unless both inputs are uint8 (then it is 255): pass 1.0 for "
          f"maps in [0, 1]. Got dtypes {a.dtype} and {b.dtype}.")
  _checks.check_positive(data_range, "data_range", allow_zero=False)
  _checks.check_positive(k1, "k1")
  _checks.check_positive(k2, "k2")
  win = _resolve_window(win_size, gaussian_weights, sigma)
  h, w = a.shape[-2:]
  if h < win or w < win:
    raise ValueError(
        f"The maps ({h}x{w}) are smaller than the {win}x{win} SSIM window; scikit-image raises "
        "here too. Pass a smaller odd win_size, or compare the maps after upsampling.")

  lead = a.shape[:-2]
  x = a.reshape((-1, h, w)).astype(jnp.float32)
  y = b.reshape((-1, h, w)).astype(jnp.float32)
  w1 = _window_weights(win, gaussian_weights, sigma)
  hv, wv = h - win + 1, w - win + 1
  taps = [(i, j, float(w1[i] * w1[j])) for i in range(win) for j in range(win)]

  def window_mean(f):
    # Weighted mean over every valid window of f(x_patch, y_patch): sum of shifted slices.
    return sum(wt * f(x[:, i:i + hv, j:j + wv], y[:, i:i + hv, j:j + wv]) for i, j, wt in taps)

  mu_x = window_mean(lambda p, q: p)
  mu_y = window_mean(lambda p, q: q)
  cov_norm = win * win / (win * win - 1.0)
  var_x = cov_norm * window_mean(lambda p, q: jnp.square(p - mu_x))
  var_y = cov_norm * window_mean(lambda p, q: jnp.square(q - mu_y))
  cov_xy = cov_norm * window_mean(lambda p, q: (p - mu_x) * (q - mu_y))
  c1 = (k1 * data_range) ** 2
  c2 = (k2 * data_range) ** 2
  s = ((2 * mu_x * mu_y + c1) * (2 * cov_xy + c2)) / (
      (mu_x ** 2 + mu_y ** 2 + c1) * (var_x + var_y + c2))
  return jnp.mean(s, axis=(-2, -1)).reshape(lead)
