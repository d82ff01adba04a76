"""Input perturbations of the salience measures of Explain2Me (arXiv 2303.11969).

- `salt_and_pepper`: the out-of-set inputs of measure (b): a fraction `amount` of the channel
  values (scikit-image's rule, the authors' code) or of the whole pixels of each image replaced by
  black or white.
- `equivariance_transforms`: the 12 geometric transforms of measure (c): horizontal and vertical
  flips, rotations by +90 and -90 degrees, and 8 translations (left, right, up, down and the four
  diagonals) by 1/14 of the image side (16 px at 224 px, 2 px at 32 px), the uncovered edge
  filled by replicating the border pixels (replicate-pad, then crop, as the authors' code does).

All transforms act on axes 1 and 2 of `[B, H, W, ...]` arrays, so the same function moves an image
batch `[B, H, W, C]` and a map batch `[B, H, W]`.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from ngebm_jax import _checks

Transform = Callable[[jax.Array], jax.Array]


def salt_and_pepper_from_uniforms(
    x: jax.Array, flip_u: jax.Array, salt_u: jax.Array, amount: float | jax.Array, *,
    low: float = -1.0, high: float = 1.0, salt_vs_pepper: float | jax.Array = 0.5,
) -> jax.Array:
  """scikit-image's salt and pepper on given uniform draws, value by value.

  `random_noise(image, mode="s&p", amount=p, salt_vs_pepper=q)` draws two uniform arrays of the
  image's shape, `flipped = u1 <= p` and `salted = u2 <= q` (all False for a probability of 0),
  and sets the flipped values to 1 where salted, else to the image's lower bound (0 for images
  in [0, 1]). Here the image is in the model's space: white is `high`, black is `low`.

  Args:
    x: float images, any shape.
    flip_u, salt_u: uniform draws in [0, 1), shape of `x`.
    amount: probability `p` that a value is replaced.
    low, high: the values of pepper and salt.
    salt_vs_pepper: probability `q` that a replaced value is salt.

  Returns:
    The noisy images, shape and dtype of `x`.
  """
  amount = jnp.asarray(amount, jnp.float32)
  q = jnp.asarray(salt_vs_pepper, jnp.float32)
  flipped = (flip_u <= amount) & (amount > 0)
  salted = (salt_u <= q) & (q > 0)
  value = jnp.where(salted, high, low).astype(x.dtype)
  return jnp.where(flipped, value, x)


def salt_and_pepper(
    key: jax.Array,
    x: jax.Array,
    amount: float | jax.Array,
    *,
    per_channel: bool = True,
    low: float = -1.0,
    high: float = 1.0,
    salt_vs_pepper: float = 0.5,
    first_index: int | jax.Array = 0,
) -> jax.Array:
  """Salt-and-pepper noise: the out-of-set inputs of measure (b).

  `per_channel=True` (the default): scikit-image's `random_noise(mode="s&p")`, which Explain2Me's
  code (`Measures/Noise/`) applies to its colour images: every channel value is replaced on its
  own with probability `amount`, by white (`high`) with probability `salt_vs_pepper`, else by
  black (`low`) (`salt_and_pepper_from_uniforms`); a pixel can turn into a coloured speck, and
  the number of replaced values is random (binomial). `per_channel=False`: exactly
  `round(amount * H * W)` whole pixels per image, chosen uniformly without replacement, each
  white (in all channels) with probability `salt_vs_pepper`, else black. Neither is clearly the
  better probe, so the default follows the authors and keeps the measure comparable. In the
  model's input space (pixels scaled to [-1, 1]) black is -1 and white is +1, the defaults.

  Args:
    key: a `jax.random` key.
    x: `[B, H, W, C]` float images.
    amount: fraction of values (per channel) or of pixels (whole pixels) to replace, in [0, 1]
      (may be traced).
    per_channel: scikit-image's per-value noise (True) or whole pixels (False).
    low: the value of a black pixel.
    high: the value of a white pixel.
    salt_vs_pepper: probability that a replaced value (or pixel) is white.
    first_index: index of `x[0]` in the dataset: image `i` draws its noise from
      `fold_in(key, first_index + i)`, so results do not depend on how a dataset is batched.

  Returns:
    The noisy images, shape and dtype of `x`.
  """
  _checks.check_images(x)
  if not isinstance(amount, jax.core.Tracer) and not 0.0 <= float(amount) <= 1.0:
    raise ValueError(f"amount must be a fraction of pixels in [0, 1]; got {amount}.")
  if not 0.0 <= salt_vs_pepper <= 1.0:
    raise ValueError(f"salt_vs_pepper must be a probability in [0, 1]; got {salt_vs_pepper}.")
  b, h, w, c = x.shape
  keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(first_index + jnp.arange(b))
  if per_channel:
    u = jax.vmap(lambda k: jax.random.uniform(k, (2, h, w, c)))(keys)
    return salt_and_pepper_from_uniforms(x, u[:, 0], u[:, 1], amount, low=low, high=high,
                                         salt_vs_pepper=salt_vs_pepper)
  num_noisy = jnp.round(jnp.asarray(amount, jnp.float32) * (h * w)).astype(jnp.int32)

  def one_image(k):
    k_where, k_which = jax.random.split(k)
    # A random permutation gives each pixel a distinct rank; the n lowest ranks are replaced.
    rank = jax.random.permutation(k_where, h * w).reshape(h, w)
    noisy = rank < num_noisy
    white = jax.random.bernoulli(k_which, salt_vs_pepper, (h, w))
    return noisy, white

  noisy, white = jax.vmap(one_image)(keys)
  value = jnp.where(white, high, low).astype(x.dtype)
  return jnp.where(noisy[..., None], value[..., None], x)


def hflip(z: jax.Array) -> jax.Array:
  """Mirror left-right."""
  return jnp.flip(z, axis=2)


def vflip(z: jax.Array) -> jax.Array:
  """Mirror top-bottom."""
  return jnp.flip(z, axis=1)


def rot90(z: jax.Array, k: int = 1) -> jax.Array:
  """Rotate by `k * 90` degrees counter-clockwise (`np.rot90` on axes 1, 2); needs H == W."""
  if z.shape[1] != z.shape[2]:
    raise ValueError(f"Rotations by 90 degrees need square images; got {z.shape[1:3]}.")
  return jnp.rot90(z, k=k, axes=(1, 2))


def translate(z: jax.Array, dy: int, dx: int) -> jax.Array:
  """Move the content by `dy` rows (down) and `dx` columns (right), replicating the border.

  `out[:, i, j] = z[:, clip(i - dy), clip(j - dx)]`: replicate-pad by `|dy|`, `|dx|`, then crop.
  """
  h, w = z.shape[1], z.shape[2]
  if abs(dy) >= h or abs(dx) >= w:
    raise ValueError(f"A shift of ({dy}, {dx}) px leaves nothing of a {h}x{w} image.")
  py, px = abs(dy), abs(dx)
  pad = [(0, 0), (py, py), (px, px)] + [(0, 0)] * (z.ndim - 3)
  padded = jnp.pad(z, pad, mode="edge")
  return padded[:, py - dy:py - dy + h, px - dx:px - dx + w]


def translation_shift(side: int) -> int:
  """The paper's translation, 1/14 of the image side rounded to pixels (16 at 224, 2 at 32)."""
  return max(1, int(round(side / 14)))


def equivariance_transforms(side: int, *, shift: int | None = None) -> dict[str, Transform]:
  """The 12 transforms of measure (c), by name, for square images of `side` pixels.

  Translation names say where the content moves ("left": content moves left by `shift` px).

  Args:
    side: the image side H == W in pixels.
    shift: translation in pixels; default `translation_shift(side)`.

  Returns:
    An ordered dict name -> function on `[B, side, side, ...]` arrays.
  """
  s = translation_shift(side) if shift is None else int(shift)
  if not 0 < s < side:
    raise ValueError(f"shift must be in (0, {side}); got {s}.")
  moves = {
      "left": (0, -s), "right": (0, s), "up": (-s, 0), "down": (s, 0),
      "up_left": (-s, -s), "up_right": (-s, s), "down_left": (s, -s), "down_right": (s, s),
  }
  out: dict[str, Transform] = {
      "hflip": hflip,
      "vflip": vflip,
      "rot+90": lambda z: rot90(z, 1),
      "rot-90": lambda z: rot90(z, -1),
  }
  for name, (dy, dx) in moves.items():
    out[f"shift_{name}"] = lambda z, dy=dy, dx=dx: translate(z, dy, dx)
  return out
