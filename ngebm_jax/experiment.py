"""`train_and_evaluate`: train a config in a workdir, then measure its best checkpoint on test.

Data flows one way: data -> train step -> checkpoints -> evaluation -> `results.json`.
"""

from __future__ import annotations

import dataclasses
import json
import os

import jax
import numpy as np
from absl import logging

from ngebm_jax import data as data_lib
from ngebm_jax.evaluation import calibration
from ngebm_jax.training import checkpoints as ckpt_lib
from ngebm_jax.training import loop
from ngebm_jax.training import spmd

RESULTS_FILE = "results.json"


def evaluate_test(config, workdir: str, *, devices=None) -> dict:
  """Accuracy, NLL and ECE (mean-confidence form) of the best checkpoint on the test split."""
  info = data_lib.dataset_info(config)
  sources = data_lib.get_sources(config)
  fns, params = ckpt_lib.model_from_config(config, info.num_classes)
  mesh = spmd.make_mesh(devices)
  ckpts = ckpt_lib.Checkpoints(workdir, use_async=False)
  try:
    params, best_step = ckpts.restore_best_params(spmd.put_state_params(params, mesh))
  finally:
    ckpts.close()
  logits = loop.predict_logits(spmd.make_predict(fns.apply_fn, mesh), params, sources["test"],
                               mesh=mesh, batch_size=config.eval.batch_size,
                               noise_std=config.dataset.noise_std, seed=config.seed + 1)
  labels = loop.labels_of(sources["test"])
  probs = np.asarray(jax.nn.softmax(logits.astype(np.float64), axis=-1))
  results = loop.classification_metrics(logits, labels)
  results["ece"] = calibration.expected_calibration_error(
      probs, labels, num_bins=config.eval.get("num_bins", 20))
  results.update(num_examples=int(len(labels)), best_step=int(best_step),
                 ece_num_bins=int(config.eval.get("num_bins", 20)), objective=config.objective,
                 dataset=config.dataset.name)
  return results


def train_and_evaluate(config, workdir: str, *, devices=None) -> dict:
  """Trains `config` in `workdir` (resuming if possible), then writes `results.json`.

  Returns the test results, or `{"preempted": True, ...}` when a signal stopped training.
  """
  result = loop.train(config, workdir, devices=devices)
  if result.preempted:
    return {"preempted": True, **dataclasses.asdict(result)}
  results = evaluate_test(config, workdir, devices=devices)
  results["skipped_nonfinite_steps"] = result.skipped_nonfinite_steps
  if jax.process_index() == 0:
    with open(os.path.join(workdir, RESULTS_FILE), "w") as f:
      json.dump(results, f, indent=2, sort_keys=True)
  logging.info("Test results of %s: %s", workdir, results)
  return results
