"""The files of a salience report comparing models: JSON, per-image arrays, Markdown, plots.

`write_report` writes `salience.json`, `per_image.npz`, `report.md` and the plots from the
`ModelSalience` of each model (`salience.model_salience`) and the stability of each group.
Nothing here measures, reads checkpoints or configs.
"""

from __future__ import annotations

import io
import os

import jax
import numpy as np
from etils import epath

from ngebm_jax import reporting
from ngebm_jax.reporting import fmt as _fmt
from ngebm_jax.salience.degrade import MODES
from ngebm_jax.salience.model_salience import ENTROPY_BINS
from ngebm_jax.salience.model_salience import ModelSalience

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
# ----------------------------------------------------------------------------------------------
# Files


_STYLES = ("-", "--", ":", "-.")


def _at(oos: dict, key: str, amount: float) -> str:
  return _fmt(oos[key][oos["amounts"].index(amount)]) if amount in oos["amounts"] else "-"


def _plots(output_dir: str, models: dict[str, ModelSalience]) -> None:
  names = list(models)
  path = lambda k: os.path.join(output_dir, PLOT_FILES[k])

  fig, ax = reporting.new_figure()
  for name in names:
    ax.hist(models[name].per_image["entropy"], bins=ENTROPY_BINS, range=(0, 1),
            histtype="step", linewidth=1.5, label=name)
  ax.set_xlabel("normalized entropy of the Grad-CAM map")
  ax.set_ylabel("images")
  ax.set_title("(a) salience entropy (low: focused)")
  ax.legend(fontsize=8)
  reporting.save_figure(fig, path("entropy"), dpi=120)

  fig, axes = reporting.new_figure(2, size=(5, 4))
  for i, name in enumerate(names):
    for j, (variant, oos) in enumerate(models[name].summary["out_of_set"].items()):
      style = dict(color=f"C{i % 10}", linestyle=_STYLES[j % len(_STYLES)], marker="o")
      axes[0].plot(oos["amounts"], oos["entropy"], label=f"{name} [{variant}]", **style)
      axes[1].plot(oos["amounts"], oos["ssim"], label=f"{name} [{variant}]", **style)
  axes[0].set_ylabel("mean entropy")
  axes[1].set_ylabel("mean SSIM to the clean map")
  for a in axes:
    a.set_xlabel("salt-and-pepper amount")
    a.legend(fontsize=7)
  fig.suptitle("(b) out-of-set response, per [salience variant]")
  reporting.save_figure(fig, path("out_of_set"), dpi=120)

  fig, ax = reporting.new_figure(size=(10, 4))
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
  reporting.save_figure(fig, path("equivariance"), dpi=120)

  fig, axes = reporting.new_figure(2, size=(5, 4))
  for i, name in enumerate(names):
    color = f"C{i % 10}"
    curve = models[name].summary["degradation_curve"]
    for mode, style in zip(MODES, ("-", "--")):
      c = curve[mode]
      label = f"{name} [{curve['variant']}] ({mode})"
      axes[0].plot(c["max_sigma"], c["ssim"], style, color=color, marker="o", label=label)
      axes[1].plot(c["max_sigma"], c["score_change"], style, color=color, marker="o",
                   label=label)
  axes[0].set_ylabel("SSIM of degraded and original maps")
  axes[1].set_ylabel("change of p(true class)")
  for a in axes:
    a.set_xlabel("blur sigma where the map is 0 (px)")
    a.legend(fontsize=7)
  fig.suptitle("(e) salience-guided degradation, per [salience variant]: background (solid) and "
               "object (dashed) mode")
  reporting.save_figure(fig, path("degradation"), dpi=120)

  k = max(len(models[n].examples) for n in names)
  fig, axes = reporting.new_figure(k, len(names) + 1, size=(1.6, 1.6), squeeze=False)
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
  reporting.save_figure(fig, path("examples"), dpi=120)


