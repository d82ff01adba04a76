"""What every program does before its one call: logging, multi-host start-up; and the
persistent compilation cache of training runs.

`experiments/*.py` call `setup()` first, then one workflow. The train workflow calls
`use_compilation_cache(config.compilation_cache_dir, workdir)` before it compiles anything.
"""

from __future__ import annotations

import os

import jax
from absl import logging
from etils import epath

from ngebm_jax.training import checkpoints
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


AUTO = "auto"
HOME_CACHE = os.path.join("~", ".cache", "ngebm_jax", "jax_compilation_cache")


def compilation_cache_dir(setting: str, workdir) -> str | None:
  """Where compiled programs are cached for a run in `workdir`, or None for no cache.

  Args:
    setting: `config.compilation_cache_dir`: "auto", "" (off), or a folder (local or a URI).
      "auto" is `$JAX_COMPILATION_CACHE_DIR` when the environment sets it; else, for a workdir
      on remote storage (`gs://...`), `WORKDIR/compilation_cache`, which outlives the machine
      (a preempted cloud VM comes back with an empty disk); else `~/.cache/ngebm_jax/
      jax_compilation_cache`, shared by every run on this machine (the seeds of a study compile
      the same programs).
    workdir: the run's workdir.
  """
  if not setting:
    return None
  if setting != AUTO:
    return setting
  if os.environ.get("JAX_COMPILATION_CACHE_DIR"):
    return os.environ["JAX_COMPILATION_CACHE_DIR"]
  if checkpoints.is_uri(workdir):
    return os.fspath(epath.Path(workdir) / "compilation_cache")
  return os.path.expanduser(HOME_CACHE)


def use_compilation_cache(setting: str, workdir) -> str | None:
  """Turns on JAX's persistent compilation cache for a run (see `compilation_cache_dir`).

  A resumed run (after a preemption) then loads its compiled train step, evaluation and PGD
  programs instead of compiling them again; JAX caches programs that took at least
  `jax_persistent_cache_min_compile_time_secs` (1 s by default) to compile. Call it before the
  first compilation of the process: JAX fixes the cache folder at its first use.

  Returns:
    The cache folder, or None when it is off.
  """
  folder = compilation_cache_dir(setting, workdir)
  if folder is None:
    logging.info("Persistent compilation cache: off (config.compilation_cache_dir='').")
    return None
  if not checkpoints.is_uri(folder):
    os.makedirs(folder, exist_ok=True)
  jax.config.update("jax_compilation_cache_dir", folder)
  logging.info("Persistent compilation cache: %s.", folder)
  return folder
