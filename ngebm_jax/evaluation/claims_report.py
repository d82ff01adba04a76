"""The claims study's report: NG-EBM's three claims, each variant against the baseline by seed.

NG-EBM's abstract (arXiv 2304.01297) claims, against a cross-entropy baseline, better
calibration, better out-of-distribution detection and better adversarial robustness, without
the cost of SGLD. For each variant of a study and each figure of a claim, the report shows the
difference to the baseline paired by seed with its 95% Student-t interval
(`study_statistics.paired_differences`) and a verdict (`verdict`):

  holds         the interval excludes 0 on the claimed side (lower ECE and FPR@95; higher
                AUROC, smallest successful epsilon and accuracy under attack);
  reversed      the interval excludes 0 on the other side;
  unresolved    the interval holds 0: these seeds cannot tell;
  not measured  fewer than two seed pairs.

OOD sets are named with their separability (`ood_separability`: "far", "near", "unconfirmed"),
since a verdict on a set that simple features cannot tell from the test set may measure
nothing. A cost table and plot set each variant's training seconds per run beside its ECE,
OOD AUROC and robustness (benefit per second: the comparison with SGLD-EBM).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Mapping, Sequence

import numpy as np

from ngebm_jax import reporting
from ngebm_jax.evaluation import ood
from ngebm_jax.evaluation import study_statistics as stats

TITLE = "Claims study: NG-EBM's three claims against an over-fitted baseline"
BASELINE = "baseline"
HOLDS, REVERSED, UNRESOLVED, NOT_MEASURED = "holds", "reversed", "unresolved", "not measured"
NORM_TITLES = {"linf": "L-inf", "l2": "L2"}
KIND_TEXT = {
    "far": "far: one pixel statistic separates it",
    "near": "near: only a classifier on simple features separates it",
    "unconfirmed": "unconfirmed: simple features do not separate it, so a verdict here may "
                   "measure nothing",
}


@dataclasses.dataclass(frozen=True)
class Figure:
  """One figure a claim is judged on: its flat key (`study_statistics.run_figures`)."""
  claim: str               # "calibration", "OOD detection", "robustness"
  key: str
  label: str
  higher_is_better: bool
  unit: str = "pct"        # "pct": a fraction shown in percent; "x255": an L-inf epsilon; "raw"


def verdict(d: Mapping | None, higher_is_better: bool) -> str:
  """`HOLDS`, `REVERSED`, `UNRESOLVED` or `NOT_MEASURED` for a paired difference (variant minus
  baseline, `study_statistics.t_interval`)."""
  if not d or d.get("low") is None:
    return NOT_MEASURED
  if d["low"] > 0 or d["high"] < 0:
    return HOLDS if (d["low"] > 0) == higher_is_better else REVERSED
  return UNRESOLVED


def _epsilon_text(norm: str, eps: float) -> str:
  return f"{round(eps * 255, 2):g}/255" if norm == "linf" else f"{eps:g}"


def figures_of(summary: Mapping) -> list[Figure]:
  """The claims' figures that the study measured, in report order."""
  keys = {k for row in summary["runs"].values() for k in row}
  out = [Figure("calibration", "ece", "ECE (noisy test images)", False),
         Figure("calibration", "ece_paper", "ECE (NG-EBM's: bin centres, clean)", False),
         Figure("calibration", "nll", "NLL (nats)", False, "raw")]
  sets = sorted({k.split("@", 1)[1] for k in keys if k.startswith("ood_auroc_") and "@" in k})
  for ood_set in sets:
    for metric, label, higher in (("auroc", "AUROC", True), ("fpr95", "FPR@95", False)):
      for score in ood.SCORE_NAMES:
        out.append(Figure("OOD detection", stats.ood_key(metric, score, ood_set),
                          f"{ood_set}: {label} of {ood.SCORE_TITLES[score]}", higher))
  for norm in stats.ROBUSTNESS_NORMS:
    title = NORM_TITLES[norm]
    out.append(Figure("robustness", f"robust_{norm}_median_epsilon",
                      f"{title}: median smallest successful epsilon", True,
                      "x255" if norm == "linf" else "raw"))
    at = sorted((float(k.rsplit("_at_", 1)[1]), k) for k in keys
                if k.startswith(f"robust_{norm}_at_"))
    for eps, key in at:
      out.append(Figure("robustness", key,
                        f"{title}: accuracy at epsilon {_epsilon_text(norm, eps)}", True))
  return [f for f in out if f.key in keys]


