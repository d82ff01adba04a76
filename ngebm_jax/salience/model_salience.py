"""All five salience measures of one model, and stability across the runs of one recipe.

`measure_model` runs measures (a)-(c) and (e) of Explain2Me (arXiv 2303.11969) on one model and
one set of images; `stability_of` runs (d) on the maps of several runs of one recipe. Nothing
here reads checkpoints or writes files: the salience-study workflow
(`ngebm_jax.workflows.salience_study`) loads the runs, and `salience.report` writes the report.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import jax
import numpy as np
from absl import logging

from ngebm_jax.data.pipeline import to_model_space
from ngebm_jax.salience.degrade import default_max_sigma
from ngebm_jax.salience.degrade import MODES
from ngebm_jax.salience.grad_cam import grad_cam_batched
from ngebm_jax.salience.measures import degradation_measure
from ngebm_jax.salience.measures import entropy_measure
from ngebm_jax.salience.measures import equivariance_measure
from ngebm_jax.salience.measures import OUT_OF_SET_AMOUNTS
from ngebm_jax.salience.measures import out_of_set_measure
from ngebm_jax.salience.measures import stability_measure
from ngebm_jax.salience.transforms import translation_shift

ENTROPY_BINS = 20


@dataclasses.dataclass
class ModelSalience:
  """The measures of one model: JSON-able `summary`, and arrays kept for stability and plots.

  Attributes:
    summary: plain numbers (what `salience.json` holds for the model).
    maps: `[N, h, w]` Grad-CAM maps of the measured images (predicted class).
    per_image: name -> `[N]` per-image values (entropy, equivariance, degradation).
    examples: `[k, H, W, 3]` uint8 images for the example grid.
    example_maps: `[k, h, w]` their maps.
  """
  summary: dict
  maps: np.ndarray
  per_image: dict
  examples: np.ndarray
  example_maps: np.ndarray


def measure_model(
    model_fns: Any,
    params: Any,
    images: np.ndarray,
    labels: np.ndarray,
    *,
    key: jax.Array,
    batch_size: int = 128,
    amounts: Sequence[float] = OUT_OF_SET_AMOUNTS,
    max_sigma_factors: Sequence[float] = (0.5, 1.0, 2.0, 4.0),
    num_examples: int = 8,
) -> ModelSalience:
  """Measures (a), (b), (c) and (e) of one model on `images`.

  Args:
    model_fns, params: the model (see `grad_cam`).
    images: `[N, H, W, C]` uint8 images (converted to [-1, 1] here).
    labels: `[N]` int true labels.
    key: key of the salt-and-pepper noise of (b).
    batch_size: images per Grad-CAM call.
    amounts: noise amounts of (b).
    max_sigma_factors: the degradation sweep of (e), in multiples of the paper's maximum blur
      (10 px at 224 px, scaled to the image side); factor 1 gives the table's numbers.
    num_examples: images kept for the example grid.

  Returns:
    A `ModelSalience`.
  """
  images = np.asarray(images)
  if images.dtype != np.uint8 or images.ndim != 4:
    raise ValueError(f"images must be uint8 [N, H, W, C]; got {images.dtype} {images.shape}.")
  labels = np.asarray(labels)
  x = to_model_space(images)
  side = x.shape[1]
  maps, logits = grad_cam_batched(model_fns, params, x, batch_size=batch_size,
                                  return_logits=True)
  accuracy = float(np.mean(np.argmax(logits, axis=-1) == labels))
  logging.info("Grad-CAM maps %s, accuracy %.4f; measuring entropy.", maps.shape, accuracy)
  ent = entropy_measure(maps)
  logging.info("Out-of-set response (%d amounts).", len(amounts))
  oos = out_of_set_measure(model_fns, params, x, key, amounts=amounts, batch_size=batch_size)
  logging.info("Equivariance (12 transforms).")
  eqv = equivariance_measure(model_fns, params, x, batch_size=batch_size)
  base_sigma = default_max_sigma(side)
  factors = sorted(set(float(f) for f in max_sigma_factors) | {1.0})
  degradation = {"max_sigma": base_sigma, "curve": {}}
  per_image = {"entropy": ent["per_image"], "equivariance": eqv["per_image"]}
  for mode in MODES:
    rows = []
    for f in factors:
      logging.info("Degradation, %s mode, max sigma %.3g px.", mode, f * base_sigma)
      r = degradation_measure(model_fns, params, x, labels, mode=mode,
                              max_sigma=f * base_sigma, batch_size=batch_size)
      rows.append(r)
      if f == 1.0:
        degradation[mode] = {k: r[k] for k in ("ssim", "score_change", "score_clean",
                                               "score_degraded")}
        per_image[f"degradation_ssim_{mode}"] = r["per_image_ssim"]
        per_image[f"degradation_score_change_{mode}"] = r["per_image_score_change"]
    degradation["curve"][mode] = {
        "max_sigma": [f * base_sigma for f in factors],
        "ssim": [r["ssim"] for r in rows],
        "score_change": [r["score_change"] for r in rows],
    }
  hist, _ = np.histogram(ent["per_image"], bins=ENTROPY_BINS, range=(0.0, 1.0))
  summary = {
      "num_images": int(x.shape[0]),
      "image_shape": list(x.shape[1:]),
      "map_shape": list(maps.shape[1:]),
      "accuracy": accuracy,
      "entropy": {"mean": ent["mean"], "histogram": hist.tolist(),
                  "histogram_edges": np.linspace(0, 1, ENTROPY_BINS + 1).tolist()},
      "out_of_set": {k: np.asarray(v).tolist() for k, v in oos.items()},
      "equivariance": {"overall": eqv["overall"], "per_transform": eqv["per_transform"],
                       "shift_px": translation_shift(side)},
      "degradation": degradation,
  }
  k = min(num_examples, x.shape[0])
  return ModelSalience(summary=summary, maps=maps, per_image=per_image, examples=images[:k],
                       example_maps=maps[:k])


def stability_of(runs: Sequence[ModelSalience]) -> dict:
  """Measure (d) over the maps of several runs of one recipe (same images, same order)."""
  shapes = {r.maps.shape for r in runs}
  if len(shapes) != 1:
    raise ValueError(f"Stability compares maps of the same images; got map arrays of shapes "
                     f"{sorted(shapes)}.")
  res = stability_measure(np.stack([r.maps for r in runs]))
  return {"mean": res["mean"], "num_runs": len(runs), "num_pairs": res["num_pairs"],
          "per_image": res["per_image"]}
