"""FLOPs of a Wide-ResNet counted by hand, to check XLA's cost analysis against.

Counts the multiply-adds of the convolutions and of the linear head, 2 FLOPs each, of the
network in `ngebm_jax.models.wide_resnet` (the conv carrying a block's stride is its second;
padding `(k - 1) // 2` on every side, as `models.layers.conv`). Two counts:

- `dense`: every output position times the whole kernel, what a convolution engine executes
  (zero padding included): 11.90 GFLOPs for WRN-28-10 on a 32x32 image;
- `valid`: only the kernel taps that fall on the image, what XLA's cost analysis counts:
  10.92 GFLOPs for WRN-28-10 (8% fewer: at 8x8, a 3x3 kernel's border taps are 16% of all).

Biases, LeakyReLUs, the residual additions and the pooling are left out (under 0.1% of XLA's
count for WRN-28-10).
"""

from __future__ import annotations

from typing import Sequence


def _taps(n: int, k: int, stride: int, valid: bool) -> tuple[int, int]:
  """(output size, kernel taps summed over the output positions) along one axis."""
  pad = (k - 1) // 2
  out = (n + 2 * pad - k) // stride + 1
  if not valid:
    return out, out * k
  return out, sum(1 for o in range(out) for t in range(k) if 0 <= o * stride - pad + t < n)


def _conv(h: int, w: int, c_in: int, c_out: int, k: int, stride: int, valid: bool):
  (h_out, taps_h), (w_out, taps_w) = (_taps(h, k, stride, valid), _taps(w, k, stride, valid))
  return 2.0 * taps_h * taps_w * c_in * c_out, h_out, w_out


def wide_resnet_forward_flops(depth: int, width: int, num_classes: int,
                              image_shape: Sequence[int] = (32, 32, 3), *,
                              valid: bool = True) -> float:
  """FLOPs of one image's forward pass through WRN-`depth`-`width` (convolutions and head).

  `valid=True` counts the kernel taps on the image only (as XLA does); False, every tap.
  """
  if (depth - 4) % 6 or depth < 10:
    raise ValueError(f"Wide-ResNet depth must be 6n + 4 with n >= 1; got {depth}.")
  h, w, c_in = image_shape
  flops, h, w = _conv(h, w, c_in, 16, 3, 1, valid)  # stem
  c_in = 16
  for features, stride in ((16 * width, 1), (32 * width, 2), (64 * width, 2)):
    for i in range((depth - 4) // 6):
      s = stride if i == 0 else 1
      conv1, _, _ = _conv(h, w, c_in, features, 3, 1, valid)
      conv2, h_out, w_out = _conv(h, w, features, features, 3, s, valid)
      flops += conv1 + conv2
      if s != 1 or c_in != features:
        flops += _conv(h, w, c_in, features, 1, s, valid)[0]  # 1x1 shortcut
      h, w, c_in = h_out, w_out, features
  return flops + 2.0 * c_in * num_classes


def baseline_step_flops(forward_flops: float) -> float:
  """A cross-entropy train step per image: the forward pass and a backward pass of twice its
  cost (one product for the activations' gradients, one for the weights')."""
  return 3.0 * forward_flops
