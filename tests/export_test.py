"""The paper configs' train steps, lowered for CUDA and TPU from the CPU (`jax.export`).

What no CPU run can show, checked in the exported StableHLO of each step (baseline, NG-EBM,
SGLD-EBM; float32 and bfloat16): that it lowers for both accelerators at all, that no host
callback sits in it (one would stall the device every step), and that with a bfloat16 model
every convolution runs in bfloat16. The configs are the CIFAR-10 recipes (configs/cifar10_*.py)
with a narrow Wide-ResNet of the same code path (WRN-10-1 instead of WRN-28-10: the export of
WRN-28-10 took 10-28 s per step on 2 busy CPU cores, against a ~30 s budget for the whole test)
and SGLD's chain rolled (`sgld.unroll=1`), as it is on GPUs and TPUs (on a CPU it is unrolled).
"""

import re

import jax
import jax.numpy as jnp
import pytest
from jax import export
from jax.sharding import NamedSharding, PartitionSpec as P

from configs import cifar10_baseline
from configs import cifar10_ngebm
from configs import cifar10_sgld
from ngebm_jax import models
from ngebm_jax.training import loop
from ngebm_jax.training import objective_registry
from ngebm_jax.training import spmd
from ngebm_jax.training.state import make_optimizer

CONFIGS = {"baseline": cifar10_baseline, "ngebm": cifar10_ngebm, "sgld": cifar10_sgld}


def _exported_step(objective_name: str, dtype: str) -> export.Exported:
  config = CONFIGS[objective_name].get_config()
  config.model.depth, config.model.width, config.model.dtype = 10, 1, dtype
  config.sgld.unroll = 1
  config.sgld.buffer_size = 64  # the buffer's size changes no instruction of the step
  mesh = spmd.make_mesh(jax.devices()[:1])
  fns, params = models.from_config(config, 10)
  objective = objective_registry.make_objective(config, fns)
  o = config.optimizer
  optimizer = make_optimizer(o.learning_rate, o.warmup_steps, b1=o.b1, b2=o.b2)
  state = loop.init_train_state(config, objective, params, optimizer, (32, 32, 3), mesh)
  step = spmd.make_train_step(objective.loss_fn, optimizer, mesh, state)
  split = NamedSharding(mesh, P(spmd.AXIS))
  b = config.batch_size
  batch = {"image": jax.ShapeDtypeStruct((b, 32, 32, 3), jnp.float32, sharding=split),
           "label": jax.ShapeDtypeStruct((b,), jnp.int32, sharding=split)}
  if objective_name == "sgld":
    batch["image_unlabelled"] = batch["image"]
  abstract_state = jax.tree.map(
      lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=a.sharding), state)
  return export.export(step, platforms=("cuda", "tpu"))(abstract_state, batch)


def _convolution_types(module: str) -> list[list[str]]:
  """The element types of each convolution's operands and result, e.g. ['bf16', 'bf16', 'bf16']."""
  signatures = re.findall(r"stablehlo\.convolution\(.*?:\s*(\(.*?\)\s*->\s*tensor<[^>]*>)", module)
  return [re.findall(r"tensor<(?:[0-9]+x)*([a-z0-9]+)>", s) for s in signatures]


def test_convolution_types_reads_operands_and_result():
  line = ("%5 = stablehlo.convolution(%1, %2) dim_numbers = [b, 0, 1, f]x[0, 1, i, o]->[b, 0, 1, "
          "f], window = {} {batch_group_count = 1 : i64} : (tensor<8x32x32x3xbf16>, "
          "tensor<3x3x3x16xbf16>) -> tensor<8x32x32x16xf32>")
  assert _convolution_types(line) == [["bf16", "bf16", "f32"]]


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("objective_name", ["baseline", "ngebm", "sgld"])
def test_train_step_exports_for_cuda_and_tpu(objective_name, dtype):
  exported = _exported_step(objective_name, dtype)
  assert exported.platforms == ("cuda", "tpu")
  module = exported.mlir_module()
  targets = set(re.findall(r"stablehlo\.custom_call @([\w.]+)", module))
  assert not {t for t in targets if "callback" in t.lower()}, targets
  assert "callback" not in module.lower()
  convolutions = _convolution_types(module)
  assert len(convolutions) >= 9  # WRN-10-1: 9 convolutions in a forward pass, more in a step
  if dtype == "bfloat16":
    assert all(t == ["bf16"] * 3 for t in convolutions), {tuple(t) for t in convolutions}
  else:
    assert all(t == ["f32"] * 3 for t in convolutions)
  if objective_name == "sgld":
    assert "stablehlo.while" in module  # the chain stays a loop on the accelerators
