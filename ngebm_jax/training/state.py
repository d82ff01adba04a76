"""The train state: every piece of training state, explicit and checkpointed."""

from __future__ import annotations

import dataclasses
from typing import Any

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


def make_optimizer(learning_rate: float, warmup_steps: int, *, b1: float = 0.9,
                   b2: float = 0.999, weight_decay: float = 0.0) -> optax.GradientTransformation:
  """Adam with a linear warmup from 0 over `warmup_steps`, then constant (NGEBM.md recipe)."""
  if learning_rate <= 0:
    raise ValueError(f"optimizer.learning_rate must be > 0; got {learning_rate}.")
  if warmup_steps < 0:
    raise ValueError(f"optimizer.warmup_steps must be >= 0; got {warmup_steps}.")
  if warmup_steps > 0:
    schedule = optax.join_schedules(
        [optax.linear_schedule(0.0, learning_rate, warmup_steps),
         optax.constant_schedule(learning_rate)], [warmup_steps])
  else:
    schedule = optax.constant_schedule(learning_rate)
  if weight_decay > 0:
    return optax.adamw(schedule, b1=b1, b2=b2, weight_decay=weight_decay)
  return optax.adam(schedule, b1=b1, b2=b2)
