"""End to end: the race to a validation accuracy, the fair comparison of objectives.

Objectives converge at different speeds per step, so step times alone do not say which reaches
a given accuracy first. `time_to_accuracy` trains a compiled step program (`step_programs`) on
the trainer's own input pipeline and validates with the trainer's `validation.Validator`; the
clock runs over training steps only (input pipeline included, compilation and validation
excluded). (`loop.train`'s logged `step_time_s` also counts evaluation and checkpoint writes,
which would blur a comparison between objectives of different step costs.)

A race is fair when every runner trains the same model on the same data stream from the same
seed, with the same optimizer and schedule, to one target that all of them reach: then
`seconds_to_target` is the cost of the answer, not of a setting. Beside it, `at_budget` gives
each runner's validation accuracy and ECE after a common number of training seconds (the last
validation at or before the budget), the question "what does each buy with the same time".
"""

from __future__ import annotations

import time

import jax
from absl import logging

from ngebm_jax import _checks
from ngebm_jax.benchmarking.step_programs import StepProgram
from ngebm_jax.evaluation import validation
from ngebm_jax.training import loop


def at_budget(curve: list[dict], budget_s: float) -> dict | None:
  """The last validation of `curve` whose training clock is at most `budget_s`, or None."""
  within = [c for c in curve if c["train_s"] <= budget_s]
  return within[-1] if within else None


def time_to_accuracy(program: StepProgram, config, sources: dict, mesh, *,
                     target_accuracy: float, max_steps: int, eval_every: int,
                     max_seconds: float | None = None, budget_s: float | None = None) -> dict:
  """Trains `program`'s variant from its initial state until validation accuracy >= target.

  The clock accumulates the wall time of training steps only: each interval of `eval_every`
  steps is dispatched as the loop does (asynchronously, the input pipeline overlapping the
  device) and closed with `block_until_ready`; validation runs with the clock stopped. The
  interval that would cross `budget_s` is shortened to end near it.
  Stops at the first evaluation that reaches `target_accuracy` once the clock has also passed
  `budget_s` (when given), after `max_steps` steps, or once the clock passes `max_seconds`.
  A non-finite or blown-up step is not applied (the train step's guard) and is counted.

  Returns:
    A dict with `reached`, `steps_to_target`, `seconds_to_target` (None when not reached),
    `curve` (`[{step, train_s, val_accuracy, val_nll, val_ece}]`), `nonfinite_steps`, the last
    and best validation accuracies, and with `budget_s` the validation at the budget
    (`at_budget`: `{step, train_s, val_accuracy, val_nll, val_ece}` or None).
  """
  _checks.check_positive_int(max_steps, "max_steps")
  _checks.check_positive_int(eval_every, "eval_every")
  if budget_s is not None and budget_s <= 0:
    raise ValueError(f"budget_s must be > 0 or None; got {budget_s}.")
  validate = validation.Validator(config, program.model_fns.apply_fn, sources["validation"],
                                  mesh)
  train_iter = loop.train_iterator(config, sources["train"], mesh)
  state = program.init_state()
  train_s, step, curve, nonfinite = 0.0, 0, [], 0
  reached_at = None
  while step < max_steps:
    interval = min(eval_every, max_steps - step)
    if budget_s is not None and step and train_s < budget_s:
      # Shorten the interval that would cross the budget, so that a validation lands just
      # before it (at the mean step time so far) rather than up to `eval_every` steps earlier.
      interval = max(1, min(interval, int((budget_s - train_s) / (train_s / step))))
    pending = []
    t0 = time.perf_counter()
    for _ in range(interval):
      batch = next(train_iter)
      state, metrics = program.compiled(state, batch)
      pending.append(metrics["finite"])
      step += 1
    jax.block_until_ready(state)
    train_s += time.perf_counter() - t0
    nonfinite += int(sum(float(f) < 1 for f in jax.device_get(pending)))
    val = validate(state.params)
    curve.append({"step": step, "train_s": train_s, "val_accuracy": val["accuracy"],
                  "val_nll": val["nll"], "val_ece": val["ece"]})
    logging.info("%s: step %d, %.1f s of training, validation accuracy %.4f, ECE %.4f",
                 program.variant.name, step, train_s, val["accuracy"], val["ece"])
    if reached_at is None and val["accuracy"] >= target_accuracy:
      reached_at = curve[-1]
    if reached_at is not None and (budget_s is None or train_s >= budget_s):
      break
    if max_seconds is not None and train_s >= max_seconds:
      break
  accs = [c["val_accuracy"] for c in curve]
  result = {"target_accuracy": float(target_accuracy), "reached": reached_at is not None,
            "steps_to_target": reached_at["step"] if reached_at else None,
            "seconds_to_target": reached_at["train_s"] if reached_at else None,
            "steps_run": step, "train_s": train_s,
            "last_val_accuracy": accs[-1] if accs else None,
            "best_val_accuracy": max(accs) if accs else None, "nonfinite_steps": nonfinite,
            "max_steps": int(max_steps), "eval_every": int(eval_every), "curve": curve}
  if budget_s is not None:
    result["budget_s"] = float(budget_s)
    result["at_budget"] = at_budget(curve, budget_s)
  return result
