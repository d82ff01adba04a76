"""The evaluation report: `results.json` with every figure, and `report.md` side by side.

Input: `results`, a dict run name -> that run's figures, as `entry.evaluate` returns them
(evaluator name -> figures, plus `"meta"`: `dataset`, `objective`, `model`, `workdir`, ...).
`results.json` holds each run's record (`ngebm_jax.evaluation.results`, docs/results.rst).
A run's plots live in `run_subdir(run_name)` under the report folder; their paths in the figures
are relative to that subfolder.

`report.md` leads with calibration, NG-EBM's headline claim: one table with every run before and
after temperature scaling side by side (baseline, baseline + TS, NG-EBM, NG-EBM + TS, ...), each
row saying which ECE it is, and the reliability diagrams of each. Then a side-by-side table of
the runs (accuracy, AUROC per OOD set and score, accuracy under PGD at the standard epsilons,
with the robustness protocol named), the robustness curves of all runs on one plot per norm,
links to each run's plots, and, where a run's dataset is CIFAR-10 or CIFAR-100, the published
figures (NG-EBM arXiv 2304.01297, JEM arXiv 1912.03263) beside ours. A section lists the OOD
sets each run was evaluated on and the missing ones with the commands that prepare them.
"""

from __future__ import annotations

import os
import re
from typing import Any, Mapping, Sequence


from ngebm_jax import reporting
from ngebm_jax.evaluation import ood
from ngebm_jax.evaluation import plots
from ngebm_jax.evaluation import results as results_lib
from ngebm_jax.evaluation import robustness

_JEM = "JEM Table 3 (in HybViT, arXiv 2208.07791, Tables 3, 11)"

# Published figures of JEM and NG-EBM (CIFAR, WRN-28-10). Each entry: the figure, the
# model it was measured on, its value, its source, and where to find ours:
# ("metric", evaluator, *path) with values as fractions, or ("ece_ratio", None).
PUBLISHED = {
    "cifar10": [
        ("test accuracy", "JEM", 0.929, "JEM paper (HybViT Table 1)",
         ("metric", "classification", "accuracy")),
        *[(f"OOD AUROC {ood_set}, {ood.SCORE_TITLES[score]}", model, value, _JEM,
           ("metric", "ood", "metrics", ood_set, score, "auroc"))
          for score, model, values in (
              ("log_density", "JEM", (.67, .65, .67, .75)),
              ("max_softmax", "JEM", (.89, .75, .87, .79)),
              ("max_softmax", "WRN baseline", (.93, .77, .85, .62)))
          for ood_set, value in zip(("svhn", "interp", "cifar100", "celeba"), values)],
        ("ECE ratio baseline / NG-EBM", "NG-EBM vs baseline", 2.5, "NG-EBM abstract",
         ("ece_ratio", None)),
    ],
    "cifar100": [
        ("ECE", "WRN baseline", 0.2232, "JEM paper (figs/ of JEM's repository)",
         ("metric", "calibration", "ece")),
        ("ECE", "JEM", 0.0487, "JEM paper (figs/ of JEM's repository)",
         ("metric", "calibration", "ece")),
        ("ECE ratio baseline / NG-EBM", "NG-EBM vs baseline", 7.5, "NG-EBM abstract",
         ("ece_ratio", None)),
    ],
}


def canonical(name: Any) -> str:
  """`"CIFAR-100"`, `"cifar_100"` -> `"cifar100"`: lower case, letters and digits only."""
  return re.sub(r"[^a-z0-9]", "", str(name).lower())


def objective_kind(objective: Any) -> str:
  """`"baseline"`, `"ngebm"`, `"sgld_ebm"` (JEM), or the canonical name if none of those."""
  c = canonical(objective)
  if c in ("baseline", "ce", "crossentropy", "classifier"):
    return "baseline"
  if c in ("ngebm", "nonegenerative", "nongenerativeebm"):
    return "ngebm"
  if c in ("sgldebm", "jem", "sgld"):
    return "sgld_ebm"
  return c