def _markdown(models: dict[str, ModelSalience], groups: dict[str, dict], info: dict,
              settings: dict) -> str:
  names = list(models)
  first = models[names[0]].summary
  primary = first["primary_variant"]
  variants = first["variants"]
  amounts = first["out_of_set"][primary]["amounts"]
  deg = first["degradation"][primary]
  lines = [
      "# Salience report",
      "",
      "Grad-CAM maps (predicted class, last feature map, min-max normalized) and the five "
      "measures of Explain2Me (arXiv 2303.11969); definitions in `ngebm_jax/salience/`.",
      "",
      f"{first['num_images']} test images of shape {first['image_shape']}, maps "
      f"{first['map_shape']}. SSIM: scikit-image defaults (uniform 7x7 window, data range 1). "
      f"Translations: {first['equivariance']['shift_px']} px.",
      "",
      "Salience variants: (c) and (d) have none; (a), (b) and (e) were measured under each of "
      "these sets of options (`ngebm_jax/salience/variants.py`; `authors` = every step as "
      "Explain2Me's released code, `ours` = our first implementation):",
      "",
  ]
  for name, options in variants.items():
    lines.append(f"- `{name}`: " + ", ".join(f"{k}={v}" for k, v in options.items()))
  lines += [
      "",
      f"The main table shows (a), (b) and (e) under the primary variant `{primary}` (blur "
      f"where the map is 0: {deg['max_sigma']:.3g} px, map smoothing "
      f"{deg['smooth_sigma']:.3g} px, schedule `{deg['schedule']}`).",
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
    oos = s["out_of_set"][primary]
    d = s["degradation"][primary]
    meta = info.get(name, {})
    lines.append(
        f"| {name} | {meta.get('objective', '-')} | {meta.get('arch', '-')} | "
        f"{_fmt(s['accuracy'])} | {_fmt(s['entropy']['mean'])} | {_at(oos, 'ssim', 0.1)} | "
        f"{_at(oos, 'entropy', 1.0)} | {_fmt(s['equivariance']['overall'])} | "
        f"{_fmt(d['background']['ssim'])} | {_fmt(d['object']['ssim'])} | "
        f"{d['background']['score_change']:+.4f} | {d['object']['score_change']:+.4f} |")
  lines += [
      "",
      "(a) low: the model looks at few places. (b) a model whose maps stay structured on noise "
      "is suspect. (c) high: salience follows the object. (e) a model that relies on what its "
      "map shows loses more p(y) in object mode (blur where it looks) than in background mode.",
      "",
  ]
  if len(variants) > 1:
    lines += ["## (a), (b) and (e) under each salience variant", "",
              "| model | variant | (a) entropy | (b) SSIM @ 0.1 | (b) entropy @ 1.0 | "
              "(e) schedule | (e) max σ px | (e) SSIM bg | (e) SSIM obj | (e) Δp(y) bg | "
              "(e) Δp(y) obj |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name in names:
      s = models[name].summary
      for v in variants:
        oos, d = s["out_of_set"][v], s["degradation"][v]
        lines.append(
            f"| {name} | {v} | {_fmt(s['entropy']['by_variant'][v])} | "
            f"{_at(oos, 'ssim', 0.1)} | {_at(oos, 'entropy', 1.0)} | "
            f"{d['schedule']} | {d['max_sigma']:.3g} | {_fmt(d['background']['ssim'])} | "
            f"{_fmt(d['object']['ssim'])} | {d['background']['score_change']:+.4f} | "
            f"{d['object']['score_change']:+.4f} |")
    lines.append("")
  lines += ["## (d) Stability across runs", ""]
  if groups:
    lines += ["| group | runs | pairs | stability ↑ |", "|---|---|---|---|"]
    for g, r in groups.items():
      lines.append(f"| {g} | {', '.join(r['runs'])} | {r['num_pairs']} | {_fmt(r['mean'])} |")
  else:
    lines.append("No group of runs was given (stability needs several seeds of one recipe).")
  lines += ["", "## (b) Out-of-set response per amount", "",
            "| model [variant] | " + " | ".join(f"{a:g}" for a in amounts) + " |",
            "|---|" + "---|" * len(amounts)]
  for name in names:
    for v, oos in models[name].summary["out_of_set"].items():
      lines.append(f"| {name} [{v}] SSIM | " + " | ".join(_fmt(x) for x in oos["ssim"]) + " |")
      lines.append(f"| {name} [{v}] entropy | " + " | ".join(_fmt(x) for x in oos["entropy"])
                   + " |")
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
      f"![out-of-set response]({PLOT_FILES['out_of_set']}) (one line per model and variant)",
      "",
      f"![equivariance per transform]({PLOT_FILES['equivariance']})",
      "",
      f"![degradation]({PLOT_FILES['degradation']}) (sweep of the blur under the primary "
      f"variant `{primary}`)",
      "",
      "Example images (top row) and each model's Grad-CAM map overlaid:",
      "",
      f"![examples]({PLOT_FILES['examples']})",
      "",
      f"Numbers: [{JSON_FILE}]({JSON_FILE}); per-image values: `{PER_IMAGE_FILE}` ((e) under "
      f"the primary variant).",
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
    settings: the program's settings, recorded in the JSON and the report. The salience
      variants are recorded with each model (`summary["variants"]`).

  Returns:
    file kind -> path of every file written.
  """
  if not models:
    raise ValueError("The report needs at least one model.")
  groups = groups or {}
  info = info or {}
  output_dir = os.fspath(output_dir)
  doc = {
      "settings": settings or {},
      "models": {n: {**info.get(n, {}), **m.summary} for n, m in models.items()},
      "groups": {g: {k: v for k, v in r.items() if k != "per_image"} for g, r in groups.items()},
  }
  paths = {"json": os.path.join(output_dir, JSON_FILE),
           "per_image": os.path.join(output_dir, PER_IMAGE_FILE),
           "report": os.path.join(output_dir, REPORT_FILE)}
  reporting.write_json(paths["json"], doc)
  arrays = {f"{n}/{k}": v for n, m in models.items() for k, v in m.per_image.items()}
  arrays.update({f"{n}/maps": m.maps for n, m in models.items()})
  arrays.update({f"group:{g}/stability": r["per_image"] for g, r in groups.items()})
  buffer = io.BytesIO()
  np.savez_compressed(buffer, **arrays)
  epath.Path(paths["per_image"]).write_bytes(buffer.getvalue())
  _plots(output_dir, models)
  paths.update({k: os.path.join(output_dir, v) for k, v in PLOT_FILES.items()})
  reporting.write_text(paths["report"], _markdown(models, groups, info, settings or {}))
  return paths
