"""The one evaluation entry: a model and its parameters in memory -> every evaluator's figures.

    data = entry.read_eval_data(config)                     # test, OOD and validation sets
    figures = entry.evaluate(config, model_fns, params, data, output_dir)

`train_and_evaluate` calls `evaluate` with what training returned (the model, the best
parameters and the validation split it already read); `experiments.evaluate` with what it
loaded from a workdir. Every setting is read from `config.eval` (the evaluators, their options,
the seed, `max_examples`, the OOD sets) and `config.dataset` (the test-time noise, the data).
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from typing import Any, Mapping

from absl import logging
import jax
import numpy as np

from ngebm_jax import data as data_lib
from ngebm_jax import models
from ngebm_jax.data import pipeline
from ngebm_jax.evaluation import evaluators as evaluators_lib
from ngebm_jax.evaluation.evaluators import focus_detection
from ngebm_jax.evaluation.inputs import EvalInputs
from ngebm_jax.evaluation.inputs import EvalOptions

SPLITS = ("test", "validation")
# The evaluators that run on the validation split (the others need test and OOD sets).
VALIDATION_EVALUATORS = ("classification", "calibration")


@dataclasses.dataclass(frozen=True)
class EvalData:
  """The sets an evaluation reads, in memory, images in model space (`[N, H, W, C]` in [-1, 1]).

  Attributes:
    split: the split of `images` ("test" or "validation").
    images, labels: that split.
    ood_images: OOD set name -> images (test only).
    ood_missing: OOD set name -> the command that prepares it, for sets left out.
    validation_images, validation_labels: the split that chose the best checkpoint, which
      temperature scaling is fitted on; None without the calibration evaluator.
    extras: the split's other per-image arrays a registered evaluator needs (the focus task's
      maps and kinds).
  """
  split: str
  images: np.ndarray
  labels: np.ndarray
  ood_images: Mapping[str, np.ndarray] = dataclasses.field(default_factory=dict)
  ood_missing: Mapping[str, str] = dataclasses.field(default_factory=dict)
  validation_images: np.ndarray | None = None
  validation_labels: np.ndarray | None = None
  extras: Mapping[str, np.ndarray] = dataclasses.field(default_factory=dict)


def evaluator_names(config, split: str = "test") -> list[str]:
  """`config.eval.evaluators`, those that run on `split`."""
  if split not in SPLITS:
    raise ValueError(f"split must be one of {SPLITS}; got {split!r}.")
  names = list(config.eval.evaluators)
  if split == "validation":
    names = [n for n in names if n in VALIDATION_EVALUATORS]
  return names


def read_eval_data(config, split: str = "test", *,
                   validation: tuple[np.ndarray, np.ndarray] | None = None) -> EvalData:
  """The sets `config.eval.evaluators` need on `split`, read once.

  Args:
    config: the run's config (`config.dataset`, `config.eval`).
    split: "test" (with the OOD sets of the ood evaluator) or "validation" (the split that chose
      the checkpoint, with training's input noise).
    validation: `(images in model space, labels)` of the validation split when the caller holds
      it already (training read it to validate); None: read it here if needed.
  """
  names = evaluator_names(config, split)
  e = config.eval
  max_examples = e.max_examples
  if validation is None and ("calibration" in names or split == "validation"):
    images, labels = pipeline.read_split(data_lib.get_sources(config)["validation"])
    validation = (pipeline.to_model_space(images), labels)
  if split == "validation":
    images, labels = validation
    if max_examples is not None:
      images, labels = images[:max_examples], labels[:max_examples]
    # Temperature scaling on the same arrays: their logits are computed once.
    validation = (images, labels) if "calibration" in names else (None, None)
    return EvalData(split=split, images=images, labels=labels,
                    validation_images=validation[0], validation_labels=validation[1])
  # OOD sets: none without the ood evaluator; the protocol's (those prepared) when none chosen.
  ood_sets = (tuple(e.ood_sets) or None) if "ood" in names else ()
  loaded = data_lib.load_eval_data(config, ood_sets=ood_sets, strict=bool(e.ood_strict),
                                   max_examples=max_examples)
  (images, labels), ood, missing = loaded["test"], dict(loaded["ood"]), loaded["ood_missing"]
  extras = {}
  if "focus_detection" in names:
    test = data_lib.focus_task_splits(config)["test"]
    extras = {k: test[k] for k in focus_detection.NEEDS}
  if max_examples is not None:
    images, labels = images[:max_examples], labels[:max_examples]
    ood = {k: v[:max_examples] for k, v in ood.items()}
    extras = {k: v[:max_examples] for k, v in extras.items()}
  if "calibration" not in names:
    validation = (None, None)
  return EvalData(split=split, images=pipeline.to_model_space(images), labels=labels,
                  ood_images={k: pipeline.to_model_space(v) for k, v in ood.items()},
                  ood_missing=missing, validation_images=validation[0],
                  validation_labels=validation[1], extras=extras)


def describe_model(config) -> str:
  m = config.model
  if m.name == "wide_resnet":
    return f"wide_resnet (depth={m.depth}, width={m.width})"
  return f"{m.name} (width={m.width})"


def evaluate(config, model: models.ModelFns, params: Any, data: EvalData, output_dir, *,
             meta: Mapping[str, Any] | None = None) -> dict:
  """Runs `config.eval.evaluators` on a model and its parameters; plots go into `output_dir`.

  Every process of a multi-host run calls it; only process 0 writes plots.

  Args:
    config: the run's config (`config.eval`, `config.dataset.noise_std`, the model's name).
    model: the model's pure functions (`ngebm_jax.models.ModelFns`).
    params: the parameters to evaluate (the best ones, by validation accuracy).
    data: `read_eval_data(config, split)`.
    output_dir: folder for this run's plots.
    meta: the run's own facts to record (`workdir`, `best_step`, `best_metrics`).

  Returns:
    evaluator name -> figures, plus `"meta"` (dataset, objective, model, options, plan, ...).
  """
  names = evaluator_names(config, data.split)
  options = EvalOptions.from_config(config)
  inputs = EvalInputs(
      apply_fn=model.apply_fn, params=params, images=data.images, labels=data.labels,
      ood_images=dict(data.ood_images), key=jax.random.key(int(config.eval.seed)),
      options=options, split=data.split, validation_images=data.validation_images,
      validation_labels=data.validation_labels, model=model, extras=dict(data.extras))
  plan = evaluators_lib.evaluation_plan(names, inputs)
  logging.info("Evaluating %s (%s, %s) on %d %s images and OOD sets %s. Plan:\n  %s",
               (meta or {}).get("workdir", "a model"), config.dataset.name, config.objective,
               len(data.labels), data.split, sorted(data.ood_images),
               evaluators_lib.describe_plan(plan))
  plot_dir = os.fspath(output_dir) if jax.process_index() == 0 else tempfile.mkdtemp()
  figures = evaluators_lib.run_evaluators(names, inputs, plot_dir)
  meta = dict(meta or {})
  figures["meta"] = dict(
      workdir=meta.pop("workdir", None),
      dataset=config.dataset.name,
      split=data.split,
      objective=config.objective,
      model=describe_model(config),
      num_params=models.count_params(params),
      evaluators=names,
      plan=plan,
      ood_sets=list(data.ood_images),
      ood_missing=dict(data.ood_missing),
      data_dir=config.dataset.data_dir,
      options=dataclasses.asdict(options),
      **meta)
  return figures


__all__ = ["EvalData", "SPLITS", "describe_model", "evaluate", "evaluator_names",
           "read_eval_data"]
