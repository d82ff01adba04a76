"""`train_and_evaluate`: train a config in a workdir, then measure its best parameters on test.

Data flows one way: data -> train step -> best parameters -> evaluators -> `results.json`.
Training returns the model, the best parameters and the validation split it read
(`loop.TrainResult`), and they go, in memory, to the one evaluation entry
(`ngebm_jax.evaluation.entry.evaluate`, the evaluators of `config.eval.evaluators`), the entry
`experiments.evaluate` also calls: `results.json` (docs/results.rst) agrees with its report for
the same checkpoint, and its input noise is the one validation used. The best parameters are
read back from `best/` only when they were saved before a resume (or by another process).
"""

from __future__ import annotations

import os
import time

import jax
from absl import logging
from etils import epath

from ngebm_jax import config_validation
from ngebm_jax import data as data_lib
from ngebm_jax import models
from ngebm_jax import reporting
from ngebm_jax.data import pipeline
from ngebm_jax.evaluation import calibration
from ngebm_jax.evaluation import entry
from ngebm_jax.evaluation import results as results_lib
from ngebm_jax.evaluation.evaluators import calibration as calibration_evaluator
from ngebm_jax.evaluation.inputs import EvalInputs
from ngebm_jax.evaluation.inputs import EvalOptions
from ngebm_jax.evaluation.inputs import test_logits
from ngebm_jax.training import checkpoints as ckpt_lib
from ngebm_jax.training import loop
from ngebm_jax.workflows import launch

RESULTS_FILE = "results.json"
# TrainResult's fields that a preempted run's return value repeats (the others are arrays).
_SUMMARY_FIELDS = ("workdir", "last_step", "best_step", "best_val_accuracy", "preempted",
                   "resumed_from_step", "skipped_nonfinite_steps", "restarts")


def _best_in_memory(result: loop.TrainResult):
  """`(params, {"best_step", "best_metrics"})` of the best step, from `result` when it holds
  them on this process's devices, else None."""
  params = result.best_params
  if params is None or not all(x.is_fully_addressable for x in jax.tree.leaves(params)):
    return None
  # One device, as parameters read from disk are (evaluation batches are not sharded).
  params = jax.device_put(params, jax.local_devices()[0])
  return params, dict(best_step=result.best_step, best_metrics=result.best_metrics or {})


def evaluate_trained(config, workdir, result: loop.TrainResult) -> dict:
  """The record of `results.json` (`results.run_record`) of what `loop.train` returned."""
  best = _best_in_memory(result)
  model = result.model
  if best is None:  # saved before a resume: the parameters are on disk only
    _, model, params, info = ckpt_lib.load_best(workdir)
  else:
    params, info = best
  data = entry.read_eval_data(config, "test", validation=result.validation)
  figures = entry.evaluate(config, model, params, data, workdir,
                           meta=dict(workdir=os.fspath(workdir), **info))
  return results_lib.run_record(figures, skipped_nonfinite_steps=result.skipped_nonfinite_steps)


def train_and_evaluate(config, workdir, *, devices=None) -> dict:
  """Trains `config` in `workdir` (resuming if possible), then writes `results.json`.

  Returns the contents of `results.json` (`{"schema": 1, **record}`, see
  `ngebm_jax.evaluation.results`), or `{"preempted": True, ...}` when a signal stopped
  training.
  """
  config_validation.validate_config(config, len(devices) if devices is not None else None)
  ckpt_lib.require_storage_backend(workdir)  # a gs:// workdir names the extra it needs
  launch.use_compilation_cache(config.compilation_cache_dir, workdir)
  result = loop.train(config, workdir, devices=devices)
  if result.preempted:
    return {"preempted": True, **{k: getattr(result, k) for k in _SUMMARY_FIELDS}}
  results = reporting.to_jsonable(results_lib.run_file(evaluate_trained(config, workdir, result)))
  if jax.process_index() == 0:
    reporting.write_json(os.path.join(os.fspath(workdir), RESULTS_FILE), results)
    logging.info("Test results of %s: %s", workdir,
                 {k: v for k, v in results.items() if k != "evaluation"})
  return results


def train_or_reuse(config, workdir) -> dict:
  """`train_and_evaluate`, unless `workdir` already holds a finished run of `config`.

  Studies made of many runs (the demo, the focus and calibration studies) call this, so that
  re-running them after an interruption retrains nothing that finished: a finished run's
  `results.json` is read back, an interrupted one resumes. A finished run of a different config
  is refused with the fields that differ.

  Raises:
    ValueError: `workdir` holds a finished run of another config.
    SystemExit: training was interrupted by a signal (run the same command again to resume).
  """
  config_validation.validate_config(config)
  done = epath.Path(workdir) / RESULTS_FILE
  if done.exists():
    diffs = ckpt_lib.config_differences(ckpt_lib.load_config(workdir), config,
                                        ignore=loop.RESUMABLE_FIELDS)
    if diffs:
      raise ValueError(f"{workdir} holds a finished run of another config; fields that "
                       "differ:\n  " + "\n  ".join(diffs) + "\nUse another output folder.")
    logging.info("%s is finished; reusing its results.", workdir)
    return reporting.read_json(done)
  start = time.time()
  results = train_and_evaluate(config, workdir)
  if results.get("preempted"):
    raise SystemExit(f"Training in {workdir} was interrupted; run the same command to resume.")
  logging.info("%s trained and evaluated in %.0f s.", workdir, time.time() - start)
  return results


