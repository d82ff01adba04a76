"""Grad-CAM salience maps (Selvaraju et al. 2017, eq. 1-2): the maps Explain2Me measures.

For class `c` and the last convolutional feature map `A: [h, w, C]` of a classifier `f`,

  w_k = mean_ij d f(x)[c] / d A_k[i, j],        cam = ReLU(sum_k w_k A_k),

then min-max normalized to [0, 1] per image. A map that is constant (all zeros after the ReLU,
say) has no salient place and stays all zeros. The map has the resolution of `A` (8x8 for a
32-pixel Wide-ResNet); `upsample` brings it to the image size (bilinear, or bicubic as
Explain2Me's code does) where a measure mixes map and image, and `to_uint8` quantizes it to 8 bits
as the paper stores maps. Explain2Me's code takes its maps from torchcam's `GradCAM`, which
computes the same map (weights from the spatial mean of the gradient of the class score, ReLU,
min-max normalization); a constant map is 0 / 0 there and all zeros here.

The model. Grad-CAM needs the gradient with respect to `A`, which `apply_fn(params, x) -> logits`
does not expose, so the first argument (`model_fns`) deviates from the `apply_fn` of the issue:
it is anything with attributes `features_fn(params, x) -> A [B, h, w, C]` and
`head_fn(params, A) -> logits [B, K]` such that `apply_fn = head_fn o features_fn` (the
`ModelFns` that `ngebm_jax.models.create_model` returns), or a plain `(features_fn, head_fn)`
tuple. Models are called deterministically (no dropout key). Examples must not interact in
`head_fn` (no batch statistics): the gradients of one backward pass of the summed class scores
are then the per-example gradients.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from ngebm_jax import _checks
from ngebm_jax.evaluation.inference import batched

FeaturesFn = Callable[[Any, jax.Array], jax.Array]
HeadFn = Callable[[Any, jax.Array], jax.Array]

# A map whose spread (max - min) is below this fraction of its maximum is taken as constant:
# float32 round-off in sum_k w_k A_k would otherwise be stretched into a full [0, 1] noise map.
_CONSTANT_MAP_RTOL = 1e-5
UPSAMPLE_METHODS = ("bilinear", "bicubic")
ROUNDINGS = ("floor", "nearest")  # of `to_uint8`


def split_model_fns(model_fns: Any) -> tuple[FeaturesFn, HeadFn]:
  """`(features_fn, head_fn)` of a ModelFns-like object or of a `(features_fn, head_fn)` tuple."""
  features_fn = getattr(model_fns, "features_fn", None)
  head_fn = getattr(model_fns, "head_fn", None)
  if features_fn is None and head_fn is None and isinstance(model_fns, (tuple, list)):
    if len(model_fns) == 2:
      features_fn, head_fn = model_fns
  if not (callable(features_fn) and callable(head_fn)):
    raise ValueError(
        "Grad-CAM needs the last feature map: pass an object with features_fn(params, x) and "
        "head_fn(params, A) (the ModelFns of ngebm_jax.models.create_model) or a "
        f"(features_fn, head_fn) tuple; got {type(model_fns).__name__}.")
  return features_fn, head_fn


def normalize_maps(cam: jax.Array) -> jax.Array:
  """Min-max normalize each map of `cam: [B, h, w]` to [0, 1]; constant maps become zeros."""
  lo = jnp.min(cam, axis=(1, 2), keepdims=True)
  hi = jnp.max(cam, axis=(1, 2), keepdims=True)
  spread = hi - lo
  varies = spread > _CONSTANT_MAP_RTOL * jnp.abs(hi)
  return jnp.where(varies, (cam - lo) / jnp.where(varies, spread, 1.0), 0.0)


def _grad_cam_and_logits(features_fn, head_fn, params, x, class_index):
  feats = features_fn(params, x)
  if feats.ndim != 4 or feats.shape[0] != x.shape[0]:
    raise ValueError(
        f"features_fn must return the last feature map [B, h, w, C] for a batch of {x.shape[0]}; "
        f"got shape {feats.shape}.")
  logits, head_vjp = jax.vjp(lambda a: head_fn(params, a), feats)
  _checks.check_logits(logits, "head_fn(params, A)")
  batch, num_classes = logits.shape
  if class_index is None:
    c = jnp.argmax(logits, axis=-1)
  else:
    c = jnp.broadcast_to(jnp.asarray(class_index, jnp.int32), (batch,))
  # One backward pass of sum_b f(x_b)[c_b]: examples are independent in head_fn.
  (grads,) = head_vjp(jax.nn.one_hot(c, num_classes, dtype=logits.dtype))
  weights = jnp.mean(grads.astype(jnp.float32), axis=(1, 2))  # [B, C]
  cam = jax.nn.relu(jnp.einsum("bhwk,bk->bhw", feats.astype(jnp.float32), weights))
  return normalize_maps(cam), logits


_grad_cam_and_logits_jit = jax.jit(_grad_cam_and_logits, static_argnums=(0, 1))


def _check_class_index(class_index, batch: int) -> None:
  if class_index is None:
    return
  shape = jnp.shape(class_index)
  if shape not in ((), (batch,)):
    raise ValueError(
        f"class_index must be None, one class for all images, or [B]={batch} classes; got shape "
        f"{shape}.")
  if not jnp.issubdtype(jnp.result_type(class_index), jnp.integer):
    raise ValueError(f"class_index must be integer; got dtype {jnp.result_type(class_index)}.")


def _check_class_range(class_index, num_classes: int) -> None:
  if class_index is None or isinstance(class_index, jax.core.Tracer):
    return
  c = np.asarray(class_index)
  if c.size and (c.min() < 0 or c.max() >= num_classes):
    raise ValueError(
        f"class_index must lie in [0, {num_classes}); got values in [{c.min()}, {c.max()}].")


def grad_cam_and_logits(
    model_fns: Any, params: Any, x: jax.Array, *, class_index: jax.Array | int | None = None
) -> tuple[jax.Array, jax.Array]:
  """Grad-CAM maps and the logits of the same forward pass (see `grad_cam`).

  Returns:
    `(maps, logits)`: `maps [B, h, w]` float32 in [0, 1]; `logits [B, K]`.
  """
  features_fn, head_fn = split_model_fns(model_fns)
  _checks.check_images(x)
  _check_class_index(class_index, x.shape[0])
  maps, logits = _grad_cam_and_logits_jit(features_fn, head_fn, params, x, class_index)
  _check_class_range(class_index, logits.shape[-1])
  return maps, logits


def grad_cam(
    model_fns: Any, params: Any, x: jax.Array, *, class_index: jax.Array | int | None = None
) -> jax.Array:
  """Grad-CAM map of each image for the predicted (or the given) class, jitted.

  Args:
    model_fns: an object with `features_fn(params, x) -> A [B, h, w, C]` and
      `head_fn(params, A) -> logits [B, K]`, or a `(features_fn, head_fn)` tuple (see module
      docstring). The functions are static jit arguments: reuse the same objects across calls to
      reuse the compiled code.
    params: the model parameters passed to both functions.
    x: `[B, H, W, C]` float images in the model's input space (pixels in about [-1, 1]).
    class_index: `None` (the predicted class of each image), one int for all images, or `[B]`
      int classes.

  Returns:
    `[B, h, w]` float32 maps in [0, 1] at the feature map's resolution; constant maps are zeros.
  """
  return grad_cam_and_logits(model_fns, params, x, class_index=class_index)[0]


def grad_cam_batched(
    model_fns: Any,
    params: Any,
    x: Any,
    *,
    class_index: Any = None,
    batch_size: int = 128,
    return_logits: bool = False,
):
  """`grad_cam` over a large array, `batch_size` images at a time (one compilation).

  The last batch is padded to `batch_size` (by repeating its last image) so that every call
  has the same shape; the padding is dropped from the result.

  Args:
    model_fns, params: as `grad_cam`.
    x: `[N, H, W, C]` float images (NumPy or JAX), in the model's input space.
    class_index: `None`, one int, or `[N]` int classes.
    batch_size: images per call.
    return_logits: also return the logits.

  Returns:
    `[N, h, w]` float32 NumPy maps in [0, 1] (and `[N, K]` logits when `return_logits`).
  """
  _checks.check_images(x)
  n = x.shape[0]
  if class_index is not None and jnp.shape(class_index) == ():
    class_index = np.full((n,), int(class_index), np.int32)
  _check_class_index(class_index, n)
  if class_index is None:
    maps, logits = batched(lambda xb: grad_cam_and_logits(model_fns, params, jnp.asarray(xb)),
                           x, batch_size=batch_size)
  else:
    maps, logits = batched(lambda xb, cb: grad_cam_and_logits(
        model_fns, params, jnp.asarray(xb), class_index=jnp.asarray(cb)),
                           x, np.asarray(class_index), batch_size=batch_size)
  return (maps, logits) if return_logits else maps


def upsample(maps: jax.Array, size: tuple[int, int], *, method: str = "bilinear") -> jax.Array:
  """Upsampling of `maps: [B, h, w]` in [0, 1] to `[B, *size]` (`jax.image.resize`).

  "bilinear": weights are non-negative and sum to 1, so maps stay in [0, 1]. "bicubic": Keys'
  cubic convolution (a = -0.5) with the weights renormalized at the border, the same numbers as
  PIL's `Image.resize(..., Image.BICUBIC)`, which Explain2Me's code uses to bring its maps to the
  image size; it overshoots near sharp edges, and the result is clipped to [0, 1], as PIL's 8-bit
  output is clipped to 0..255. Sampling is at pixel centres, so both commute with flips and
  90-degree rotations.
  """
  maps = jnp.asarray(maps)
  if maps.ndim != 3:
    raise ValueError(f"maps must have shape [B, h, w]; got {maps.shape}.")
  size = tuple(int(s) for s in size)
  if len(size) != 2:
    raise ValueError(f"size must be (H, W); got {size}.")
  if method not in UPSAMPLE_METHODS:
    raise ValueError(f"method must be one of {UPSAMPLE_METHODS}; got {method!r}.")
  out = jax.image.resize(maps.astype(jnp.float32), (maps.shape[0],) + size, method=method)
  return jnp.clip(out, 0.0, 1.0) if method == "bicubic" else out


def to_uint8(maps: jax.Array, *, rounding: str = "floor") -> jax.Array:
  """Quantize maps in [0, 1] to uint8 0..255, as the paper stores them.

  "floor" (the default): `floor(255 m)`, what Explain2Me's code does (torchvision's
  `to_pil_image` turns a float map into 8 bits with `mul(255).byte()`, which truncates).
  "nearest": `round(255 m)`. Neither is clearly the better histogram, so the default keeps
  measure (a) comparable with the paper.
  """
  maps = jnp.asarray(maps)
  if rounding not in ROUNDINGS:
    raise ValueError(f"rounding must be one of {ROUNDINGS}; got {rounding!r}.")
  if maps.dtype == jnp.uint8:
    return maps
  if not jnp.issubdtype(maps.dtype, jnp.floating):
    raise ValueError(f"maps must be float in [0, 1] or uint8; got dtype {maps.dtype}.")
  scaled = maps * 255.0
  scaled = jnp.floor(scaled) if rounding == "floor" else jnp.round(scaled)
  return jnp.clip(scaled, 0, 255).astype(jnp.uint8)
