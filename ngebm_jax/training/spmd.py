"""Data parallelism: the device mesh, batch sharding, and the SPMD train step.

The train step is written as the per-device function that `jax.pmap` would map (collectives over
`axis_name`), and mapped with `jax.shard_map` over a one-axis mesh `("data",)` spanning every
device of every host. Parameters and optimizer state are replicated; the batch and the objective
state (a replay buffer) are split over `data`. The same code runs on one CPU, 8 GPUs or a pod.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import NamedSharding, PartitionSpec as P

from ngebm_jax.training.state import TrainState

AXIS = "data"


def make_mesh(devices=None) -> jax.sharding.Mesh:
  devices = np.asarray(devices if devices is not None else jax.devices())
  return jax.sharding.Mesh(devices.reshape(-1), (AXIS,))


def state_specs(state: TrainState) -> TrainState:
  """Replicated everything, except the objective state, split along its first axis."""
  replicated = lambda tree: jax.tree.map(lambda _: P(), tree)
  return TrainState(step=P(), params=replicated(state.params),
                    opt_state=replicated(state.opt_state), key=P(),
                    objective_state=jax.tree.map(lambda _: P(AXIS), state.objective_state))


def shardings(mesh, specs):
  return jax.tree.map(lambda s: NamedSharding(mesh, s), specs,
                      is_leaf=lambda s: isinstance(s, P))


def batch_sharding(mesh) -> NamedSharding:
  """A global batch's sharding: split along its first axis over `data`."""
  return NamedSharding(mesh, P(AXIS))


def host_to_global(mesh, local_batch: dict) -> dict:
  """This process's slice of the global batch -> global arrays split over `data`."""
  sharding = batch_sharding(mesh)
  return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v))
          for k, v in local_batch.items()}


@functools.partial(jax.tree_util.register_dataclass, data_fields=["indices", "rows"],
                   meta_fields=[])
@dataclasses.dataclass(frozen=True)
class RowUpdate:
  """New values for a few rows of a piece of objective state, in place of the whole new piece.

  An objective returns `RowUpdate(indices, rows)` where its state holds a large table of which a
  step changes a few rows (SGLD's replay buffer: B of N samples): `rows` has the structure of
  that piece of state, each leaf with the drawn rows `[B, ...]` for the slots `indices [B]` of
  the leaf's first axis. The train step then reads and writes only those rows (`commit`), so
  the donated table is updated in place instead of copied. A slot listed twice keeps one of its
  rows (unspecified which), as `x.at[indices].set(rows)` does.
  """
  indices: jax.Array
  rows: Any


def commit(old: Any, new: Any, accept: jax.Array) -> Any:
  """The objective state after a step: `new` where `accept` (a scalar bool), else `old`.

  `new` has the structure of `old`, except that a subtree may be a `RowUpdate`: those rows are
  written when `accept`, and their old values written back otherwise, so the guard touches B
  rows of the table instead of selecting between two copies of all of it. Other leaves are
  selected whole (`where(accept, new, old)`).
  """
  def commit_piece(new_piece, old_piece):
    if isinstance(new_piece, RowUpdate):
      idx = new_piece.indices
      return jax.tree.map(
          lambda o, r: o.at[idx].set(jnp.where(accept, r.astype(o.dtype), o[idx])),
          old_piece, new_piece.rows)
    return jnp.where(accept, new_piece, old_piece)

  return jax.tree.map(commit_piece, new, old, is_leaf=lambda t: isinstance(t, RowUpdate))


