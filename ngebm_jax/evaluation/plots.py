"""Plots of the evaluation: reliability diagram, OOD score histograms, ROC and robustness curves.

Each function draws one figure and writes it as a PNG to `path` (parent folders are created).
Figures are built with `matplotlib.figure.Figure` and the Agg canvas directly, never through
pyplot, so importing this module changes no global matplotlib state and needs no display.
"""

from __future__ import annotations

import os
from typing import Any, Mapping, Sequence, TYPE_CHECKING

import numpy as np

from ngebm_jax import reporting

if TYPE_CHECKING:
  from matplotlib.figure import Figure


def _figure(figsize: tuple[float, float]) -> Figure:
  # matplotlib is imported when a figure is drawn, not with this module: importing it takes
  # most of a second, which every program that imports the evaluation would pay.
  from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top,redefined-outer-name
  return Figure(figsize=figsize, layout="constrained")


def _save(fig: Figure, path: str) -> str:
  reporting.save_figure(fig, path)
  return os.fspath(path)


def reliability_diagram(bins: Mapping[str, Any], path: str, *, title: str | None = None,
                        ece: float | None = None) -> str:
  """Reliability diagram: accuracy per confidence bin, the gap to the diagonal, and bin counts.

  Args:
    bins: the dict of `calibration.calibration_bins` (`accuracy`, `confidence`, `count`, `edges`).
    path: where to write the PNG.
    title: figure title.
    ece: the ECE to print on the plot (a fraction; shown in percent).

  Returns:
    `path`.
  """
  edges = np.asarray(bins["edges"], dtype=float)
  accuracy = np.asarray(bins["accuracy"], dtype=float)
  confidence = np.asarray(bins["confidence"], dtype=float)
  count = np.asarray(bins["count"], dtype=float)
  left, width = edges[:-1], np.diff(edges)
  filled = count > 0

  fig = _figure((5, 6.5))
  ax, ax_count = fig.subplots(2, 1, sharex=True, gridspec_kw=dict(height_ratios=[3, 1]))
  ax.bar(left[filled], accuracy[filled], width=width[filled], align="edge", color="tab:blue",
         edgecolor="black", linewidth=0.5, label="accuracy")
  # Gap bars: from the accuracy to the mean confidence of the bin (red: the miscalibration).
  gap = confidence - accuracy
  ax.bar(left[filled], gap[filled], bottom=accuracy[filled], width=width[filled], align="edge",
         color="tab:red", alpha=0.35, edgecolor="tab:red", hatch="//", linewidth=0.5,
         label="gap to mean confidence")
  ax.plot([0, 1], [0, 1], linestyle="--", color="gray", label="perfect calibration")
  ax.set_xlim(0, 1)
  ax.set_ylim(0, 1)
  ax.set_ylabel("accuracy")
  ax.legend(loc="upper left", fontsize=8)
  if ece is not None:
    ax.text(0.97, 0.03, f"ECE = {100 * ece:.2f}%", transform=ax.transAxes, ha="right",
            va="bottom", fontsize=10, bbox=dict(facecolor="white", alpha=0.8))
  if title:
    ax.set_title(title)
  ax_count.bar(left, count, width=width, align="edge", color="gray", edgecolor="black",
               linewidth=0.5)
  ax_count.set_xlabel("confidence (max p(y|x))")
  ax_count.set_ylabel("count")
  if count.max() > 0 and count[filled].min() > 0 and count.max() / count[filled].min() > 100:
    ax_count.set_yscale("log")
  return _save(fig, path)


def ood_histogram(scores_in: Any, scores_out: Any, path: str, *, score_name: str,
                  in_name: str = "in-distribution", out_name: str = "OOD",
                  title: str | None = None, num_bins: int = 50) -> str:
  """Overlaid normalized histograms of one OOD score on the in-distribution and an OOD set."""
  scores_in = np.asarray(scores_in, dtype=float)
  scores_out = np.asarray(scores_out, dtype=float)
  both = np.concatenate([scores_in, scores_out])
  lo, hi = float(both.min()), float(both.max())
  if hi <= lo:
    lo, hi = lo - 0.5, hi + 0.5
  bin_edges = np.linspace(lo, hi, num_bins + 1)
  fig = _figure((6, 4))
  ax = fig.subplots()
  # One filled outline per set ("stepfilled"), not a patch per bin: the same picture, drawn in
  # half the time (five OOD sets times each score per evaluated run).
  style = dict(bins=bin_edges, density=True, alpha=0.5, histtype="stepfilled")
  ax.hist(scores_in, label=in_name, **style)
  ax.hist(scores_out, label=out_name, **style)
  ax.set_xlabel(score_name)
  ax.set_ylabel("density")
  ax.legend()
  ax.set_title(title or f"{score_name}: {in_name} vs {out_name}")
  return _save(fig, path)


