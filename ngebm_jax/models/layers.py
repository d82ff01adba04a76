"""Building blocks shared by the models: PyTorch-initialised convolutions, the activation.

The NG-EBM and JEM reference code (PyTorch; JEM's `wideresnet.py`, Grathwohl et al. 2020) keeps
PyTorch's default initialisation: its `conv_init` helper is defined but never applied. For a
layer with fan-in `n` (`in_channels * kh * kw` for a convolution, `in_features` for a linear
layer) PyTorch draws both the kernel and the bias from `U(-1/sqrt(n), 1/sqrt(n))`
(`kaiming_uniform_(a=sqrt(5))` for the kernel), i.e. a kernel variance of `1/(3n)`. We use the
same distribution. It is a third of Flax's default (LeCun normal, `1/n`) and keeps a network
without normalization well scaled at initialisation: each residual branch starts small, so the
logits of a deep Wide-ResNet start close to zero and `log p~(x)` starts near `log K`
(measured: WRN-28-10 logits of std 0.05 and `log p~(x)` = 2.29 for 10 classes at initialisation).

A module built directly (`WideResNet(..., rngs=nnx.Rngs(key))`) draws each layer with
`torch_default_init`; `create_model` draws the same distribution for all layers in one call
(`torch_default_params`), which compiles an order of magnitude faster on CPU. The two give
different numbers for the same key.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from ngebm_jax import _checks

NEGATIVE_SLOPE = 0.2  # LeakyReLU(0.2) everywhere, as in the reference code.


def leaky_relu(x: jax.Array) -> jax.Array:
  """LeakyReLU with slope 0.2 for negative inputs."""
  return jax.nn.leaky_relu(x, negative_slope=NEGATIVE_SLOPE)


def check_dropout_rate(rate) -> None:
  if not 0.0 <= rate < 1.0:
    raise ValueError(f"dropout_rate must be in [0, 1); got {rate!r}.")


def check_input_images(x, channels: int) -> None:
  """`x` must be floating `[B, H, W, channels]`; raises ValueError at trace time."""
  _checks.check_images(x)
  if x.shape[-1] != channels:
    raise ValueError(
        f"x must have {channels} channels (images [B, H, W, {channels}]); got shape {x.shape}.")


def torch_default_init(fan_in: int) -> nnx.Initializer:
  """`U(-1/sqrt(fan_in), 1/sqrt(fan_in))`, PyTorch's default for conv/linear kernels and biases."""
  bound = 1.0 / math.sqrt(fan_in)

  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, minval=-bound, maxval=bound)

  return init


def torch_default_params(shapes, key: jax.Array):
  """All parameters at once, with the distribution of `torch_default_init`, from ONE draw.

  `shapes` is a nested dict of layers `{"kernel": ..., "bias": ...}` (arrays or
  `jax.ShapeDtypeStruct`s, kernels with the output features last); every leaf of a layer is drawn
  from `U(-1/sqrt(fan_in), 1/sqrt(fan_in))`, `fan_in` the product of the kernel's other axes.
  One `jax.random.uniform` call for the whole model instead of one per layer: XLA:CPU compiles
  each random call separately and slowly (seconds each for a deep network), one call stays cheap.
  """
  paths_and_leaves, treedef = jax.tree_util.tree_flatten_with_path(shapes)
  sizes = [math.prod(leaf.shape) for _, leaf in paths_and_leaves]
  uniform = jax.random.uniform(key, (sum(sizes),), jnp.float32, minval=-1.0, maxval=1.0)
  leaves, start = [], 0
  for (path, leaf), size in zip(paths_and_leaves, sizes):
    layer = shapes
    for entry in path[:-1]:
      layer = layer[entry.key]
    bound = 1.0 / math.sqrt(math.prod(layer["kernel"].shape[:-1]))
    leaves.append((bound * uniform[start:start + size]).reshape(leaf.shape).astype(leaf.dtype))
    start += size
  return jax.tree.unflatten(treedef, leaves)


def conv(in_features: int, out_features: int, kernel_size: int, *, stride: int = 1,
         dtype=jnp.float32, rngs: nnx.Rngs) -> nnx.Conv:
  """A biased `kernel_size` x `kernel_size` convolution padded like PyTorch's.

  The padding is `(kernel_size - 1) // 2` on every side, not 'SAME': with stride 2, 'SAME'
  pads only the bottom/right edge, which would shift the sampling grid of a 3x3 convolution by one
  pixel against the 1x1 shortcut beside it. With symmetric padding both sample the even pixels.
  Parameters are float32; `dtype` is the computation dtype.
  """
  init = torch_default_init(in_features * kernel_size * kernel_size)
  pad = (kernel_size - 1) // 2
  return nnx.Conv(in_features, out_features, (kernel_size, kernel_size), strides=stride,
                  padding=((pad, pad), (pad, pad)), use_bias=True, dtype=dtype,
                  param_dtype=jnp.float32, kernel_init=init, bias_init=init, rngs=rngs)


def linear(in_features: int, out_features: int, *, dtype=jnp.float32,
           rngs: nnx.Rngs) -> nnx.Linear:
  """A biased linear layer with PyTorch's default initialisation; kernel `[in, out]`."""
  init = torch_default_init(in_features)
  return nnx.Linear(in_features, out_features, use_bias=True, dtype=dtype,
                    param_dtype=jnp.float32, kernel_init=init, bias_init=init, rngs=rngs)


def pool_and_classify(head: nnx.Linear, a: jax.Array) -> jax.Array:
  """The classifier head: global average pool then linear, `mean_{h,w} A @ W + b`.

  `a: [B, h, w, C]` is the last feature map, taken after the final LeakyReLU: the activation
  belongs to the features, not to this head, so the classic CAM relation holds exactly,
  `logits_k = mean_{h,w} (sum_c W[c, k] A[..., c]) + b_k`. The reference code pools with an 8x8
  window, which for 32x32 inputs (8x8 maps) is this global average; the global mean keeps the head
  valid for other input sizes.
  """
  return head(jnp.mean(a, axis=(1, 2)))