def train_step_fn(loss_fn, optimizer: optax.GradientTransformation, *, axis_name=AXIS,
                  max_abs_loss: float = float("inf")):
  """The per-device step: `(state, batch) -> (state, metrics)`, with `axis_name` collectives.

  One all-reduce of the gradients per step. Under `shard_map` (which tracks what varies over
  `axis_name`) the replicated parameters are cast to varying once, at the top of the loss, so
  that every use of them (NG-EBM's penalty has its own) adds into one per-device cotangent, and
  the transpose of that cast sums it over the devices once: the gradients come out global.
  Under `pmap` the gradients come out per device and are averaged (`pmean`). A step whose loss or
  gradients are not finite, or whose `|loss|` exceeds `max_abs_loss` (a finite blow-up: JEM's
  code stops at 1e8), is not applied: the state stays as it was (parameters, optimizer state
  and objective state; `commit`, row-wise for an objective's `RowUpdate`), and
  `metrics["finite"]` is 0, for the loop to stop or count.
  """

  def step(state: TrainState, batch: dict):
    key = jax.random.fold_in(jax.random.wrap_key_data(state.key), state.step)
    key = jax.random.fold_in(key, jax.lax.axis_index(axis_name))
    tracked = _varies_over(batch, axis_name)  # shard_map (with its check) rather than pmap

    def loss_of_replicated(params, *args, **kwargs):
      if not tracked:
        return loss_fn(params, *args, **kwargs)
      loss, (metrics, objective_state) = loss_fn(_to_varying(params, axis_name), *args, **kwargs)
      # A loss that uses the parameters outside its global means (a weight penalty) is now
      # typed as varying, though equal on every device: its mean over the devices has the same
      # value and gradient, and the replicated type.
      loss, metrics = _replicated((loss, metrics), axis_name)
      return loss, (metrics, objective_state)

    grad_fn = jax.value_and_grad(loss_of_replicated, has_aux=True)
    (loss, (metrics, objective_state)), grads = grad_fn(
        state.params, batch, key, state.objective_state, axis_name, step=state.step)
    if not tracked:
      grads = jax.lax.pmean(grads, axis_name)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    grad_norm = optax.global_norm(grads)
    finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm) & (jnp.abs(loss) <= max_abs_loss)
    # A non-finite step must leave no trace on any device: `finite` is global (loss and grads
    # are), so every device keeps or drops the update together.
    new_state = state.replace(
        step=state.step + 1,
        params=commit(state.params, params, finite),
        opt_state=commit(state.opt_state, opt_state, finite),
        objective_state=commit(state.objective_state, objective_state, finite))
    metrics = dict(metrics, loss=loss, param_grad_norm=grad_norm,
                   finite=finite.astype(jnp.float32))
    return new_state, metrics

  return step


def _varies_over(tree, axis_name) -> bool:
  """Whether JAX tracks `tree`'s leaves as varying over `axis_name` (inside `shard_map`).

  `pmap`, and `shard_map(..., check_vma=False)`, track nothing: there the gradient with respect
  to a replicated value is per device, where `shard_map` sums it over the devices.
  """
  aval = jax.typeof(jax.tree.leaves(tree)[0])  # JAX tracks all of a batch's leaves alike
  varying = getattr(aval, "vma", None)  # jax < 0.9 calls it `vma`; later `mat.varying`
  if varying is None:
    varying = aval.mat.varying
  return axis_name in varying


def _replicated(tree, axis_name):
  """`tree` with its leaves that vary over `axis_name` (equal on every device) averaged."""
  return jax.tree.map(
      lambda a: jax.lax.pmean(a, axis_name) if _varies_over(a, axis_name) else a, tree)


def _to_varying(tree, axis_name):
  if hasattr(jax.lax, "pcast"):
    return jax.lax.pcast(tree, axis_name, to="varying")
  return jax.lax.pvary(tree, axis_name)  # jax < 0.8


# XLA:CPU (jaxlib 0.10) hands convolutions to YNNPACK fusions by default. Their weight-gradient
# convolutions (batch and spatial axes contracted, a 32x32 "kernel") ran 4-15x slower than
# XLA's own convolution on 2 cores: one WRN-10-1 layer's took 264-548 ms against 37-48 ms, and
# a whole WRN-10-1 train step (batch 64, round-robin, load ~10) 1124 ms against 587 ms, NG-EBM's
# 2116 against 994 ms, SGLD-EBM K = 5's 5346 against 3387 ms. So the train step is compiled
# without them on CPU.
CPU_COMPILER_OPTIONS = {"xla_cpu_experimental_ynn_fusion_type": ""}


@functools.lru_cache(maxsize=None)
def _options_accepted(backend: str, options: tuple) -> bool:
  """Whether this jaxlib's compiler for `backend` takes `options` (they change across versions)."""
  try:
    x = jax.device_put(np.zeros((), np.float32), jax.devices(backend)[0])
    jax.jit(lambda x: x + 1).lower(x).compile(compiler_options=dict(options))
  except Exception:  # pylint: disable=broad-except  # an older or newer XLA without the flag
    return False
  return True


def compiler_options(backend: str | None = None) -> dict | None:
  """XLA options for the train step on `backend` (default: JAX's), or None: XLA's defaults."""
  backend = backend or jax.default_backend()
  if backend == "cpu" and _options_accepted(backend, tuple(CPU_COMPILER_OPTIONS.items())):
    return dict(CPU_COMPILER_OPTIONS)
  return None


def make_train_step(loss_fn, optimizer, mesh, state: TrainState, *,
                    max_abs_loss: float = float("inf")):
  """Jitted, `shard_map`-ped train step over `mesh`, donating the state (`compiler_options`)."""
  specs = state_specs(state)
  step = jax.shard_map(train_step_fn(loss_fn, optimizer, max_abs_loss=max_abs_loss), mesh=mesh,
                       in_specs=(specs, P(AXIS)), out_specs=(specs, P()))
  return jax.jit(step, donate_argnums=0,
                 compiler_options=compiler_options(mesh.devices.flat[0].platform))


def put_state(state: TrainState, mesh) -> TrainState:
  return jax.device_put(state, shardings(mesh, state_specs(state)))
