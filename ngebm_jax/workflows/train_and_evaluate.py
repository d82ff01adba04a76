"""`train_and_evaluate`: train a config in a workdir, then measure its best checkpoint on test.

Data flows one way: data -> train step -> checkpoints -> evaluators -> `results.json`. The test
figures come from the evaluate-runs workflow (`evaluate_runs.evaluate_workdir`, the evaluators
of `config.eval.evaluators`), so `results.json` agrees with the report of
`experiments.evaluate` for the same checkpoint, and its input noise is the one validation used.
"""

from __future__ import annotations

import dataclasses
import os
import time

import jax
from absl import logging
from etils import epath

from ngebm_jax import config_validation
from ngebm_jax import data as data_lib
from ngebm_jax import reporting
from ngebm_jax.data import pipeline
from ngebm_jax.evaluation import calibration
from ngebm_jax.evaluation import evaluators
from ngebm_jax.training import checkpoints as ckpt_lib
from ngebm_jax.training import loop
from ngebm_jax.workflows import evaluate_runs
from ngebm_jax.workflows import launch

RESULTS_FILE = "results.json"


# The calibration evaluator's figures that `results.json` repeats at its top level.
HEADLINE_CALIBRATION = (
    "ece", "ece_paper", "confidence_gap", "mean_confidence", "temperature",
    *(f"{k}_ts" for k in evaluators.CALIBRATION_FIGURES))


def headline(figures: dict) -> dict:
  """The flat figures of `results.json`: classification and calibration, then the run.

  `ece` is the mean-confidence ECE on the noisy test images, `ece_paper` NG-EBM's variant (bin
  centres, clean images), `confidence_gap` mean confidence - accuracy, `temperature` the `T`
  fitted on validation NLL, and `*_ts` every calibration figure after dividing the logits by `T`
  (see `ngebm_jax.evaluation.evaluators.evaluate_calibration`).
  """
  results = dict(figures.get("classification", {}))
  calibration = figures.get("calibration")
  if calibration:
    results.update({k: calibration[k] for k in HEADLINE_CALIBRATION},
                   ece_num_bins=calibration["num_bins"])
  meta = figures["meta"]
  results.update(objective=meta["objective"], dataset=meta["dataset"],
                 best_step=meta.get("best_step"))
  return results


def evaluate_test(workdir) -> dict:
  """`results.json`'s figures of the best checkpoint in `workdir` (plots into `workdir`).

  The flat keys (accuracy, NLL, Brier score, the calibration figures of `headline`) are the
  headline; `evaluation` holds every evaluator's figures (OOD detection, robustness) as
  `experiments.evaluate` reports them.
  """
  figures = evaluate_runs.evaluate_workdir(workdir, workdir)
  return {**headline(figures), "evaluation": figures}


def train_and_evaluate(config, workdir, *, devices=None) -> dict:
  """Trains `config` in `workdir` (resuming if possible), then writes `results.json`.

  Returns the test results, or `{"preempted": True, ...}` when a signal stopped training.
  """
  config_validation.validate_config(config, len(devices) if devices is not None else None)
  ckpt_lib.require_storage_backend(workdir)  # a gs:// workdir names the extra it needs
  launch.use_compilation_cache(config.compilation_cache_dir, workdir)
  result = loop.train(config, workdir, devices=devices)
  if result.preempted:
    return {"preempted": True, **dataclasses.asdict(result)}
  results = reporting.to_jsonable(evaluate_test(workdir))
  results["skipped_nonfinite_steps"] = result.skipped_nonfinite_steps
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
    self.fns, _ = ckpt_lib.model_from_config(config, info.num_classes)
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
    self.options = evaluate_runs.eval_options(config)

  def __call__(self, workdir, plot_dir) -> dict:
    ckpts = ckpt_lib.Checkpoints(workdir, use_async=False)
    try:
      step = ckpts.latest.latest_step()
      params = ckpts.read_state(step)["params"]
    finally:
      ckpts.close()
    key = jax.random.key(int(self.config.eval.seed))
    inputs = evaluators.EvalInputs(
        apply_fn=lambda p, x: self.fns.apply_fn(p, x), params=params, images=self.test[0],
        labels=self.test[1], key=key, options=self.options,
        validation_images=self.validation[0], validation_labels=self.validation[1])
    test = evaluators.evaluate_calibration(inputs, os.fspath(plot_dir))
    train_inputs = evaluators.EvalInputs(
        apply_fn=inputs.apply_fn, params=params, images=self.train[0], labels=self.train[1],
        key=key, options=self.options, split="train")
    train = calibration.calibration_figures(evaluators.test_logits(train_inputs),
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