def _scale(unit: str) -> tuple[float, int]:
  return {"pct": (100.0, 1), "x255": (255.0, 2), "raw": (1.0, 3), "s": (1.0, 0)}[unit]


def _mean_sd_text(agg: Mapping | None, unit: str) -> str:
  return reporting.mean_sd(agg, *_scale(unit))


def _difference_text(d: Mapping | None, unit: str) -> str:
  return reporting.interval(d, *_scale(unit))


def claim_comparisons(summary: Mapping, runs: Mapping[str, Mapping]) -> dict[str, dict]:
  """variant -> key -> paired difference (variant minus baseline) of every claim figure."""
  keys = [f.key for f in figures_of(summary)]
  return {v: stats.paired_differences(summary["runs"], runs, v, BASELINE, keys)
          for v in summary["variants"] if v != BASELINE}


def verdicts(comparisons: Mapping[str, Mapping], figures: Sequence[Figure]
             ) -> dict[str, dict[str, str]]:
  """variant -> key -> verdict."""
  return {v: {f.key: verdict(diffs.get(f.key), f.higher_is_better) for f in figures}
          for v, diffs in comparisons.items()}


def _claim_table(summary: Mapping, comparisons: Mapping[str, Mapping],
                 figures: Sequence[Figure]) -> list[str]:
  variants = list(comparisons)
  header = ["figure", "baseline"] + [f"{v} − baseline" for v in variants]
  rows = []
  for f in figures:
    row = [f.label, _mean_sd_text(summary["variants"][BASELINE].get(f.key), f.unit)]
    for v in variants:
      d = comparisons[v].get(f.key)
      row.append(f"{_difference_text(d, f.unit)} **{verdict(d, f.higher_is_better)}**")
    rows.append(row)
  return reporting.markdown_table(header, rows)


def _tally(found: Mapping[str, str], keys: Sequence[str]) -> str:
  counts = {k: sum(found[key] == k for key in keys) for k in (HOLDS, REVERSED, UNRESOLVED)}
  return ", ".join(f"{counts[k]} {k}" for k in counts if counts[k]) or "not measured"


