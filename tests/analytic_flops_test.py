"""The hand count of a Wide-ResNet's FLOPs against XLA's cost analysis of the same network."""

import jax
import jax.numpy as jnp
import pytest

from configs import default
from ngebm_jax.benchmarking import analytic_flops
from ngebm_jax import models


def _xla_flops(depth: int, width: int):
  """XLA's FLOPs of one image's forward pass and of its parameter gradient (lowered, no
  compilation: the count of the program as written)."""
  config = default.get_config()
  config.model.depth, config.model.width = depth, width
  holder = {}

  def init():
    holder["fns"], params = models.from_config(config, 10)
    return params
  params = jax.eval_shape(init)  # shapes only: no 36M-parameter initialization
  apply_fn = holder["fns"].apply_fn
  x = jax.ShapeDtypeStruct((1, 32, 32, 3), jnp.float32)
  forward = jax.jit(apply_fn).lower(params, x).cost_analysis()["flops"]
  grad = jax.jit(jax.grad(lambda p, x_: jnp.sum(apply_fn(p, x_)))).lower(params, x)
  return forward, grad.cost_analysis()["flops"]


def test_small_convolutions_by_hand():
  # A 3x3 convolution on a 3x3 image, padding 1: 9 outputs; taps on the image per axis
  # 2 + 3 + 2 = 7, so 49 of the 81 taps; dense: all 81.
  assert analytic_flops._taps(3, 3, 1, valid=True) == (3, 7)
  assert analytic_flops._taps(3, 3, 1, valid=False) == (3, 9)
  assert analytic_flops._taps(4, 3, 2, valid=True) == (2, 5)  # outputs at 0, 2: taps 2 + 3
  assert analytic_flops._taps(4, 1, 2, valid=True) == (2, 2)
  with pytest.raises(ValueError, match="6n \\+ 4"):
    analytic_flops.wide_resnet_forward_flops(27, 10, 10)


@pytest.mark.parametrize("depth,width", [(28, 10), (10, 1)])
def test_wide_resnet_flops_by_hand_match_xla(depth, width):
  forward, grad = _xla_flops(depth, width)
  by_hand = analytic_flops.wide_resnet_forward_flops(depth, width, 10)
  # XLA also counts biases, activations, additions and the pooling: a little above, within
  # 0.5% for WRN-28-10 (measured 0.11%) and 2% for the narrow WRN-10-1 (1.4%).
  tolerance = 0.005 if width == 10 else 0.02
  assert by_hand <= forward <= by_hand * (1 + tolerance)
  step = analytic_flops.baseline_step_flops(by_hand)
  assert step * (1 - tolerance) <= grad <= step * (1 + tolerance)
  dense = analytic_flops.wide_resnet_forward_flops(depth, width, 10, valid=False)
  assert dense > by_hand
  if (depth, width) == (28, 10):
    assert dense == pytest.approx(11.90e9, rel=1e-3) and by_hand == pytest.approx(10.91e9,
                                                                                   rel=1e-3)
