"""What every program does before its one call: logging, multi-host start-up.

`experiments/*.py` call `setup()` first, then one workflow.
"""

from __future__ import annotations

import os

import jax
from absl import logging

from ngebm_jax.training import distributed


class _DropLibraryInfo:
  """absl-logging filter: keeps warnings and errors of chatty libraries, drops their INFO."""

  _PATHS = (f"{os.sep}orbax{os.sep}", f"{os.sep}grain{os.sep}", f"{os.sep}tensorflow_datasets{os.sep}")

  def filter(self, record) -> bool:
    return record.levelno >= 30 or not any(p in record.pathname for p in self._PATHS)


def quiet_library_logs() -> None:
  """Hides the INFO lines of orbax, grain and TFDS (hundreds per checkpoint) in programs."""
  from absl import logging as absl_logging  # pylint: disable=g-import-not-at-top
  handler = absl_logging.get_absl_handler()
  if not any(isinstance(f, _DropLibraryInfo) for f in handler.filters):
    handler.addFilter(_DropLibraryInfo())


def setup() -> None:
  """Quiets library INFO logs, starts `jax.distributed` when a cluster asks for it, and logs
  the devices."""
  quiet_library_logs()
  distributed.initialize_if_needed()
  logging.info("JAX %s on %d process(es), %d device(s): %s", jax.__version__,
               jax.process_count(), jax.device_count(), jax.devices())
