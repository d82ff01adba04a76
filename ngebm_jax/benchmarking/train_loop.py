"""The training loop's own throughput: the real input pipeline feeding the step.

The step benchmark (`timing.step_benchmark`) reuses one device batch, so it times the step's
compute and nothing of the input pipeline. Here the same compiled step is fed as the trainer
feeds it (`loop.train_iterator`: grain batches uint8 images on the host, they go to the devices
and are cropped, flipped and noised there, `config.dataset.prefetch` batches ahead), `steps`
steps back to back with one block at the end, as training runs them. The step alone is timed
the same way (back to back, one block) on one reused batch. Each round times both, one right
after the other (in turn first), so that the pair sees the same load; `pipeline_efficiency` is
the median over rounds of the step alone's time over the loop's (the loop's images/s over the
step's alone): 1 when the pipeline hides entirely behind the step. On a shared machine single
rounds swing by tens of percent; the pairing and the median keep the ratio near its quiet
value. The pipeline is also timed
alone (`pipeline_alone_s_per_batch`: batches read, put and augmented, with a block on each), the
most it could add to a step where it does not overlap it (on a CPU both share the cores).
"""

from __future__ import annotations

import time

import jax
import numpy as np

from ngebm_jax import _checks
from ngebm_jax.benchmarking.step_programs import StepProgram
from ngebm_jax.training import loop


def _run(program: StepProgram, state, next_batch, steps: int):
  """`steps` steps back to back, one block at the end: `(state, seconds)`."""
  start = time.perf_counter()
  for _ in range(steps):
    state, _ = program.compiled(state, next_batch())
  jax.block_until_ready(state)
  return state, time.perf_counter() - start


def throughput(program: StepProgram, config, source, mesh, *, steps: int = 10,
               rounds: int = 5) -> dict:
  """Images/s of `program` fed by the real pipeline over `source`, and of the step alone.

  Args:
    program: a compiled train step (`step_programs.build_step`) of `config`.
    config: the training config (batch size, augmentation, noise, prefetch).
    source: the training source (`data.get_sources(config)["train"]`).
    mesh: the data-parallel mesh the step was compiled for.
    steps: steps per timed run.
    rounds: timed pairs of runs, one of each kind (medians count).

  Returns:
    `{"train_loop_images_per_s", "step_alone_images_per_s", "pipeline_efficiency",
    "pipeline_alone_s_per_batch", ...}`.
  """
  _checks.check_positive_int(steps, "steps")
  _checks.check_positive_int(rounds, "rounds")
  batches = loop.train_iterator(config, source, mesh)
  state = program.init_state()
  fixed = next(batches)
  state, _ = _run(program, state, lambda: next(batches), 2)  # warm: compile and fill the prefetch
  loop_s, alone_s = [], []
  for r in range(rounds):
    for kind in ("loop", "alone") if r % 2 == 0 else ("alone", "loop"):
      state, seconds = _run(program, state,
                            (lambda: next(batches)) if kind == "loop" else (lambda: fixed), steps)
      (loop_s if kind == "loop" else alone_s).append(seconds)
  start = time.perf_counter()
  for _ in range(steps):
    jax.block_until_ready(next(batches))
  pipeline_s = (time.perf_counter() - start) / steps
  images = steps * config.batch_size
  efficiency = float(np.median(np.asarray(alone_s) / np.asarray(loop_s)))
  return {"train_loop_images_per_s": images / float(np.median(loop_s)),
          "step_alone_images_per_s": images / float(np.median(alone_s)),
          "pipeline_efficiency": efficiency, "variant": program.variant.name,
          "steps_per_round": int(steps), "rounds": int(rounds),
          "train_loop_round_s": loop_s, "step_alone_round_s": alone_s,
          "pipeline_alone_s_per_batch": pipeline_s,
          "prefetch": int(config.dataset.prefetch), "num_workers": int(config.dataset.num_workers)}
