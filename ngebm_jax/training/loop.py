"""The training loop: data -> SPMD train step -> metrics and checkpoints.

`train(config, workdir)` trains `config.objective` and leaves in `workdir` the newest train
states, the best parameters by validation accuracy, `metrics.jsonl` and TensorBoard events
(see `checkpoints.py` for the layout). Re-running it on the same workdir resumes where the last
checkpoint left off, with the same data order and keys, so the result equals an uninterrupted
run. SIGTERM/SIGINT save a checkpoint at the next step boundary and return.
"""

from __future__ import annotations

import dataclasses
import math
import os
import signal
import threading
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging

from ngebm_jax import data as data_lib
from ngebm_jax.data import pipeline
from ngebm_jax.training import checkpoints as ckpt_lib
from ngebm_jax.training import objectives
from ngebm_jax.training import spmd
from ngebm_jax.training.logging_utils import MetricWriter
from ngebm_jax.training.state import TrainState, make_optimizer

# Config fields that may change between a run and its resumption without changing the result.
RESUMABLE_FIELDS = ("allow_config_change", "num_steps", "num_epochs", "log_every_steps",
                    "eval_every_steps", "checkpoint_every_steps", "progress_bar",
                    "dataset.data_dir", "dataset.num_workers", "eval")


class NonFiniteLossError(FloatingPointError):
  """A train step produced a non-finite loss or gradient."""


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


def validate_config(config, num_devices: int | None = None) -> None:
  """Checks that need no data, so a bad config fails before any long work."""
  num_devices = num_devices or jax.device_count()
  names = objectives.names()
  if config.objective not in names:
    raise ValueError(f"config.objective must be one of {names}; got {config.objective!r}.")
  data_lib.dataset_info(config)  # unknown dataset names raise here
  if config.batch_size <= 0:
    raise ValueError(f"config.batch_size must be > 0; got {config.batch_size}.")
  for name, size in (("batch_size", config.batch_size), ("eval.batch_size", config.eval.batch_size)):
    if size % num_devices:
      raise ValueError(f"config.{name} ({size}) must be divisible by the number of devices "
                       f"({num_devices}).")
  if config.num_steps <= 0 and config.num_epochs <= 0:
    raise ValueError("Set config.num_steps or config.num_epochs to a positive number.")
  for field in ("log_every_steps", "eval_every_steps", "checkpoint_every_steps"):
    if config[field] <= 0:
      raise ValueError(f"config.{field} must be > 0; got {config[field]}.")
  if config.dataset.noise_std < 0:
    raise ValueError(f"config.dataset.noise_std must be >= 0; got {config.dataset.noise_std}.")


def _check_writable(workdir: str) -> None:
  try:
    os.makedirs(workdir, exist_ok=True)
    probe = os.path.join(workdir, f".write_probe_{jax.process_index()}")
    with open(probe, "w") as f:
      f.write("ok")
    os.remove(probe)
  except OSError as e:
    raise PermissionError(f"The workdir {workdir} is not writable: {e}") from e


def _check_first_batch(batch: dict) -> None:
  x = batch["image"]
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


def predict_logits(predict, params, source, *, mesh, batch_size: int, noise_std: float,
                   seed: int) -> np.ndarray:
  """Logits of every example of `source`, in order, with the recipe's test-time noise."""
  outputs = []
  for batch in pipeline.eval_batches(source, batch_size=batch_size, noise_std=noise_std,
                                     seed=seed):
    mask = batch.pop("mask")
    x = spmd.replicated_to_global(mesh, {"image": batch["image"]})["image"]
    outputs.append(np.asarray(predict(params, x))[mask])
  return np.concatenate(outputs)


def classification_metrics(logits: np.ndarray, labels: np.ndarray) -> dict:
  """Accuracy and mean negative log-likelihood."""
  logits = logits.astype(np.float64)
  log_probs = logits - np.logaddexp.reduce(logits, axis=-1, keepdims=True)
  return {"accuracy": float(np.mean(np.argmax(logits, -1) == labels)),
          "nll": float(-np.mean(log_probs[np.arange(len(labels)), labels]))}