def run_subdir(run_name: str) -> str:
  """The subfolder of the report folder that holds a run's plots."""
  return re.sub(r"[^A-Za-z0-9_.-]+", "_", run_name) or "run"


def _get(d: Any, *path: str) -> Any:
  for p in path:
    if not isinstance(d, Mapping):
      return None
    if p in d:
      d = d[p]
    else:  # OOD set names are matched canonically ("cifar_100" == "cifar100")
      matches = [k for k in d if canonical(k) == canonical(p)]
      if not matches:
        return None
      d = d[matches[0]]
  return d


def _eps_label(norm: str, eps: float) -> str:
  if norm == "linf":
    return f"{eps * 255:g}/255"
  return f"{eps:g}"


def _robust_at(figures: Mapping, norm: str, eps: float) -> float | None:
  r = _get(figures, "robustness", norm)
  if not r:
    return None
  for e, a in zip(r["epsilons"], r["accuracy"]):
    if abs(e - eps) < 1e-9:
      return a
  return None


def _rows(results: Mapping[str, Mapping], specs) -> list[list[str]]:
  """One row per `(label, fn)` of `specs` with a value for at least one run."""
  rows = []
  for label, fn in specs:
    values = [fn(f) for f in results.values()]
    if any(v != "–" for v in values):
      rows.append([label] + values)
  return rows


def _ood_sets(results: Mapping[str, Mapping]) -> list[str]:
  sets = []
  for f in results.values():
    for s in (_get(f, "ood", "metrics") or {}):
      if s not in sets:
        sets.append(s)
  return sets


# Rows of the calibration table: label, key of the calibration figures (the "+ TS" column reads
# `<key>_ts`), format. Labels say which ECE each row is.
def _calibration_rows(num_bins: int, noise_std: float | None) -> list[tuple[str, str, Any]]:
  noise = "noisy test images" if noise_std is None else (
      f"test images + noise σ = {noise_std:g}" if noise_std > 0 else "clean test images")
  return [
      ("test accuracy", "accuracy", reporting.pct),
      (f"ECE ({num_bins} bins, mean confidence, {noise})", "ece", reporting.pct),
      ("ECE as NG-EBM's code (20 bins, bin centre, clean test images)", "ece_paper", reporting.pct),
      ("confidence gap (mean confidence − accuracy; > 0: over-confident)", "confidence_gap",
       lambda v: "–" if v is None else f"{100 * v:+.2f}%"),
      ("NLL (nats)", "nll", reporting.fmt),
      ("Brier score", "brier", lambda v: reporting.fmt(v, ".4f")),
  ]


def _has_calibration(results: Mapping[str, Mapping]) -> bool:
  return any(_get(f, "calibration", "ece") is not None for f in results.values())


def _calibration_section(results: Mapping[str, Mapping], reliability_plot: str | None
                         ) -> list[str]:
  """The calibration table, each run before and after temperature scaling, and its diagrams."""
  if not _has_calibration(results):
    return []
  first = next(f["calibration"] for f in results.values() if _get(f, "calibration", "ece")
               is not None)
  columns = []  # (header, figures of the calibration evaluator, suffix of the keys)
  for run, f in results.items():
    cal = _get(f, "calibration")
    if not cal:
      continue
    columns.append((run, cal, ""))
    if cal.get("temperature") is not None:
      columns.append((f"{run} + TS", cal, "_ts"))
  rows = []
  for label, key, fmt in _calibration_rows(first["num_bins"], first["noise_std"]):
    # Dividing the logits by T keeps every prediction: the accuracy is the same with TS.
    rows.append([label] + [fmt(cal.get(key if key == "accuracy" else key + suffix))
                           for _, cal, suffix in columns])
  rows.append(["temperature T (fitted on validation NLL)"] + [
      reporting.fmt(cal.get("temperature"), ".3f") if suffix else "1"
      for _, cal, suffix in columns])
  lines = ["", "## Calibration, before and after temperature scaling", "",
           "Each run, and the same run with its logits divided by one temperature T fitted on "
           "the validation split (minimum NLL; Guo et al. 2017, arXiv 1706.04599): the "
           "calibration method a practitioner would pick instead. The first ECE row is the "
           "standard one (mean confidence per bin, on the test images with the recipe's "
           "test-time noise); the second is the variant behind NG-EBM's published ratios (its "
           "code's `calibration()`: each bin's accuracy against the bin centre, clean images).",
           ""]
  lines += reporting.markdown_table(["figure"] + [c[0] for c in columns], rows)
  if reliability_plot:
    lines += ["", f"![reliability diagrams of each run, before and after temperature scaling]"
              f"({reliability_plot})"]
  return lines


