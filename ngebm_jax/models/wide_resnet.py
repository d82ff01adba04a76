"""Wide-ResNet without normalization, as the NG-EBM and JEM reference code builds it.

Wide Residual Networks (Zagoruyko & Komodakis 2016) in the variant of JEM's `wideresnet.py`
(Grathwohl et al. 2020, arXiv 1912.03263) that NG-EBM (arXiv 2304.01297) trains with
`norm=None`, LeakyReLU(0.2) and dropout 0 (docs/method.rst, "The training recipe"):

  stem:   3x3 conv, input_channels -> 16
  stages: widths 16k, 32k, 64k, strides 1, 2, 2, each of n = (depth - 4) / 6 blocks
  block:  out = conv2(lrelu(dropout(conv1(lrelu(x))))) + shortcut(x)
          conv2 carries the stride (unlike the original WRN, where conv1 does);
          shortcut = 1x1 conv (with the stride) when stride or width changes, else identity
  A:      lrelu(last block output)              [B, h, w, 64k], 8x8 for 32x32 inputs
  head:   global average pool -> linear to K    (layers.pool_and_classify)

Every convolution has a bias; there is no normalization layer, so examples never interact and
input gradients are per-example (what the energy view and double backpropagation need).
WRN-28-10 with 10 classes has 36,471,338 parameters; WRN-10-1 has 77,706.
Initialisation: PyTorch's defaults, as in the reference (see `layers`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from ngebm_jax import _checks
from ngebm_jax.models import layers


class WideBasic(nnx.Module):
  """Pre-activation block, no normalization: `conv2(lrelu(conv1(lrelu(x)))) + shortcut(x)`."""

  def __init__(self, in_features: int, out_features: int, *, stride: int, dropout_rate: float,
               dtype, rngs: nnx.Rngs):
    self.conv1 = layers.conv(in_features, out_features, 3, dtype=dtype, rngs=rngs)
    self.dropout = nnx.Dropout(dropout_rate)
    self.conv2 = layers.conv(out_features, out_features, 3, stride=stride, dtype=dtype, rngs=rngs)
    if stride != 1 or in_features != out_features:
      self.shortcut = layers.conv(in_features, out_features, 1, stride=stride, dtype=dtype,
                                  rngs=rngs)
    else:
      self.shortcut = None

  def __call__(self, x: jax.Array, dropout_key: jax.Array | None = None) -> jax.Array:
    out = self.conv1(layers.leaky_relu(x))
    out = self.dropout(out, deterministic=dropout_key is None, rngs=dropout_key)
    out = self.conv2(layers.leaky_relu(out))
    return out + (x if self.shortcut is None else self.shortcut(x))


class WideResNet(nnx.Module):
  """WRN-`depth`-`width` classifier, `x: [B, H, W, input_channels]` -> logits `[B, num_classes]`.

  Args:
    depth: total depth, `6n + 4` (28 for the reference WRN-28-10, 10 for the small WRN-10-1).
    width: widening factor k (10 for the reference).
    num_classes: K, the number of logits.
    dropout_rate: dropout between the two convolutions of every block (0 in the reference).
      Applied only when a `dropout_key` is passed.
    input_channels: channels of the input images.
    dtype: computation dtype (e.g. `jnp.bfloat16`); parameters are always float32.
    rngs: `nnx.Rngs` with a `params` stream, for initialisation only.
  """

  def __init__(self, *, depth: int = 28, width: int = 10, num_classes: int,
               dropout_rate: float = 0.0, input_channels: int = 3, dtype=jnp.float32,
               rngs: nnx.Rngs):
    _checks.check_positive_int(depth, "depth")
    if (depth - 4) % 6 != 0 or depth < 10:
      raise ValueError(
          f"Wide-ResNet depth must be 6n + 4 with n >= 1 (10, 16, 22, 28, ...); got {depth}.")
    _checks.check_positive_int(width, "width")
    _checks.check_positive_int(num_classes, "num_classes")
    _checks.check_positive_int(input_channels, "input_channels")
    layers.check_dropout_rate(dropout_rate)
    blocks_per_stage = (depth - 4) // 6
    self.input_channels = input_channels
    self.dtype = dtype

    self.stem = layers.conv(input_channels, 16, 3, dtype=dtype, rngs=rngs)
    blocks = {}
    in_features = 16
    for stage, (features, stride) in enumerate(
        [(16 * width, 1), (32 * width, 2), (64 * width, 2)], start=1):
      for i in range(blocks_per_stage):
        blocks[f"stage{stage}_block{i + 1}"] = WideBasic(
            in_features, features, stride=stride if i == 0 else 1, dropout_rate=dropout_rate,
            dtype=dtype, rngs=rngs)
        in_features = features
    # nnx.merge rebuilds dicts in sorted key order; the block order is kept explicitly.
    self.block_names = tuple(blocks)
    self.blocks = nnx.Dict(blocks)
    self.head = layers.linear(in_features, num_classes, dtype=dtype, rngs=rngs)

  def features(self, x: jax.Array, dropout_key: jax.Array | None = None) -> jax.Array:
    """Last feature map `A: [B, H/4, W/4, 64k]`, taken after the final LeakyReLU."""
    layers.check_input_images(x, self.input_channels)
    keys = ([None] * len(self.block_names) if dropout_key is None
            else list(jax.random.split(dropout_key, len(self.block_names))))
    out = self.stem(x.astype(self.dtype))
    for name, key in zip(self.block_names, keys):
      out = self.blocks[name](out, key)
    return layers.leaky_relu(out)

  def __call__(self, x: jax.Array, dropout_key: jax.Array | None = None) -> jax.Array:
    """Logits `[B, num_classes]` in the computation dtype."""
    return self.classify(self.features(x, dropout_key))

  def classify(self, a: jax.Array) -> jax.Array:
    """Logits of a feature map: global average pool then `self.head` (linear)."""
    return layers.pool_and_classify(self.head, a)