def summary_lines(summary: Mapping, comparisons: Mapping[str, Mapping],
                  separability: Mapping[str, Mapping] | None = None) -> list[str]:
  """Claim by claim and variant by variant, in words: what holds here."""
  figures = figures_of(summary)
  found = verdicts(comparisons, figures)
  lines = []
  by_claim: dict[str, list[Figure]] = {}
  for f in figures:
    by_claim.setdefault(f.claim, []).append(f)
  for v in comparisons:
    parts = []
    for claim, fs in by_claim.items():
      if claim == "calibration":
        parts.append(f"calibration: ECE {found[v]['ece']}" if "ece" in found[v] else "")
      elif claim == "OOD detection":
        aurocs = [f.key for f in fs if f.key.startswith("ood_auroc_")]
        parts.append(f"OOD AUROC ({len(aurocs)} set-score pairs): {_tally(found[v], aurocs)}")
      else:
        medians = [f.key for f in fs if f.key.endswith("_median_epsilon")]
        text = ", ".join(f"{NORM_TITLES[k.split('_')[1]]} {found[v][k]}" for k in medians)
        parts.append(f"robustness (median smallest epsilon): {text or 'not measured'}")
    seconds, base_s = (_mean(summary["variants"].get(x), "train_seconds") for x in (v, BASELINE))
    cost = ("" if not seconds else f" ({seconds:.0f} s per run"
            + (f", {seconds / base_s:.2f}x the baseline's" if base_s else "") + ")")
    lines.append(f"- **{v}**{cost}: " + "; ".join(p for p in parts if p) + ".")
  sets = sorted({f.key.split("@", 1)[1] for f in by_claim.get("OOD detection", [])})
  if sets:
    lines += ["", "OOD set by set (AUROC of log p~(x), max p(y|x), approx. mass):", ""]
    for ood_set in sets:
      kind = (separability or {}).get(ood_set, {}).get("kind")
      per = []
      for v in comparisons:
        words = [found[v].get(stats.ood_key("auroc", s, ood_set), NOT_MEASURED)
                 for s in ood.SCORE_NAMES if stats.ood_key("auroc", s, ood_set) in found[v]]
        per.append(f"{v} {'/'.join(words)}")
      lines.append(f"- {ood_set} ({KIND_TEXT.get(kind, 'separability not measured')}): "
                   + "; ".join(per) + ".")
  return lines


# The cost table's benefit columns: (key, title, unit).
COST_COLUMNS = (("ece", "ECE", "pct"), ("accuracy", "test accuracy", "pct"),
                *[(f"ood_auroc_{s}", f"OOD AUROC {ood.SCORE_TITLES[s]} (mean of sets)", "raw")
                  for s in ood.SCORE_NAMES],
                ("robust_linf_median_epsilon", "median epsilon L-inf (x/255)", "x255"),
                ("robust_l2_median_epsilon", "median epsilon L2", "raw"))


def _mean(agg: Mapping | None, key: str) -> float | None:
  return (agg or {}).get(key, {}).get("mean")


def cost_lines(summary: Mapping) -> list[str]:
  """Training seconds per run beside the benefits, and the cheaper NG-EBMs' share of NG-EBM's
  ECE reduction."""
  variants = summary["variants"]
  columns = [c for c in COST_COLUMNS if any(_mean(a, c[0]) is not None for a in variants.values())]
  base_s = _mean(variants.get(BASELINE), "train_seconds")
  rows = []
  for v, agg in variants.items():
    s = _mean(agg, "train_seconds")
    step = _mean(agg, "step_time_s")
    rows.append([v, _mean_sd_text(agg.get("train_seconds"), "s"),
                 f"{s / base_s:.2f}x" if s and base_s else "–",
                 "–" if step is None else f"{1000 * step:.1f}"]
                + [_mean_sd_text(agg.get(k), unit) for k, _, unit in columns])
  lines = reporting.markdown_table(
      ["variant", "training s per run", "vs baseline", "ms per step (median)"]
      + [title for _, title, _ in columns], rows)
  base_ece, ngebm_ece = _mean(variants.get(BASELINE), "ece"), _mean(variants.get("ngebm"), "ece")
  ngebm_s = _mean(variants.get("ngebm"), "train_seconds")
  cheaper = [v for v in variants if v.startswith("ngebm_pf")]
  if not cheaper or None in (base_ece, ngebm_ece, ngebm_s):
    return lines
  lines += ["", "The cheaper NG-EBM (its gradient penalty on a fraction of each batch) against "
            "NG-EBM:", ""]
  if base_ece - ngebm_ece <= 0:
    return lines + [f"- NG-EBM does not lower the mean ECE here ({100 * ngebm_ece:.1f}% against "
                    f"the baseline's {100 * base_ece:.1f}%): no reduction to keep."]
  for v in cheaper:
    ece, s = _mean(variants[v], "ece"), _mean(variants[v], "train_seconds")
    if ece is None or not s:
      continue
    share = (base_ece - ece) / (base_ece - ngebm_ece)
    lines.append(f"- {v}: keeps {100 * share:.0f}% of NG-EBM's ECE reduction (mean ECE "
                 f"{100 * ece:.1f}% against NG-EBM's {100 * ngebm_ece:.1f}% and the baseline's "
                 f"{100 * base_ece:.1f}%) in {s / ngebm_s:.2f}x NG-EBM's training seconds "
                 f"(>= 90%: {'yes' if share >= 0.9 else 'no'}).")
  return lines