def _reliability_grid(results: Mapping[str, Mapping], path: str) -> str | None:
  """One figure: the reliability diagram of every run, before and after temperature scaling."""
  panels = {}
  for run, f in results.items():
    cal = _get(f, "calibration")
    if not cal or not cal.get("bins"):
      continue
    panels[run] = (cal["bins"], cal["ece"])
    if cal.get("bins_ts"):
      panels[f"{run} + TS (T = {cal['temperature']:.2f})"] = (cal["bins_ts"], cal["ece_ts"])
  if not panels:
    return None
  return plots.reliability_grid(panels, path)


def _summary_sections(results: Mapping[str, Mapping]) -> list[str]:
  """The side-by-side tables: one column per run."""
  header = ["figure"] + list(results)
  bins = next((_get(f, "calibration", "num_bins") for f in results.values()
               if _get(f, "calibration", "num_bins")), 20)
  sections = [
      ("Runs", [
          ("dataset", lambda f: str(_get(f, "meta", "dataset") or "–")),
          ("objective", lambda f: str(_get(f, "meta", "objective") or "–")),
          ("model", lambda f: str(_get(f, "meta", "model") or "–")),
          ("best step", lambda f: str(_get(f, "meta", "best_step") or "–")),
      ]),
      ("Classification", [
          ("test accuracy", lambda f: reporting.pct(_get(f, "classification", "accuracy"))),
          ("NLL (nats)", lambda f: reporting.fmt(_get(f, "classification", "nll"))),
          ("Brier score", lambda f: reporting.fmt(_get(f, "classification", "brier"), ".4f")),
          (f"ECE ({bins} bins, mean confidence, noisy test images)",
           lambda f: reporting.pct(_get(f, "calibration", "ece"))),
      ]),
  ]
  sets = _ood_sets(results)
  for title, key, fmt in (("OOD detection: AUROC (higher is better)", "auroc", reporting.fmt),
                          ("OOD detection: FPR at 95% TPR (lower is better)", "fpr_at_95_tpr",
                           reporting.pct)):
    sections.append((title, [
        (f"{s}, {ood.SCORE_TITLES[score]}",
         lambda f, s=s, score=score, key=key, fmt=fmt: fmt(
             _get(f, "ood", "metrics", s, score, key)))
        for s in sets for score in ood.SCORE_NAMES]))
  protocols = sorted({str(_get(f, "robustness", "protocol") or "fixed_epsilon")
                      for f in results.values() if _get(f, "robustness")})
  sections.append((f"Accuracy under PGD (epsilons in [0, 1] pixel units; protocol: "
                   f"{', '.join(protocols) or 'fixed_epsilon'})", [
      (f"{'L-inf' if norm == 'linf' else 'L2'}, eps {_eps_label(norm, eps)}",
       lambda f, norm=norm, eps=eps: reporting.pct(_robust_at(f, norm, eps)))
      for norm in robustness.NORMS for eps in robustness.STANDARD_EPSILONS[norm]]))
  lines = []
  for title, specs in sections:
    rows = _rows(results, specs)
    if rows:
      lines += ["", f"### {title}", ""] + reporting.markdown_table(header, rows)
  return lines


def _ece_ratio(results: Mapping[str, Mapping], dataset: str) -> float | None:
  """ECE of the first baseline run over ECE of the first NG-EBM run on `dataset`, in NG-EBM's
  own variant (`ece_paper`, the one its published ratios use) where the runs have it."""
  ece = {}
  for f in results.values():
    if canonical(_get(f, "meta", "dataset")) != dataset:
      continue
    kind = objective_kind(_get(f, "meta", "objective"))
    value = _get(f, "calibration", "ece_paper")
    if value is None:
      value = _get(f, "calibration", "ece")
    if value is not None and kind not in ece:
      ece[kind] = value
  if "baseline" in ece and ece.get("ngebm"):
    return ece["baseline"] / ece["ngebm"]
  return None