def labels_of(source) -> np.ndarray:
  if hasattr(source, "arrays"):
    return np.asarray(source.arrays["label"])
  return np.asarray([source[i]["label"] for i in range(len(source))])


class _PreemptionFlag:
  """Set by SIGTERM/SIGINT; the loop saves and returns at the next step boundary."""

  def __init__(self):
    self.signum = None
    self._previous = {}

  def __enter__(self):
    if threading.current_thread() is threading.main_thread():
      for sig in (signal.SIGTERM, signal.SIGINT):
        self._previous[sig] = signal.signal(sig, self._handle)
    return self

  def _handle(self, signum, frame):  # pylint: disable=unused-argument
    self.signum = signum

  def __exit__(self, *exc):
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)


def _init_state(config, fns, params, objective, optimizer, image_shape, mesh) -> TrainState:
  root = jax.random.key(config.seed)
  state = TrainState(
      step=jnp.zeros((), jnp.int32), params=params, opt_state=optimizer.init(params),
      key=jax.random.key_data(jax.random.fold_in(root, 1)),
      objective_state=objective.init_state(jax.random.fold_in(root, 2), image_shape, mesh.size))
  return spmd.put_state(state, mesh)


def train(config, workdir: str, *, devices=None) -> TrainResult:
  """Trains `config` in `workdir`, resuming from its newest checkpoint if there is one.

  Args:
    config: the run's `ml_collections.ConfigDict` (see configs/default.py).
    workdir: where checkpoints, metrics and results go; created if missing.
    devices: devices of the data-parallel mesh; all devices of all hosts by default.
  """
  validate_config(config, len(devices) if devices is not None else None)
  _check_writable(workdir)
  info = data_lib.dataset_info(config)
  sources = data_lib.get_sources(config)  # fails fast when data is not prepared
  is_main = jax.process_index() == 0

  old_config = None
  if os.path.exists(os.path.join(workdir, ckpt_lib.CONFIG_FILE)):
    old_config = ckpt_lib.load_config(workdir)
    diffs = ckpt_lib.config_differences(old_config, config, ignore=RESUMABLE_FIELDS)
    if diffs and not config.get("allow_config_change", False):
      raise ConfigMismatchError(
          f"{workdir} holds a run started with a different config; fields that differ:\n  "
          + "\n  ".join(diffs) + "\nUse another --workdir, or pass "
          "--config.allow_config_change=True to resume anyway.")
  if is_main:
    ckpt_lib.save_config(workdir, config)

  mesh = spmd.make_mesh(devices)
  fns, params = ckpt_lib.model_from_config(config, info.num_classes)
  objective = objectives.make_objective(config, fns)
  opt = config.optimizer
  optimizer = make_optimizer(opt.learning_rate, opt.warmup_steps, b1=opt.b1, b2=opt.b2,
                             weight_decay=opt.get("weight_decay", 0.0))
  state = _init_state(config, fns, params, objective, optimizer, info.image_shape, mesh)
  logging.info("Model %s: %d parameters on %d device(s).", config.model.name,
               sum(x.size for x in jax.tree.leaves(params)), mesh.size)

  ckpts = ckpt_lib.Checkpoints(workdir)
  options = pipeline.PipelineOptions(
      batch_size=config.batch_size // jax.process_count(), augment=config.dataset.augment,
      noise_std=config.dataset.noise_std, num_workers=config.dataset.get("num_workers", 0),
      seed=config.seed, poison_batch=config.dataset.get("poison_batch", -1),
      unlabelled_batch=objectives.needs_unlabelled_batch(config))
  train_iter = iter(pipeline.train_dataset(
      sources["train"], options, process_index=jax.process_index(),
      process_count=jax.process_count()))
  restored = ckpts.restore_latest(state)
  resumed_from = None
  if restored is not None:
    state, iter_state, step = restored
    resumed_from = step
    if iter_state is not None:
      train_iter.set_state(iter_state)
    logging.info("Resumed from the checkpoint of step %d in %s.", step, workdir)

  train_step = spmd.make_train_step(objective.loss_fn, optimizer, mesh, state)
  predict = spmd.make_predict(fns.apply_fn, mesh)
  total = num_train_steps(config, len(sources["train"]))
  val_labels = labels_of(sources["validation"])
  best = ckpts.best_metrics()
  writer = MetricWriter(workdir, tensorboard=config.get("tensorboard", True))

  step = int(state.step)
  pending: list[tuple[int, dict]] = []
  skipped = 0
  last_time, last_step = time.perf_counter(), step
  progress = None
  if is_main and config.get("progress_bar", True):
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
        if not config.get("skip_nonfinite", False):
          terms = ", ".join(f"{k}={float(v):.6g}" for k, v in sorted(m.items()))
          raise NonFiniteLossError(
              f"Non-finite loss or gradient at step {s} ({terms}). The update was not applied; "
              f"the last good checkpoint in {workdir} is kept. Lower the learning rate (JEM "
              "diverges this way), or set config.skip_nonfinite=True to skip such steps.")
        skipped += 1
    now = time.perf_counter()
    mean = {k: float(np.mean([m[k] for m in fetched])) for k in fetched[0]}
    mean["step_time_s"] = (now - last_time) / max(steps[-1] + 1 - last_step, 1)
    mean["skipped_nonfinite_steps"] = skipped
    last_time, last_step = now, steps[-1] + 1
    return mean

  first = True
  try:
    with _PreemptionFlag() as preemption:
      while step < total:
        batch = next(train_iter)
        if first:
          _check_first_batch(batch)
          first = False
        state, metrics = train_step(state, spmd.host_to_global(mesh, batch))
        pending.append((step, metrics))
        step += 1
        if progress is not None:
          progress.update(1)
        done = step == total
        stop = preemption.signum is not None
        if step % config.log_every_steps == 0 or done or stop:
          mean = flush()
          if mean:
            writer.write(step, {f"train/{k}": v for k, v in mean.items()})
            if progress is not None:
              progress.set_postfix(loss=f"{mean['loss']:.4f}", acc=f"{mean['accuracy']:.3f}",
                                   step_s=f"{mean['step_time_s']:.3f}")
        if step % config.eval_every_steps == 0 or done:
          flush()
          logits = predict_logits(predict, state.params, sources["validation"], mesh=mesh,
                                  batch_size=config.eval.batch_size,
                                  noise_std=config.dataset.noise_std, seed=config.seed)
          val = classification_metrics(logits, val_labels)
          writer.write(step, {f"val/{k}": v for k, v in val.items()})
          logging.info("step %d: validation accuracy %.4f, nll %.4f", step, val["accuracy"],
                       val["nll"])
          if best is None or val["accuracy"] > best["val_accuracy"]:
            best = {"val_accuracy": val["accuracy"], "val_nll": val["nll"], "step": step}
            ckpts.save_best(step, state.params, best)
        if step % config.checkpoint_every_steps == 0 or done or stop:
          flush()
          ckpts.save(step, state, train_iter.get_state())
        if stop:
          logging.warning("Signal %d received: saved the checkpoint of step %d in %s; run the "
                          "same command again to resume.", preemption.signum, step, workdir)
          break
    ckpts.wait()
  finally:
    if progress is not None:
      progress.close()
    writer.close()
    ckpts.close()
  return TrainResult(workdir=workdir, last_step=step,
                     best_step=best["step"] if best else None,
                     best_val_accuracy=best["val_accuracy"] if best else None,
                     preempted=step < total, resumed_from_step=resumed_from,
                     skipped_nonfinite_steps=skipped)
