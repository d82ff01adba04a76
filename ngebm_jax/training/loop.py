"""The training loop: data -> SPMD train step -> metrics and checkpoints.

`train(config, workdir)` trains `config.objective` and leaves in `workdir` the newest train
states, the best parameters by validation accuracy, `metrics.jsonl` and TensorBoard events
(see `checkpoints.py` for the layout). Re-running it on the same workdir resumes where the last
checkpoint left off, with the same data order and keys, so the result equals an uninterrupted
run. SIGTERM/SIGINT save a checkpoint at the next step boundary and return; with several
processes, a signal to any one of them stops all at the same step (`PreemptionFlag`).

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
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from ngebm_jax import config_validation
from ngebm_jax import data as data_lib
from ngebm_jax import models
from ngebm_jax.data import device_input
from ngebm_jax.data import pipeline
from ngebm_jax.evaluation import validation
from ngebm_jax.training import checkpoints as ckpt_lib
from ngebm_jax.training import divergence
from ngebm_jax.training import objective_registry
from ngebm_jax.training import preemption as preemption_lib
from ngebm_jax.training import spmd
from ngebm_jax.training import step_log
from ngebm_jax.training.divergence import NonFiniteLossError
from ngebm_jax.training.divergence import read_restarts  # pylint: disable=unused-import
from ngebm_jax.training.divergence import restart_key  # pylint: disable=unused-import
from ngebm_jax.training.metric_writer import MetricWriter
from ngebm_jax.training.state import TrainState, optimizer_from_config

# Config fields that may change between a run and its resumption without changing the result
# ("race" and "focus_study" are the benchmark's and the focus study's, which training never reads).
RESUMABLE_FIELDS = ("allow_config_change", "num_steps", "num_epochs", "log_every_steps",
                    "eval_every_steps", "checkpoint_every_steps", "progress_bar",
                    "dataset.data_dir", "dataset.num_workers", "dataset.read_threads",
                    "dataset.prefetch", "eval",
                    "compilation_cache_dir", "max_restarts", "race", "focus_study")


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
      noise_std=d.noise_std, num_workers=d.num_workers, read_threads=d.read_threads,
      seed=config.seed + seed_offset,
      poison_batch=d.poison_batch,
      unlabelled_batch=objective_registry.needs_unlabelled_batch(config))
  host = iter(pipeline.train_dataset(source, options, process_index=jax.process_index(),
                                     process_count=jax.process_count()))
  return device_input.DeviceIterator(host, options, spmd.batch_sharding(mesh),
                                     prefetch=d.prefetch)


# A copy of every leaf in one program (copying leaf by leaf compiled one program per shape).
_copy_tree = jax.jit(lambda tree: jax.tree.map(jnp.copy, tree))


def steps_per_epoch(config, num_train_examples: int) -> int:
  return max(num_train_examples // config.batch_size, 1)


def init_train_state(config, objective, params, optimizer, image_shape, mesh) -> TrainState:
  """The initial train state of `config`, placed on `mesh` (keys from `config.seed`)."""
  def fresh(params, root):
    return TrainState(
        step=jnp.zeros((), jnp.int32), params=params, opt_state=optimizer.init(params),
        key=jax.random.key_data(jax.random.fold_in(root, 1)),
        objective_state=objective.init_state(jax.random.fold_in(root, 2), tuple(image_shape),
                                             mesh.size))
  # One program: built eagerly, the optimizer's zeros and the keys were a dozen one-op programs
  # each traced, compiled and dispatched. The key is an argument, so that runs of other seeds
  # share the program.
  return spmd.put_state(jax.jit(fresh)(params, jax.random.key(config.seed)), mesh)


@dataclasses.dataclass
class _Run:
  """What a run is made of, built once from its config; it makes the states and data streams."""
  config: object
  workdir: str | os.PathLike
  mesh: object
  sources: dict
  info: object
  objective: object
  optimizer: object
  ckpts: ckpt_lib.Checkpoints

  def initial_state(self, params=None) -> TrainState:
    """The state of step 0 (`params` when given, else the model's initial parameters)."""
    if params is None:
      params = models.from_config(self.config, self.info.num_classes)[1]
    return init_train_state(self.config, self.objective, params, self.optimizer,
                            self.info.image_shape, self.mesh)

  def restore(self, state: TrainState, fresh: TrainState | None = None):
    """The newest checkpoint's state and the data stream from its position.

    `state` is the restore template; without a checkpoint the run starts from `fresh` (by
    default a new initial state). Returns `(state, train_iter, step of the checkpoint or None)`.
    """
    train_iter = train_iterator(self.config, self.sources["train"], self.mesh)
    restored = self.ckpts.restore_latest(state)
    if restored is None:
      return (fresh if fresh is not None else self.initial_state()), train_iter, None
    state, iter_state, step = restored
    if iter_state is not None:
      train_iter.set_state(iter_state)
    return state, train_iter, step


def _check_resumable(config, workdir) -> None:
  """Raises `ConfigMismatchError` if `workdir` holds a run of another config; saves `config`."""
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
  if jax.process_index() == 0:
    ckpt_lib.save_config(workdir, config)


class _Loop:
  """The loop's state between steps and what it does at each: step, log, validate, checkpoint,
  restart. `train` runs it; each method is one of the loop body's lines."""

  def __init__(self, run: _Run, state: TrainState, train_iter, train_step, validate, writer,
               restarter: divergence.Restarter, total: int):
    self.run, self.state, self.train_iter = run, state, train_iter
    self.train_step, self.validate_fn, self.writer = train_step, validate, writer
    self.restarter, self.total = restarter, total
    self.step = int(state.step)
    self.best = run.ckpts.best_metrics()
    self.best_params = None  # the best parameters this call saw, kept for the evaluation
    self.metrics = step_log.MetricsBuffer(run.config, run.workdir, self.step)
    self.progress = step_log.Progress(run.config, total, self.step)
    self._first = True

  def do_step(self) -> None:
    batch = next(self.train_iter)
    if self._first:
      _check_first_batch(batch)
      self._first = False
    self.state, metrics = self.train_step(self.state, batch)
    self.metrics.add(self.step, metrics)
    self.step += 1
    self.progress.update()

  def log(self) -> None:
    mean = self.metrics.fetch()
    if mean:
      self.writer.write(self.step, {f"train/{k}": v for k, v in mean.items()})
      self.progress.show(mean)

  def validate(self) -> None:
    """Validation figures; the best parameters by accuracy are saved."""
    self.metrics.fetch()  # a diverged step must raise before its state is judged
    val = self.validate_fn(self.state.params)
    self.writer.write(self.step, {f"val/{k}": v for k, v in val.items()})
    logging.info("step %d: validation accuracy %.4f, nll %.4f", self.step, val["accuracy"],
                 val["nll"])
    if self.best is None or val["accuracy"] > self.best["val_accuracy"]:
      self.best = {"val_accuracy": val["accuracy"], "val_nll": val["nll"], "step": self.step}
      self.run.ckpts.save_best(self.step, self.state.params, self.best)
      self.best_params = _copy_tree(self.state.params)  # the step donates state

  def checkpoint(self) -> None:
    self.metrics.fetch()  # a diverged step must raise before its state is saved
    self.run.ckpts.save(self.step, self.state, self.train_iter.get_state())

  def restart(self, diverged: NonFiniteLossError) -> None:
    """Back to the last good checkpoint (or step 0) with a new key, or raises."""
    self.restarter.check_allowed(diverged)
    self.run.ckpts.wait()
    state, self.train_iter, _ = self.run.restore(self.state)
    self.state = self.restarter.record(diverged, state, self.run.mesh, self.writer)
    self.step = int(self.state.step)
    self.metrics.restart_clock(self.step)
    self.progress.move_to(self.step)

  def result(self, resumed_from: int | None, model) -> TrainResult:
    best = self.best
    return TrainResult(workdir=os.fspath(self.run.workdir), last_step=self.step,
                       best_step=best["step"] if best else None,
                       best_val_accuracy=best["val_accuracy"] if best else None,
                       preempted=self.step < self.total, resumed_from_step=resumed_from,
                       skipped_nonfinite_steps=self.metrics.skipped,
                       restarts=len(self.restarter.restarts), model=model,
                       best_params=self.best_params, best_metrics=best,
                       validation=(self.validate_fn.images, self.validate_fn.labels))


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
  _check_resumable(config, workdir)

  mesh = spmd.make_mesh(devices)
  fns, params = models.from_config(config, info.num_classes)
  objective = objective_registry.make_objective(config, fns)
  optimizer = optimizer_from_config(config, steps_per_epoch(config, len(sources["train"])))
  run = _Run(config, workdir, mesh, sources, info, objective, optimizer,
             ckpt_lib.Checkpoints(workdir))
  initial = run.initial_state(params)
  logging.info("Model %s: %d parameters on %d device(s).", config.model.name,
               models.count_params(params), mesh.size)

  state, train_iter, resumed_from = run.restore(initial, fresh=initial)
  if resumed_from is not None:
    logging.info("Resumed from the checkpoint of step %d in %s.", resumed_from, workdir)
  restarter = divergence.Restarter(config, workdir)
  state = restarter.keep_key(state, mesh)
  train_step = spmd.make_train_step(objective.loss_fn, optimizer, mesh, state,
                                    max_abs_loss=config.max_abs_loss)
  validate = validation.Validator(config, fns.apply_fn, sources["validation"], mesh)
  writer = MetricWriter(workdir, tensorboard=config.tensorboard)
  loop = _Loop(run, state, train_iter, train_step, validate, writer, restarter,
               num_train_steps(config, len(sources["train"])))
  try:
    with preemption_lib.PreemptionFlag() as preemption:
      while loop.step < loop.total:
        try:
          loop.do_step()
          done, stop = loop.step == loop.total, preemption.reached(loop.step)
          if loop.step % config.log_every_steps == 0 or done or stop:
            loop.log()
          if loop.step % config.eval_every_steps == 0 or done:
            loop.validate()
          if loop.step % config.checkpoint_every_steps == 0 or done or stop:
            loop.checkpoint()
          if stop:
            logging.warning("Signal %d received: saved the checkpoint of step %d in %s; run "
                            "the same command again to resume.", preemption.signum, loop.step,
                            workdir)
            break
        except NonFiniteLossError as diverged:
          loop.restart(diverged)
    run.ckpts.wait()
  finally:
    loop.progress.close()
    writer.close()
    run.ckpts.close()
  return loop.result(resumed_from, fns)
