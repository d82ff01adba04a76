"""End to end: training time until a validation accuracy, the fair comparison of objectives.

Objectives converge at different speeds per step, so step times alone do not say which reaches
a given accuracy first. `time_to_accuracy` trains a compiled step program (`step_programs`) on
the trainer's own input pipeline and validates with the trainer's own `loop.Validator`; the
clock runs over training steps only (input pipeline included, compilation and validation
excluded). (`loop.train`'s logged `step_time_s` also counts evaluation and checkpoint writes,
which would blur a comparison between objectives of different step costs.)
"""

from __future__ import annotations

import time

import jax
from absl import logging

from ngebm_jax.benchmarking.step_programs import StepProgram
from ngebm_jax.training import loop
from ngebm_jax.training import spmd


def time_to_accuracy(program: StepProgram, config, sources: dict, mesh, *,
                     target_accuracy: float, max_steps: int, eval_every: int,
                     max_seconds: float | None = None) -> dict:
  """Trains `program`'s variant from its initial state until validation accuracy >= target.

  The clock accumulates the wall time of training steps only: each interval of `eval_every`
  steps is dispatched as the loop does (asynchronously, the input pipeline overlapping the
  device) and closed with `block_until_ready`; validation runs with the clock stopped.
  Stops at the first evaluation that reaches `target_accuracy`, after `max_steps` steps, or once
  the clock passes `max_seconds`.

  Returns:
    A dict with `reached`, `steps_to_target`, `seconds_to_target` (None when not reached),
    `curve` (`[{step, train_s, val_accuracy, val_nll}]`), `nonfinite_steps`, and the last and
    best validation accuracies.
  """
  if max_steps < 1 or eval_every < 1:
    raise ValueError(f"max_steps and eval_every must be >= 1; got {max_steps}, {eval_every}.")
  validate = loop.Validator(config, program.model_fns.apply_fn, sources["validation"], mesh)
  train_iter = loop.train_iterator(config, sources["train"])
  state = program.init_state()
  train_s, step, curve, nonfinite = 0.0, 0, [], 0
  reached_at = None
  while step < max_steps:
    pending = []
    t0 = time.perf_counter()
    for _ in range(min(eval_every, max_steps - step)):
      batch = spmd.host_to_global(mesh, next(train_iter))
      state, metrics = program.compiled(state, batch)
      pending.append(metrics["finite"])
      step += 1
    jax.block_until_ready(state)
    train_s += time.perf_counter() - t0
    nonfinite += int(sum(float(f) < 1 for f in jax.device_get(pending)))
    val = validate(state.params)
    curve.append({"step": step, "train_s": train_s, "val_accuracy": val["accuracy"],
                  "val_nll": val["nll"]})
    logging.info("%s: step %d, %.1f s of training, validation accuracy %.4f",
                 program.variant.name, step, train_s, val["accuracy"])
    if val["accuracy"] >= target_accuracy:
      reached_at = curve[-1]
      break
    if max_seconds is not None and train_s >= max_seconds:
      break
  accs = [c["val_accuracy"] for c in curve]
  return {"target_accuracy": float(target_accuracy), "reached": reached_at is not None,
          "steps_to_target": reached_at["step"] if reached_at else None,
          "seconds_to_target": reached_at["train_s"] if reached_at else None,
          "steps_run": step, "train_s": train_s, "last_val_accuracy": accs[-1] if accs else None,
          "best_val_accuracy": max(accs) if accs else None, "nonfinite_steps": nonfinite,
          "max_steps": int(max_steps), "eval_every": int(eval_every), "curve": curve}
