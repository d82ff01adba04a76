"""Validation during training, by the classification and calibration evaluators.

`Validator` reads the validation split once and, at each validation, runs the evaluators' own
code on it (`evaluators.classification.evaluate` and `evaluators.calibration.ece`), its batches
split over the training mesh. The test-time noise is the evaluation's (per-example keys from
`inference.noise_key(config.eval.seed, "validation")`), so the accuracy that picks the best
checkpoint is the one `experiments.evaluate --split=validation` reports for it.
"""

from __future__ import annotations

import jax

from ngebm_jax.data import pipeline
from ngebm_jax.evaluation.evaluators import calibration
from ngebm_jax.evaluation.evaluators import classification
from ngebm_jax.evaluation.inputs import EvalInputs
from ngebm_jax.evaluation.inputs import EvalOptions


class Validator:
  """`validate(params) -> {"accuracy", "nll", "ece"}` on the validation split of `config`.

  Attributes:
    images: `[V, H, W, C]` validation images in model space, read once.
    labels: `[V]` their labels.
  """

  def __init__(self, config, apply_fn, source, mesh):
    images, self.labels = pipeline.read_split(source)
    self.images = pipeline.to_model_space(images)
    self.apply_fn, self.mesh = apply_fn, mesh
    self.options = EvalOptions.from_config(config)
    self.key = jax.random.key(int(config.eval.seed))

  def __call__(self, params) -> dict:
    inputs = EvalInputs(apply_fn=self.apply_fn, params=params, images=self.images,
                        labels=self.labels, key=self.key, options=self.options,
                        split="validation", mesh=self.mesh)
    figures = classification.evaluate(inputs, None)
    return {"accuracy": figures["accuracy"], "nll": figures["nll"],
            "ece": calibration.ece(inputs)}
