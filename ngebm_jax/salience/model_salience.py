"""All five salience measures of one model, and stability across the runs of one recipe.

`measure_model` runs measures (a)-(c) and (e) of Explain2Me (arXiv 2303.11969) on one model and
one set of images, (a), (b) and (e) under each requested variant of the authors' steps
(`salience.variants`); `stability_of` runs (d) on the maps of several runs of one recipe. Nothing
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
from ngebm_jax.salience.degrade import MODES
from ngebm_jax.salience.grad_cam import grad_cam_batched
from ngebm_jax.salience.measures import degradation_measure
from ngebm_jax.salience.measures import entropy_measure
from ngebm_jax.salience.measures import equivariance_measure
from ngebm_jax.salience.measures import OUT_OF_SET_AMOUNTS
from ngebm_jax.salience.measures import out_of_set_measure
from ngebm_jax.salience.measures import stability_measure
from ngebm_jax.salience.transforms import translation_shift
from ngebm_jax.salience.variants import get_variant
from ngebm_jax.salience.variants import Variant

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


def _variants(variants: Sequence[Variant | str]) -> list[Variant]:
  out = [get_variant(v) if isinstance(v, str) else v for v in variants]
  if not out:
    raise ValueError("Give at least one salience variant.")
  names = [v.name for v in out]
  if len(set(names)) != len(names):
    raise ValueError(f"Salience variant names must be unique; got {names}.")
  return out


def measure_model(
    model_fns: Any,
    params: Any,
    images: np.ndarray,
    labels: np.ndarray,
    *,
    key: jax.Array,
    variants: Sequence[Variant | str] = ("default",),
    batch_size: int = 128,
    amounts: Sequence[float] = OUT_OF_SET_AMOUNTS,
    sigma_factors: Sequence[float] = (0.5, 1.0, 2.0, 4.0),
    num_examples: int = 8,
) -> ModelSalience:
  """Measures (a), (b), (c) and (e) of one model on `images`, (a), (b), (e) under each variant.

  Args:
    model_fns, params: the model (see `grad_cam`).
    images: `[N, H, W, C]` uint8 images (converted to [-1, 1] here).
    labels: `[N]` int true labels.
    key: key of the salt-and-pepper noise of (b) (the same noise draws for every variant that
      shares a noise rule).
    variants: `Variant`s or their names (`salience.variants.get_variant`); (a), (b) and (e) are
      measured under each (a variant whose options repeat an earlier one's reuses its numbers),
      and the first is the primary one: `summary["entropy"]`, the per-image values, the (e)
      sweep.
    batch_size: images per Grad-CAM call.
    amounts: noise amounts of (b).
    sigma_factors: the degradation sweep of (e) under the primary variant, in multiples of the
      authors' blur sigmas; factor 1 gives the tables' numbers.
    num_examples: images kept for the example grid.

  Returns:
    A `ModelSalience`; `summary["entropy"]["by_variant"]`, `summary["out_of_set"]` and
    `summary["degradation"]` map each variant's name to its numbers, `summary["variants"]` each
    name to its options.
  """
  images = np.asarray(images)
  if images.dtype != np.uint8 or images.ndim != 4:
    raise ValueError(f"images must be uint8 [N, H, W, C]; got {images.dtype} {images.shape}.")
  variants = _variants(variants)
  labels = np.asarray(labels)
  x = to_model_space(images)
  side = x.shape[1]
  maps, logits = grad_cam_batched(model_fns, params, x, batch_size=batch_size,
                                  return_logits=True)
  accuracy = float(np.mean(np.argmax(logits, axis=-1) == labels))
  logging.info("Grad-CAM maps %s, accuracy %.4f.", maps.shape, accuracy)
  logging.info("Equivariance (12 transforms).")
  eqv = equivariance_measure(model_fns, params, x, batch_size=batch_size)

  entropy_cache: dict = {}
  noise_cache: dict = {}
  degradation_cache: dict = {}

  def entropy(variant):
    opts = variant.entropy_options()
    cache_key = tuple(sorted(opts.items()))
    if cache_key not in entropy_cache:
      entropy_cache[cache_key] = entropy_measure(maps, **opts)
    return entropy_cache[cache_key]

  def out_of_set(variant):
    opts = variant.noise_options()
    cache_key = tuple(sorted(opts.items()))
    if cache_key not in noise_cache:
      logging.info("Out-of-set response (%d amounts), variant %s.", len(amounts), variant.name)
      res = out_of_set_measure(model_fns, params, x, key, amounts=amounts,
                               batch_size=batch_size, **opts)
      noise_cache[cache_key] = {k: np.asarray(v).tolist() for k, v in res.items()}
    return noise_cache[cache_key]

  def degradation(variant, mode, factor):
    opts = variant.degradation_options()
    cache_key = (tuple(sorted(opts.items())), mode, float(factor))
    if cache_key not in degradation_cache:
      logging.info("Degradation, %s mode, sigma factor %g, variant %s.", mode, factor,
                   variant.name)
      degradation_cache[cache_key] = degradation_measure(
          model_fns, params, x, labels, mode=mode, sigma_factor=factor, batch_size=batch_size,
          **opts)
    return degradation_cache[cache_key]

  ent_by_variant, oos, deg = {}, {}, {}
  for variant in variants:
    ent_by_variant[variant.name] = entropy(variant)["mean"]
    oos[variant.name] = out_of_set(variant)
    rows = {mode: degradation(variant, mode, 1.0) for mode in MODES}
    first = rows[MODES[0]]
    deg[variant.name] = {"schedule": variant.schedule, "max_sigma": first["max_sigma"],
                         "smooth_sigma": first["smooth_sigma"]}
    for mode, r in rows.items():
      deg[variant.name][mode] = {k: r[k] for k in ("ssim", "score_change", "score_clean",
                                                   "score_degraded")}
  primary = variants[0]
  ent = entropy(primary)
  per_image = {"entropy": ent["per_image"], "equivariance": eqv["per_image"]}
  factors = sorted(set(float(f) for f in sigma_factors) | {1.0})
  curve = {"variant": primary.name}
  for mode in MODES:
    rows = [degradation(primary, mode, f) for f in factors]
    curve[mode] = {"sigma_factor": factors, "max_sigma": [r["max_sigma"] for r in rows],
                   "ssim": [r["ssim"] for r in rows],
                   "score_change": [r["score_change"] for r in rows]}
    at_one = degradation(primary, mode, 1.0)
    per_image[f"degradation_ssim_{mode}"] = at_one["per_image_ssim"]
    per_image[f"degradation_score_change_{mode}"] = at_one["per_image_score_change"]
  hist, _ = np.histogram(ent["per_image"], bins=ENTROPY_BINS, range=(0.0, 1.0))
  summary = {
      "num_images": int(x.shape[0]),
      "image_shape": list(x.shape[1:]),
      "map_shape": list(maps.shape[1:]),
      "accuracy": accuracy,
      "variants": {v.name: v.options() for v in variants},
      "primary_variant": primary.name,
      "entropy": {"mean": ent["mean"], "histogram": hist.tolist(),
                  "histogram_edges": np.linspace(0, 1, ENTROPY_BINS + 1).tolist(),
                  "by_variant": ent_by_variant},
      "out_of_set": oos,
      "equivariance": {"overall": eqv["overall"], "per_transform": eqv["per_transform"],
                       "shift_px": translation_shift(side)},
      "degradation": deg,
      "degradation_curve": curve,
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
