"""Checks that each OOD set of a config's dataset can answer: config -> data -> figures -> files.

What `python -m experiments.ood_separability` runs: reads the test set and the OOD sets the
evaluator would use (`ngebm_jax.data.load_eval_data`), measures how well simple features tell
each set from the test set (`ngebm_jax.evaluation.ood_separability`), and writes
`separability.json` and `separability.md` into `output`.
"""

from __future__ import annotations

import os
from typing import Sequence

from absl import logging

from ngebm_jax import config_validation
from ngebm_jax import data as data_lib
from ngebm_jax import reporting
from ngebm_jax.data import ood_data
from ngebm_jax.evaluation import ood_separability


def run(config, output: str, *, ood_sets: Sequence[str] | None = None,
        max_examples: int | None = None, seed: int = 0, folds: int = 5) -> dict:
  """Measures and writes the separability of each OOD set of `config.dataset`.

  Args:
    config: a training config; its `dataset` block chooses the data, and its
      `dataset.noise_std` is the input noise the evaluator adds (added here too).
    output: folder for `separability.json` and `separability.md`.
    ood_sets: the sets to check; None: the dataset's default sets (TFDS datasets: those
      prepared).
    max_examples: TFDS datasets: at most this many test and OOD images.
    seed: seeds the input noise and the cross-validation folds.
    folds: cross-validation folds of the classifier.

  Returns:
    {"dataset", "noise_std", "num_test", "sets": {set: separability figures}}.
  """
  config_validation.validate_dataset(config)
  data = data_lib.load_eval_data(config, ood_sets=ood_sets, max_examples=max_examples)
  test_images = data["test"][0]
  logging.info("Separability of %s from %d test images.", sorted(data["ood"]), len(test_images))
  sets = ood_separability.separability(
      test_images, data["ood"], seed=seed, noise_std=float(config.dataset.noise_std),
      noise_variance=ood_data.TEST_NOISE_VARIANCE, folds=folds)
  results = {"dataset": config.dataset.name, "noise_std": float(config.dataset.noise_std),
             "num_test": int(len(test_images)),
             "num_ood": {k: int(len(v)) for k, v in data["ood"].items()},
             "rule": {"far_statistic_auroc": ood_separability.FAR_STATISTIC_AUROC,
                      "near_classifier_auroc": ood_separability.NEAR_CLASSIFIER_AUROC},
             "sets": sets}
  reporting.write_json(os.path.join(output, "separability.json"), results)
  text = (f"# Can each OOD set answer? ({config.dataset.name}, {len(test_images)} test "
          f"images, input noise {config.dataset.noise_std:g})\n\n"
          + ood_separability.markdown(sets)
          + f"\nfar: one pixel statistic alone separates the set (AUROC >= "
          f"{ood_separability.FAR_STATISTIC_AUROC}); near: only the logistic regression on "
          f"pixel statistics and orientation histograms does (cross-validated AUROC >= "
          f"{ood_separability.NEAR_CLASSIFIER_AUROC}); unconfirmed: neither "
          "(ngebm_jax/evaluation/ood_separability.py).\n")
  reporting.write_text(os.path.join(output, "separability.md"), text)
  return results
