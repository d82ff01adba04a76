"""The focus task's evaluator: detection AUROC and the CAM statistics the focus losses shape.

On a split of the procedural authentic-vs-generated task (`ngebm_jax.data.procedural.focus_task`)
and a trained model, `evaluate_split` returns

- the AUROC of the "generated" score `logit_generated - logit_authentic`, overall and per
  artifact kind (each kind's generated images against all authentic images of the split);
- the classic CAM (`ngebm_jax.focus`) of the true class: mean spatial entropy in nats (what the
  entropy terms minimize) and MSE to the human maps (what CYBORG minimizes);
- the *artifact hit rate*: the fraction of generated images whose "generated" CAM peaks in a
  cell that overlaps the artifact (chance is about the artifact's share of the cells).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from ngebm_jax import focus
from ngebm_jax.data.procedural import focus_task
from ngebm_jax.data.pipeline import to_model_space
from ngebm_jax.evaluation import ood
from ngebm_jax.evaluation.inference import batched


def auroc(labels: np.ndarray, scores: np.ndarray) -> float:
  """AUROC of `scores` for `labels == 1` (ties count one half); NaN when a class is missing."""
  labels, scores = np.asarray(labels), np.asarray(scores)
  if labels.min() == labels.max():
    return float("nan")
  return ood.ood_metrics(scores[labels == 1], scores[labels != 1])["auroc"]


def _cell_masks(masks: np.ndarray, size: tuple[int, int]) -> np.ndarray:
  """`[N, H, W]` 0/1 pixel masks -> `[N, h, w]` bool: does a CAM cell overlap the mask."""
  n, hh, ww = masks.shape
  h, w = size
  if hh % h or ww % w:
    raise ValueError(f"the image size {(hh, ww)} is not a multiple of the CAM size {size}.")
  return masks.reshape(n, h, hh // h, w, ww // w).max(axis=(2, 4)) > 0


@functools.lru_cache(maxsize=8)
def _cam_fn(model_fns):
  @jax.jit
  def fn(params, x, labels, human_maps):
    features = model_fns.features_fn(params, x)
    logits = model_fns.head_fn(params, features)
    kernel = model_fns.head_kernel(params)
    cam_true = focus.class_activation_map(features, kernel, labels)
    cam_generated = focus.class_activation_map(features, kernel, jnp.ones_like(labels))
    return (logits, focus.spatial_entropy(cam_true),
            focus.human_salience_mse(cam_true, human_maps), cam_generated)
  return fn


def evaluate_split(model_fns, params, arrays: dict, *, batch_size: int) -> dict:
  """AUROC and CAM statistics of one split (a `focus_task` dict of arrays, uint8 images)."""
  return split_figures(model_fns, params, to_model_space(arrays["image"]), arrays,
                       batch_size=batch_size)


def split_figures(model_fns, params, images: np.ndarray, arrays: dict, *,
                  batch_size: int) -> dict:
  """`evaluate_split` of `images` in model space (`[N, H, W, C]` in [-1, 1]), with the split's
  `label`, `human_map`, `artifact_mask` and `kind` in `arrays` (the registered evaluator's
  entry: `ngebm_jax.evaluation.evaluators.focus_detection`)."""
  fn = _cam_fn(model_fns)
  logits, entropy, human_mse, cam_generated = batched(
      lambda x, y, h: fn(params, x, y, h), images, arrays["label"], arrays["human_map"],
      batch_size=batch_size)
  labels, kinds = arrays["label"], arrays["kind"]
  score = logits[:, 1].astype(np.float64) - logits[:, 0]
  generated = labels == 1
  cells = _cell_masks(arrays["artifact_mask"][generated], cam_generated.shape[1:])
  peaks = cam_generated[generated].reshape(int(generated.sum()), -1).argmax(-1)
  hits = cells.reshape(len(peaks), -1)[np.arange(len(peaks)), peaks]
  res = {
      "auroc": auroc(labels, score),
      "accuracy": float(np.mean((score > 0) == generated)),
      "cam_entropy": float(entropy.mean()),
      "cam_entropy_authentic": float(entropy[~generated].mean()),
      "cam_entropy_generated": float(entropy[generated].mean()),
      "human_mse": float(human_mse.mean()),
      "artifact_hit_rate": float(hits.mean()),
      "artifact_cell_share": float(cells.mean()),
      "per_kind": {},
  }
  for k in np.unique(kinds[generated]):
    sel = (kinds == k) | ~generated
    kind_hits = hits[kinds[generated] == k]
    res["per_kind"][focus_task.KINDS[k]] = {"auroc": auroc(labels[sel], score[sel]),
                                            "artifact_hit_rate": float(kind_hits.mean())}
  return res


