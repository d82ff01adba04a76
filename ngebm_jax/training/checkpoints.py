"""Checkpoints of a run's workdir, with orbax.

Layout of `workdir`:
  config.json        the config the run was started with (resume refuses a different one)
  checkpoints/<step> the newest train states (params, optimizer, step, keys, objective state)
                     and the input iterator's position; written asynchronously and atomically
  best/<step>        the parameters with the best validation accuracy so far
  metrics.jsonl      one JSON object per logged step
  results.json       test-set figures of the best checkpoint

Restoring the newest train state falls back to the previous checkpoint, with a warning, when the
newest one cannot be read (a damaged or half-copied directory).

A workdir is a local path or a URI (`gs://bucket/run`): every path here is an `etils.epath.Path`
(`workdir_path`), so a URI reaches its storage and is never turned into a local folder.
"""

from __future__ import annotations

import importlib.util
import json
import os
import time
from typing import Any

import jax
import ml_collections
import orbax.checkpoint as ocp
from absl import logging
from etils import epath

from ngebm_jax import models

CONFIG_FILE = "config.json"


def is_uri(path: str | os.PathLike) -> bool:
  """Whether `path` names remote storage (`gs://bucket/run`, `s3://...`), not a local path."""
  return "://" in os.fspath(path)


# What etils.epath reads and writes a URI scheme with, and the package extra that installs it.
STORAGE_EXTRAS = {"gs": ("gcsfs", "gcs")}


class MissingStorageBackendError(ModuleNotFoundError):
  """A URI's storage has no backend installed; the message names the extra that installs it."""


def _storage_backend_installed(scheme: str) -> bool:
  """Whether epath can reach `scheme://`: its fsspec module, or TensorFlow (epath's tf
  backend)."""
  from etils.epath import gpath  # pylint: disable=g-import-not-at-top
  module = STORAGE_EXTRAS[scheme][0]
  tf_backend = gpath._is_tf_installed()  # pylint: disable=protected-access
  return tf_backend or importlib.util.find_spec(module) is not None


def require_storage_backend(path: str | os.PathLike) -> None:
  """Raises `MissingStorageBackendError`, before anything is written, when `path` is a URI
  (`gs://bucket/run`) whose storage backend is not installed.

  Without it, etils.epath fails on the first write with an error that reads like a permission
  problem. Checkpoints, metrics, reports and TensorBoard events all go through epath, so the
  one backend serves them all (`metric_writer` routes tensorboardX's events through it).
  """
  text = os.fspath(path)
  scheme = text.split("://", 1)[0] if is_uri(text) else None
  if scheme in STORAGE_EXTRAS and not _storage_backend_installed(scheme):
    module, extra = STORAGE_EXTRAS[scheme]
    raise MissingStorageBackendError(
        f"{text} is on {scheme}:// storage, which needs {module} (or TensorFlow), and neither is "
        f"installed. Install it with: pip install 'ngebm_jax[{extra}]' (from a checkout: "
        f"pip install -e '.[{extra}]').")


def workdir_path(workdir: str | os.PathLike) -> epath.Path:
  """`workdir` as an `epath.Path`: a URI as it is, a local path made absolute."""
  path = epath.Path(workdir)
  return path if is_uri(workdir) else epath.Path(os.path.abspath(os.fspath(workdir)))


def _abstract(tree):
  return jax.tree.map(ocp.utils.to_shape_dtype_struct, tree)