def _published_section(results: Mapping[str, Mapping]) -> list[str]:
  lines = []
  for dataset, entries in PUBLISHED.items():
    runs = [r for r, f in results.items() if canonical(_get(f, "meta", "dataset")) == dataset]
    if not runs:
      continue
    lines += ["", f"## Published figures beside ours ({dataset})", "",
              "Published values are for WRN-28-10 trained with the full recipe; ours are for the "
              "models listed above. Percentages for accuracy and ECE, AUROC as a fraction.", ""]
    rows = []
    for label, model, value, source, (kind, *path) in entries:
      if kind == "ece_ratio":
        ratio = _ece_ratio(results, dataset)
        ours = ["–" if ratio is None else f"{ratio:.2f}x"] + [""] * (len(runs) - 1)
        published = f"{value:g}x"
      else:
        as_pct = path[-1] in ("accuracy", "ece")
        fmt = reporting.pct if as_pct else (lambda v: reporting.fmt(v, ".2f"))
        ours = [fmt(_get(results[r], *path)) for r in runs]
        published = fmt(value)
      rows.append([label, model, published] + ours + [source])
    lines += reporting.markdown_table(
        ["figure", "published model", "published"] + runs + ["source"], rows)
  return lines


def _ood_sets_section(results: Mapping[str, Mapping]) -> list[str]:
  """Which OOD sets each run was evaluated on, and the missing ones with their commands."""
  lines = []
  for run, figures in results.items():
    used = _get(figures, "meta", "ood_sets")
    missing = _get(figures, "meta", "ood_missing") or {}
    if used is None and not missing:
      continue
    lines.append(f"- {run}: evaluated on {', '.join(used) if used else 'no OOD set'}.")
    for name, command in missing.items():
      lines.append(f"  Not prepared, left out: {name} (`{command}`).")
  if lines:
    lines = ["", "## OOD sets", "", *lines]
  return lines


def _plot_dir(run: str, figures: Mapping) -> str:
  """The folder of a run's plots, relative to the report folder: `meta.plot_dir` when the
  caller set one (plots written elsewhere, e.g. in the training workdir), else `run_subdir`."""
  return str(_get(figures, "meta", "plot_dir") or run_subdir(run))


def _link(run: str, rel: str | None, text: str, figures: Mapping | None = None) -> str:
  return "–" if not rel else f"[{text}]({_plot_dir(run, figures or {})}/{rel})"


def _plot_links(results: Mapping[str, Mapping]) -> list[str]:
  """Per run: the reliability diagrams inline, links to ROC curves and score histograms."""
  lines = []
  for run, figures in results.items():
    reliability = _get(figures, "calibration", "plots", "reliability")
    reliability_ts = _get(figures, "calibration", "plots", "reliability_ts")
    ood_plots = _get(figures, "ood", "plots") or {}
    robust_plots = _get(figures, "robustness", "plots") or {}
    if not (reliability or ood_plots or robust_plots):
      continue
    lines += ["", f"### {run}", ""]
    if reliability:
      lines += [f"![reliability diagram, {run}]({_plot_dir(run, figures)}/{reliability})"]
      if reliability_ts:
        lines += [f"![reliability diagram after temperature scaling, {run}]"
                  f"({_plot_dir(run, figures)}/{reliability_ts})"]
      lines.append("")
    rocs = [_link(run, ood_plots.get(f"roc/{s}"), ood.SCORE_TITLES[s], figures)
            for s in ood.SCORE_NAMES if f"roc/{s}" in ood_plots]
    if rocs:
      lines += ["ROC curves: " + " · ".join(rocs), ""]
    sets = list(_get(figures, "ood", "metrics") or {})
    scores = [s for s in ood.SCORE_NAMES if any(f"hist/{s}/{o}" in ood_plots for o in sets)]
    if sets and scores:
      lines += ["Score histograms (test vs OOD set):", ""]
      lines += reporting.markdown_table(
          ["OOD set"] + [ood.SCORE_TITLES[s] for s in scores],
          [[o] + [_link(run, ood_plots.get(f"hist/{s}/{o}"), "histogram", figures)
                  for s in scores] for o in sets])
      lines.append("")
    if robust_plots:
      lines += ["Robustness: " + " · ".join(_link(run, rel, norm, figures)
                                             for norm, rel in robust_plots.items()), ""]
  return lines


