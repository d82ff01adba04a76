"""`train_and_evaluate`: train a config in a workdir, then measure its best checkpoint on test.

Data flows one way: data -> train step -> checkpoints -> evaluation -> `results.json`. The test
figures come from the evaluation package's own evaluators (same test-time noise, same key), so
`results.json` agrees with the report of `experiments.evaluate` for the same checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile

import jax
import numpy as np
from absl import logging

from ngebm_jax import data as data_lib
from ngebm_jax.data import pipeline
from ngebm_jax.evaluation import evaluators
from ngebm_jax.training import checkpoints as ckpt_lib
from ngebm_jax.training import loop

RESULTS_FILE = "results.json"


def _read_split(source) -> tuple[np.ndarray, np.ndarray]:
  if hasattr(source, "arrays"):
    return source.arrays["image"], source.arrays["label"]
  from ngebm_jax.data import tfds_sources  # pylint: disable=g-import-not-at-top
  arrays = tfds_sources.read_arrays(source)
  return arrays["image"], arrays["label"]


def evaluate_test(config, workdir: str) -> dict:
  """Accuracy, NLL, Brier score and ECE of the best checkpoint on the test split.

  ECE is the mean-confidence form with `config.eval.num_bins` bins (20); the recipe's input
  noise (`config.dataset.noise_std`) is added to the test images. Also writes the reliability
  diagram `reliability.png` into `workdir`.
  """
  _, fns, params = ckpt_lib.load_run(workdir)
  images, labels = _read_split(data_lib.get_sources(config)["test"])
  options = evaluators.EvalOptions(noise_std=config.dataset.noise_std,
                                   batch_size=config.eval.batch_size,
                                   num_bins=config.eval.get("num_bins", 20))
  inputs = evaluators.EvalInputs(
      apply_fn=lambda p, x: fns.apply_fn(p, x), params=params,
      images=pipeline.to_model_space(images), labels=np.asarray(labels, np.int32),
      key=jax.random.key(0), options=options)
  # Every process evaluates (restoring is collective); only process 0 keeps the plot.
  plot_dir = workdir if jax.process_index() == 0 else tempfile.mkdtemp()
  figures = evaluators.run_evaluators(["classification", "calibration"], inputs, plot_dir)
  results = dict(figures["classification"])
  results.update(ece=figures["calibration"]["ece"],
                 ece_bin_center=figures["calibration"]["ece_bin_center"],
                 ece_num_bins=figures["calibration"]["num_bins"],
                 objective=config.objective, dataset=config.dataset.name)
  best = ckpt_lib.Checkpoints(workdir, use_async=False)
  try:
    results["best_step"] = int(best.best.latest_step())
  finally:
    best.close()
  return results


def train_and_evaluate(config, workdir: str, *, devices=None) -> dict:
  """Trains `config` in `workdir` (resuming if possible), then writes `results.json`.

  Returns the test results, or `{"preempted": True, ...}` when a signal stopped training.
  """
  result = loop.train(config, workdir, devices=devices)
  if result.preempted:
    return {"preempted": True, **dataclasses.asdict(result)}
  results = evaluate_test(config, workdir)
  if jax.process_index() == 0:
    results["skipped_nonfinite_steps"] = result.skipped_nonfinite_steps
    with open(os.path.join(workdir, RESULTS_FILE), "w") as f:
      json.dump(results, f, indent=2, sort_keys=True)
    logging.info("Test results of %s: %s", workdir, results)
  return results