class Checkpoints:
  """The run's two checkpoint series: newest train states, and best parameters."""

  def __init__(self, workdir: str | os.PathLike, *, max_to_keep: int = 2,
               use_async: bool = True):
    self.workdir = workdir_path(workdir)
    # Multi-process runs save synchronously: with two managers saving in background threads,
    # orbax's cross-process barriers collided ("Barrier ... is already ongoing") in our
    # two-process test.
    use_async = use_async and jax.process_count() == 1
    self.latest = ocp.CheckpointManager(
        self.workdir / "checkpoints",
        options=ocp.CheckpointManagerOptions(
            max_to_keep=max_to_keep, create=True, enable_async_checkpointing=use_async),
        item_names=("state", "data_iter"))
    self.best = ocp.CheckpointManager(
        self.workdir / "best",
        options=ocp.CheckpointManagerOptions(
            max_to_keep=1, create=True, enable_async_checkpointing=use_async),
        item_names=("params", "metrics"))

  def save(self, step: int, state, data_iter_state: dict | None) -> None:
    args = {"state": ocp.args.StandardSave(state)}
    if data_iter_state is not None:
      args["data_iter"] = ocp.args.JsonSave(data_iter_state)
    self.latest.save(step, args=ocp.args.Composite(**args), force=True)

  def save_best(self, step: int, params, metrics: dict) -> None:
    self.best.save(step, args=ocp.args.Composite(
        params=ocp.args.StandardSave(params), metrics=ocp.args.JsonSave(metrics)), force=True)

  def best_step(self) -> int | None:
    """The step of the best parameters, or None if none were saved."""
    return self.best.latest_step()

  def best_metrics(self) -> dict | None:
    step = self.best.latest_step()
    if step is None:
      return None
    return self.best.restore(step, args=ocp.args.Composite(
        metrics=ocp.args.JsonRestore()))["metrics"]

  def restore_latest(self, target_state) -> tuple[Any, dict | None, int] | None:
    """Newest readable train state as `(state, data_iter_state, step)`, or None if none.

    `target_state` gives structure, shapes, dtypes and shardings (concrete or abstract).
    """
    damaged = []
    for step in sorted(self.latest.all_steps(), reverse=True):
      try:
        restored = self.latest.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(_abstract(target_state))))
        data_iter_state = None
        if (epath.Path(self.latest.directory) / str(step) / "data_iter").is_dir():
          data_iter_state = self.latest.restore(step, args=ocp.args.Composite(
              data_iter=ocp.args.JsonRestore()))["data_iter"]
        self._set_aside(damaged)
        return restored["state"], data_iter_state, step
      except Exception as e:  # pylint: disable=broad-except
        logging.warning("Checkpoint %d in %s could not be restored (%s: %s); trying the "
                        "previous one.", step, self.latest.directory, type(e).__name__, e)
        damaged.append(step)
    self._set_aside(damaged)
    return None

  def _set_aside(self, steps) -> None:
    """Moves unreadable checkpoints to `damaged_checkpoints/` (kept for inspection), so that
    training can write those steps again."""
    if not steps:
      return
    if jax.process_index() == 0:
      target = self.workdir / "damaged_checkpoints"
      target.mkdir(parents=True, exist_ok=True)
      for step in steps:
        _move_tree(epath.Path(self.latest.directory) / str(step),
                   target / f"{step}-{int(time.time())}")
    self.latest.reload()

  def read_state(self, step: int | None = None):
    """The saved train state of `step` (default: newest) as a tree of arrays, no target needed."""
    step = self.latest.latest_step() if step is None else step
    return self.latest.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore()))["state"]

  def restore_best_params(self, target_params):
    step = self.best.latest_step()
    if step is None:
      raise FileNotFoundError(f"No best checkpoint in {self.best.directory}.")
    return self.best.restore(step, args=ocp.args.Composite(
        params=ocp.args.StandardRestore(_abstract(target_params))))["params"], step

  def wait(self) -> None:
    self.latest.wait_until_finished()
    self.best.wait_until_finished()

  def close(self) -> None:
    self.latest.close()
    self.best.close()


def _move_tree(source: epath.Path, target: epath.Path) -> None:
  """Moves a folder: a rename where the storage has one (local disks), else copy and delete
  (object stores such as GCS have no folders to rename)."""
  try:
    source.rename(target)
    return
  except (OSError, NotImplementedError):
    if not source.exists():
      raise
  _copy_tree(source, target)
  source.rmtree()