def write_report(results: Mapping[str, Mapping], output_dir: str, *,
                 title: str = "NG-EBM evaluation report",
                 preamble: Sequence[str] = ()) -> dict[str, str]:
  """Writes `results.json`, the cross-run plots and `report.md` into `output_dir`.

  Args:
    results: run name -> figures (evaluator name -> dict, plus optional `"meta"`).
    output_dir: the report folder (created); each run's plots are in `run_subdir(run)` below it,
      or in the run's `meta.plot_dir` (relative to `output_dir`) where that is set.
    title: the report's heading.
    preamble: Markdown lines put right after the title (a caller's own summary, e.g. the
      demo's calibration against training steps).

  Returns:
    dict with the paths written: `results_json` (`{"schema": 1, "runs": {run: record}}`),
    `report_md`, `reliability` (all runs, before and after temperature scaling) and
    `robustness_<norm>` plots.
  """
  if not results:
    raise ValueError("results is empty: evaluate at least one run.")
  output_dir = os.fspath(output_dir)
  written = {}
  json_path = os.path.join(output_dir, "results.json")
  reporting.write_json(json_path, results_lib.report_file(
      {run: results_lib.run_record(figures) for run, figures in results.items()}))
  written["results_json"] = json_path

  curve_plots = {}
  for norm in robustness.NORMS:
    runs = {run: r for run, f in results.items() if (r := _get(f, "robustness", norm))}
    if not runs:
      continue
    target = os.path.join(output_dir, f"robustness_{norm}.png")
    if all(r.get("minimal_epsilons") is not None for r in runs.values()):  # "paper" protocol
      path = plots.minimal_epsilon_curves(
          {run: r["minimal_epsilons"] for run, r in runs.items()}, target, norm=norm,
          title=f"Smallest successful PGD {norm} epsilon, all runs")
    else:
      path = plots.robustness_curves({run: (r["epsilons"], r["accuracy"])
                                      for run, r in runs.items()}, target, norm=norm,
                                     title=f"PGD {norm}, all runs")
    curve_plots[norm] = os.path.basename(path)
    written[f"robustness_{norm}"] = path
  reliability = _reliability_grid(results, os.path.join(output_dir, "reliability.png"))
  if reliability:
    written["reliability"] = reliability

  lines = [f"# {title}", "",
           f"{len(results)} run(s), side by side. Every figure is in [results.json]"
           "(results.json), with the settings of each run (test-time input noise, bins, PGD "
           "steps, number of examples attacked, robustness protocol) under `meta.options`."]
  lines += list(preamble)
  lines += _calibration_section(results, reliability and os.path.basename(reliability))
  lines += ["", "## Side by side"]
  lines += _summary_sections(results)
  lines += ["", "AUROC: the in-distribution test set is the positive class; FPR at 95% TPR: "
            "the fraction of an OOD set accepted at the threshold that accepts 95% of the test "
            "set; PGD: accuracy on the attacked test examples."]
  lines += _ood_sets_section(results)
  lines += _published_section(results)
  if curve_plots:
    lines += ["", "## Robustness curves", ""]
    for norm, name in curve_plots.items():
      lines += [f"![PGD {norm}, all runs]({name})", ""]
  plot_lines = _plot_links(results)
  if plot_lines:
    lines += ["", "## Plots per run"] + plot_lines
  md_path = os.path.join(output_dir, "report.md")
  reporting.write_text(md_path, "\n".join(lines) + "\n")
  written["report_md"] = md_path
  return written
