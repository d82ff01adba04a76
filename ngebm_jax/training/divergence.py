"""Divergence: the error a diverged step raises, and restarts from the last good checkpoint.

A step whose loss or gradients are not finite, or whose `|loss|` exceeds `config.max_abs_loss`,
is never applied (see `spmd.py`). With `config.max_restarts > 0` the run goes back to its last
good checkpoint with a new key, as JEM's authors restarted diverged runs "from the last
checkpoint using a different random seed". Restarts are recorded in `workdir/restarts.json`, so
a resumed run counts them and keeps their keys.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from ngebm_jax import _checks
from ngebm_jax import reporting
from ngebm_jax.training import checkpoints as ckpt_lib
from ngebm_jax.training import spmd
from ngebm_jax.training.metric_writer import MetricWriter
from ngebm_jax.training.state import TrainState

RESTARTS_FILE = "restarts.json"


class NonFiniteLossError(FloatingPointError):
  """A train step produced a non-finite loss or gradient, or `|loss| > config.max_abs_loss`."""

  def __init__(self, message: str, step: int | None = None):
    super().__init__(message)
    self.step = step


def restart_key(key_data, restart_number: int) -> np.ndarray:
  """The run key after restart `restart_number` (1, 2, ...) from a state with key `key_data`.

  A fold of the restart number into the restored key: every restart of a run gets a key of its
  own, also when two restarts go back to the same checkpoint.
  """
  _checks.check_positive_int(restart_number, "restart_number")
  key = jax.random.wrap_key_data(jnp.asarray(np.asarray(jax.device_get(key_data))))
  return np.asarray(jax.random.key_data(jax.random.fold_in(key, restart_number)))


def read_restarts(workdir: str) -> list[dict]:
  """The restarts recorded in `workdir` (`restarts.json`), oldest first; [] if none."""
  path = ckpt_lib.workdir_path(workdir) / RESTARTS_FILE
  return reporting.read_json(path) if path.exists() else []


class Restarter:
  """Restarts after divergence (`config.max_restarts`), recorded in `workdir/restarts.json`."""

  def __init__(self, config, workdir):
    self._config, self._workdir = config, workdir
    self.restarts = read_restarts(workdir)

  def keep_key(self, state: TrainState, mesh) -> TrainState:
    """`state` with the last restart's key if the run stopped after it, before a checkpoint."""
    if self.restarts and self.restarts[-1]["resumed_from_step"] == int(state.step):
      return spmd.put_state(state.replace(key=np.asarray(self.restarts[-1]["key"], np.uint32)),
                            mesh)
    return state

  def check_allowed(self, diverged: NonFiniteLossError) -> None:
    """Raises the divergence when no restart is left (none at all with max_restarts = 0)."""
    if len(self.restarts) < self._config.max_restarts:
      return
    if self._config.max_restarts:
      raise NonFiniteLossError(f"{diverged} ({len(self.restarts)} restarts, the most "
                               "config.max_restarts allows, were spent.)",
                               step=diverged.step) from diverged
    raise diverged

  def record(self, diverged: NonFiniteLossError, state: TrainState, mesh,
             writer: MetricWriter) -> TrainState:
    """`state` (the restored one) with the new restart's key; notes the restart."""
    number = len(self.restarts) + 1
    key = restart_key(state.key, number)
    state = spmd.put_state(state.replace(key=key), mesh)
    from_step = int(state.step)
    self.restarts.append({"restart": number, "diverged_at_step": diverged.step,
                          "resumed_from_step": from_step, "key": key.tolist()})
    if jax.process_index() == 0:
      reporting.write_json(ckpt_lib.workdir_path(self._workdir) / RESTARTS_FILE, self.restarts)
    writer.write(from_step, {"train/restart": number,
                             "train/restart_diverged_at_step": diverged.step})
    logging.warning("Divergence at step %s: restart %d of at most %d, from the checkpoint of "
                    "step %d with a new key (%s).", diverged.step, number,
                    self._config.max_restarts, from_step, diverged)
    return state
