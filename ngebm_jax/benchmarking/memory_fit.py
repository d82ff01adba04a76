"""The largest batch whose train step fits a memory budget, from XLA's plan of compiled steps.

For sizing a run before renting a device: compiling a step needs no accelerator memory, and
XLA's memory analysis (`xla_costs.memory_figures`) says what one step needs per device
(arguments + outputs - donated + temporaries). Compiled on the device kind the run will use,
that is the figure to trust; compiled on a CPU it is an estimate (another compiler, other
fusions and temporaries; the weights, optimizer state, replay buffer and saved activations,
which dominate, are the same).
"""

from __future__ import annotations

from typing import Callable

import jax
import numpy as np

from ngebm_jax import data as data_lib
from ngebm_jax.benchmarking import step_programs
from ngebm_jax.benchmarking import xla_costs
from ngebm_jax.training import objective_registry
from ngebm_jax.training import spmd


def largest_batch(peak_bytes: Callable[[int], int], budget_bytes: float, *, multiple: int = 8,
                  max_batch: int = 1 << 16) -> dict:
  """The largest multiple of `multiple` (up to `max_batch`) with `peak_bytes(batch) <= budget`.

  Step memory is close to affine in the batch (weights, optimizer state and buffers, plus saved
  activations per example), so two evaluations give a line whose crossing with the budget is
  the first guess (and the batch after it, when it fits). Between the largest batch known to fit
  and the smallest known not to, the next guess is where the line through those two crosses the
  budget: next to the answer when memory grows a little faster than the first line (XLA's
  temporaries). A guess that does not halve that interval is followed by a bisection step, so
  only memory growing with the batch is assumed. Each evaluation is a compilation: typically
  four (the README's CPU sizing command: 4 for NG-EBM, where bisecting after the first guess
  took 9).

  Returns:
    `{"batch_size": B (0 if even `multiple` does not fit), "peak_bytes": its figure (or None),
    "evaluated": {batch: bytes}}`.
  """
  if multiple < 1 or max_batch < multiple:
    raise ValueError(f"need 1 <= multiple <= max_batch; got {multiple}, {max_batch}.")
  known: dict[int, int] = {}

  def fits(batch: int) -> bool:
    if batch not in known:
      known[batch] = int(peak_bytes(batch))
    return known[batch] <= budget_bytes

  def result(batch: int) -> dict:
    return {"batch_size": batch, "peak_bytes": known.get(batch), "evaluated": dict(known)}

  if not fits(multiple):
    return result(0)
  top = max_batch // multiple * multiple
  if top > multiple and fits(min(2 * multiple, top)):
    slope = max(known[min(2 * multiple, top)] - known[multiple], 1) / max(
        min(2 * multiple, top) - multiple, 1)
    guess = min(multiple + int((budget_bytes - known[multiple]) / slope) // multiple * multiple,
                top)
    if multiple <= guess <= top and fits(guess) and guess + multiple <= top:
      fits(guess + multiple)
  good = max(b for b in known if known[b] <= budget_bytes)
  bad = min((b for b in known if known[b] > budget_bytes), default=None)
  while bad is None and good < top:  # the line was too cautious: double until one fails
    fits(min(2 * good, top))
    good = max(b for b in known if known[b] <= budget_bytes)
    bad = min((b for b in known if known[b] > budget_bytes), default=None)
  bisect = False  # the last guess did not halve the interval
  while bad is not None and bad - good > multiple:
    if bisect:
      guess = (good + bad) // 2
    else:  # where the line through (good, bad) crosses the budget
      guess = good + (budget_bytes - known[good]) * (bad - good) / max(known[bad] - known[good], 1)
    guess = min(max(int(guess) // multiple * multiple, good + multiple), bad - multiple)
    width = bad - good
    if fits(guess):
      good = guess
    else:
      bad = guess
    bisect = not bisect and 2 * (bad - good) > width
  return result(good)


def step_peak_bytes(config, objective: str, batch_size: int, *, mesh=None,
                    sgld_steps: int | None = None) -> int:
  """XLA's planned memory of one train step of `objective` at `batch_size` (per device)."""
  mesh = mesh if mesh is not None else spmd.make_mesh(jax.devices()[:1])
  c = config.copy_and_resolve_references()
  c.batch_size = int(batch_size)
  (variant,), _ = step_programs.make_variants(
      c, [objective], sgld_steps=[sgld_steps or c.sgld.num_steps])
  info = data_lib.dataset_info(c)
  images = np.zeros((batch_size, *info.image_shape), np.float32)
  host = {"image": images, "label": np.zeros((batch_size,), np.int32)}
  if objective_registry.needs_unlabelled_batch(variant.config):
    host["image_unlabelled"] = images
  program = step_programs.build_step(
      variant, mesh, spmd.host_to_global(mesh, host), num_classes=info.num_classes,
      image_shape=info.image_shape, steps_per_epoch=1)
  return xla_costs.memory_figures(program.compiled)["peak_bytes"]


def fit_batch(config, objective: str, budget_gib: float, *, multiple: int = 8,
              max_batch: int = 4096) -> dict:
  """The largest batch of `objective` on `config`'s model whose step fits `budget_gib` GiB.

  One device's figure (per-device batch = batch / devices on a data-parallel mesh).
  """
  if budget_gib <= 0:
    raise ValueError(f"budget_gib must be > 0; got {budget_gib}.")
  found = largest_batch(lambda b: step_peak_bytes(config, objective, b),
                        budget_gib * 2**30, multiple=multiple, max_batch=max_batch)
  return {"objective": objective, "budget_gib": float(budget_gib),
          "backend": jax.default_backend(), "device_kind": jax.devices()[0].device_kind,
          "multiple": multiple, **found,
          "evaluated": {str(b): v for b, v in sorted(found["evaluated"].items())}}
