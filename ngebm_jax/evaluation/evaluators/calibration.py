"""The calibration evaluator: ECE two ways, before and after temperature scaling; reliability plots.

Calibration is reported two ways (see `evaluate`): the standard ECE on the noisy test inputs,
and the variant behind NG-EBM's published ratios (clean inputs, bin centres), each before and
after temperature scaling fitted on the validation split (`EvalInputs.validation_images`).
Validation during training logs this evaluator's `ece` (`ece`, the figure alone).
"""

from __future__ import annotations

import os

from absl import logging
import numpy as np

from ngebm_jax.evaluation import calibration as calibration_lib
from ngebm_jax.evaluation import plots
from ngebm_jax.evaluation import temperature as temperature_lib
from ngebm_jax.evaluation.inputs import EvalInputs
from ngebm_jax.evaluation.inputs import clean_test_logits
from ngebm_jax.evaluation.inputs import test_logits
from ngebm_jax.evaluation.inputs import validation_logits

# The flat figures of `evaluate` that temperature scaling changes (accuracy does not
# change: dividing the logits by one T keeps the arg-max); each also exists as `<name>_ts`.
CALIBRATION_FIGURES = ("ece", "ece_paper", "confidence_gap", "mean_confidence", "nll", "brier")


def evaluate(inputs: EvalInputs, output_dir: str) -> dict:
  """Calibration as the standard protocol and as NG-EBM's code measure it, before and after TS.

  Figures (fractions; NLL in nats):
  - `ece`: expected calibration error, `num_bins` bins, mean confidence per bin (Guo et al.),
    on the test images with the recipe's test-time noise (`options.noise_std`);
  - `ece_paper`: NG-EBM's variant (its evaluation code): 20 bins compared with their bin
    centres, on CLEAN test images: the ECE behind the published 2.5x / 7.5x ratios;
  - `confidence_gap` (mean confidence - accuracy; > 0: over-confident), `mean_confidence`,
    `accuracy`, `nll`, `brier` on the noisy test images (`clean` holds them all on clean ones);
  - `temperature`: the `T` minimizing the NLL of `softmax(logits / T)` on the validation split
    (its noisy logits, as validation in training saw them; `temperature.fit_temperature`), and
    every figure above again with the test logits divided by `T`: `ece_ts`, `ece_paper_ts`
    (clean logits / the same `T`), `confidence_gap_ts`, `mean_confidence_ts`, `nll_ts`,
    `brier_ts`. Without validation images these are `None`.
  Plots: `reliability` (before TS) and `reliability_ts` (after), of the noisy test images.
  """
  num_bins = inputs.options.num_bins
  labels = inputs.labels
  noisy = calibration_lib.calibration_figures(test_logits(inputs), labels, num_bins=num_bins)
  clean = calibration_lib.calibration_figures(clean_test_logits(inputs), labels,
                                              num_bins=num_bins)
  out = dict(
      accuracy=noisy["accuracy"],
      **{k: noisy[k] for k in CALIBRATION_FIGURES if k != "ece_paper"},
      ece_paper=clean["ece_center"],
      num_bins=int(num_bins),
      paper_num_bins=calibration_lib.PAPER_NUM_BINS,
      noise_std=float(inputs.options.noise_std),
      clean={k: clean[k] for k in ("accuracy", "ece", "confidence_gap", "mean_confidence", "nll",
                                   "brier")},
      bins=noisy["bins"],
      temperature=None,
      temperature_fitted_on=None,
      **{f"{k}_ts": None for k in CALIBRATION_FIGURES},
      bins_ts=None,
      plots={},
  )
  if inputs.options.figures:
    plot = plots.reliability_diagram(
        noisy["bins"], os.path.join(output_dir, "reliability.png"),
        title=f"Reliability ({num_bins} bins)", ece=noisy["ece"])
    out["plots"]["reliability"] = os.path.relpath(plot, output_dir)
  val_logits = validation_logits(inputs)
  if val_logits is None:
    logging.warning("No validation images: no temperature scaling.")
    return out
  t = temperature_lib.fit_temperature(val_logits, inputs.validation_labels)
  scaled = calibration_lib.calibration_figures(
      temperature_lib.scale_logits(test_logits(inputs), t), labels, num_bins=num_bins)
  scaled_clean = calibration_lib.calibration_figures(
      temperature_lib.scale_logits(clean_test_logits(inputs), t), labels, num_bins=num_bins)
  out.update(temperature=t, temperature_fitted_on=f"validation ({val_logits.shape[0]} images)",
             **{f"{k}_ts": scaled[k] for k in CALIBRATION_FIGURES if k != "ece_paper"},
             ece_paper_ts=scaled_clean["ece_center"], bins_ts=scaled["bins"])
  if inputs.options.figures:
    plot = plots.reliability_diagram(
        scaled["bins"], os.path.join(output_dir, "reliability_ts.png"),
        title=f"Reliability after temperature scaling (T = {t:.3g})", ece=scaled["ece"])
    out["plots"]["reliability_ts"] = os.path.relpath(plot, output_dir)
  return out


def ece(inputs: EvalInputs) -> float:
  """`evaluate`'s `ece` alone (mean confidence, `num_bins` bins, noisy images): no clean
  logits, no temperature, no plot. What validation logs during training."""
  logits = test_logits(inputs)
  probs = np.exp(calibration_lib.log_probabilities(logits, inputs.labels, from_logits=True))
  return calibration_lib.expected_calibration_error(probs, inputs.labels,
                                                    num_bins=inputs.options.num_bins)


def plan(inputs: EvalInputs) -> dict:
  v = inputs.validation_images
  return dict(images=int(inputs.images.shape[0]),
              validation_images=0 if v is None else int(v.shape[0]))
