"""The objectives the trainer can optimize, chosen by `config.objective`.

Each entry turns the config and the model into a per-device loss

  loss_fn(params, batch, key, objective_state, axis_name) -> (loss, (metrics, objective_state))

that the SPMD train step differentiates. The math lives in `ngebm_jax.objectives` (and
`ngebm_jax.sgld`, `ngebm_jax.focus`); this module only binds config values to it.
`objective_state` is what an objective carries between steps (SGLD's replay buffer slice); its
leaves are split over the `data` axis along their first dimension.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp

from ngebm_jax import objectives as objectives_lib


@dataclasses.dataclass(frozen=True)
class Objective:
  loss_fn: Callable
  # init_state(key, image_shape, num_devices) -> pytree whose leaves have a leading axis
  # divisible by num_devices (split over `data`), or {} for stateless objectives.
  init_state: Callable[..., Any] = lambda key, image_shape, num_devices: {}


def _apply_with_dropout(model_fns, config, key):
  if config.model.get("dropout_rate", 0.0) > 0:
    return lambda p, x: model_fns.apply_fn(p, x, dropout_key=key)
  return model_fns.apply_fn


def _metrics(aux: dict, labels: jax.Array, axis_name) -> dict:
  logits = aux["logits"]
  accuracy = objectives_lib.global_mean(
      (jnp.argmax(logits, -1) == labels).astype(jnp.float32), axis_name)
  metrics = {k: v for k, v in aux.items() if jnp.ndim(v) == 0}
  metrics["accuracy"] = accuracy
  return metrics


def _baseline(config, model_fns) -> Objective:
  def loss_fn(params, batch, key, objective_state, axis_name):
    apply_fn = _apply_with_dropout(model_fns, config, key)
    loss, aux = objectives_lib.cross_entropy_loss(
        apply_fn, params, batch["image"], batch["label"], axis_name=axis_name)
    return loss, (_metrics(aux, batch["label"], axis_name), objective_state)
  return Objective(loss_fn)


def _ngebm(config, model_fns) -> Objective:
  c = config.ngebm

  def loss_fn(params, batch, key, objective_state, axis_name):
    apply_fn = _apply_with_dropout(model_fns, config, key)
    loss, aux = objectives_lib.ngebm_loss(
        apply_fn, params, batch["image"], batch["label"], beta=c.beta, gamma=c.gamma,
        grad_mode=c.grad_mode, axis_name=axis_name)
    return loss, (_metrics(aux, batch["label"], axis_name), objective_state)
  return Objective(loss_fn)


_REGISTRY: dict[str, Callable[..., Objective]] = {
    "baseline": _baseline,
    "ngebm": _ngebm,
}


def register(name: str, builder: Callable[..., Objective]) -> None:
  """Adds an objective `builder(config, model_fns) -> Objective` under `name`."""
  _REGISTRY[name] = builder


def names() -> tuple[str, ...]:
  return tuple(sorted(_REGISTRY))


def make_objective(config, model_fns) -> Objective:
  name = config.objective
  if name not in _REGISTRY:
    raise ValueError(f"config.objective must be one of {names()}; got {name!r}.")
  return _REGISTRY[name](config, model_fns)
