"""The objectives the trainer can optimize, chosen by `config.objective`.

Each entry turns the config and the model into a per-device loss

  loss_fn(params, batch, key, objective_state, axis_name, step=None)
      -> (loss, (metrics, objective_state))

that the SPMD train step differentiates. The math lives in `ngebm_jax.objectives` (and
`ngebm_jax.sgld`, `ngebm_jax.focus`); this module only binds config values to it.
`objective_state` is what an objective carries between steps (SGLD's replay buffer slice); its
leaves are split over the `data` axis along their first dimension. A loss may return, for such a
table, only the rows it changed (`spmd.RowUpdate`), which the train step writes in place.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp

from ngebm_jax import calibration_objectives
from ngebm_jax import focus as focus_lib
from ngebm_jax import objectives as objectives_lib
from ngebm_jax import sgld as sgld_lib
from ngebm_jax.training import spmd


@dataclasses.dataclass(frozen=True)
class Objective:
  loss_fn: Callable
  # init_state(key, image_shape, num_devices) -> pytree whose leaves have a leading axis
  # divisible by num_devices (split over `data`), or {} for stateless objectives.
  init_state: Callable[..., Any] = lambda key, image_shape, num_devices: {}


def _apply_with_dropout(model_fns, config, key):
  if config.model.dropout_rate > 0:
    return lambda p, x: model_fns.apply_fn(p, x, dropout_key=key)
  return model_fns.apply_fn


def _metrics(aux: dict, labels: jax.Array, axis_name) -> dict:
  logits = aux["logits"]
  accuracy = objectives_lib.global_mean(
      (jnp.argmax(logits, -1) == labels).astype(jnp.float32), axis_name)
  metrics = {k: v for k, v in aux.items() if jnp.ndim(v) == 0}
  metrics["accuracy"] = accuracy
  return metrics


def _stateless(loss, config, model_fns, **hyperparameters) -> Objective:
  """An objective from a pure loss `loss(apply_fn, params, x, y, **hyperparameters)`."""
  def loss_fn(params, batch, key, objective_state, axis_name, step=None):
    apply_fn = _apply_with_dropout(model_fns, config, key)
    value, aux = loss(apply_fn, params, batch["image"], batch["label"], axis_name=axis_name,
                      **hyperparameters)
    return value, (_metrics(aux, batch["label"], axis_name), objective_state)
  return Objective(loss_fn)


def _baseline(config, model_fns) -> Objective:
  return _stateless(objectives_lib.cross_entropy_loss, config, model_fns)


def _ngebm(config, model_fns) -> Objective:
  c = config.ngebm
  return _stateless(objectives_lib.ngebm_loss, config, model_fns, beta=c.beta, gamma=c.gamma,
                    grad_mode=c.grad_mode, penalty_fraction=c.penalty_fraction)


def _label_smoothing(config, model_fns) -> Objective:
  return _stateless(calibration_objectives.label_smoothing_loss, config, model_fns,
                    alpha=config.label_smoothing.alpha)


def _focal(config, model_fns) -> Objective:
  return _stateless(calibration_objectives.focal_loss, config, model_fns,
                    gamma=config.focal.gamma, schedule=config.focal.schedule)


def _sgld(config, model_fns) -> Objective:
  """JEM: cross-entropy plus maximum likelihood of `log p~` with SGLD samples (sgld.py).

  Each device keeps its own slice of the replay buffer (`config.sgld.buffer_size` in total).
  The chain uses the model without dropout, as JEM samples in eval mode.
  """
  c = config.sgld

  def init_state(key, image_shape, num_devices):
    if c.buffer_size % num_devices:
      raise ValueError(f"config.sgld.buffer_size ({c.buffer_size}) must be divisible by the "
                       f"number of devices ({num_devices}).")
    return {"replay_buffer": sgld_lib.init_replay_buffer(key, c.buffer_size, image_shape)}

  def loss_fn(params, batch, key, objective_state, axis_name, step=None):
    if config.model.dropout_rate > 0:
      raise ValueError("objective 'sgld' needs config.model.dropout_rate = 0 (the chain and the "
                       "loss share one deterministic apply_fn).")
    x_unlabelled = batch.get("image_unlabelled") if c.separate_unlabelled_batch else None
    loss, (aux, buffer) = sgld_lib.sgld_ebm_loss(
        model_fns.apply_fn, params, batch["image"], batch["label"],
        objective_state["replay_buffer"], key, num_steps=c.num_steps, step_size=c.step_size,
        noise_std=c.noise_std, reinit_prob=c.reinit_prob, x_unlabelled=x_unlabelled,
        unroll=c.unroll, energy_l2=c.energy_l2, axis_name=axis_name)
    metrics = _metrics(aux, batch["label"], axis_name)
    # Divergence shows first in the samples' energies: log their mean and extremes.
    e = jax.lax.stop_gradient(aux["energy_samples"])
    metrics["energy_samples_mean"] = objectives_lib.global_mean(e, axis_name)
    metrics["energy_samples_min"] = jax.lax.pmin(jnp.min(e), axis_name) if axis_name else e.min()
    metrics["energy_samples_max"] = jax.lax.pmax(jnp.max(e), axis_name) if axis_name else e.max()
    del buffer  # only the drawn rows change: the step commits them in place (spmd.RowUpdate)
    rows = spmd.RowUpdate(aux["buffer_indices"],
                          sgld_lib.ReplayBuffer(samples=aux["buffer_samples"]))
    return loss, (metrics, {"replay_buffer": rows})

  return Objective(loss_fn, init_state)


def _ramp(step, start_step: int, ramp_steps: int):
  """0 before `start_step`, then linear to 1 over `ramp_steps` (1 at once if 0)."""
  if step is None:
    return 1.0
  t = (step - start_step + 1) / max(ramp_steps, 1)
  return jnp.clip(t, 0.0, 1.0).astype(jnp.float32)


def _focus_family(config, model_fns, cyborg: bool) -> Objective:
  """CYBORG and the entropy-based focus losses (focus.py) on the model's classic CAM.

  The CAM terms can start late and ramp in (`config.focus.start_step`, `ramp_steps`);
  `reference_entropy < 0` means: the mean entropy of the batch's human maps;
  `config.focus.cam_class` picks the CAM's class ("predicted" or "true").
  """
  c = config.focus

  def loss_fn(params, batch, key, objective_state, axis_name, step=None):
    features = model_fns.features_fn(params, batch["image"], dropout_key=key
                                     if config.model.dropout_rate > 0 else None)
    logits = model_fns.head_fn(params, features)
    w = model_fns.head_kernel(params)
    human = batch.get("human_map")
    scale = _ramp(step, c.start_step, c.ramp_steps)
    if cyborg:
      ce_weight, human_weight, entropy_weight = c.alpha, (1.0 - c.alpha) * scale, 0.0
      form, reference = "mean", None
    else:
      ce_weight, human_weight = c.ce_weight, c.human_weight * scale
      entropy_weight, form = c.entropy_weight * scale, c.entropy_form
      reference = None
      if form == "match_reference":
        reference = c.reference_entropy
        if reference < 0:
          reference = objectives_lib.global_mean(
              focus_lib.human_map_entropy(human, features.shape[1:3]), axis_name)
    loss, aux = focus_lib.focus_loss(
        logits, features, w, batch["label"], human if human is not None else None,
        ce_weight=ce_weight, human_weight=human_weight, entropy_weight=entropy_weight,
        entropy_form=form, reference_entropy=reference, cam_class=c.cam_class,
        axis_name=axis_name)
    return loss, (_metrics(aux, batch["label"], axis_name), objective_state)

  return Objective(loss_fn)


_REGISTRY: dict[str, Callable[..., Objective]] = {
    "baseline": _baseline,
    "ngebm": _ngebm,
    "sgld": _sgld,
    "label_smoothing": _label_smoothing,
    "focal": _focal,
    "cyborg": lambda config, fns: _focus_family(config, fns, cyborg=True),
    "focus": lambda config, fns: _focus_family(config, fns, cyborg=False),
}


def needs_human_maps(config) -> bool:
  """Whether the objective reads human salience maps (CYBORG's MSE term, or the focus loss with a
  human term or a reference entropy taken from the human maps)."""
  if config.objective == "cyborg":
    return True
  c = config.focus
  return config.objective == "focus" and (
      c.human_weight > 0 or (c.entropy_form == "match_reference" and c.reference_entropy < 0))


def needs_unlabelled_batch(config) -> bool:
  """Whether the objective draws a second, unlabelled data batch each step (JEM's default)."""
  return config.objective == "sgld" and config.sgld.separate_unlabelled_batch


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