def roc_curves(curves: Mapping[str, tuple[Any, Any]], path: str, *,
               title: str | None = None) -> str:
  """ROC curves, one line per entry.

  Args:
    curves: name -> `(fpr, tpr)` arrays (e.g. from `ood.roc_curve`), in-distribution positive;
      the name is shown in the legend, e.g. `"svhn (AUROC 0.91)"`.
    path: where to write the PNG.
    title: figure title.
  """
  fig = _figure((5, 5))
  ax = fig.subplots()
  for name, (fpr, tpr) in curves.items():
    ax.plot(np.asarray(fpr), np.asarray(tpr), label=name)
  ax.plot([0, 1], [0, 1], linestyle="--", color="gray", linewidth=0.8)
  ax.set_xlim(0, 1)
  ax.set_ylim(0, 1.01)
  ax.set_xlabel("false-positive rate (OOD accepted)")
  ax.set_ylabel("true-positive rate (in-distribution accepted)")
  ax.legend(loc="lower right", fontsize=8)
  if title:
    ax.set_title(title)
  return _save(fig, path)


def robustness_curves(curves: Mapping[str, tuple[Sequence[float], Sequence[float]]], path: str,
                      *, norm: str, title: str | None = None) -> str:
  """Accuracy against PGD epsilon, one line per run.

  Args:
    curves: run name -> `(epsilons, accuracies)`, epsilons in [0, 1] pixel units.
    path: where to write the PNG.
    norm: `"linf"` (the x axis is then shown in units of 1/255) or `"l2"`.
    title: figure title.
  """
  fig = _figure((6, 4))
  ax = fig.subplots()
  scale = 255.0 if norm == "linf" else 1.0
  for name, (epsilons, accuracies) in curves.items():
    ax.plot(np.asarray(epsilons, dtype=float) * scale, np.asarray(accuracies, dtype=float),
            marker="o", markersize=3, label=name)
  _epsilon_axes(ax, norm, "accuracy under PGD",
                title or f"PGD {'L-inf' if norm == 'linf' else 'L2'} robustness")
  return _save(fig, path)


def _epsilon_axes(ax, norm: str, ylabel: str, title: str) -> None:
  """Labels, range, grid and legend of an accuracy-against-epsilon plot."""
  ax.set_xlabel("epsilon (x 1/255)" if norm == "linf" else "epsilon (L2, [0, 1] pixels)")
  ax.set_ylabel(ylabel)
  ax.set_ylim(0, 1)
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8)
  ax.set_title(title)


def minimal_epsilon_curves(curves: Mapping[str, Sequence[float]], path: str, *, norm: str,
                           title: str | None = None) -> str:
  """Accuracy against epsilon from each image's smallest successful epsilon, one line per run.

  As the NG-EBM code plots its attacks (`attack_plot.py`): the sorted epsilons on the x axis, the
  fraction of images not yet fooled on the y axis, a step down at each image's epsilon.

  Args:
    curves: run name -> `[N]` smallest successful epsilons in [0, 1] pixel units (0 for images
      misclassified without attack; inf or None for images never fooled).
    path: where to write the PNG.
    norm: `"linf"` (x axis in units of 1/255) or `"l2"`.
    title: figure title.
  """
  fig = _figure((6, 4))
  ax = fig.subplots()
  scale = 255.0 if norm == "linf" else 1.0
  right = 0.0
  for name, eps in curves.items():
    e = np.array([np.inf if v is None else v for v in eps], dtype=float)
    n = e.size
    finite = np.sort(e[np.isfinite(e)]) * scale
    xs = np.concatenate([[0.0], finite])
    ys = 1.0 - np.arange(finite.size + 1) / n
    ax.step(xs, ys, where="post", label=name)
    right = max(right, float(xs[-1]))
  ax.set_xlim(0, right * 1.05 if right > 0 else 1)
  _epsilon_axes(ax, norm, "accuracy (smallest epsilon > x)", title or
                f"Smallest successful PGD epsilon, {'L-inf' if norm == 'linf' else 'L2'}")
  return _save(fig, path)


