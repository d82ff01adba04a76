"""The one evaluation entry, the registered focus-task evaluator, and results.json's schema."""

from __future__ import annotations

import json

import numpy as np
import pytest

from configs import focus_smoke
from configs import smoke
from ngebm_jax import data as data_lib
from ngebm_jax import models
from ngebm_jax.data import pipeline
from ngebm_jax.evaluation import entry
from ngebm_jax.evaluation import focus_task
from ngebm_jax.evaluation import results as results_lib
from ngebm_jax.evaluation import validation


def test_focus_detection_is_an_evaluator_like_the_others(tmp_path):
  """Registered: `config.eval.evaluators` names it, and through the entry it gives exactly the
  figures of `focus_task.evaluate_split` (the focus study's direct call) on the test split."""
  config = focus_smoke.get_config()
  config.eval.evaluators = ("classification", "focus_detection")
  fns, params = models.from_config(config, 2)
  data = entry.read_eval_data(config)
  assert data.validation_images is None and not data.ood_images  # nothing it does not need
  figures = entry.evaluate(config, fns, params, data, str(tmp_path))
  test = data_lib.focus_task_splits(config)["test"]
  expected = focus_task.evaluate_split(fns, params, test, batch_size=config.eval.batch_size)
  assert figures["focus_detection"] == expected
  assert figures["classification"]["num_examples"] == len(test["label"])
  assert figures["meta"]["evaluators"] == ["classification", "focus_detection"]
  assert figures["meta"]["num_params"] == models.count_params(params)


def test_validation_split_data_shares_its_arrays(tmp_path):
  """On the validation split, temperature scaling fits on the very arrays evaluated (their
  logits computed once), capped by `max_examples` like them; no OOD sets are read."""
  config = smoke.get_config()
  config.eval.max_examples = 50
  data = entry.read_eval_data(config, "validation")
  assert data.images.shape[0] == 50 and data.validation_images is data.images
  assert not data.ood_images
  config.eval.evaluators = ("classification", "ood")
  data = entry.read_eval_data(config, "validation")
  assert data.validation_images is None
  with pytest.raises(ValueError, match="split"):
    entry.read_eval_data(config, "train")


def test_validator_logs_the_evaluators_figures(tmp_path):
  """Training's validation is the classification evaluator's accuracy and NLL and the
  calibration evaluator's ECE, on the same noisy logits."""
  config = smoke.get_config()
  fns, params = models.from_config(config, 10)
  source = data_lib.get_sources(config)["validation"]
  validate = validation.Validator(config, fns.apply_fn, source, mesh=None)
  got = validate(params)
  data = entry.read_eval_data(config, "validation")
  figures = entry.evaluate(config, fns, params, data, str(tmp_path))
  assert got["accuracy"] == figures["classification"]["accuracy"]
  assert got["nll"] == figures["classification"]["nll"]
  assert got["ece"] == figures["calibration"]["ece"]
  images, labels = pipeline.read_split(source)
  np.testing.assert_array_equal(validate.images, pipeline.to_model_space(images))
  np.testing.assert_array_equal(validate.labels, labels)


def test_one_schema_for_a_run_and_a_report():
  figures = {"classification": {"accuracy": 0.5, "nll": 1.0},
             "meta": {"objective": "ngebm", "dataset": "embedded", "best_step": 10}}
  record = results_lib.run_record(figures, skipped_nonfinite_steps=0)
  assert record["accuracy"] == 0.5 and record["best_step"] == 10
  assert record["evaluation"] == figures and record["skipped_nonfinite_steps"] == 0
  assert "ece" not in record  # no calibration evaluator, no calibration headline
  run = json.loads(json.dumps(results_lib.run_file(record)))
  report = json.loads(json.dumps(results_lib.report_file({"a": record, "b": record})))
  assert run["schema"] == report["schema"] == results_lib.SCHEMA
  assert results_lib.runs(run) == {"run": record}
  assert results_lib.runs(report) == {"a": record, "b": record}
  with pytest.raises(ValueError, match="schema"):
    results_lib.runs({"a": figures})  # a report written before schema 1
