"""The OOD-detection evaluator: AUROC, AUPR and FPR@95TPR of each score on each OOD set."""

from __future__ import annotations

import os
import re

from absl import logging
import numpy as np

from ngebm_jax.data import ood_data
from ngebm_jax.evaluation import inference
from ngebm_jax.evaluation import ood
from ngebm_jax.evaluation import plots
from ngebm_jax.evaluation.inputs import EvalInputs
from ngebm_jax.evaluation.inputs import noisy_map


def _slug(name: str) -> str:
  return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def evaluate(inputs: EvalInputs, output_dir: str) -> dict:
  """AUROC, AUPR in/out and FPR@95TPR of each score on each OOD set; histograms and ROC plots."""
  score_names = tuple(inputs.options.ood_scores)
  if not inputs.ood_images:
    logging.warning("No OOD sets given: the ood evaluator has nothing to do.")
    return dict(metrics={}, score_means={}, plots={})
  steps = {}

  def scores_of(x, purpose, noise_std=inputs.options.noise_std):
    if noise_std not in steps:  # one compilation per noise level
      steps[noise_std] = inference.make_noisy_fn(
          ood.make_score_fn(inputs.apply_fn, score_names), noise_std)
    return noisy_map(steps[noise_std], inputs, np.asarray(x), purpose)

  def noise_std_of(set_name):
    return inputs.options.noise_std * float(
        np.sqrt(ood_data.TEST_NOISE_VARIANCE.get(set_name, 1.0)))

  logging.info("OOD scores of the in-distribution test set.")
  scores_in = scores_of(inputs.images, inputs.split)
  metrics, means, plot_paths = {}, {"in_distribution": {}}, {}
  for s in score_names:
    means["in_distribution"][s] = float(np.mean(scores_in[s]))
  roc = {s: {} for s in score_names}
  for set_name, x_out in inputs.ood_images.items():
    logging.info("OOD scores of %r (%d images).", set_name, np.shape(x_out)[0])
    scores_out = scores_of(x_out, "ood/" + set_name, noise_std_of(set_name))
    metrics[set_name], means[set_name] = {}, {}
    for s in score_names:
      m = ood.ood_metrics(scores_in[s], scores_out[s])
      metrics[set_name][s] = m
      means[set_name][s] = float(np.mean(scores_out[s]))
      if inputs.options.figures:
        roc[s][f"{set_name} (AUROC {m['auroc']:.3f})"] = ood.roc_curve(scores_in[s],
                                                                       scores_out[s])
        path = plots.ood_histogram(
            scores_in[s], scores_out[s],
            os.path.join(output_dir, f"ood_hist_{s}_{_slug(set_name)}.png"),
            score_name=ood.SCORE_TITLES[s], in_name="test", out_name=set_name)
        plot_paths[f"hist/{s}/{set_name}"] = os.path.relpath(path, output_dir)
  if inputs.options.figures:
    for s in score_names:
      path = plots.roc_curves(roc[s], os.path.join(output_dir, f"roc_{s}.png"),
                              title=f"ROC, score {ood.SCORE_TITLES[s]}")
      plot_paths[f"roc/{s}"] = os.path.relpath(path, output_dir)
  return dict(metrics=metrics, score_means=means, num_in=int(inputs.images.shape[0]),
              num_out={k: int(np.shape(v)[0]) for k, v in inputs.ood_images.items()},
              noise_std={k: noise_std_of(k) for k in ("in_distribution", *inputs.ood_images)},
              plots=plot_paths)


def plan(inputs: EvalInputs) -> dict:
  return dict(images=int(inputs.images.shape[0]), scores=list(inputs.options.ood_scores),
              ood_sets={k: int(v.shape[0]) for k, v in inputs.ood_images.items()})
