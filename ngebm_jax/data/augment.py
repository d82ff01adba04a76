"""The recipe's training augmentation, on the device: uint8 in, model-space float32 out.

Pad-4 (reflect) + random crop back to size + random horizontal flip, then pixels scaled to
[-1, 1] and Gaussian noise of std `noise_std` added (docs/method.rst; the noise is the recipe's
input noise, added at test time too by `ngebm_jax.evaluation.inference.add_input_noise`).

Example `i` of a batch draws its crop offsets, flip and noise from `fold_in(key, i)`, with `i`
its position in the *global* batch: an example's augmentation does not depend on how the batch
is split over devices or hosts, so a run on 8 devices sees the inputs a run on 1 device sees.
Per-pixel maps that belong to the image (the focus task's `human_map`, `mask`) get the same
crop and flip and no noise.
"""

from __future__ import annotations

from typing import Mapping

import jax
import jax.numpy as jnp


def draw(key: jax.Array, batch_size: int, *, pad: int = 4, flip: bool = True):
  """The random choices of a batch: `(dy [B], dx [B], flipped [B] bool, noise keys [B])`.

  `dy`, `dx` are the crop's offsets into the padded image, uniform on `0..2 * pad`; `flipped`
  is true with probability 1/2 when `flip` (else never).
  """
  def one(i):
    k_crop, k_flip, k_noise = jax.random.split(jax.random.fold_in(key, i), 3)
    dy, dx = jax.random.randint(k_crop, (2,), 0, 2 * pad + 1)
    flipped = jax.random.bernoulli(k_flip) if flip else jnp.zeros((), bool)
    return dy, dx, flipped, k_noise

  return jax.vmap(one)(jnp.arange(batch_size))


def crop_and_flip(x: jax.Array, dy: jax.Array, dx: jax.Array, flipped: jax.Array, *,
                  pad: int = 4) -> jax.Array:
  """Reflect-pads `x: [B, H, W, C]` by `pad`, crops `[H, W]` at `(dy, dx)`, mirrors if `flipped`."""
  _, h, w, _ = x.shape

  def one(xi, dyi, dxi, fi):
    if pad > 0:
      xi = jnp.pad(xi, ((pad, pad), (pad, pad), (0, 0)), mode="reflect")
      xi = jax.lax.dynamic_slice(xi, (dyi, dxi, 0), (h, w, xi.shape[-1]))
    return jnp.where(fi, xi[:, ::-1], xi)

  return jax.vmap(one)(x, dy, dx, flipped)


def augment(key: jax.Array, images: jax.Array, maps: Mapping[str, jax.Array] | None = None, *,
            crop: bool = True, flip: bool = True, noise_std: float = 0.03, pad: int = 4):
  """Augments a batch: `(x float32 [B, H, W, C] in about [-1, 1], maps)`.

  Args:
    key: the batch's key (e.g. `fold_in(data key, batch index)`).
    images: `[B, H, W, C]` uint8 pixels.
    maps: `{name: [B, H, W]}` per-pixel maps cropped and flipped with their images.
    crop: whether to pad and crop (`pad` on each side); flips follow `flip` either way.
    flip: whether to mirror each example left-right with probability 1/2.
    noise_std: the std of the Gaussian noise added in model units (0: none).
    pad: reflect padding on each side before the crop.
  """
  if images.dtype != jnp.uint8:
    raise ValueError(f"augment takes uint8 images; got {images.dtype}.")
  if noise_std < 0:
    raise ValueError(f"noise_std must be >= 0; got {noise_std}.")
  maps = dict(maps or {})
  pad = pad if crop else 0
  dy, dx, flipped, noise_keys = draw(key, images.shape[0], pad=pad, flip=flip)
  move = lambda a: crop_and_flip(a, dy, dx, flipped, pad=pad)
  x = move(images).astype(jnp.float32) / 127.5 - 1.0
  if noise_std > 0:
    x = x + noise_std * jax.vmap(lambda k: jax.random.normal(k, x.shape[1:], x.dtype))(noise_keys)
  return x, {k: move(m[..., None])[..., 0] for k, m in maps.items()}
