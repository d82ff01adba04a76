"""The training loop: data -> SPMD train step -> metrics and checkpoints.

`train(config, workdir)` trains `config.objective` and leaves in `workdir` the newest train
states, the best parameters by validation accuracy, `metrics.jsonl` and TensorBoard events
(see `checkpoints.py` for the layout). Re-running it on the same workdir resumes where the last
checkpoint left off, with the same data order and keys, so the result equals an uninterrupted
run. SIGTERM/SIGINT save a checkpoint at the next step boundary and return; with several
processes, a signal to any one of them stops all at the same step (`_PreemptionFlag`).

Divergence: a step whose loss or gradients are not finite, or whose `|loss|` exceeds
`config.max_abs_loss` (a finite blow-up; JEM's code stops at 1e8), is never applied (see
`spmd.py`). The run then stops (`NonFiniteLossError`) keeping its last good checkpoint, skips
the step (`config.skip_nonfinite`), or, with `config.max_restarts > 0`, restarts from the last
good checkpoint with a new key, as JEM's authors restarted diverged runs "from the last
checkpoint using a different random seed": the new key changes the SGLD draws, re-inits and
Langevin noise (and dropout), not the data order. Restarts are bounded in number, logged, and
recorded in `workdir/restarts.json`, so a resumed run counts them and keeps their keys.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import threading
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from jax.experimental import multihost_utils

from ngebm_jax import config_validation
from ngebm_jax import data as data_lib
from ngebm_jax import reporting
from ngebm_jax.data import device_input
from ngebm_jax.data import pipeline
from ngebm_jax.evaluation import validation
from ngebm_jax.training import checkpoints as ckpt_lib
from ngebm_jax.training import objective_registry
from ngebm_jax.training import spmd
from ngebm_jax.training.metric_writer import MetricWriter
from ngebm_jax.training.state import TrainState, optimizer_from_config

# Config fields that may change between a run and its resumption without changing the result.
RESUMABLE_FIELDS = ("allow_config_change", "num_steps", "num_epochs", "log_every_steps",
                    "eval_every_steps", "checkpoint_every_steps", "progress_bar",
                    "dataset.data_dir", "dataset.num_workers", "dataset.prefetch", "eval",
                    "compilation_cache_dir", "max_restarts")
RESTARTS_FILE = "restarts.json"


class NonFiniteLossError(FloatingPointError):
  """A train step produced a non-finite loss or gradient, or `|loss| > config.max_abs_loss`."""

  def __init__(self, message: str, step: int | None = None):
    super().__init__(message)
    self.step = step


class ConfigMismatchError(ValueError):
  """The workdir holds a run started with a different config."""


@dataclasses.dataclass
class TrainResult:
  workdir: str
  last_step: int
  best_step: int | None
  best_val_accuracy: float | None
  preempted: bool
  resumed_from_step: int | None
  skipped_nonfinite_steps: int
  restarts: int = 0  # restarts after divergence, over the whole run (config.max_restarts)
  # In memory, for the evaluation that follows: the model, the best parameters this call saw
  # (None when the best step was saved before a resume: read them from best/), their
  # validation metrics, and the validation split `(images, labels)` training read.
  model: Any = dataclasses.field(default=None, repr=False)
  best_params: Any = dataclasses.field(default=None, repr=False)
  best_metrics: dict | None = None
  validation: Any = dataclasses.field(default=None, repr=False)


def _check_writable(workdir) -> None:
  """Creates `workdir` (a local path or a URI) and writes a file into it, or raises."""
  ckpt_lib.require_storage_backend(workdir)  # names the extra a gs:// workdir needs
  try:
    path = ckpt_lib.workdir_path(workdir)
    path.mkdir(parents=True, exist_ok=True)
    probe = path / f".write_probe_{jax.process_index()}"
    probe.write_text("ok")
    probe.unlink()
  except Exception as e:  # pylint: disable=broad-except  (remote storage raises its own types)
    raise PermissionError(f"The workdir {workdir} is not writable: {e}") from e


def _check_first_batch(batch: dict) -> None:
  x = batch["image"]
  if isinstance(x, jax.Array):
    x = np.asarray(x.addressable_data(0))  # this process's first shard is enough
  if not np.issubdtype(x.dtype, np.floating):
    raise ValueError(f"Training images must be float in about [-1, 1]; got dtype {x.dtype}.")
  peak = float(np.nanmax(np.abs(x))) if np.isfinite(x).any() else 0.0
  # Noise (std 0.03) and augmentation legitimately leave [-1, 1] a little; 0..255 does not.
  if peak > 2.0:
    raise ValueError(f"Training images reach |x| = {peak:.1f}: they look unscaled (uint8 "
                     "values in 0..255?). Pixels must be scaled to [-1, 1].")


def num_train_steps(config, num_train_examples: int) -> int:
  if config.num_steps > 0:
    return int(config.num_steps)
  return int(config.num_epochs * num_train_examples // config.batch_size)


def train_iterator(config, source, mesh, *, seed_offset: int = 0):
  """The stream of global training batches of `config` on `mesh`, augmented on the devices.

  This process reads its slice of each global batch; `device_input.DeviceIterator` ships it as
  uint8 and crops, flips and adds noise on the devices, `config.dataset.prefetch` batches ahead.
  Flips follow `config.dataset.flip`, or when it is unset the dataset's default (none for SVHN).
  """
  d = config.dataset
  flip = d.flip if d.flip is not None else data_lib.dataset_info(config).flip
  options = pipeline.PipelineOptions(
      batch_size=config.batch_size // jax.process_count(), augment=d.augment, flip=flip,
      noise_std=d.noise_std, num_workers=d.num_workers, seed=config.seed + seed_offset,
      poison_batch=d.poison_batch,
      unlabelled_batch=objective_registry.needs_unlabelled_batch(config))
  host = iter(pipeline.train_dataset(source, options, process_index=jax.process_index(),
                                     process_count=jax.process_count()))
  return device_input.DeviceIterator(host, options, spmd.batch_sharding(mesh),
                                     prefetch=d.prefetch)


def steps_per_epoch(config, num_train_examples: int) -> int:
  return max(num_train_examples // config.batch_size, 1)


def init_train_state(config, objective, params, optimizer, image_shape, mesh) -> TrainState:
  """The initial train state of `config`, placed on `mesh` (keys from `config.seed`)."""
  root = jax.random.key(config.seed)
  state = TrainState(
      step=jnp.zeros((), jnp.int32), params=params, opt_state=optimizer.init(params),
      key=jax.random.key_data(jax.random.fold_in(root, 1)),
      objective_state=objective.init_state(jax.random.fold_in(root, 2), tuple(image_shape),
                                           mesh.size))
  return spmd.put_state(state, mesh)


def restart_key(key_data, restart_number: int) -> np.ndarray:
  """The run key after restart `restart_number` (1, 2, ...) from a state with key `key_data`.

  A fold of the restart number into the restored key: every restart of a run gets a key of its
  own, also when two restarts go back to the same checkpoint.
  """
  if restart_number < 1:
    raise ValueError(f"restart_number must be >= 1; got {restart_number}.")
  key = jax.random.wrap_key_data(jnp.asarray(np.asarray(jax.device_get(key_data))))
  return np.asarray(jax.random.key_data(jax.random.fold_in(key, restart_number)))


def read_restarts(workdir: str) -> list[dict]:
  """The restarts recorded in `workdir` (`restarts.json`), oldest first; [] if none."""
  path = ckpt_lib.workdir_path(workdir) / RESTARTS_FILE
  return reporting.read_json(path) if path.exists() else []


class _PreemptionFlag:
  """SIGTERM/SIGINT: every process saves the same step's checkpoint and returns.

  One process: a handler notes the signal; the loop stops after the next step. Several
  processes: they must agree on the step, or the collective save waits forever for a process
  that stopped elsewhere. `jax.distributed`'s preemption sync manager catches SIGTERM on any
  process and tells the others through the coordination service, which picks a step every
  process has yet to reach (the largest step reported, plus one);
  `multihost_utils.reached_preemption_sync_point(step)` is true at that step on every process.
  It is a local check, with no collective per step: 2.2 microseconds a call, measured with two
  CPU processes (load average about 20), against steps of milliseconds; a flag reduced across
  processes would cost a blocking collective, and a host sync, at every step it is checked.
  Python must not take SIGTERM over from the sync manager, so with several processes only
  SIGINT gets a handler here, which raises SIGTERM for the sync manager to see.
  """

  def __init__(self):
    self.signum = None
    self._previous = {}
    self._agreed = jax.process_count() > 1

  def __enter__(self):
    if threading.current_thread() is threading.main_thread():
      for sig in (signal.SIGINT,) if self._agreed else (signal.SIGTERM, signal.SIGINT):
        self._previous[sig] = signal.signal(sig, self._handle)
    return self

  def _handle(self, signum, frame):  # pylint: disable=unused-argument
    self.signum = signum
    if self._agreed:
      os.kill(os.getpid(), signal.SIGTERM)  # to the sync manager's own handler

  def reached(self, step: int) -> bool:
    """Whether to save and stop after `step` (call it once per step, on every process)."""
    if self._agreed:
      if multihost_utils.reached_preemption_sync_point(step):
        self.signum = self.signum or signal.SIGTERM
        return True
      return False
    return self.signum is not None

  def __exit__(self, *exc):
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)


def train(config, workdir: str | os.PathLike, *, devices=None) -> TrainResult:
  """Trains `config` in `workdir`, resuming from its newest checkpoint if there is one.

  Args:
    config: the run's `ml_collections.ConfigDict` (see configs/default.py).
    workdir: where checkpoints, metrics and results go, a local path or a URI
      (`gs://bucket/run`); created if missing.
    devices: devices of the data-parallel mesh; all devices of all hosts by default.
  """
  config_validation.validate_config(config, len(devices) if devices is not None else None)
  _check_writable(workdir)
  info = data_lib.dataset_info(config)
  sources = data_lib.get_sources(config)  # fails fast when data is not prepared
  is_main = jax.process_index() == 0

  old_config = None
  # A config with no saved step (a run that failed before its first checkpoint) protects
  # nothing: the workdir is a fresh start.
  if ckpt_lib.has_config(workdir) and ckpt_lib.has_saved_step(workdir):
    old_config = ckpt_lib.load_config(workdir)
    diffs = ckpt_lib.config_differences(old_config, config, ignore=RESUMABLE_FIELDS)
    if diffs and not config.allow_config_change:
      raise ConfigMismatchError(
          f"{workdir} holds a run started with a different config; fields that differ:\n  "
          + "\n  ".join(diffs) + "\nUse another --workdir, or pass "
          "--config.allow_config_change=True to resume anyway.")
  if is_main:
    ckpt_lib.save_config(workdir, config)

  mesh = spmd.make_mesh(devices)
  fns, params = ckpt_lib.model_from_config(config, info.num_classes)
  objective = objective_registry.make_objective(config, fns)
  optimizer = optimizer_from_config(config, steps_per_epoch(config, len(sources["train"])))
  state = init_train_state(config, objective, params, optimizer, info.image_shape, mesh)
  logging.info("Model %s: %d parameters on %d device(s).", config.model.name,
               sum(x.size for x in jax.tree.leaves(params)), mesh.size)

  ckpts = ckpt_lib.Checkpoints(workdir)
  train_iter = train_iterator(config, sources["train"], mesh)
  restarts = read_restarts(workdir)
  restored = ckpts.restore_latest(state)
  resumed_from = None
  if restored is not None:
    state, iter_state, step = restored
    resumed_from = step
    if iter_state is not None:
      train_iter.set_state(iter_state)
    logging.info("Resumed from the checkpoint of step %d in %s.", step, workdir)
  if restarts and restarts[-1]["resumed_from_step"] == int(state.step):
    # Interrupted after a restart and before its next checkpoint: keep the restart's key.
    state = spmd.put_state(state.replace(key=np.asarray(restarts[-1]["key"], np.uint32)), mesh)

  train_step = spmd.make_train_step(objective.loss_fn, optimizer, mesh, state,
                                    max_abs_loss=config.max_abs_loss)
  validate = validation.Validator(config, fns.apply_fn, sources["validation"], mesh)
  total = num_train_steps(config, len(sources["train"]))
  best = ckpts.best_metrics()
  best_params = None
  writer = MetricWriter(workdir, tensorboard=config.tensorboard)

  step = int(state.step)
  pending: list[tuple[int, dict]] = []
  skipped = 0
  last_time, last_step = time.perf_counter(), step
  progress = None
  if is_main and config.progress_bar:
    from tqdm import auto as tqdm  # pylint: disable=g-import-not-at-top
    progress = tqdm.tqdm(total=total, initial=step, desc=f"train {config.objective}",
                         unit="step", dynamic_ncols=True)

  def flush() -> dict:
    """Fetches the metrics of the steps since the last flush; stops on a non-finite step."""
    nonlocal pending, skipped, last_time, last_step
    if not pending:
      return {}
    fetched = jax.device_get([m for _, m in pending])
    steps = [s for s, _ in pending]
    pending = []
    for s, m in zip(steps, fetched):
      if m["finite"] < 1:
        if not config.skip_nonfinite:
          terms = ", ".join(f"{k}={float(v):.6g}" for k, v in sorted(m.items()))
          raise NonFiniteLossError(
              f"Non-finite loss or gradient, or |loss| above config.max_abs_loss "
              f"({config.max_abs_loss:g}), at step {s} ({terms}). The update was not applied; "
              f"the last good checkpoint in {workdir} is kept. Lower the learning rate (JEM "
              "diverges this way), set config.max_restarts > 0 to restart from the last good "
              "checkpoint with a new key, or config.skip_nonfinite=True to skip such steps.",
              step=s)
        skipped += 1
    now = time.perf_counter()
    mean = {k: float(np.mean([m[k] for m in fetched])) for k in fetched[0]}
    mean["step_time_s"] = (now - last_time) / max(steps[-1] + 1 - last_step, 1)
    mean["skipped_nonfinite_steps"] = skipped
    last_time, last_step = now, steps[-1] + 1
    return mean

  def restart(diverged: NonFiniteLossError):
    """Goes back to the last good checkpoint (or the start) with a new key; returns the state."""
    nonlocal train_iter, last_time, last_step
    ckpts.wait()
    number = len(restarts) + 1
    restored = ckpts.restore_latest(state)
    train_iter = train_iterator(config, sources["train"], mesh)
    if restored is None:
      new_state = init_train_state(config, objective, ckpt_lib.model_from_config(
          config, info.num_classes)[1], optimizer, info.image_shape, mesh)
    else:
      new_state, iter_state, _ = restored
      if iter_state is not None:
        train_iter.set_state(iter_state)
    key = restart_key(new_state.key, number)
    new_state = spmd.put_state(new_state.replace(key=key), mesh)
    from_step = int(new_state.step)
    restarts.append({"restart": number, "diverged_at_step": diverged.step,
                     "resumed_from_step": from_step, "key": key.tolist()})
    if is_main:
      reporting.write_json(ckpt_lib.workdir_path(workdir) / RESTARTS_FILE, restarts)
    writer.write(from_step, {"train/restart": number,
                             "train/restart_diverged_at_step": diverged.step})
    logging.warning("Divergence at step %s: restart %d of at most %d, from the checkpoint of "
                    "step %d with a new key (%s).", diverged.step, number, config.max_restarts,
                    from_step, diverged)
    last_time, last_step = time.perf_counter(), from_step
    if progress is not None:
      progress.n = from_step
      progress.refresh()
    return new_state

  first = True
  try:
    with _PreemptionFlag() as preemption:
      while step < total:
        try:
          batch = next(train_iter)
          if first:
            _check_first_batch(batch)
            first = False
          state, metrics = train_step(state, batch)
          pending.append((step, metrics))
          step += 1
          if progress is not None:
            progress.update(1)
          done = step == total
          stop = preemption.reached(step)
          if step % config.log_every_steps == 0 or done or stop:
            mean = flush()
            if mean:
              writer.write(step, {f"train/{k}": v for k, v in mean.items()})
              if progress is not None:
                progress.set_postfix(loss=f"{mean['loss']:.4f}", acc=f"{mean['accuracy']:.3f}",
                                     step_s=f"{mean['step_time_s']:.3f}")
          if step % config.eval_every_steps == 0 or done:
            flush()
            val = validate(state.params)
            writer.write(step, {f"val/{k}": v for k, v in val.items()})
            logging.info("step %d: validation accuracy %.4f, nll %.4f", step, val["accuracy"],
                         val["nll"])
            if best is None or val["accuracy"] > best["val_accuracy"]:
              best = {"val_accuracy": val["accuracy"], "val_nll": val["nll"], "step": step}
              ckpts.save_best(step, state.params, best)
              best_params = jax.tree.map(jnp.copy, state.params)  # the step donates state
          if step % config.checkpoint_every_steps == 0 or done or stop:
            flush()
            ckpts.save(step, state, train_iter.get_state())
          if stop:
            logging.warning("Signal %d received: saved the checkpoint of step %d in %s; run "
                            "the same command again to resume.", preemption.signum, step,
                            workdir)
            break
        except NonFiniteLossError as diverged:
          if len(restarts) >= config.max_restarts:
            if config.max_restarts:
              raise NonFiniteLossError(f"{diverged} ({len(restarts)} restarts, the most "
                                       "config.max_restarts allows, were spent.)",
                                       step=diverged.step) from diverged
            raise
          state = restart(diverged)
          step = int(state.step)
    ckpts.wait()
  finally:
    if progress is not None:
      progress.close()
    writer.close()
    ckpts.close()
  return TrainResult(workdir=os.fspath(workdir), last_step=step,
                     best_step=best["step"] if best else None,
                     best_val_accuracy=best["val_accuracy"] if best else None,
                     preempted=step < total, resumed_from_step=resumed_from,
                     skipped_nonfinite_steps=skipped, restarts=len(restarts), model=fns,
                     best_params=best_params, best_metrics=best,
                     validation=(validate.images, validate.labels))
