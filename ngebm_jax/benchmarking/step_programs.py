"""One compiled train step per benchmarked variant: an objective, and for SGLD its chain length.

A variant's step is the trainer's own: `spmd.make_train_step` over the objective of
`objective_registry`, with the optimizer and initial state of `loop` (value and gradient of the
objective, Adam update, state donated), compiled ahead of time with lowering and compilation
timed apart.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable, Sequence

import jax
import ml_collections
from absl import logging

from ngebm_jax import _checks
from ngebm_jax import models
from ngebm_jax.training import loop
from ngebm_jax.training import objective_registry
from ngebm_jax.training import spmd
from ngebm_jax.training.state import TrainState
from ngebm_jax.training.state import optimizer_from_config

DEFAULT_SGLD_STEPS = (1, 5, 10, 20, 40)


@dataclasses.dataclass(frozen=True)
class Variant:
  """One timed train step: an objective, and for SGLD its chain length K.

  `canonical` is False for a variant that differs from the config's own step only in how it
  computes the same thing (another NG-EBM `grad_mode`, another SGLD `unroll`).
  """
  name: str  # "baseline", "ngebm", "sgld_k20", "ngebm_reverse_over_reverse", "sgld_k20_unroll1"
  objective: str
  config: ml_collections.ConfigDict
  sgld_steps: int | None = None
  canonical: bool = True


def make_variants(config, objective_names: Sequence[str],
                  sgld_steps: Sequence[int] = DEFAULT_SGLD_STEPS, *,
                  ngebm_grad_modes: Sequence[str] = (), sgld_unrolls: Sequence[int] = (),
                  ngebm_penalty_fractions: Sequence[float] = (),
                  ) -> tuple[list[Variant], list[str]]:
  """The variants of `config` to time, and the requested objectives that are not registered.

  `config.objective` is replaced by each name in turn; "sgld" becomes one variant per K in
  `sgld_steps` (`config.sgld.num_steps = K`). Everything else stays as in `config`, except:
  `ngebm_grad_modes` adds an "ngebm_<mode>" variant per mode other than the config's, and
  `sgld_unrolls` adds an "sgld_k<K>_unroll<u>" variant per unroll factor u and K (same
  numbers, another loop structure): the two forms of the Approximate Mass gradient, and a
  rolled against an unrolled chain, timed in the same run. `ngebm_penalty_fractions` adds an
  "ngebm_f<f>" variant per fraction other than the config's: the cheaper NG-EBM, its penalty on
  that share of each batch (`config.ngebm.penalty_fraction`; another objective, not another
  form).
  """
  for f in ngebm_penalty_fractions:
    if not 0 < float(f) <= 1:
      raise ValueError(f"ngebm_penalty_fractions must be in (0, 1]; got {f}.")
  available = objective_registry.names()
  variants, skipped = [], []

  def add(name, objective, k=None, canonical=True, **changes):
    c = config.copy_and_resolve_references()
    c.objective = objective
    if k is not None:
      c.sgld.num_steps = int(k)
    for field, value in changes.items():
      section, key = field.split(".")
      c[section][key] = value
    variants.append(Variant(name, objective, c, k, canonical))

  for name in objective_names:
    if name not in available:
      skipped.append(name)
      continue
    if name == "sgld":
      if not sgld_steps:
        raise ValueError("sgld_steps must name at least one chain length K to time 'sgld'.")
      for k in sgld_steps:
        _checks.check_positive_int(k, "sgld_steps (each)")
        add(f"sgld_k{int(k)}", "sgld", k)
        for u in sgld_unrolls:
          _checks.check_positive_int(u, "sgld_unrolls (each)")
          add(f"sgld_k{int(k)}_unroll{int(u)}", "sgld", k, canonical=False,
              **{"sgld.unroll": int(u)})
    else:
      add(name, name)
      if name == "ngebm":
        for mode in ngebm_grad_modes:
          if mode != config.ngebm.grad_mode:
            add(f"ngebm_{mode}", "ngebm", canonical=False, **{"ngebm.grad_mode": mode})
        for f in ngebm_penalty_fractions:
          if float(f) != config.ngebm.penalty_fraction:
            add(f"ngebm_f{float(f):g}", "ngebm", **{"ngebm.penalty_fraction": float(f)})
  if skipped:
    logging.warning("Objectives not registered in this version, skipped: %s (available: %s).",
                    skipped, available)
  return variants, skipped


@dataclasses.dataclass
class StepProgram:
  """A variant's compiled train step, and how to make a fresh train state for it."""
  variant: Variant
  compiled: Any  # jax.stages.Compiled: (state, batch) -> (state, metrics); state donated
  init_state: Callable[[], TrainState]
  lower_s: float
  compile_s: float
  model_fns: Any
  params_template: Any  # the initial parameters, host (NumPy) arrays


def build_step(variant: Variant, mesh, example_batch: dict, *, num_classes: int,
               image_shape: Sequence[int], steps_per_epoch: int) -> StepProgram:
  """Builds and compiles (timed) the SPMD train step of `variant` for batches like the example.

  The step, its optimizer and its initial state are the trainer's (`loop.init_train_state`).
  """
  config = variant.config
  fns, params = models.from_config(config, num_classes)
  # A host copy: the step donates its state, so every fresh state needs buffers of its own
  # (`init_train_state` builds each in one program, from these).
  params = jax.device_get(params)
  objective = objective_registry.make_objective(config, fns)
  optimizer = optimizer_from_config(config, steps_per_epoch)

  def init_state() -> TrainState:
    return loop.init_train_state(config, objective, params, optimizer, image_shape, mesh)

  state = init_state()
  step = spmd.make_train_step(objective.loss_fn, optimizer, mesh, state,
                              max_abs_loss=config.max_abs_loss)
  t0 = time.perf_counter()
  lowered = step.lower(state, example_batch)
  t1 = time.perf_counter()
  compiled = lowered.compile()
  t2 = time.perf_counter()
  del state
  logging.info("%s: lowered in %.1f s, compiled in %.1f s.", variant.name, t1 - t0, t2 - t1)
  return StepProgram(variant, compiled, init_state, t1 - t0, t2 - t1, fns, params)