# ------------------------------------------------------------------ training in stages --

STAGES_FILE = "stages.json"
# Training-set figures of a stage use at most this many training images (the first ones).
STAGE_TRAIN_EXAMPLES = 2_000


class StageEvaluator:
  """Calibration of a run's NEWEST parameters, as training goes: test, validation and train.

  Built once per config (the data is read once). `__call__(workdir)` evaluates the newest
  checkpoint of `workdir` with the calibration evaluator (noisy test images, NG-EBM's clean
  variant, temperature fitted on validation; the same keys as the end-of-run evaluation) and
  adds the accuracy and mean confidence on the first training images (noisy, not augmented):
  whether the model has fitted its training set, and how sure it has become.
  """

  def __init__(self, config):
    self.config = config
    info = data_lib.dataset_info(config)
    self.fns, _ = models.from_config(config, info.num_classes)
    sources = data_lib.get_sources(config)
    n_test = config.eval.max_examples
    test = pipeline.read_arrays(sources["test"], None if n_test is None else range(
        min(n_test, len(sources["test"]))))
    val_images, val_labels = pipeline.read_split(sources["validation"])
    train = pipeline.read_arrays(sources["train"],
                                 range(min(STAGE_TRAIN_EXAMPLES, len(sources["train"]))))
    self.test = (pipeline.to_model_space(test["image"]), test["label"])
    self.validation = (pipeline.to_model_space(val_images), val_labels)
    self.train = (pipeline.to_model_space(train["image"]), train["label"])
    self.options = EvalOptions.from_config(config)

  def __call__(self, workdir, plot_dir) -> dict:
    ckpts = ckpt_lib.Checkpoints(workdir, use_async=False)
    try:
      step = ckpts.latest.latest_step()
      params = ckpts.read_state(step)["params"]
    finally:
      ckpts.close()
    key = jax.random.key(int(self.config.eval.seed))
    inputs = EvalInputs(
        apply_fn=self.fns.apply_fn, params=params, images=self.test[0],
        labels=self.test[1], key=key, options=self.options,
        validation_images=self.validation[0], validation_labels=self.validation[1])
    test = calibration_evaluator.evaluate(inputs, os.fspath(plot_dir))
    train_inputs = EvalInputs(
        apply_fn=inputs.apply_fn, params=params, images=self.train[0], labels=self.train[1],
        key=key, options=self.options, split="train")
    train = calibration.calibration_figures(test_logits(train_inputs),
                                            self.train[1], num_bins=self.options.num_bins)
    return dict(step=int(step), test={k: v for k, v in test.items() if k not in ("bins",
                                                                                  "bins_ts")},
                train={k: train[k] for k in ("accuracy", "mean_confidence", "confidence_gap",
                                             "nll")},
                num_train_evaluated=int(self.train[1].shape[0]))


def stage_steps(config, stages) -> list[int]:
  """The sorted steps at which `train_in_stages` pauses, ending with `config.num_steps`.

  Each must be a multiple of `config.eval_every_steps`, so that pausing adds no validation
  (and the best checkpoint is the one an uninterrupted run picks).
  """
  total = int(config.num_steps)
  if total < 1:
    raise ValueError(f"training in stages needs config.num_steps > 0; got {total}.")
  steps = sorted({int(s) for s in stages if 0 < int(s) < total} | {total})
  bad = [s for s in steps[:-1] if s % config.eval_every_steps]
  if bad:
    raise ValueError(f"stage steps {bad} are not multiples of config.eval_every_steps "
                     f"({config.eval_every_steps}).")
  return steps


def train_in_stages(config, workdir, stages, *, evaluator: StageEvaluator | None = None
                    ) -> tuple[dict, list[dict]]:
  """`train_or_reuse`, pausing at each of `stages` to measure the newest parameters.

  The run is trained to each stage's step in turn (`loop.train` resumes from the newest
  checkpoint: the same stream of batches and updates as one run, since `num_steps` changes no
  schedule), and `StageEvaluator` measures it there; the records go to `STAGES_FILE` in the
  workdir, so a re-run skips stages already measured. The last stage is `config.num_steps`:
  `train_or_reuse` finishes the run and evaluates its best checkpoint as usual.

  Returns:
    `(results, records)`: `train_or_reuse`'s results of the whole run, and one record per stage
    (see `StageEvaluator`), in step order.
  """
  config_validation.validate_config(config)
  steps = stage_steps(config, stages)
  path = epath.Path(workdir) / STAGES_FILE
  records = {int(r["step"]): r for r in reporting.read_json(path)} if path.exists() else {}
  evaluator = evaluator or StageEvaluator(config)
  results = None
  for s in steps:
    if s == steps[-1]:
      results = train_or_reuse(config, workdir)
    elif s not in records:
      stage_config = config.copy_and_resolve_references()
      stage_config.num_steps = s
      if loop.train(stage_config, workdir).preempted:
        raise SystemExit(f"Training in {workdir} was interrupted; run the same command to "
                         "resume.")
    if s not in records:
      record = evaluator(workdir, epath.Path(workdir) / "stages" / str(s))
      if record["step"] != s:  # the workdir was already further along: say so, keep its step
        logging.warning("%s is at step %d, past the stage at %d; recorded there.", workdir,
                        record["step"], s)
      records[record["step"]] = record
      if jax.process_index() == 0:
        reporting.write_json(path, [records[k] for k in sorted(records)])
  return results, [records[k] for k in sorted(records)]
