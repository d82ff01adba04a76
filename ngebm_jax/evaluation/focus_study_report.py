"""The focus study's report: the Markdown of `ngebm_jax.workflows.focus_study`'s summary.

`markdown(summary, settings)` writes `report.md`: the recipe table (mean ± std over seeds), the
salience variants, the entropy-weight sweep, the entropy / AUROC rank correlations and the
per-run table. Formatting only: every number comes from the workflow's `summarize`.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ngebm_jax import reporting

RESULTS_FILE = "results.json"
LEARNED_AUROC = 0.8  # runs below this closed-set AUROC count as not having learned the task


def _mean_std(values: Sequence[float]) -> str:
  """Mean ± sample std of the finite values, the mean alone for one, "-" for none."""
  v = np.asarray([x for x in values if np.isfinite(x)], float)
  if not v.size:
    return "-"
  mean = reporting.fmt(v.mean())
  return mean if v.size == 1 else f"{mean} ± {reporting.fmt(v.std(ddof=1))}"


def markdown(summary: dict, settings: dict) -> str:
  """`report.md` of the study (`summary`: `focus_study.summarize`; `settings`: its settings)."""
  rows, recipes = summary["runs"], summary["recipes"]
  have_salience = any("salience" in r for r in rows.values())
  kinds = sorted({k for r in rows.values() for k in r["open_per_kind"]})
  col = lambda names, f: _mean_std([f(rows[n]) for n in names])
  lines = [
      "# Focus losses on the authentic-vs-generated task",
      "",
      "Procedural task: `ngebm_jax/data/procedural/focus_task.py`; losses: `ngebm_jax/focus.py`. "
      "AUROC of `logit_generated - logit_authentic`: closed set = artifact kinds seen in "
      f"training, open set = unseen kinds ({', '.join(kinds)}). CAM: the classic CAM the "
      "losses shape; entropy in nats of the true-class CAM (max ln 64 = 4.16 on an 8x8 map); "
      "hit rate: generated images whose 'generated' CAM peaks on the artifact (chance, the "
      f"share of CAM cells the artifact touches: {summary['hit_rate_chance']:.3f}). CAM class: "
      "the class whose CAM the recipe's loss shapes in training (`config.focus.cam_class`: "
      "'predicted' as CYBORG's training code, or 'true'; '-' for a loss without a CAM term); the "
      "evaluation's CAM entropy is always that of the true class. Salience (a)-(e): Explain2Me "
      "measures of Grad-CAM maps (`salience/report.md`): (a) histogram entropy, (b) map SSIM "
      "under 10% salt-and-pepper noise, (c) equivariance SSIM, (d) SSIM across seeds, (e) drop "
      "of p(y) when blurring where the map looks minus where it does not. Mean ± std over seeds.",
      "",
      "Settings: " + ", ".join(f"`{k}={v}`" for k, v in settings.items()),
      "",
  ]
  variants = summary["salience_variants"]
  if have_salience:
    lines += [f"Salience (a), (b) and (e) in the recipe table: variant `{variants['primary']}`. "
              "Variants measured (`ngebm_jax/salience/variants.py`):", ""]
    for name, options in variants["options"].items():
      lines.append(f"- `{name}`: " + ", ".join(f"{k}={v}" for k, v in options.items()))
    lines.append("")
  lines += ["## Recipes", ""]
  cam_class_of = lambda names: ", ".join(sorted({str(rows[n]["cam_class"] or "-")
                                                 for n in names}))
  header = ["recipe", "CAM class", "runs", "closed AUROC", "open AUROC",
            *[f"open {k}" for k in kinds], "CAM entropy ↓", "human MSE ↓", "hit closed",
            "hit open"]
  if have_salience:
    header += ["(a) entropy ↓", "(b) SSIM@0.1", "(c) equivariance ↑", "(d) stability ↑",
               "(e) Δp obj − bg"]
  lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  for recipe, names in recipes.items():
    cells = [recipe, cam_class_of(names), str(len(names)), col(names, lambda r: r["closed_auroc"]),
             col(names, lambda r: r["open_auroc"]),
             *[col(names, lambda r, k=k: r["open_per_kind"].get(k, np.nan)) for k in kinds],
             col(names, lambda r: r["cam_entropy"]), col(names, lambda r: r["human_mse"]),
             col(names, lambda r: r["hit_closed"]), col(names, lambda r: r["hit_open"])]
    if have_salience:
      stab = summary["stability"].get(recipe)
      cells += [col(names, lambda r: r["salience"]["entropy"]),
                col(names, lambda r: r["salience"]["oos_ssim_0.1"]),
                col(names, lambda r: r["salience"]["equivariance"]),
                "-" if stab is None else f"{stab:.3f}",
                col(names, lambda r: r["salience"]["degradation_gap"])]
    lines.append("| " + " | ".join(cells) + " |")
  if have_salience and len(variants["options"]) > 1:
    vnames = list(variants["options"])
    lines += ["", "## Salience (a), (b) and (e) under each variant", "",
              "(a) histogram entropy; (b) SSIM of the maps at 10% salt-and-pepper noise to the "
              "clean maps; (e) SSIM of the degraded image's map to the clean one (background / "
              "object mode) and the gap Δp(y) object − background. Mean ± std over seeds.", "",
              "| recipe | variant | (a) entropy | (b) SSIM@0.1 | (e) SSIM bg | (e) SSIM obj | "
              "(e) Δp obj − bg |", "|---|---|---|---|---|---|---|"]
    for recipe, names in recipes.items():
      for v in vnames:
        sv = lambda key, v=v: col(names, lambda r: r["salience"]["variants"][v][key])
        lines.append(f"| {recipe} | {v} | {sv('entropy')} | {sv('oos_ssim_0.1')} | "
                     f"{sv('degradation_ssim_background')} | {sv('degradation_ssim_object')} | "
                     f"{sv('degradation_gap')} |")
  if summary["sweep"]:
    lines += ["", "## Entropy-weight sweep (CE + w · mean H(CAM), one seed)", "",
              "| w | run | closed AUROC | open AUROC | CAM entropy | hit open |",
              "|---|---|---|---|---|---|"]
    for s in summary["sweep"]:
      r = rows[s["run"]]
      lines.append(f"| {s['entropy_weight']:g} | {s['run']} | {r['closed_auroc']:.3f} | "
                   f"{r['open_auroc']:.3f} | {r['cam_entropy']:.3f} | {r['hit_open']:.3f} |")
  c = summary["correlations"]
  lines += ["", "## Does lower CAM entropy go with better open-set AUROC?", "",
            "Spearman rank correlation across all runs (negative: lower entropy, higher AUROC):",
            ""]
  for key, v in c.items():
    lines.append(f"- {key.replace('_', ' ')}: rho = {v['rho']:+.3f} (p = {v['p_value']:.3g}, "
                 f"n = {v['n']})")
  lines += ["", f"Runs below closed AUROC {LEARNED_AUROC} did not learn the task (a focus term "
            "took over); the second set of correlations leaves them out."]
  lines += ["", "## Runs", "",
            "| run | objective | CAM class | closed AUROC | open AUROC | CAM entropy | human MSE | "
            "hit closed | hit open |", "|---|---|---|---|---|---|---|---|---|"]
  for name, r in rows.items():
    alias = f" (= {', '.join(r['aliases'])})" if r["aliases"] else ""
    lines.append(f"| {name}{alias} | {r['objective']} | {r['cam_class'] or '-'} | "
                 f"{r['closed_auroc']:.3f} | "
                 f"{r['open_auroc']:.3f} | {r['cam_entropy']:.3f} | {r['human_mse']:.4f} | "
                 f"{r['hit_closed']:.3f} | {r['hit_open']:.3f} |")
  lines += ["", f"Numbers: [{RESULTS_FILE}]({RESULTS_FILE})."]
  if have_salience:
    lines.append("Salience report: [salience/report.md](salience/report.md).")
  return "\n".join(lines) + "\n"
