"""An embedded, procedural "authentic vs. generated" task with human annotation maps.

The focus papers (CYBORG, WACV 2023; arXiv 2303.00818; FOCUS.md) train binary real-vs-synthetic
face detectors with human salience maps and test them on images from generators never seen in
training. Face data and human annotations cannot be had offline, so this module renders a task
with the same structure, deterministically from a seed, in a few seconds:

- **Authentic images** (label 0): 32x32 RGB procedural scenes: a linear colour gradient, a 1/f^beta
  ("natural") texture, a few small distractor shapes, and one larger salient object (a shaded,
  textured ellipse), then a mild optical blur and per-image Gaussian sensor noise.
- **Generated images** (label 1): a scene from the same distribution carrying one localized
  *generator artifact* inside a rectangle (10 to 16 px a side) whose position and size differ
  per image. Pixels outside the rectangle are exactly those of the authentic rendering. Kinds
  (amplitudes in grey levels at `strength=1`):
    - `checkerboard`: a period-2 pattern (a random zero-mean 2x2 tile), the signature of
      strided transposed convolutions; amplitude 15-35.
    - `seam`: the region is copied from 5-10 px away in the same image and pasted, mean-colour
      matched up to a residual offset (std 12 per channel), with a hard or 1-px blended border:
      a blending seam, a content discontinuity.
    - `blockiness`: JPEG-like block-DCT quantization (4x4 or 8x8 blocks on the image grid;
      coefficient (u, v) quantized with step `q (1 + u + v)`, q in 50-110) inside the region, as
      in a spliced, recompressed patch.
    - `noise`: extra Gaussian noise (std 25-50): a local noise-level inconsistency.
    - `spectral`: a localized oblique sinusoid of 0.2-0.4 cycles/px (a spectral peak of
      up-sampling), amplitude 15-35.
    - `blur`: the region is over-smoothed (Gaussian, sigma 2-4 px): texture, edges and sensor
      noise vanish locally.
    - `color_shift`: a soft-edged local colour cast (chroma 30-60, luma offset std 8).
  Artifact windows taper over 1-3 px (none for blockiness) so that only `seam` adds an edge.
  Why these amplitudes: near the noise floor (a few grey levels) a small CNN trained from scratch
  stays at chance for thousands of steps (the gradient of a zero-mean local pattern through
  global average pooling is second order in its amplitude). At `strength=1` the SmallCNN of
  configs/focus.py (width 16, 4,000 steps of 32, crop + flip) trained with cross-entropy reaches
  closed-set AUROC about 0.90 (checkerboard and noise 1.0, seam 0.75-0.77, blockiness 0.82-0.87)
  while open-set AUROC stays at 0.56-0.59 (spectral about 0.7, blur about 0.55, colour shift
  below 0.5). `strength` < 1 makes every kind subtler (for bigger models and budgets).
- **Human annotation maps** `[32, 32]` float32 in [0, 1]: the artifact rectangle for generated
  images, the salient object for authentic ones (where a person would look to decide), made
  imprecise as human maps are: randomly dilated (0-2 px), shifted (up to 2 px each way) and
  blurred (sigma 1-2 px), then scaled to a maximum of 1.
- **Open set**: `train`, `validation` and `test` use `train_kinds`; `open_set_test` uses
  `open_set_kinds`, which must be disjoint from them. Defaults: trained on checkerboard, seam,
  blockiness and noise; tested open-set on spectral (a relative of checkerboard: high-frequency,
  periodic), blur (the reverse of noise: a local noise-level inconsistency) and colour shift (no
  trained relative). The gap between closed- and open-set AUROC of a cross-entropy model (above)
  is what the focus losses of FOCUS.md try to close.

Every split holds exactly `n // 2` generated images, the kinds of a split in equal numbers (up to
one), in random order. Each split draws from its own stream, `np.random.default_rng([seed, i])`,
so a split does not change when the size of another one does.

Images are uint8 like the other embedded datasets; scale with `x / 127.5 - 1` for the models.

One job, one module: the scenes, the artifact kinds and the human maps are one generator,
so they stay together (a little over 400 lines).
"""

from __future__ import annotations

import functools
from typing import Sequence

import numpy as np