def reliability_grid(panels: Mapping[str, tuple[Mapping[str, Any], float | None]], path: str, *,
                     ncols: int = 2) -> str:
  """Reliability diagrams side by side, one panel per entry (e.g. each run, then + TS).

  Blue: accuracy per confidence bin; red: the gap to the bin's mean confidence; dotted: the
  share of examples in each bin (right axis).

  Args:
    panels: title -> `(bins, ece)`, `bins` as `calibration.calibration_bins` returns them (or
      lists of the same), `ece` a fraction printed on the panel.
    path: where to write the PNG.
    ncols: panels per row.
  """
  nrows = -(-len(panels) // ncols)
  fig, axes = reporting.new_figure(ncols, nrows, size=(4.0, 3.6), squeeze=False)
  flat = list(axes.ravel())
  legend = []
  for ax, (title, (bins, ece)) in zip(flat, panels.items()):
    edges = np.asarray(bins["edges"], dtype=float)
    accuracy = np.asarray(bins["accuracy"], dtype=float)
    confidence = np.asarray(bins["confidence"], dtype=float)
    count = np.asarray(bins["count"], dtype=float)
    left, width, filled = edges[:-1], np.diff(edges), count > 0
    ax.bar(left[filled], accuracy[filled], width=width[filled], align="edge",
           color="tab:blue", edgecolor="black", linewidth=0.5, label="accuracy")
    ax.bar(left[filled], (confidence - accuracy)[filled], bottom=accuracy[filled],
           width=width[filled], align="edge", color="tab:red", alpha=0.35, hatch="//",
           edgecolor="tab:red", linewidth=0.5, label="gap to confidence")
    ax.plot([0, 1], [0, 1], linestyle="--", color="gray")
    # The share of examples per bin, a dotted line on its own 0-1 scale (right).
    share = ax.twinx()
    share.plot((left + width / 2)[filled], (count / max(count.sum(), 1))[filled], color="black",
               linestyle=":", marker=".", linewidth=1, label="share of examples")
    share.set_ylim(0, 1)
    share.tick_params(labelsize=7)
    if not legend:
      legend = ax.get_legend_handles_labels()[0] + share.get_legend_handles_labels()[0]
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("confidence")
    ax.set_ylabel("accuracy")
    if ece is not None:
      share.text(0.97, 0.03, f"ECE {100 * ece:.2f}%", transform=share.transAxes, ha="right",
                 va="bottom", fontsize=9, bbox=dict(facecolor="white", alpha=0.9))
  for ax in flat[len(panels):]:
    ax.set_visible(False)
  flat[0].legend(handles=legend, loc="upper left", fontsize=7)
  reporting.save_figure(fig, path)
  return os.fspath(path)


def calibration_vs_steps(panels: Mapping[str, Mapping[str, tuple[Sequence, Sequence, Sequence]]],
                         path: str) -> str:
  """Figures against training steps, one panel per figure, one line per run or variant.

  Args:
    panels: panel title (e.g. "ECE") -> line name -> `(steps, means, sds)`; values are
      fractions, shown in percent; a band of ± sd around a mean where sd > 0 (over seeds).
    path: where to write the PNG.
  """
  fig, axes = reporting.new_figure(len(panels), 1, size=(4.6, 3.6), squeeze=False)
  for ax, (title, lines) in zip(axes.ravel(), panels.items()):
    for name, (steps, means, sds) in lines.items():
      steps = np.asarray(steps, dtype=float)
      means = 100 * np.asarray([np.nan if m is None else m for m in means], dtype=float)
      sds = 100 * np.asarray(sds, dtype=float)
      (line,) = ax.plot(steps, means, marker="o", markersize=3, label=name)
      if np.any(sds > 0):
        ax.fill_between(steps, means - sds, means + sds, color=line.get_color(), alpha=0.2)
    ax.axhline(0, color="gray", linewidth=0.6)
    ax.set_xlabel("training step")
    ax.set_ylabel("percent")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
  reporting.save_figure(fig, path)
  return os.fspath(path)


def sweep_plot(xs: Sequence[float], lines: Mapping[str, tuple[Sequence, Sequence]], path: str, *,
               xlabel: str, ylabel: str, levels: Mapping[str, float] | None = None) -> str:
  """A figure against a swept setting (e.g. ECE against gamma), in percent, with ± sd bars.

  Args:
    xs: the swept values (a symlog axis, so 0 can be shown beside 0.1 and 3).
    lines: name -> `(means, sds)` at `xs` (fractions).
    path: where to write the PNG.
    xlabel: label of the x axis; ylabel: label of the y axis.
    levels: name -> a constant to draw as a horizontal line (e.g. the baseline's ECE).
  """
  fig, ax = reporting.new_figure(1, 1, size=(6.0, 4.0))
  xs = np.asarray(xs, dtype=float)
  for name, (means, sds) in lines.items():
    ax.errorbar(xs, 100 * np.asarray(means, dtype=float), yerr=100 * np.asarray(sds, dtype=float),
                marker="o", capsize=3, label=name)
  for (name, value), style in zip((levels or {}).items(), ("--", ":", "-.")):
    if value is not None:
      ax.axhline(100 * value, linestyle=style, color="gray", label=name)
  positive = xs[xs > 0]
  ax.set_xscale("symlog", linthresh=float(positive.min()) if positive.size else 1.0)
  ax.set_xlabel(xlabel)
  ax.set_ylabel(f"{ylabel} (%)")
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8)
  reporting.save_figure(fig, path)
  return os.fspath(path)
