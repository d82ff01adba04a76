"""The train state: every piece of training state, explicit and checkpointed."""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import jax
import optax


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class TrainState:
  """Parameters, optimizer state, step, the run's root key, and objective state.

  `key` is raw uint32 key data (`jax.random.key_data`) so that it checkpoints as a plain array;
  each step folds the step number (and the device index) into it, so no key is ever reused and a
  resumed run draws the same numbers as an uninterrupted one. `objective_state` holds what an
  objective carries between steps (SGLD's replay buffer); every leaf is split over the `data`
  mesh axis along its first dimension, one slice per device.
  """
  step: jax.Array
  params: Any
  opt_state: Any
  key: jax.Array
  objective_state: Any

  def replace(self, **kwargs) -> "TrainState":
    return dataclasses.replace(self, **kwargs)


def learning_rate_schedule(learning_rate: float, warmup_steps: int, *,
                           decay_steps: Sequence[int] = (), decay_rate: float = 1.0
                           ) -> optax.Schedule:
  """Linear warmup from 0 over `warmup_steps`, then constant, times `decay_rate` at each step of
  `decay_steps` (JEM: x0.3 at epochs 160 and 180; NG-EBM: no decay)."""
  if learning_rate <= 0:
    raise ValueError(f"optimizer.learning_rate must be > 0; got {learning_rate}.")
  if warmup_steps < 0:
    raise ValueError(f"optimizer.warmup_steps must be >= 0; got {warmup_steps}.")
  if not 0 < decay_rate:
    raise ValueError(f"optimizer.decay_rate must be > 0; got {decay_rate}.")
  decay_steps = [int(s) for s in decay_steps]
  if any(s <= 0 for s in decay_steps) or decay_steps != sorted(set(decay_steps)):
    raise ValueError(f"decay steps must be increasing and positive; got {decay_steps}.")
  if warmup_steps == 0:
    return optax.piecewise_constant_schedule(learning_rate,
                                             {s: decay_rate for s in decay_steps})
  # join_schedules hands the second schedule the steps since the warmup ended, so the decay
  # boundaries move back by `warmup_steps`; one inside the warmup applies from its end on.
  after_warmup = optax.piecewise_constant_schedule(
      learning_rate, {s - warmup_steps: decay_rate for s in decay_steps})
  return optax.join_schedules(
      [optax.linear_schedule(0.0, learning_rate, warmup_steps), after_warmup], [warmup_steps])


def make_optimizer(learning_rate: float, warmup_steps: int, *, decay_steps: Sequence[int] = (),
                   decay_rate: float = 1.0, b1: float = 0.9, b2: float = 0.999,
                   weight_decay: float = 0.0) -> optax.GradientTransformation:
  """Adam (AdamW if `weight_decay > 0`) on `learning_rate_schedule` (the NGEBM recipe: warmup
  over 1,000 steps, then 1e-4; no decay)."""
  schedule = learning_rate_schedule(learning_rate, warmup_steps, decay_steps=decay_steps,
                                    decay_rate=decay_rate)
  if weight_decay > 0:
    return optax.adamw(schedule, b1=b1, b2=b2, weight_decay=weight_decay)
  return optax.adam(schedule, b1=b1, b2=b2)


def optimizer_from_config(config, steps_per_epoch: int) -> optax.GradientTransformation:
  """The optimizer of `config.optimizer`; `decay_epochs` become steps with `steps_per_epoch`."""
  opt = config.optimizer
  return make_optimizer(
      opt.learning_rate, opt.warmup_steps,
      decay_steps=[int(round(e * steps_per_epoch)) for e in opt.decay_epochs],
      decay_rate=opt.decay_rate, b1=opt.b1, b2=opt.b2, weight_decay=opt.weight_decay)