def cost_plot(summary: Mapping, path: str) -> str:
  """Benefit against training seconds per run, a point per variant (± sd over seeds)."""
  variants = summary["variants"]
  panels = [(k, title, unit) for k, title, unit in COST_COLUMNS
            if k != "accuracy" and any(_mean(a, k) is not None for a in variants.values())]
  fig, axes = reporting.new_figure(len(panels), 1, size=(4.2, 3.6), squeeze=False)
  for ax, (key, title, unit) in zip(axes.ravel(), panels):
    scale, _ = _scale(unit)
    for v, agg in variants.items():
      x, y = agg.get("train_seconds", {}), agg.get(key, {})
      if x.get("mean") is None or y.get("mean") is None:
        continue
      ax.errorbar([x["mean"]], [scale * y["mean"]], xerr=[x.get("sd") or 0.0],
                  yerr=[scale * (y.get("sd") or 0.0)], marker="o", capsize=3, label=v)
    ax.set_xscale("log")
    ax.set_xlabel("training seconds per run")
    ax.set_title(title + (" (%)" if unit == "pct" else ""), fontsize=10)
    ax.grid(alpha=0.3)
  axes.ravel()[0].legend(fontsize=7)
  reporting.save_figure(fig, path)
  return os.fspath(path)


def section(summary: Mapping, comparisons: Mapping[str, Mapping], *,
            separability: Mapping[str, Mapping] | None = None, plot_file: str | None = None
            ) -> list[str]:
  """The claims section of the study's report (Markdown lines)."""
  figures = figures_of(summary)
  n = _mean_n(summary)
  lines = ["", "## NG-EBM's claims, variant by variant against the baseline", "",
           f"Each variant minus the baseline, paired by seed ({n} seeds): mean [95% Student-t "
           "interval]; percentage points for ECE, AUROC, FPR@95 and accuracies; epsilons in "
           "x/255 (L-inf) or pixel units (L2). **holds**: the interval excludes 0 on the "
           "claimed side (lower ECE, NLL and FPR@95; higher AUROC, epsilon and accuracy under "
           "attack); **reversed**: it excludes 0 on the other side; **unresolved**: it "
           "holds 0.", ""]
  lines += summary_lines(summary, comparisons, separability)
  titles = {"calibration": "Calibration", "OOD detection": "OOD detection",
            "robustness": "Robustness (the paper protocol: each image's smallest successful "
                          "PGD epsilon; misclassified images count as 0)"}
  for claim, title in titles.items():
    fs = [f for f in figures if f.claim == claim]
    if fs:
      lines += ["", f"### {title}", ""] + _claim_table(summary, comparisons, fs)
  lines += ["", "### Cost against benefit", "",
            "Training seconds per run: the logged wall time of the training loop (compilation, "
            "validation and checkpoints included) on this machine; mean ± sd over seeds.", ""]
  lines += cost_lines(summary)
  if plot_file:
    lines += ["", f"![benefit against training seconds]({plot_file})"]
  return lines


def _mean_n(summary: Mapping) -> int:
  base = summary["variants"].get(BASELINE, {})
  return int(np.max([a.get("n", 0) for a in base.values()] or [0]))


__all__ = ["Figure", "verdict", "figures_of", "claim_comparisons", "verdicts", "summary_lines",
           "cost_lines", "cost_plot", "section", "HOLDS", "REVERSED", "UNRESOLVED",
           "NOT_MEASURED"]
