"""A small convolutional classifier for CPU configs, shaped like the Wide-ResNet.

Same conventions as `wide_resnet` (docs/method.rst, "The training recipe"), at a fraction
of the cost: no normalization, LeakyReLU(0.2), biased convolutions with PyTorch's default
initialisation, pre-activation ordering, and the same head, so `features_fn`, `head_fn` and
`head_kernel` mean the same thing for both models:

  stem:  3x3 conv, input_channels -> w
  body:  dropout -> lrelu -> 3x3 conv w -> 2w, stride 2
         dropout -> lrelu -> 3x3 conv 2w -> 4w, stride 2
  A:     lrelu(.)                               [B, H/4, W/4, 4w], 8x8 for 32x32 inputs
  head:  global average pool -> linear to K

With the default width w = 16 and 10 classes it has 24,234 parameters (WRN-10-1: 77,706).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from ngebm_jax import _checks
from ngebm_jax.models import layers


class SmallCNN(nnx.Module):
  """Three-convolution classifier, `x: [B, H, W, input_channels]` -> logits `[B, num_classes]`.

  Args:
    width: channels of the first convolution w; the others have 2w and 4w.
    num_classes: K, the number of logits.
    dropout_rate: dropout after the first two convolutions; only when a `dropout_key` is passed.
    input_channels: channels of the input images.
    dtype: computation dtype; parameters are always float32.
    rngs: `nnx.Rngs` with a `params` stream, for initialisation only.
  """

  def __init__(self, *, width: int = 16, num_classes: int, dropout_rate: float = 0.0,
               input_channels: int = 3, dtype=jnp.float32, rngs: nnx.Rngs):
    _checks.check_positive_int(width, "width")
    _checks.check_positive_int(num_classes, "num_classes")
    _checks.check_positive_int(input_channels, "input_channels")
    layers.check_dropout_rate(dropout_rate)
    self.input_channels = input_channels
    self.dtype = dtype
    self.stem = layers.conv(input_channels, width, 3, dtype=dtype, rngs=rngs)
    self.dropout = nnx.Dropout(dropout_rate)
    self.conv1 = layers.conv(width, 2 * width, 3, stride=2, dtype=dtype, rngs=rngs)
    self.conv2 = layers.conv(2 * width, 4 * width, 3, stride=2, dtype=dtype, rngs=rngs)
    self.head = layers.linear(4 * width, num_classes, dtype=dtype, rngs=rngs)

  def features(self, x: jax.Array, dropout_key: jax.Array | None = None) -> jax.Array:
    """Last feature map `A: [B, H/4, W/4, 4w]`, taken after the final LeakyReLU."""
    layers.check_input_images(x, self.input_channels)
    keys = [None, None] if dropout_key is None else list(jax.random.split(dropout_key))
    out = self.stem(x.astype(self.dtype))
    out = self.dropout(out, deterministic=keys[0] is None, rngs=keys[0])
    out = self.conv1(layers.leaky_relu(out))
    out = self.dropout(out, deterministic=keys[1] is None, rngs=keys[1])
    out = self.conv2(layers.leaky_relu(out))
    return layers.leaky_relu(out)

  def __call__(self, x: jax.Array, dropout_key: jax.Array | None = None) -> jax.Array:
    """Logits `[B, num_classes]` in the computation dtype."""
    return self.classify(self.features(x, dropout_key))

  def classify(self, a: jax.Array) -> jax.Array:
    """Logits of a feature map: global average pool then `self.head` (linear)."""
    return layers.pool_and_classify(self.head, a)
