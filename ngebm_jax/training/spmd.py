"""Data parallelism: the device mesh, batch sharding, and the SPMD train step.

The train step is written as the per-device function that `jax.pmap` would map (collectives over
`axis_name`), and mapped with `jax.shard_map` over a one-axis mesh `("data",)` spanning every
device of every host. Parameters and optimizer state are replicated; the batch and the objective
state (a replay buffer) are split over `data`. The same code runs on one CPU, 8 GPUs or a pod.
"""

from __future__ import annotations

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


def host_to_global(mesh, local_batch: dict) -> dict:
  """This process's slice of the global batch -> global arrays split over `data`."""
  sharding = NamedSharding(mesh, P(AXIS))
  return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v))
          for k, v in local_batch.items()}


def train_step_fn(loss_fn, optimizer: optax.GradientTransformation, *, axis_name=AXIS,
                  max_abs_loss: float = float("inf")):
  """The per-device step: `(state, batch) -> (state, metrics)`, with `axis_name` collectives.

  Gradients are averaged over `axis_name` (under `shard_map` they are already global and the
  mean leaves them unchanged; under `pmap` it is what makes them global). A step whose loss or
  gradients are not finite, or whose `|loss|` exceeds `max_abs_loss` (a finite blow-up: JEM's
  code stops at 1e8), is not applied: the state stays as it was (parameters, optimizer state
  and objective state), and `metrics["finite"]` is 0, for the loop to stop or count.
  """

  def step(state: TrainState, batch: dict):
    key = jax.random.fold_in(jax.random.wrap_key_data(state.key), state.step)
    key = jax.random.fold_in(key, jax.lax.axis_index(axis_name))
    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
    (loss, (metrics, objective_state)), grads = grad_fn(
        state.params, batch, key, state.objective_state, axis_name, step=state.step)
    grads = jax.lax.pmean(grads, axis_name)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    grad_norm = optax.global_norm(grads)
    finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm) & (jnp.abs(loss) <= max_abs_loss)
    # A non-finite step must leave no trace on any device: `finite` is global (loss and grads
    # are), so every device keeps or drops the update together.
    keep = lambda new, old: jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, old)
    new_state = state.replace(
        step=state.step + 1,
        params=keep(params, state.params),
        opt_state=keep(opt_state, state.opt_state),
        objective_state=keep(objective_state, state.objective_state))
    metrics = dict(metrics, loss=loss, param_grad_norm=grad_norm,
                   finite=finite.astype(jnp.float32))
    return new_state, metrics

  return step


def make_train_step(loss_fn, optimizer, mesh, state: TrainState, *,
                    max_abs_loss: float = float("inf")):
  """Jitted, `shard_map`-ped train step over `mesh`, donating the state."""
  specs = state_specs(state)
  step = jax.shard_map(train_step_fn(loss_fn, optimizer, max_abs_loss=max_abs_loss), mesh=mesh,
                       in_specs=(specs, P(AXIS)), out_specs=(specs, P()))
  return jax.jit(step, donate_argnums=0)


def put_state(state: TrainState, mesh) -> TrainState:
  return jax.device_put(state, shardings(mesh, state_specs(state)))