IMAGE_SIZE = 32
NUM_CLASSES = 2  # 0 = authentic, 1 = generated
KINDS = ("checkerboard", "seam", "blockiness", "noise", "spectral", "blur", "color_shift")
DEFAULT_TRAIN_KINDS = ("checkerboard", "seam", "blockiness", "noise")
DEFAULT_OPEN_SET_KINDS = ("spectral", "blur", "color_shift")
SPLITS = ("train", "validation", "test", "open_set_test")
AUTHENTIC_KIND = -1  # value of `kind` for authentic images

_N = IMAGE_SIZE
_YY, _XX = np.mgrid[0:_N, 0:_N].astype(np.float32) + 0.5  # pixel centres


# ----------------------------------------------------------------------------------- helpers --

def _blur_matrices(sigma: np.ndarray) -> np.ndarray:
  """`[n, N, N]` row-normalized 1-D Gaussian blur matrices, one per sigma (> 0)."""
  d = np.arange(_N, dtype=np.float32)
  d = d[:, None] - d[None, :]
  g = np.exp(-0.5 * (d[None] / np.maximum(sigma, 1e-3)[:, None, None].astype(np.float32)) ** 2)
  return g / g.sum(axis=-1, keepdims=True)


def _blur(images: np.ndarray, sigma: np.ndarray) -> np.ndarray:
  """Separable Gaussian blur of `[n, N, N]` or `[n, N, N, C]` with one sigma per image."""
  g = _blur_matrices(sigma)
  if images.ndim == 3:
    return np.einsum("nij,njk,nlk->nil", g, images, g, optimize=True)
  return np.einsum("nij,njkc,nlk->nilc", g, images, g, optimize=True)


