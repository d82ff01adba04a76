"""The classification evaluator: accuracy, NLL (nats) and Brier score of the noisy test images."""

from __future__ import annotations

from ngebm_jax.evaluation import calibration as calibration_lib
from ngebm_jax.evaluation.inputs import EvalInputs
from ngebm_jax.evaluation.inputs import test_logits


def evaluate(inputs: EvalInputs, output_dir: str | None) -> dict:
  """Accuracy, NLL (nats) and Brier score on `inputs.images` (no plots)."""
  del output_dir  # no plots
  logits = test_logits(inputs)
  return dict(
      accuracy=calibration_lib.accuracy(logits, inputs.labels),
      nll=calibration_lib.negative_log_likelihood(logits, inputs.labels, from_logits=True),
      brier=calibration_lib.brier_score(logits, inputs.labels, from_logits=True),
      num_examples=int(inputs.labels.shape[0]),
      noise_std=float(inputs.options.noise_std),
  )


def plan(inputs: EvalInputs) -> dict:
  return dict(images=int(inputs.images.shape[0]))
