"""The embedded default dataset: procedural 32x32 colour objects in clutter, no download.

The default job (and every test and smoke config) trains on this data so that nothing has to be
downloaded. It stands in for CIFAR-10 in the NG-EBM recipe (docs/method.rst, "The training
recipe"): 32x32x3 uint8 images, 10 classes, train / validation / test splits, plus per-image
object masks for the salience and focus work (arXiv 2303.11969, 2303.00818) and out-of-distribution
sets for the evaluation protocol (docs/method.rst; JEM section 5, Table 3).

Every image shows one object of its class, drawn as an anti-aliased signed-distance shape in
object coordinates (random centre, 6-11 px per object unit, so 12-22 px across; mostly upright,
tilted by up to 15 degrees and in 10% of the images turned by 90/180/270 degrees; aspect changed
by up to 15%), filled with a shaded colour, on a cluttered background. The classes
(``CLASS_NAMES``):

  0 disc      filled circle.
  1 ring      annulus; its thickness varies from thin to almost filled (a hole of 0.25 radius).
  2 square    filled square.
  3 triangle  filled equilateral triangle.
  4 cross     plus sign; arm thickness varies.
  5 star      five-pointed star; the depth of its notches varies (shallow: almost a pentagon).
  6 crescent  disc minus an offset disc; the bite varies from deep to under a pixel.
  7 bars      two parallel bars ("="); the gap varies from wide to under a pixel.
  8 stripes   a disc- or square-shaped patch of two-colour stripes (period 4-7 px).
  9 checker   a disc- or square-shaped patch of two-colour checkerboard (period 5-9 px).

Colour is a weak cue, as in natural images: a class's hue lies within +-0.12 of its own centre
(``i / 10`` on the hue circle), so any hue fits two or three classes; saturation and value are
random. Knowing the object's true mean colour (through its mask) gives about 39% accuracy; the
shape has to do the rest.

What makes it hard (so a small CNN does not reach 100% and calibration is measurable):
- Near-ambiguous pairs by construction: a ring with a tiny hole is a disc, a shallow star is
  almost a pentagon (a disc at small scale), a crescent with a sub-pixel bite is a disc, bars
  with a sub-pixel gap are a square, a stripes/checker patch with low texture contrast (down to
  0.2) under noise is a plain disc or square. At the smallest scale these details are a pixel
  or two wide, and blur, noise or an occluder can remove them entirely: irreducible error.
- Clutter: a low-frequency colour field as background, in a quarter of the images overlaid with
  a faint stripe/checker/dot texture (so texture alone does not mean "stripes" or "checker");
  each of 3 distractor slots (thin line segment or small blob, random colour, behind or in front
  of the object) is filled with probability 0.3; with probability 0.2 a bar-shaped occluder
  ("a pole") crosses the object, never over its centre.
- Photometric nuisances: the background's base colour is at least 0.3 (RGB distance) away from
  the object's but varies by +-0.3 across the image (low local contrast happens), a linear
  shading across the object, per-channel gain, brightness and contrast jitter, a light blur in
  25% of the images, Gaussian pixel noise with a per-image std of 0-6% of the range.
All of these are fields of ``Nuisances`` (defaults: ``DEFAULT_NUISANCES``), so a harder or easier
variant is one argument to ``generate``.

Measured difficulty (seed 0, 10,000 train / 2,000 test images, pixels scaled to [-1, 1], no
augmentation; 2 shared CPU cores): logistic regression on raw pixels 34% test, a one-hidden-layer
MLP (256 units, 60 epochs) 37%; a 5-layer ReLU CNN (widths 32-32-64-64-128, two stride-2 convs,
global average pooling, 0.2M parameters), Adam 1e-3, batch 64: 36% after 500 steps, 56% after
1,000, 68% after 1,500, 78% after 2,000 (train 85%, 20-bin ECE 3.6%); by 3,000 steps it
overfits 10,000 images (train 88%, test 75%, ECE 7.7%).

The mask of an image (``uint8 [32, 32]``, 0/1) marks the pixels where the object is visible:
its anti-aliased coverage is at least one half and no front distractor or occluder hides it.
The object's centre is never occluded, so a mask is never empty; objects may be cut by the image
border.

Determinism: everything is drawn from ``numpy.random.Generator(PCG64)`` seeded through
``numpy.random.SeedSequence``. The three splits use independent children of the base seed, so
changing ``num_train`` leaves the validation and test sets unchanged. Within a split, images are
generated in blocks of ``_BLOCK`` (100) from per-block child seeds, so a split of ``n`` images is
the first ``n`` images of any larger split with the same seed, and each block holds every class
exactly 10 times (labels are balanced up to the last partial block). Generation is vectorized
over the images of a block (about 2-3 s for the default 13,000 images on one core); nothing is
cached on disk; ``load`` keeps its last few results in an in-memory LRU cache (read-only arrays).

OOD sets (``ood_sets``), for offline evaluation of log p~(x), max p(y|x) and approximate mass:
  interp    pixel average (halves to even) of two distinct random in-distribution images,
            JEM's "interp" (the evaluator adds its extra noise,
            ``ood_data.TEST_NOISE_VARIANCE``).
  uniform   i.i.d. uniform noise in 0..255.
  constant  one random colour per image.
  digits    scikit-learn's real 8x8 handwritten digits (``load_digits``, shipped with
            scikit-learn, no download), bilinearly upscaled to 24x24 at a random position in the
            32x32 frame, random ink and paper colours, light noise: a semantically different set
            of real images, the role SVHN plays for a CIFAR-10 model (far OOD).
  shifted   this family's own renderer, backgrounds and nuisances with object kinds training
            never saw (``NOVEL_KINDS``: square frame, polka-dot patch, concentric target, half
            disc; any hue): the near-OOD set, the role CIFAR-100 plays for a CIFAR-10 model.

One job, one module: the generator, its splits and its OOD sets share the shape renderer, so
they stay together (about 600 lines, most of them the drawing of the ten shapes).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Sequence

import numpy as np

from ngebm_jax import _checks
from ngebm_jax.data import ood_data

NUM_CLASSES = 10
CLASS_NAMES = ("disc", "ring", "square", "triangle", "cross", "star", "crescent", "bars",
               "stripes", "checker")
# Object kinds the renderer knows but the classes never use: the "shifted" OOD set.
NOVEL_KINDS = ("frame", "dots", "target", "half_disc")
ALL_KINDS = CLASS_NAMES + NOVEL_KINDS
IMAGE_SHAPE = (32, 32, 3)
SPLITS = ("train", "validation", "test")

_SIZE = IMAGE_SHAPE[0]
_BLOCK = 100  # images per independently seeded block; a multiple of NUM_CLASSES

# Pixel centres, [1, H, W]: x grows to the right (columns), y downwards (rows).
_YS, _XS = np.meshgrid(np.arange(_SIZE, dtype=np.float32) + 0.5,
                       np.arange(_SIZE, dtype=np.float32) + 0.5, indexing="ij")
_XS, _YS = _XS[None], _YS[None]


# --------------------------------------------------------------------------------------------
# Signed distances (negative inside), in object units; shapes have a radius of about 1.


def _length(x, y):
  return np.sqrt(x * x + y * y)


def _box(u, v, hu, hv):
  qu, qv = np.abs(u) - hu, np.abs(v) - hv
  return _length(np.maximum(qu, 0), np.maximum(qv, 0)) + np.minimum(np.maximum(qu, qv), 0)


def _triangle(u, v, r):
  """Equilateral triangle with side 2r, centred on its centroid, a vertex pointing up (-v)."""
  k = np.float32(np.sqrt(3.0))
  px = np.abs(u) - r
  py = -v + r / k
  fold = px + k * py > 0
  px, py = np.where(fold, (px - k * py) / 2, px), np.where(fold, (-k * px - py) / 2, py)
  px = px - np.clip(px, -2 * r, 0)
  return -_length(px, py) * np.sign(py)


def _polar_star(u, v, inner, points=5):
  """Approximate distance to a star whose radius goes linearly from 1 (tips) to `inner`."""
  phi = np.arctan2(v, u) * (points / (2 * np.pi))
  tri = np.abs(phi - np.round(phi)) * 2  # 0 at tips, 1 between them
  radius = 1 - (1 - inner) * tri
  return (_length(u, v) - radius) * 0.6  # 0.6: the radial distance overestimates near notches


def _patch(u, v, is_disc):
  """A disc or a square of about the same area, per image."""
  return np.where(is_disc, _length(u, v) - 1, _box(u, v, 0.88, 0.88))


def _soft(x, sharp=1.5):
  """A periodic wave in [-1, 1] turned into a two-level pattern with soft edges, in [0, 1]."""
  return np.clip(0.5 + sharp * x, 0, 1)


def _kind_shape(kind: str, u, v, px, p):
  """Signed distance (object units) and texture mix in [0, 1] (or None) for one kind.

  u, v: [n, H, W] object coordinates; px: [n, 1, 1] pixels per object unit; p: [n, 4] uniform
  shape parameters, interpreted per kind.
  """
  q = [p[:, i, None, None].astype(np.float32) for i in range(p.shape[1])]
  r = _length(u, v)
  if kind == "disc":
    return r - 1, None
  if kind == "ring":
    width = 0.3 + 0.45 * q[0]  # 0.75: a hole of radius 0.25, a pixel or two at small scales
    return np.abs(r - (1 - width / 2)) - width / 2, None
  if kind == "square":
    return _box(u, v, 0.85, 0.85), None
  if kind == "triangle":
    return _triangle(u, v, 1.0), None
  if kind == "cross":
    t = 0.2 + 0.18 * q[0]
    return np.minimum(_box(u, v, 1.0, t), _box(u, v, t, 1.0)), None
  if kind == "star":
    return _polar_star(u, v, 0.4 + 0.35 * q[0]), None
  if kind == "crescent":
    depth = 0.08 + 0.62 * q[0]  # how far the bite reaches in; 0.08 is under a pixel
    bite = 0.6 + 0.25 * q[1]
    return np.maximum(r - 1, -(_length(u - (1 + bite - depth), v) - bite)), None
  if kind == "bars":
    half_width = 0.2 + 0.12 * q[0]
    gap = 0.12 + 0.45 * q[1]
    c = half_width + gap / 2
    return np.minimum(_box(u, v - c, 1.0, half_width), _box(u, v + c, 1.0, half_width)), None
  if kind in ("stripes", "checker", "dots"):
    shape = _patch(u, v, q[0] < 0.5)
    period = {"stripes": 4.0 + 3.0 * q[1], "checker": 5.0 + 4.0 * q[1],
              "dots": 4.0 + 2.0 * q[1]}[kind] / px  # pixels -> object units
    phase = 2 * np.pi * q[2]
    su, sv = (u / period) * 2 * np.pi + phase, (v / period) * 2 * np.pi + phase
    if kind == "stripes":
      mix = _soft(np.sin(su))
    elif kind == "checker":
      mix = _soft(np.sin(su) * np.sin(sv) * 2)
    else:
      mix = _soft((np.cos(su) + np.cos(sv) - 1.0) * 2)
    return shape, mix
  if kind == "frame":
    return np.abs(_box(u, v, 0.78, 0.78)) - (0.12 + 0.1 * q[0]), None
  if kind == "target":
    period = (3.5 + 2.0 * q[1]) / px
    return r - 1, _soft(np.cos(r / period * 2 * np.pi))
  if kind == "half_disc":
    return np.maximum(r - 1, v - 0.25), None
  raise ValueError(f"unknown object kind {kind!r}; known kinds: {ALL_KINDS}.")


def _texture(kind, u, v, period):
  """Background textures (stripes, checker, dots) in [0, 1]; u, v in pixels, period [n,1,1]."""
  su, sv = u / period * 2 * np.pi, v / period * 2 * np.pi
  return np.where(kind == 0, _soft(np.sin(su)),
                  np.where(kind == 1, _soft(np.sin(su) * np.sin(sv) * 2),
                           _soft((np.cos(su) + np.cos(sv) - 1.0) * 2)))


def _coverage(distance_px):
  """Anti-aliased coverage of a pixel from a signed distance in pixels."""
  return np.clip(0.5 - distance_px, 0, 1)


def _upsample_matrix(low: int, high: int) -> np.ndarray:
  """[high, low] bilinear interpolation weights (pixel centres aligned, edges clamped)."""
  pos = (np.arange(high) + 0.5) * low / high - 0.5
  lo = np.clip(np.floor(pos).astype(int), 0, low - 1)
  hi = np.clip(lo + 1, 0, low - 1)
  frac = np.where(pos < 0, 0, pos - np.floor(pos))
  m = np.zeros((high, low), np.float32)
  np.add.at(m, (np.arange(high), lo), 1 - frac)
  np.add.at(m, (np.arange(high), hi), frac)
  return m


_UP4 = _upsample_matrix(4, _SIZE)
_UP8_24 = _upsample_matrix(8, 24)


def _hsv_to_rgb(h, s, v):
  """[n] hue, saturation, value in [0, 1] -> [n, 3] RGB in [0, 1]."""
  k = (np.array([5.0, 3.0, 1.0], np.float32) + h[:, None] * 6) % 6
  return v[:, None] - (v * s)[:, None] * np.clip(np.minimum(k, 4 - k), 0, 1)


# Colour is a weak class cue, as in natural images: each class's hue is drawn from a band of
# half-width `Nuisances.hue_spread` (0.12) around its centre, i / 10, and the bands overlap so
# that any hue fits two or three classes. Novel kinds (the "shifted" OOD set) take any hue.
_HUE_CENTRES = {name: i / NUM_CLASSES for i, name in enumerate(CLASS_NAMES)}


def _rotate(dx, dy, angle):
  c, s = np.cos(angle), np.sin(angle)
  return c * dx + s * dy, -s * dx + c * dy


def _blend(canvas, colour, alpha, where=None):
  """Paints `colour` over `canvas` with coverage `alpha`, in place.

  canvas [n,H,W,3]; colour [n,1,1,3] or [n,H,W,3]; alpha [n,H,W]; where: optional [n] bool,
  the images to paint (the others are left alone, which saves the work).
  """
  if where is None:
    canvas += (colour - canvas) * alpha[..., None]
    return
  idx = np.flatnonzero(where)
  canvas[idx] += (colour[idx] - canvas[idx]) * alpha[idx, ..., None]


@dataclasses.dataclass(frozen=True)
class Nuisances:
  """What makes the images hard; the defaults are the embedded dataset's.

  Probabilities are per image (per distractor slot for `distractor_prob`); ranges are (low, high)
  of a uniform draw per image. `Nuisances.easy()` turns the clutter and noise off (for tests and
  debugging); the random draws keep the same order, so only the nuisances change.
  """
  scale_px: tuple[float, float] = (6.0, 11.0)  # pixels per object unit (about the radius)
  background_texture_prob: float = 0.25
  distractor_prob: float = 0.3  # each of 3 slots
  occluder_prob: float = 0.2
  blur_prob: float = 0.25
  noise_std: tuple[float, float] = (0.0, 0.06)  # fraction of the pixel range
  texture_contrast: tuple[float, float] = (0.2, 1.0)  # stripes/checker second colour
  min_colour_distance: float = 0.3  # object colour vs background base colour, RGB in [0, 1]
  max_tilt_deg: float = 15.0  # rotation around upright
  turn_prob: float = 0.1  # probability of an extra 90/180/270 degree turn
  hue_spread: float = 0.12  # half-width of a class's hue band (hue in [0, 1))

  @classmethod
  def easy(cls) -> Nuisances:
    return cls(scale_px=(8.0, 11.0), background_texture_prob=0.0, distractor_prob=0.0,
               occluder_prob=0.0, blur_prob=0.0, noise_std=(0.0, 0.0), texture_contrast=(0.8, 1.0))


DEFAULT_NUISANCES = Nuisances()


def _render(kind_ids: np.ndarray, kinds: Sequence[str], rng: np.random.Generator,
            nuisances: Nuisances):
  """Renders one block. kind_ids: [n] indices into `kinds`. Returns uint8 images and masks.

  Every random draw below has a size that depends only on n, never on which kinds are drawn, so
  a block's nuisances are the same whatever its labels are.
  """
  n = kind_ids.shape[0]
  f32 = np.float32

  def uniform(lo, hi, *shape):
    return rng.uniform(lo, hi, size=(n,) + shape).astype(f32)

  # The object's colour: a hue from its kind's band (a weak cue, see _HUE_CENTRES), random
  # saturation and value. The background's base colour differs from it by at least
  # `min_colour_distance` (per-channel steps reflected at the range ends keep the distance).
  centre = np.array([_HUE_CENTRES.get(k, 0.0) for k in kinds], np.float32)[kind_ids]
  spread = np.array([nuisances.hue_spread if k in _HUE_CENTRES else 0.5 for k in kinds],
                    np.float32)[kind_ids]
  hue = (centre + spread * rng.uniform(-1, 1, n).astype(f32)) % 1
  object_colour = _hsv_to_rgb(hue, uniform(0.45, 1.0), uniform(0.35, 1.0))[:, None, None, :]
  direction = rng.standard_normal((n, 1, 1, 3)).astype(f32)
  direction /= np.linalg.norm(direction, axis=-1, keepdims=True) + 1e-6
  step = direction * uniform(nuisances.min_colour_distance, 0.9, 1, 1, 1)
  base = np.where(np.abs(object_colour + step - 0.5) <= 0.5, object_colour + step,
                  object_colour - step)
  base = np.clip(base, 0, 1)

  # Background: a smooth colour field around the base colour, sometimes with a faint texture.
  field = base + uniform(-0.3, 0.3, 4, 4, 3)
  canvas = (_UP4 @ field.transpose(0, 3, 1, 2) @ _UP4.T).transpose(0, 2, 3, 1)
  has_texture = rng.random(n) < nuisances.background_texture_prob
  tex_kind = rng.integers(0, 3, n)[:, None, None]
  tex_period = uniform(3.0, 7.0, 1, 1)
  tu, tv = _rotate(_XS, _YS, uniform(0, np.pi, 1, 1))
  tex = _texture(tex_kind, tu, tv, tex_period)
  tex_colour = uniform(0.0, 1.0, 1, 1, 3)
  tex_alpha = uniform(0.05, 0.3, 1, 1) * has_texture[:, None, None]
  _blend(canvas, tex_colour, tex * tex_alpha, where=has_texture)

  # Distractors: line segments (capsules) and small blobs, each behind or in front of the object.
  num_distractors = 3
  d_active = rng.random((num_distractors, n)) < nuisances.distractor_prob
  d_front = rng.random((num_distractors, n)) < 0.5
  d_is_line = rng.random((num_distractors, n)) < 0.6
  d_xy = rng.uniform(2, _SIZE - 2, (num_distractors, n, 2, 1, 1)).astype(f32)
  d_angle = rng.uniform(0, np.pi, (num_distractors, n, 1, 1)).astype(f32)
  d_len = rng.uniform(2.5, 7.0, (num_distractors, n, 1, 1)).astype(f32)
  d_width = rng.uniform(0.5, 1.2, (num_distractors, n, 1, 1)).astype(f32)
  d_blob = rng.uniform(1.2, 2.5, (num_distractors, n, 1, 1)).astype(f32)
  d_colour = rng.uniform(0, 1, (num_distractors, n, 1, 1, 3)).astype(f32)
  d_alpha = []
  for j in range(num_distractors):
    du, dv = _rotate(_XS - d_xy[j, :, 0], _YS - d_xy[j, :, 1], d_angle[j])
    line = _length(du - np.clip(du, -d_len[j], d_len[j]), dv) - d_width[j]
    blob = _length(du, dv * 1.4) - d_blob[j]
    d_alpha.append(_coverage(np.where(d_is_line[j][:, None, None], line, blob)))
  for j in range(num_distractors):
    _blend(canvas, d_colour[j], d_alpha[j], where=d_active[j] & ~d_front[j])

  # The object.
  px = uniform(*nuisances.scale_px, 1, 1)  # pixels per object unit
  cx, cy = uniform(9.0, 23.0, 1, 1), uniform(9.0, 23.0, 1, 1)
  # Mostly upright (as CIFAR's objects are), sometimes upside down / sideways.
  angle = uniform(-1, 1, 1, 1) * np.float32(np.radians(nuisances.max_tilt_deg))
  turns = (rng.random((n, 1, 1)) < nuisances.turn_prob) * rng.integers(1, 4, (n, 1, 1))
  angle += (np.pi / 2 * turns).astype(f32)
  aspect = uniform(0.85, 1.15, 1, 1)
  params = rng.random((n, 4))
  ou, ov = _rotate(_XS - cx, _YS - cy, angle)
  ou, ov = ou / (px * aspect), ov * aspect / px
  distance = np.zeros((n, _SIZE, _SIZE), f32)
  mix = np.zeros((n, _SIZE, _SIZE), f32)
  has_mix = np.zeros(n, bool)
  for k, kind in enumerate(kinds):
    idx = np.flatnonzero(kind_ids == k)
    if idx.size == 0:
      continue
    d, m = _kind_shape(kind, ou[idx], ov[idx], px[idx], params[idx])
    distance[idx] = d
    if m is not None:
      mix[idx] = m
      has_mix[idx] = True
  obj_alpha = _coverage(distance * px)
  colour = object_colour
  # Shading: a linear brightness gradient across the object.
  shade_dir = uniform(0, 2 * np.pi, 1, 1)
  shade = uniform(0.0, 0.25, 1, 1) * (np.cos(shade_dir) * ou + np.sin(shade_dir) * ov)
  fill = colour + shade[..., None]
  # Textured kinds: second colour = first colour pushed away by a random contrast.
  second = uniform(0.0, 1.0, 1, 1, 3)
  contrast = uniform(*nuisances.texture_contrast, 1, 1, 1)
  second = colour + contrast * (second - colour)
  fill = np.where(has_mix[:, None, None, None], fill + (second - colour) * mix[..., None], fill)
  _blend(canvas, fill, obj_alpha)

  visible = obj_alpha
  for j in range(num_distractors):
    front = d_active[j] & d_front[j]
    _blend(canvas, d_colour[j], d_alpha[j], where=front)
    visible = visible * (1 - d_alpha[j] * front[:, None, None])

  # Occluder: a band ("pole") across the image, never over the object's centre.
  occluded = rng.random(n) < nuisances.occluder_prob
  o_angle = uniform(0, 2 * np.pi, 1, 1)
  o_offset = uniform(0.35, 0.8, 1, 1) * px
  o_width = uniform(2.0, 6.0, 1, 1)
  proj = np.cos(o_angle) * (_XS - cx) + np.sin(o_angle) * (_YS - cy)
  band = np.maximum(o_offset - proj, proj - o_offset - o_width)
  o_alpha = _coverage(band) * occluded[:, None, None]
  o_colour = uniform(0, 1, 1, 1, 3) + uniform(-0.08, 0.08, _SIZE, _SIZE, 3)
  _blend(canvas, o_colour, o_alpha, where=occluded)
  visible = visible * (1 - o_alpha)
  mask = (visible >= 0.5).astype(np.uint8)

  # Photometric jitter, blur, noise.
  gain = uniform(0.85, 1.15, 1, 1, 3)
  mean = canvas.mean(axis=(1, 2, 3), keepdims=True)
  contrast_gain, brightness = uniform(0.6, 1.2, 1, 1, 1), uniform(-0.12, 0.12, 1, 1, 1)
  canvas = (canvas - mean) * contrast_gain + mean * gain + brightness
  blurred = np.flatnonzero(rng.random(n) < nuisances.blur_prob)
  padded = np.pad(canvas[blurred], ((0, 0), (1, 1), (1, 1), (0, 0)), mode="edge")
  soft = (padded[:, :-2] + 2 * padded[:, 1:-1] + padded[:, 2:]) / 4  # binomial [1, 2, 1] / 4
  canvas[blurred] = (soft[:, :, :-2] + 2 * soft[:, :, 1:-1] + soft[:, :, 2:]) / 4
  noise = rng.standard_normal(canvas.shape, dtype=f32)
  noise *= uniform(*nuisances.noise_std, 1, 1, 1)
  canvas += noise
  canvas *= 255
  image = np.clip(np.round(canvas), 0, 255).astype(np.uint8)
  return image, mask


def _as_seed_sequence(seed) -> np.random.SeedSequence:
  if isinstance(seed, np.random.SeedSequence):
    return seed
  if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)) or seed < 0:
    raise ValueError(f"seed must be a non-negative integer or a SeedSequence; got {seed!r}.")
  return np.random.SeedSequence(int(seed))


def _children(seed, count: int) -> list[np.random.SeedSequence]:
  """The first `count` children of `seed`, as `SeedSequence.spawn` makes them.

  Unlike `spawn`, this neither depends on nor changes how many children were spawned before,
  so the same SeedSequence passed twice gives the same data twice.
  """
  seq = _as_seed_sequence(seed)
  return [np.random.SeedSequence(seq.entropy, spawn_key=seq.spawn_key + (i,),
                                 pool_size=seq.pool_size) for i in range(count)]


def generate(num_examples: int, *, seed, kinds: Sequence[str] = CLASS_NAMES,
             nuisances: Nuisances = DEFAULT_NUISANCES) -> dict[str, np.ndarray]:
  """Renders `num_examples` images of the given object kinds, balanced over kinds.

  Args:
    num_examples: how many images (>= 0).
    seed: a non-negative int or a `numpy.random.SeedSequence` (its children are derived by
      index, so passing the same SeedSequence twice gives the same images).
    kinds: object kinds (names from `ALL_KINDS`); label `i` means `kinds[i]`. The default is the
      ten classes; `NOVEL_KINDS` gives the "shifted" OOD objects.
    nuisances: clutter, noise and scale settings (`Nuisances`); the default is the dataset's.

  Returns:
    A dict of NumPy arrays, by key (a prefix of a larger call with the same seed and kinds).

    - `image`: uint8 `[N, 32, 32, 3]`;
    - `label`: int32 `[N]` in `[0, len(kinds))`;
    - `mask`: uint8 `[N, 32, 32]`, 1 where the object is visible.
  """
  if isinstance(num_examples, bool) or not isinstance(num_examples, (int, np.integer)) or (
      num_examples < 0):
    raise ValueError(f"num_examples must be a non-negative integer; got {num_examples!r}.")
  kinds = tuple(kinds)
  unknown = [k for k in kinds if k not in ALL_KINDS]
  if not kinds or unknown:
    raise ValueError(f"kinds must be a non-empty sequence of names from {ALL_KINDS}; "
                     f"got {kinds!r}.")
  num_blocks = -(-int(num_examples) // _BLOCK)
  images, labels, masks = [], [], []
  for block_seq in _children(seed, num_blocks):
    rng = np.random.Generator(np.random.PCG64(block_seq))
    # Each kind the same number of times per block (up to the remainder), in random order.
    block_labels = rng.permutation(np.arange(_BLOCK) % len(kinds)).astype(np.int32)
    image, mask = _render(block_labels, kinds, rng, nuisances)
    images.append(image)
    labels.append(block_labels)
    masks.append(mask)
  if not num_blocks:
    return {"image": np.zeros((0,) + IMAGE_SHAPE, np.uint8), "label": np.zeros((0,), np.int32),
            "mask": np.zeros((0, _SIZE, _SIZE), np.uint8)}
  return {"image": np.concatenate(images)[:num_examples],
          "label": np.concatenate(labels)[:num_examples],
          "mask": np.concatenate(masks)[:num_examples]}


@functools.lru_cache(maxsize=4)
def _load_cached(seed: int, num_train: int, num_validation: int, num_test: int,
                 nuisances: Nuisances):
  split_seeds = _children(seed, len(SPLITS))
  sizes = {"train": num_train, "validation": num_validation, "test": num_test}
  out = {}
  for name, split_seed in zip(SPLITS, split_seeds):
    data = generate(sizes[name], seed=split_seed, nuisances=nuisances)
    for array in data.values():
      array.flags.writeable = False  # shared by the cache: callers must copy to modify
    out[name] = data
  return out


def load(*, seed: int = 0, num_train: int = 10_000, num_validation: int = 1_000,
         num_test: int = 2_000, nuisances: Nuisances = DEFAULT_NUISANCES
         ) -> dict[str, dict[str, np.ndarray]]:
  """The embedded dataset: {'train', 'validation', 'test'} -> {'image', 'label', 'mask'}.

  Args:
    seed: base seed (non-negative int); each split uses its own child seed, so one split's size
      never changes another split's images.
    num_train, num_validation, num_test: split sizes (non-negative ints).
    nuisances: clutter, noise and scale settings; the default is the dataset's.

  Returns:
    For each split: 'image' uint8 [N, 32, 32, 3], 'label' int32 [N] in [0, 10), 'mask' uint8
    [N, 32, 32] in {0, 1}. The arrays are read-only (they are shared through an in-memory cache);
    use `np.array(a)` for a writable copy. A fresh dict is returned on each call.
  """
  if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)) or seed < 0:
    raise ValueError(f"seed must be a non-negative integer; got {seed!r}.")
  for name, value in (("num_train", num_train), ("num_validation", num_validation),
                      ("num_test", num_test)):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
      raise ValueError(f"{name} must be a non-negative integer; got {value!r}.")
  if not isinstance(nuisances, Nuisances):
    raise ValueError(f"nuisances must be a Nuisances; got {type(nuisances).__name__}.")
  cached = _load_cached(int(seed), int(num_train), int(num_validation), int(num_test),
                        nuisances)
  return {split: dict(arrays) for split, arrays in cached.items()}


# --------------------------------------------------------------------------------------------
# Out-of-distribution sets.

OOD_SET_NAMES = ("interp", "uniform", "constant", "digits", "shifted")


@functools.lru_cache(maxsize=1)
def _digits_8x8() -> np.ndarray:
  from sklearn.datasets import load_digits  # pylint: disable=g-import-not-at-top
  return (load_digits().images / 16.0).astype(np.float32)  # [1797, 8, 8] in [0, 1]


def _digits(rng: np.random.Generator, m: int) -> np.ndarray:
  digits = _digits_8x8()
  pick = rng.permutation(digits.shape[0])[:m] if m <= digits.shape[0] else rng.integers(
      0, digits.shape[0], m)
  # Bilinear 8x8 -> 24x24 (the digit), placed at a random offset in a 32x32 canvas.
  ink = _UP8_24 @ digits[pick] @ _UP8_24.T  # [m, 24, 24]
  canvas = np.zeros((m, _SIZE, _SIZE), np.float32)
  oy, ox = rng.integers(0, 9, m), rng.integers(0, 9, m)
  rows = oy[:, None] + np.arange(24)[None]  # [m, 24]
  cols = ox[:, None] + np.arange(24)[None]
  canvas[np.arange(m)[:, None, None], rows[:, :, None], cols[:, None, :]] = ink
  fg = rng.uniform(0, 1, (m, 1, 1, 3)).astype(np.float32)
  bg = rng.uniform(0, 1, (m, 1, 1, 3)).astype(np.float32)
  image = bg + (fg - bg) * canvas[..., None]
  image = image + rng.uniform(0.0, 0.04, (m, 1, 1, 1)) * rng.standard_normal(image.shape)
  return np.clip(np.round(image * 255), 0, 255).astype(np.uint8)


def ood_sets(images_uint8: np.ndarray, *, seed, num_examples: int | None = None,
             names: Sequence[str] = OOD_SET_NAMES) -> dict[str, np.ndarray]:
  """Out-of-distribution sets for the embedded data (see the module docstring).

  Args:
    images_uint8: uint8 [N, 32, 32, 3] in-distribution images (normally the test split); used by
      "interp" (N >= 2).
    seed: non-negative int or `numpy.random.SeedSequence`; each set uses its own child seed.
    num_examples: images per set, M; default N.
    names: the sets to generate, a subset of `OOD_SET_NAMES` (each is the same whatever the
      others: its child seed is fixed by its name). An evaluation without OOD detection asks
      for none, and so does not import scikit-learn for "digits".

  Returns:
    {name: uint8 [M, 32, 32, 3]} for `names`.
  """
  unknown = sorted(set(names) - set(OOD_SET_NAMES))
  if unknown:
    raise ValueError(f"OOD sets {unknown} do not exist for the embedded data; choose from "
                     f"{list(OOD_SET_NAMES)}.")
  images = np.asarray(images_uint8)
  if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != IMAGE_SHAPE:
    raise ValueError(f"images_uint8 must be uint8 [N, 32, 32, 3]; got {images.dtype} "
                     f"{images.shape}.")
  m = images.shape[0] if num_examples is None else num_examples
  _checks.check_positive_int(m, "num_examples")
  m = int(m)
  seqs = dict(zip(OOD_SET_NAMES, _children(seed, len(OOD_SET_NAMES))))
  rngs = {k: np.random.Generator(np.random.PCG64(s)) for k, s in seqs.items()}
  makers = {
      "interp": lambda: ood_data.interp(images, rngs["interp"], m),
      "uniform": lambda: ood_data.uniform_images(rngs["uniform"], m, IMAGE_SHAPE),
      "constant": lambda: ood_data.constant_images(rngs["constant"], m, IMAGE_SHAPE),
      "digits": lambda: _digits(rngs["digits"], m),
      "shifted": lambda: generate(m, seed=seqs["shifted"], kinds=NOVEL_KINDS)["image"],
  }
  return {name: makers[name]() for name in names}


__all__ = ["NUM_CLASSES", "CLASS_NAMES", "NOVEL_KINDS", "ALL_KINDS", "IMAGE_SHAPE", "SPLITS",
           "OOD_SET_NAMES", "load", "generate", "ood_sets"]