def _pink_noise(rng: np.random.Generator, n: int, beta: np.ndarray) -> np.ndarray:
  """`[n, N, N]` fields with amplitude spectrum `1 / f^beta`, zero mean, unit std."""
  fy = np.fft.fftfreq(_N)[:, None]
  fx = np.fft.rfftfreq(_N)[None, :]
  f = np.sqrt(fx ** 2 + fy ** 2)
  f[0, 0] = 1.0
  spectrum = rng.normal(size=(n, _N, _N // 2 + 1)) + 1j * rng.normal(size=(n, _N, _N // 2 + 1))
  spectrum = spectrum / f[None] ** beta[:, None, None]
  spectrum[:, 0, 0] = 0.0
  field = np.fft.irfft2(spectrum, s=(_N, _N)).astype(np.float32)
  return field / field.std(axis=(1, 2), keepdims=True)


def _ellipse_coverage(cx, cy, a, b, angle) -> np.ndarray:
  """Antialiased coverage `[n, N, N]` in [0, 1] of rotated ellipses; arguments are `[n]`."""
  f32 = lambda v: np.asarray(v, np.float32)[:, None, None]
  dx, dy = _XX[None] - f32(cx), _YY[None] - f32(cy)
  c, s = f32(np.cos(angle)), f32(np.sin(angle))
  u, v = (c * dx + s * dy) / f32(a), (-s * dx + c * dy) / f32(b)
  r = np.sqrt(u * u + v * v)
  # Signed distance to the border, in pixels, approximated along the short axis.
  dist = (r - 1.0) * f32(np.minimum(a, b))
  return np.clip(0.5 - dist, 0.0, 1.0, dtype=np.float32)


def _shift_images(images: np.ndarray, dy: np.ndarray, dx: np.ndarray) -> np.ndarray:
  """`out[i, y, x] = images[i, y - dy[i], x - dx[i]]`, edges replicated."""
  n = images.shape[0]
  ys = np.clip(np.arange(_N)[None, :] - dy[:, None], 0, _N - 1)
  xs = np.clip(np.arange(_N)[None, :] - dx[:, None], 0, _N - 1)
  return images[np.arange(n)[:, None, None], ys[:, :, None], xs[:, None, :]]


def _shift(maps: np.ndarray, dy: np.ndarray, dx: np.ndarray) -> np.ndarray:
  """Shift each `[N, N]` map by integer `(dy, dx)`, filling with zeros."""
  n = maps.shape[0]
  ys = np.arange(_N)[None, :] - dy[:, None]
  xs = np.arange(_N)[None, :] - dx[:, None]
  valid = ((ys >= 0) & (ys < _N))[:, :, None] & ((xs >= 0) & (xs < _N))[:, None, :]
  out = maps[np.arange(n)[:, None, None], np.clip(ys, 0, _N - 1)[:, :, None],
             np.clip(xs, 0, _N - 1)[:, None, :]]
  return np.where(valid, out, 0.0).astype(np.float32)


def _dilate(maps: np.ndarray, steps: np.ndarray) -> np.ndarray:
  """3x3 max-filter each map `steps[i]` times (`steps` small integers)."""
  out = maps.copy()
  for step in range(int(steps.max(initial=0))):
    padded = np.pad(out, ((0, 0), (1, 1), (1, 1)))
    grown = np.max(np.stack([padded[:, i:i + _N, j:j + _N] for i in range(3) for j in range(3)]),
                   axis=0)
    out = np.where((steps > step)[:, None, None], grown, out)
  return out


def _dct_matrix(size: int) -> np.ndarray:
  k = np.arange(size)[:, None]
  i = np.arange(size)[None, :]
  d = np.sqrt(2.0 / size) * np.cos(np.pi * (2 * i + 1) * k / (2 * size))
  d[0] /= np.sqrt(2.0)
  return d.astype(np.float32)


def _block_quantize(images: np.ndarray, block: int, step: np.ndarray) -> np.ndarray:
  """JPEG-like: block DCT, quantize coefficient (u, v) with `step * (1 + u + v)`, inverse."""
  n = images.shape[0]
  d = _dct_matrix(block)
  nb = _N // block
  blocks = images.reshape(n, nb, block, nb, block, 3)
  coef = np.einsum("ui,nairjc,vj->naurvc", d, blocks, d, optimize=True)
  u = np.arange(block)
  q = step[:, None, None, None, None, None] * (1.0 + u[None, None, :, None, None, None]
                                               + u[None, None, None, None, :, None])
  coef = np.round(coef / q) * q
  out = np.einsum("ui,naurvc,vj->nairjc", d, coef, d, optimize=True)
  return out.reshape(n, _N, _N, 3).astype(np.float32)


# ------------------------------------------------------------------------------------ scenes --

def _render_scenes(rng: np.random.Generator, n: int):
  """Authentic renderings: `(images float32 [n, N, N, 3] in about [0, 255], object [n, N, N])`.

  `object` is the boolean mask of the salient object (coverage >= 1/2).
  """
  # Background: a linear gradient between two colours.
  theta = rng.uniform(0, 2 * np.pi, n)
  c1 = rng.uniform(30, 225, (n, 3))
  c2 = np.clip(c1 + rng.normal(0, 45, (n, 3)), 0, 255)
  t = ((_XX[None] - _N / 2) * np.cos(theta)[:, None, None]
       + (_YY[None] - _N / 2) * np.sin(theta)[:, None, None]) / _N + 0.5
  t = t.astype(np.float32)[..., None]
  img = (c1.astype(np.float32)[:, None, None, :] * (1 - t)
         + c2.astype(np.float32)[:, None, None, :] * t)
  # Natural texture: 1/f^beta, mostly luminance with a slight tint.
  texture = _pink_noise(rng, n, rng.uniform(1.2, 2.2, n))
  tint = (1.0 + 0.15 * rng.normal(size=(n, 1, 1, 3))).astype(np.float32)
  img += (rng.uniform(4, 18, (n, 1, 1, 1)).astype(np.float32) * texture[..., None]) * tint

  # Distractors: up to three small ellipses.
  for _ in range(3):
    present = rng.random(n) < 0.7
    cov = _ellipse_coverage(rng.uniform(2, _N - 2, n), rng.uniform(2, _N - 2, n),
                            rng.uniform(1.5, 4, n), rng.uniform(1.5, 4, n),
                            rng.uniform(0, np.pi, n))
    cov *= (present * rng.uniform(0.4, 1.0, n))[:, None, None]
    color = rng.uniform(20, 235, (n, 1, 1, 3)).astype(np.float32)
    cov = cov[..., None]
    img += cov * (color - img)

  # Salient object: a shaded, textured ellipse contrasting with the background.
  cx, cy = rng.uniform(9, _N - 9, n), rng.uniform(9, _N - 9, n)
  a, b, angle = rng.uniform(4, 8, n), rng.uniform(4, 8, n), rng.uniform(0, np.pi, n)
  cov = _ellipse_coverage(cx, cy, a, b, angle)
  color = rng.uniform(20, 235, (n, 3))
  background_mean = (c1 + c2) / 2
  too_close = np.linalg.norm(color - background_mean, axis=-1) < 80
  color[too_close] = 255 - color[too_close]
  light = rng.uniform(0, 2 * np.pi, n)
  f32 = lambda v: np.asarray(v, np.float32)[:, None, None]
  shade = 1.0 + 0.3 * ((_XX[None] - f32(cx)) * f32(np.cos(light))
                       + (_YY[None] - f32(cy)) * f32(np.sin(light))) / f32(np.maximum(a, b))
  obj = color.astype(np.float32)[:, None, None, :] * shade[..., None]
  obj += (f32(rng.uniform(3, 10, n)) * _pink_noise(rng, n, np.full(n, 1.2)))[..., None]
  img += cov[..., None] * (obj - img)
  object_mask = cov >= 0.5

  # Camera: mild optical blur, then sensor noise.
  img = _blur(img, rng.uniform(0.3, 0.7, n))
  img += (rng.uniform(1.0, 3.0, (n, 1, 1, 1)).astype(np.float32)
          * rng.standard_normal(img.shape, dtype=np.float32))
  return img, object_mask


# --------------------------------------------------------------------------------- artifacts --

def _rectangles(rng: np.random.Generator, n: int):
  """Artifact regions: `(inside bool [n,N,N], border distance float [n,N,N])`."""
  h, w = rng.integers(10, 17, n), rng.integers(10, 17, n)
  y0, x0 = rng.integers(0, _N - h + 1), rng.integers(0, _N - w + 1)
  yy, xx = np.arange(_N)[None, :, None], np.arange(_N)[None, None, :]
  dist = np.minimum(
      np.minimum(yy - y0[:, None, None], (y0 + h - 1)[:, None, None] - yy),
      np.minimum(xx - x0[:, None, None], (x0 + w - 1)[:, None, None] - xx))
  return dist >= 0, dist.astype(np.float32)


def _window(dist: np.ndarray, taper: np.ndarray) -> np.ndarray:
  """Blend weight `[n, N, N]`: 0 outside, rising over `taper[i]` px from the border to 1."""
  ramp = np.clip((dist + 1.0) / (taper[:, None, None] + 1.0), 0.0, 1.0)
  ramp = ramp * ramp * (3 - 2 * ramp)  # smoothstep: no new edge at the taper's end
  return np.where(dist >= 0, ramp, 0.0).astype(np.float32)


def _apply_artifact(rng: np.random.Generator, kind: str, x: np.ndarray, dist: np.ndarray,
                    strength: float) -> np.ndarray:
  """The generated version of clean images `x [m, N, N, 3]` within regions at `dist >= 0`."""
  m = x.shape[0]
  if kind == "checkerboard":
    tile = rng.normal(size=(m, 2, 2))
    tile = (tile - tile.mean(axis=(1, 2), keepdims=True))
    tile /= np.abs(tile).max(axis=(1, 2), keepdims=True)
    pattern = tile[:, np.arange(_N)[:, None] % 2, np.arange(_N)[None, :] % 2]
    delta = (strength * rng.uniform(15.0, 35.0, (m, 1, 1, 1)) * pattern[..., None]
             * (1 + 0.2 * rng.normal(size=(m, 1, 1, 3))))
    w = _window(dist, np.full(m, 2.0))
    return x + w[..., None] * delta
  if kind == "spectral":
    freq, orient = rng.uniform(0.2, 0.4, m), rng.uniform(0, np.pi, m)
    phase = rng.uniform(0, 2 * np.pi, m)
    arg = 2 * np.pi * freq[:, None, None] * (_XX[None] * np.cos(orient)[:, None, None]
                                             + _YY[None] * np.sin(orient)[:, None, None])
    wave = np.sin(arg + phase[:, None, None])
    delta = strength * rng.uniform(15.0, 35.0, (m, 1, 1, 1)) * wave[..., None]
    w = _window(dist, np.full(m, 2.0))
    return x + w[..., None] * delta
  if kind == "noise":
    delta = strength * rng.uniform(25.0, 50.0, (m, 1, 1, 1)) * rng.normal(size=x.shape)
    w = _window(dist, np.full(m, 1.0))
    return x + w[..., None] * delta
  if kind == "color_shift":
    chroma = rng.normal(size=(m, 3))
    chroma -= chroma.mean(axis=1, keepdims=True)
    chroma /= np.linalg.norm(chroma, axis=1, keepdims=True)
    shift = strength * (chroma * rng.uniform(30, 60, (m, 1)) + rng.normal(0, 8, (m, 1)))
    w = _window(dist, np.full(m, 3.0))
    return x + w[..., None] * shift[:, None, None, :]
  if kind == "blur":
    w = _window(dist, np.full(m, 1.0))
    return x + w[..., None] * (_blur(x, strength * rng.uniform(2.0, 4.0, m)) - x)
  if kind == "blockiness":
    out = np.empty_like(x)
    block = rng.choice(np.array([4, 8]), m)
    step = strength * rng.uniform(50.0, 110.0, m)
    for size in (4, 8):
      sel = block == size
      if sel.any():
        out[sel] = _block_quantize(x[sel], size, step[sel])
    w = _window(dist, np.zeros(m))
    return x + w[..., None] * (out - x)
  if kind == "seam":
    # Copy-move: the patch comes from 5-10 px away in the same image (same texture statistics),
    # so the tell is the discontinuity along the border, not a foreign colour.
    radius, direction = rng.uniform(5, 10, m), rng.uniform(0, 2 * np.pi, m)
    donor = _shift_images(x, np.round(radius * np.sin(direction)).astype(int),
                          np.round(radius * np.cos(direction)).astype(int))
    inside = (dist >= 0)[..., None]
    count = inside.sum(axis=(1, 2), keepdims=True)
    mean_x = (x * inside).sum(axis=(1, 2), keepdims=True) / count
    mean_d = (donor * inside).sum(axis=(1, 2), keepdims=True) / count
    # Imperfect colour matching, as in face swaps: a residual offset per channel.
    patch = donor - mean_d + mean_x + strength * rng.normal(0, 12, (m, 1, 1, 3))
    w = min(strength, 1.0) * _window(dist, rng.integers(0, 2, m).astype(np.float32))
    return x + w[..., None] * (patch - x)
  raise ValueError(f"unknown artifact kind {kind!r}; known kinds: {KINDS}.")


def _human_maps(rng: np.random.Generator, regions: np.ndarray) -> np.ndarray:
  """Imprecise annotations of binary `regions [n, N, N]`: dilate, shift, blur; max 1."""
  n = regions.shape[0]
  maps = _dilate(regions.astype(np.float32), rng.integers(0, 3, n))
  maps = _shift(maps, rng.integers(-2, 3, n), rng.integers(-2, 3, n))
  maps = _blur(maps, rng.uniform(1.0, 2.0, n))
  peak = maps.max(axis=(1, 2), keepdims=True)
  return np.clip(maps / np.where(peak > 0, peak, 1.0), 0.0, 1.0).astype(np.float32)


# ------------------------------------------------------------------------------------ public --

def _check_kinds(kinds: Sequence[str], name: str) -> tuple[str, ...]:
  if isinstance(kinds, str):
    raise ValueError(f"{name} must be a sequence of kind names, not the string {kinds!r}.")
  kinds = tuple(kinds)
  if not kinds:
    raise ValueError(f"{name} is empty; give at least one of {KINDS}.")
  unknown = [k for k in kinds if k not in KINDS]
  if unknown:
    raise ValueError(f"{name} has unknown artifact kinds {unknown}; known kinds: {KINDS}.")
  if len(set(kinds)) != len(kinds):
    raise ValueError(f"{name} lists a kind twice: {kinds}.")
  return kinds


def generate(num_examples: int, *, kinds: Sequence[str], seed, strength: float = 1.0,
             include_clean: bool = False):
  """One split of the task.

  Args:
    num_examples: number of images `n >= 0`; `n // 2` of them are generated.
    kinds: artifact kinds of the generated images (names from `KINDS`), used equally often.
    seed: anything `np.random.default_rng` accepts (an int, a list of ints).
    strength: difficulty knob (> 0; 1 = the documented ranges): multiplies the amplitude of the
      additive artifacts, the blur sigma and the quantization step; below 1 it also fades seams.
    include_clean: also return `clean_image`, the authentic rendering each image was made from
      (equal to `image` for authentic images), for tests and figures.

  Returns:
    dict of numpy arrays: `image` uint8 `[n, 32, 32, 3]`; `label` int32 `[n]` (1 = generated);
    `human_map` float32 `[n, 32, 32]` in [0, 1]; `artifact_mask` uint8 `[n, 32, 32]` (1 where
    the artifact may change pixels; all 0 for authentic images); `object_mask` uint8
    `[n, 32, 32]` (the salient object); `kind` int32 `[n]` (index into `KINDS`, -1 =
    authentic); and `clean_image` uint8 when asked for.
  """
  kinds = _check_kinds(kinds, "kinds")
  if int(num_examples) != num_examples or num_examples < 0:
    raise ValueError(f"num_examples must be a non-negative integer; got {num_examples}.")
  if not np.isfinite(strength) or strength <= 0:
    raise ValueError(f"strength must be a finite number > 0; got {strength}.")
  n = int(num_examples)
  rng = np.random.default_rng(seed)
  clean, object_mask = _render_scenes(rng, n)

  num_generated = n // 2
  order = rng.permutation(n)
  generated_idx = order[:num_generated]
  label = np.zeros(n, np.int32)
  label[generated_idx] = 1
  kind = np.full(n, AUTHENTIC_KIND, np.int32)
  kind_ids = np.array([KINDS.index(k) for k in kinds], np.int32)
  kind[generated_idx] = kind_ids[rng.permutation(np.arange(num_generated) % len(kinds))]

  inside, dist = _rectangles(rng, n)
  inside &= (label == 1)[:, None, None]
  image = clean.copy()
  for kind_id in kind_ids:
    sel = np.flatnonzero(kind == kind_id)
    if sel.size:
      image[sel] = _apply_artifact(rng, KINDS[kind_id], clean[sel], dist[sel],
                                   float(strength))

  regions = np.where((label == 1)[:, None, None], inside, object_mask)
  out = {
      "image": np.clip(np.round(image), 0, 255).astype(np.uint8),
      "label": label,
      "human_map": _human_maps(rng, regions),
      "artifact_mask": inside.astype(np.uint8),
      "object_mask": object_mask.astype(np.uint8),
      "kind": kind,
  }
  if include_clean:
    out["clean_image"] = np.clip(np.round(clean), 0, 255).astype(np.uint8)
  return out


def load(*, seed: int = 0, train_kinds: Sequence[str] = DEFAULT_TRAIN_KINDS,
         open_set_kinds: Sequence[str] = DEFAULT_OPEN_SET_KINDS, num_train: int = 10000,
         num_validation: int = 1000, num_test: int = 2000, num_open_set_test: int = 2000,
         strength: float = 1.0):
  """All four splits: `dict split -> dict of arrays` (see `generate` for the fields).

  `train`, `validation` and `test` carry `train_kinds`; `open_set_test` carries
  `open_set_kinds` only, which must not overlap `train_kinds`. Split `i` (in `SPLITS` order) is
  drawn from `np.random.default_rng([seed, i])`.

  The last two results are cached (the trainer and the evaluators ask for the same data): the
  arrays are read-only, the dicts are fresh copies.
  """
  train_kinds = _check_kinds(train_kinds, "train_kinds")
  open_set_kinds = _check_kinds(open_set_kinds, "open_set_kinds")
  shared = sorted(set(train_kinds) & set(open_set_kinds))
  if shared:
    raise ValueError(f"open_set_kinds must be unseen in training; {shared} are in both "
                     f"train_kinds and open_set_kinds.")
  splits = _load_cached(int(seed), train_kinds, open_set_kinds, int(num_train),
                        int(num_validation), int(num_test), int(num_open_set_test),
                        float(strength))
  return {split: dict(arrays) for split, arrays in splits.items()}


@functools.lru_cache(maxsize=2)  # a default dataset is ~135 MB
def _load_cached(seed, train_kinds, open_set_kinds, num_train, num_validation, num_test,
                 num_open_set_test, strength):
  sizes = {"train": num_train, "validation": num_validation, "test": num_test,
           "open_set_test": num_open_set_test}
  splits = {
      split: generate(sizes[split], seed=[seed, i], strength=strength,
                      kinds=open_set_kinds if split == "open_set_test" else train_kinds)
      for i, split in enumerate(SPLITS)
  }
  for arrays in splits.values():
    for a in arrays.values():
      a.flags.writeable = False
  return splits
