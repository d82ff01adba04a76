"""The train step's guard: a rejected step leaves no trace; a RowUpdate writes only its rows."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from configs import benchmark_tiny
from ngebm_jax import models
from ngebm_jax import sgld
from ngebm_jax.training import loop
from ngebm_jax.training import objective_registry
from ngebm_jax.training import spmd
from ngebm_jax.training.state import TrainState


def test_commit_writes_the_rows_when_accepted_and_nothing_otherwise():
  rng = np.random.default_rng(0)
  old = {"buffer": sgld.ReplayBuffer(samples=jnp.asarray(rng.normal(size=(10, 2, 2, 1)))),
         "count": jnp.asarray(3.0)}
  indices = jnp.asarray([2, 7, 5], jnp.int32)
  rows = jnp.asarray(rng.normal(size=(3, 2, 2, 1)))
  new = {"buffer": spmd.RowUpdate(indices, sgld.ReplayBuffer(samples=rows)),
         "count": jnp.asarray(4.0)}
  commit = jax.jit(spmd.commit)

  accepted = commit(old, new, jnp.asarray(True))
  expected = np.array(old["buffer"].samples)
  expected[[2, 7, 5]] = rows
  np.testing.assert_array_equal(accepted["buffer"].samples, expected)  # others untouched
  assert float(accepted["count"]) == 4.0

  rejected = commit(old, new, jnp.asarray(False))
  np.testing.assert_array_equal(rejected["buffer"].samples, old["buffer"].samples)
  assert float(rejected["count"]) == 3.0


def _toy_step(mesh, table_rows: int):
  """A train step whose objective state is a table; the loss moves rows 0 and 2 of each slice."""

  def loss_fn(params, batch, key, state, axis_name, step=None):
    del key, step
    loss = jax.lax.pmean(jnp.mean(batch["x"]), axis_name) * jnp.sum(params["w"] ** 2)
    idx = jnp.asarray([0, 2], jnp.int32)
    rows = {"table": state["table"][idx] + 1.0}
    return loss, ({"loss_term": loss}, spmd.RowUpdate(idx, rows))

  optimizer = optax.sgd(0.1)
  params = {"w": jnp.ones((3,))}
  state = TrainState(step=jnp.zeros((), jnp.int32), params=params,
                     opt_state=optimizer.init(params),
                     key=jax.random.key_data(jax.random.key(0)),
                     objective_state={"table": jnp.arange(table_rows * 2.0).reshape(-1, 2)})
  state = spmd.put_state(state, mesh)
  return spmd.make_train_step(loss_fn, optimizer, mesh, state), state


@pytest.mark.parametrize("num_devices", [1, 8])
def test_train_step_commits_rows_per_device_and_drops_a_nonfinite_step(num_devices):
  mesh = spmd.make_mesh(jax.devices()[:num_devices])
  step, state = _toy_step(mesh, table_rows=4 * num_devices)
  table = np.asarray(state.objective_state["table"])
  good = spmd.host_to_global(mesh, {"x": np.ones((num_devices, 1), np.float32)})
  bad = spmd.host_to_global(mesh, {"x": np.full((num_devices, 1), np.nan, np.float32)})

  state, metrics = step(state, bad)
  assert float(metrics["finite"]) == 0
  np.testing.assert_array_equal(state.objective_state["table"], table)
  np.testing.assert_array_equal(state.params["w"], np.ones(3))

  state, metrics = step(state, good)
  assert float(metrics["finite"]) == 1
  expected = table.copy()
  moved = [d * 4 + r for d in range(num_devices) for r in (0, 2)]  # rows 0 and 2 of each slice
  expected[moved] += 1.0
  np.testing.assert_array_equal(state.objective_state["table"], expected)
  assert np.all(np.asarray(state.params["w"]) < 1)


def test_sgld_step_updates_the_replay_buffer_in_place():
  # With the buffer donated and only the drawn rows committed, XLA writes into the buffer: no
  # temporary as large as the buffer (a whole-state select would need one, and a copy).
  config = benchmark_tiny.get_config()
  config.objective = "sgld"
  config.sgld.num_steps = 1
  config.sgld.buffer_size = 2048
  mesh = spmd.make_mesh(jax.devices()[:1])
  fns, params = models.from_config(config, 10)
  objective = objective_registry.make_objective(config, fns)
  optimizer = optax.adam(1e-3)
  state = loop.init_train_state(config, objective, params, optimizer, (32, 32, 3), mesh)
  rng = np.random.default_rng(0)
  batch = spmd.host_to_global(mesh, {
      "image": rng.uniform(-1, 1, (16, 32, 32, 3)).astype(np.float32),
      "image_unlabelled": rng.uniform(-1, 1, (16, 32, 32, 3)).astype(np.float32),
      "label": rng.integers(0, 10, 16).astype(np.int32)})
  step = spmd.make_train_step(objective.loss_fn, optimizer, mesh, state)
  compiled = step.lower(state, batch).compile()
  buffer_bytes = state.objective_state["replay_buffer"].samples.nbytes
  memory = compiled.memory_analysis()
  assert memory.alias_size_in_bytes >= buffer_bytes  # donated: the output reuses the input
  assert memory.temp_size_in_bytes < buffer_bytes / 4, memory
  if spmd.compiler_options("cpu"):  # this jaxlib takes the option: no YNNPACK convolutions
    assert "__ynn_fusion" not in compiled.as_text()

  before = np.asarray(state.objective_state["replay_buffer"].samples)
  new_state, metrics = compiled(state, batch)
  after = np.asarray(new_state.objective_state["replay_buffer"].samples)
  assert float(metrics["finite"]) == 1
  changed = np.any(after != before, axis=(1, 2, 3))
  assert 0 < changed.sum() <= 16  # at most the 16 drawn slots moved


def test_compiler_options_only_change_cpu_compilation():
  assert spmd.compiler_options("gpu") is None and spmd.compiler_options("tpu") is None
  options = spmd.compiler_options("cpu")
  assert options is None or options == spmd.CPU_COMPILER_OPTIONS


def _all_reduced_elements(hlo: str) -> int:
  """Elements all-reduced by a compiled module: the sum over its all-reduces of their shapes."""
  total = 0
  for line in hlo.splitlines():
    op = re.match(r"\s*(?:ROOT )?\S+ = (.+?) all-reduce(?:-start)?\(", line)
    if op:  # a shape like f32[3,3,8,16] or a tuple (f32[16], f32[], ...)
      for dims in re.findall(r"\b[a-z]+[0-9]*\[([0-9,]*)\]", op.group(1)):
        total += int(np.prod([int(d) for d in dims.split(",") if d]))
  return total


def test_all_reduced_elements_counts_tuple_and_scalar_shapes():
  hlo = ("  %a = f32[3,4]{1,0} all-reduce(f32[3,4]{1,0} %x), replica_groups={}\n"
         "  ROOT %b = (f32[], bf16[5]{0}) all-reduce(f32[] %y, bf16[5]{0} %z)\n"
         "  %c = f32[7]{0} add(f32[7]{0} %p, f32[7]{0} %q)\n")
  assert _all_reduced_elements(hlo) == 12 + 1 + 5


@pytest.mark.parametrize("objective", ["baseline", "ngebm", "sgld", "ngebm_fraction"])
def test_train_step_all_reduces_the_gradients_once(objective):
  # Under shard_map the gradient of the replicated parameters is already global; a second
  # reduction (a pmean after it, or one inside NG-EBM's penalty) would double the traffic.
  config = benchmark_tiny.get_config()
  config.objective = objective.removesuffix("_fraction")
  config.ngebm.penalty_fraction = 0.5 if objective.endswith("_fraction") else 1.0
  config.sgld.num_steps = 2
  mesh = spmd.make_mesh(jax.devices()[:4])
  fns, params = models.from_config(config, 10)
  obj = objective_registry.make_objective(config, fns)
  optimizer = optax.adam(1e-3)
  state = loop.init_train_state(config, obj, params, optimizer, (32, 32, 3), mesh)
  images = np.zeros((16, 32, 32, 3), np.float32)
  batch = spmd.host_to_global(mesh, {"image": images, "image_unlabelled": images,
                                     "label": np.zeros(16, np.int32)})
  step = spmd.make_train_step(obj.loss_fn, optimizer, mesh, state)
  hlo = step.lower(state, batch).compile().as_text()
  num_params = sum(p.size for p in jax.tree.leaves(params))
  assert num_params <= _all_reduced_elements(hlo) < 1.2 * num_params