def _copy_tree(source: epath.Path, target: epath.Path) -> None:
  target.mkdir(parents=True, exist_ok=True)
  for child in source.iterdir():  # one listing per folder (GCS refuses recursive globs)
    if child.is_dir():
      _copy_tree(child, target / child.name)
    else:
      child.copy(target / child.name)


def save_config(workdir: str | os.PathLike, config: ml_collections.ConfigDict) -> None:
  (workdir_path(workdir) / CONFIG_FILE).write_text(
      config.to_json_best_effort(indent=2, sort_keys=True))


def has_config(workdir: str | os.PathLike) -> bool:
  """Whether `workdir` holds a run's config.json (a run was started there)."""
  return (workdir_path(workdir) / CONFIG_FILE).exists()


def has_saved_step(workdir: str | os.PathLike) -> bool:
  """Whether `workdir` holds a saved step (a train state or best parameters) to protect.

  Orbax writes a step under a temporary name and renames it to the step number when it is
  complete, so only folders named by a number count.
  """
  path = workdir_path(workdir)
  return any(child.name.isdigit() for series in ("checkpoints", "best")
             if (path / series).is_dir() for child in (path / series).iterdir())


# Fields declared after ngebm_jax 0.1.0, with the value a run saved without them ran with: a
# config read back has them, so it resumes and evaluates as the run was made.
FIELDS_ADDED = {
    ("dataset", "split_seed"): 1234,   # the validation split's seed was fixed
    ("dataset", "split_num_validation"): 5000,  # and its size
    ("eval", "refine_steps"): 0,       # the paper protocol had no refinement step
    ("eval", "refine_noise_std"): 0.01,
    ("dataset", "read_threads"): 0,    # grain's read threads; they change no batch
    ("eval", "figures"): True,         # per-run figures were always drawn
}


def load_config(workdir: str | os.PathLike) -> ml_collections.ConfigDict:
  path = workdir_path(workdir) / CONFIG_FILE
  if not path.exists():
    raise FileNotFoundError(f"{path} not found: {workdir} is not a training workdir.")
  values = json.loads(path.read_text())
  for (block, field), value in FIELDS_ADDED.items():
    if block in values:
      values[block].setdefault(field, value)
  return ml_collections.ConfigDict(values)


def _flatten(d: Any, prefix: str = "") -> dict:
  if isinstance(d, dict):
    out = {}
    for k, v in d.items():
      out.update(_flatten(v, f"{prefix}{k}."))
    return out
  return {prefix[:-1]: d}


def config_differences(old: ml_collections.ConfigDict, new: ml_collections.ConfigDict,
                       ignore: tuple[str, ...] = ()) -> list[str]:
  """Fields whose values differ, as 'field: old -> new' lines."""
  a = _flatten(json.loads(old.to_json_best_effort()))
  b = _flatten(json.loads(new.to_json_best_effort()))
  lines = []
  for k in sorted(set(a) | set(b)):
    if k in ignore or any(k.startswith(p + ".") for p in ignore):
      continue
    if a.get(k, "<absent>") != b.get(k, "<absent>"):
      lines.append(f"{k}: {a.get(k, '<absent>')!r} -> {b.get(k, '<absent>')!r}")
  return lines


def load_run(workdir: str | os.PathLike):
  """The best parameters of a finished (or running) training run, for evaluation.

  Returns:
    `(config, model_fns, params)`: the run's config, its model's pure functions
    (`ngebm_jax.models.ModelFns`) and the best parameters (by validation accuracy).
  """
  return load_best(workdir)[:3]


def load_best(workdir: str | os.PathLike):
  """`load_run`, and `{"best_step", "best_metrics"}` of the best checkpoint, opened once."""
  config = load_config(workdir)
  from ngebm_jax.data import dataset_info  # pylint: disable=g-import-not-at-top
  info = dataset_info(config)
  fns, params = models.from_config(config, info.num_classes)
  ckpts = Checkpoints(workdir, use_async=False)
  try:
    params, step = ckpts.restore_best_params(params)
    best = dict(best_step=step, best_metrics=ckpts.best_metrics() or {})
  finally:
    ckpts.close()
  return config, fns, params, best

