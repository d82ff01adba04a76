"""All five salience measures of a model, and the files of a report comparing models.

`measure_model` runs measures (a)-(c) and (e) of Explain2Me (arXiv 2303.11969) on one model and
one set of images; `stability_of` runs (d) on the maps of several runs of one recipe;
`write_report` writes `salience.json`, `per_image.npz`, `report.md` and the plots. Nothing here
reads checkpoints or configs: `experiments/salience.py` loads the runs and calls these.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Sequence

import jax
import numpy as np
from absl import logging

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

JSON_FILE = "salience.json"
PER_IMAGE_FILE = "per_image.npz"
REPORT_FILE = "report.md"
PLOT_FILES = {
    "entropy": "entropy_histogram.png",
    "out_of_set": "out_of_set.png",
    "equivariance": "equivariance.png",
    "degradation": "degradation.png",
    "examples": "examples.png",
}
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
  x = images.astype(np.float32) / 127.5 - 1.0
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


# ----------------------------------------------------------------------------------------------
# Files


def _fmt(v: float) -> str:
  return f"{v:.3f}"


def _plots(output_dir: str, models: dict[str, ModelSalience]) -> None:
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  names = list(models)
  path = lambda k: os.path.join(output_dir, PLOT_FILES[k])

  fig, ax = plt.subplots(figsize=(6, 4))
  for name in names:
    ax.hist(models[name].per_image["entropy"], bins=ENTROPY_BINS, range=(0, 1),
            histtype="step", linewidth=1.5, label=name)
  ax.set_xlabel("normalized entropy of the Grad-CAM map")
  ax.set_ylabel("images")
  ax.set_title("(a) salience entropy (low: focused)")
  ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path("entropy"), dpi=120)
  plt.close(fig)

  fig, axes = plt.subplots(1, 2, figsize=(10, 4))
  for name in names:
    oos = models[name].summary["out_of_set"]
    axes[0].plot(oos["amounts"], oos["entropy"], marker="o", label=name)
    axes[1].plot(oos["amounts"], oos["ssim"], marker="o", label=name)
  axes[0].set_ylabel("mean entropy")
  axes[1].set_ylabel("mean SSIM to the clean map")
  for a in axes:
    a.set_xlabel("salt-and-pepper amount (fraction of pixels)")
    a.legend(fontsize=8)
  fig.suptitle("(b) out-of-set response")
  fig.tight_layout()
  fig.savefig(path("out_of_set"), dpi=120)
  plt.close(fig)

  fig, ax = plt.subplots(figsize=(10, 4))
  transforms = list(models[names[0]].summary["equivariance"]["per_transform"])
  width = 0.8 / len(names)
  for i, name in enumerate(names):
    vals = [models[name].summary["equivariance"]["per_transform"][t] for t in transforms]
    ax.bar(np.arange(len(transforms)) + i * width, vals, width=width, label=name)
  ax.set_xticks(np.arange(len(transforms)) + 0.4 - width / 2)
  ax.set_xticklabels(transforms, rotation=45, ha="right")
  ax.set_ylabel("mean SSIM of cam(T x) and T(cam x)")
  ax.set_title("(c) equivariance per transform (high: salience follows the object)")
  ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path("equivariance"), dpi=120)
  plt.close(fig)

  fig, axes = plt.subplots(1, 2, figsize=(10, 4))
  for i, name in enumerate(names):
    color = f"C{i % 10}"
    for mode, style in zip(MODES, ("-", "--")):
      c = models[name].summary["degradation"]["curve"][mode]
      axes[0].plot(c["max_sigma"], c["ssim"], style, color=color, marker="o",
                   label=f"{name} ({mode})")
      axes[1].plot(c["max_sigma"], c["score_change"], style, color=color, marker="o",
                   label=f"{name} ({mode})")
  axes[0].set_ylabel("SSIM of degraded and original maps")
  axes[1].set_ylabel("change of p(true class)")
  for a in axes:
    a.set_xlabel("maximum blur sigma (px)")
    a.legend(fontsize=7)
  fig.suptitle("(e) salience-guided degradation: background (solid) and object (dashed) mode")
  fig.tight_layout()
  fig.savefig(path("degradation"), dpi=120)
  plt.close(fig)

  k = max(len(models[n].examples) for n in names)
  fig, axes = plt.subplots(len(names) + 1, k, figsize=(1.6 * k, 1.6 * (len(names) + 1)),
                           squeeze=False)
  for a in axes.ravel():
    a.axis("off")
  first = models[names[0]]
  for j, img in enumerate(first.examples):
    axes[0, j].imshow(img)
  axes[0, 0].set_title("image", fontsize=8, loc="left")
  for i, name in enumerate(names, start=1):
    m = models[name]
    side = m.examples.shape[1:3]
    up = np.asarray(jax.image.resize(m.example_maps, (len(m.example_maps),) + tuple(side),
                                     "bilinear"))
    for j, img in enumerate(m.examples):
      axes[i, j].imshow(img)
      axes[i, j].imshow(up[j], cmap="jet", alpha=0.5, vmin=0, vmax=1)
    axes[i, 0].set_title(name, fontsize=8, loc="left")
  fig.tight_layout()
  fig.savefig(path("examples"), dpi=120)
  plt.close(fig)


def _markdown(models: dict[str, ModelSalience], groups: dict[str, dict], info: dict,
              settings: dict) -> str:
  names = list(models)
  first = models[names[0]].summary
  amounts = first["out_of_set"]["amounts"]
  lines = [
      "# Salience report",
      "",
      "Grad-CAM maps (predicted class, last feature map, min-max normalized) and the five "
      "measures of Explain2Me (arXiv 2303.11969); definitions in `ngebm_jax/salience/`.",
      "",
      f"{first['num_images']} test images of shape {first['image_shape']}, maps "
      f"{first['map_shape']}. SSIM: scikit-image defaults (uniform 7x7 window, data range 1). "
      f"Translations: {first['equivariance']['shift_px']} px. Degradation: maximum blur "
      f"{first['degradation']['max_sigma']:.3g} px (10 px at 224 px).",
      "",
  ]
  if settings:
    lines += ["Settings: " + ", ".join(f"`{k}={v}`" for k, v in settings.items()), ""]
  lines += [
      "## Models",
      "",
      "| model | objective | arch | accuracy | (a) entropy ↓ | (b) SSIM @ 0.1 | "
      "(b) entropy @ 1.0 | (c) equivariance ↑ | (e) SSIM bg | (e) SSIM obj | "
      "(e) Δp(y) bg | (e) Δp(y) obj |",
      "|---|---|---|---|---|---|---|---|---|---|---|---|",
  ]
  for name in names:
    s = models[name].summary
    oos = s["out_of_set"]
    at = lambda key, a: (_fmt(oos[key][oos["amounts"].index(a)]) if a in oos["amounts"]
                         else "-")
    d = s["degradation"]
    meta = info.get(name, {})
    lines.append(
        f"| {name} | {meta.get('objective', '-')} | {meta.get('arch', '-')} | "
        f"{_fmt(s['accuracy'])} | {_fmt(s['entropy']['mean'])} | {at('ssim', 0.1)} | "
        f"{at('entropy', 1.0)} | {_fmt(s['equivariance']['overall'])} | "
        f"{_fmt(d['background']['ssim'])} | {_fmt(d['object']['ssim'])} | "
        f"{d['background']['score_change']:+.4f} | {d['object']['score_change']:+.4f} |")
  lines += [
      "",
      "(a) low: the model looks at few places. (b) a model whose maps stay structured on noise "
      "is suspect. (c) high: salience follows the object. (e) a model that relies on what its "
      "map shows loses more p(y) in object mode (blur where it looks) than in background mode.",
      "",
      "## (d) Stability across runs",
      "",
  ]
  if groups:
    lines += ["| group | runs | pairs | stability ↑ |", "|---|---|---|---|"]
    for g, r in groups.items():
      lines.append(f"| {g} | {', '.join(r['runs'])} | {r['num_pairs']} | {_fmt(r['mean'])} |")
  else:
    lines.append("No group of runs was given (stability needs several seeds of one recipe).")
  lines += ["", "## (b) Out-of-set response per amount", "",
            "| model | " + " | ".join(f"{a:g}" for a in amounts) + " |",
            "|---|" + "---|" * len(amounts)]
  for name in names:
    oos = models[name].summary["out_of_set"]
    lines.append(f"| {name} SSIM | " + " | ".join(_fmt(v) for v in oos["ssim"]) + " |")
    lines.append(f"| {name} entropy | " + " | ".join(_fmt(v) for v in oos["entropy"]) + " |")
  transforms = list(first["equivariance"]["per_transform"])
  lines += ["", "## (c) Equivariance per transform", "",
            "| model | " + " | ".join(transforms) + " |", "|---|" + "---|" * len(transforms)]
  for name in names:
    pt = models[name].summary["equivariance"]["per_transform"]
    lines.append(f"| {name} | " + " | ".join(_fmt(pt[t]) for t in transforms) + " |")
  lines += [
      "",
      "## Plots",
      "",
      f"![entropy histogram]({PLOT_FILES['entropy']})",
      "",
      f"![out-of-set response]({PLOT_FILES['out_of_set']})",
      "",
      f"![equivariance per transform]({PLOT_FILES['equivariance']})",
      "",
      f"![degradation]({PLOT_FILES['degradation']})",
      "",
      "Example images (top row) and each model's Grad-CAM map overlaid:",
      "",
      f"![examples]({PLOT_FILES['examples']})",
      "",
      f"Numbers: [{JSON_FILE}]({JSON_FILE}); per-image values: `{PER_IMAGE_FILE}`.",
      "",
  ]
  return "\n".join(lines)


def write_report(
    output_dir: str,
    models: dict[str, ModelSalience],
    groups: dict[str, dict] | None = None,
    *,
    info: dict[str, dict] | None = None,
    settings: dict | None = None,
) -> dict[str, str]:
  """Writes the report of `models` (and stability `groups`) into `output_dir`.

  Args:
    output_dir: created if needed.
    models: name -> `ModelSalience` (from `measure_model`).
    groups: name -> `{"runs": [model names], **stability_of(...)}`.
    info: name -> extra columns (`objective`, `arch`, `workdir`) for the table and JSON.
    settings: the program's settings, recorded in the JSON and the report.

  Returns:
    file kind -> path of every file written.
  """
  if not models:
    raise ValueError("The report needs at least one model.")
  groups = groups or {}
  info = info or {}
  os.makedirs(output_dir, exist_ok=True)
  doc = {
      "settings": settings or {},
      "models": {n: {**info.get(n, {}), **m.summary} for n, m in models.items()},
      "groups": {g: {k: v for k, v in r.items() if k != "per_image"} for g, r in groups.items()},
  }
  paths = {"json": os.path.join(output_dir, JSON_FILE),
           "per_image": os.path.join(output_dir, PER_IMAGE_FILE),
           "report": os.path.join(output_dir, REPORT_FILE)}
  with open(paths["json"], "w") as f:
    json.dump(doc, f, indent=2)
  arrays = {f"{n}/{k}": v for n, m in models.items() for k, v in m.per_image.items()}
  arrays.update({f"{n}/maps": m.maps for n, m in models.items()})
  arrays.update({f"group:{g}/stability": r["per_image"] for g, r in groups.items()})
  np.savez_compressed(paths["per_image"], **arrays)
  _plots(output_dir, models)
  paths.update({k: os.path.join(output_dir, v) for k, v in PLOT_FILES.items()})
  with open(paths["report"], "w") as f:
    f.write(_markdown(models, groups, info, settings or {}))
  return paths
