"""The calibration study's report: Markdown tables and plots of `study_statistics`' numbers.

`markdown(summary, settings, plot_files, ...)` writes the report of
`ngebm_jax.workflows.calibration_study` (the regime check, NG-EBM against the baseline and
temperature scaling in numbers, the calibration peers, the tables per variant, stage, gamma and
training-set size); `write_plots` draws its figures (`calibration_vs_steps.png`,
`ece_vs_gamma.png`, `reliability.png`). `stage_table` and `stage_plot` serve the demo too.
Formatting only: every number comes from `ngebm_jax.evaluation.study_statistics`.
"""

from __future__ import annotations

import os
from typing import Any, Mapping, Sequence

from ngebm_jax import reporting
from ngebm_jax.evaluation import plots

RESULTS_FILE = "results.json"
# What "over-fitted and over-confident" means in the report's check of the regime.
FITTED_TRAIN_ACCURACY = 0.95
OVERCONFIDENT_GAP = 0.05


def _pm(stat: Mapping | None, *, pct: bool = True, digits: int = 2, signed: bool = False) -> str:
  """`mean ± sd` (percent for fractions), `–` when missing."""
  text = reporting.mean_sd(stat, 100.0 if pct else 1.0, digits, signed=signed)
  return text + ("%" if pct and text != "–" else "")


def _mean(agg: Mapping, key: str) -> float | None:
  return agg.get(key, {}).get("mean") if agg else None


def _regime_lines(summary: dict) -> list[str]:
  """Is the baseline over-fitted and over-confident at the end of training? In numbers."""
  stages = summary["stages"].get("baseline")
  if not stages:
    return []
  last = stages[max(stages)]
  train_acc, gap = _mean(last, "train_accuracy"), _mean(last, "test_confidence_gap")
  if train_acc is None or gap is None:
    return []
  fitted, confident = train_acc >= FITTED_TRAIN_ACCURACY, gap >= OVERCONFIDENT_GAP
  if fitted and confident:
    verdict = "yes: the regime NG-EBM's claim is about"
  elif confident:
    verdict = ("in part: over-confident, but its training set is not fully fitted (train longer "
               "or on fewer images for the full regime)")
  else:
    verdict = ("NO: the baseline is not over-confident, so the claim is not tested here; train "
               "longer or on fewer images")
  return ["", "## The regime", "",
          f"At the last step ({max(stages)}), the baseline fits {100 * train_acc:.1f}% of its "
          f"training images (mean confidence there {100 * _mean(last, 'train_mean_confidence'):.1f}%)"
          f" and reaches {100 * _mean(last, 'test_accuracy'):.1f}% test accuracy with a "
          f"confidence gap of {100 * gap:+.1f} points. Over-fitted (training accuracy >= "
          f"{100 * FITTED_TRAIN_ACCURACY:.0f}%): {'yes' if fitted else 'no'}; over-confident "
          f"(gap >= {100 * OVERCONFIDENT_GAP:.0f} points): {'yes' if confident else 'no'}; the "
          f"regime of the claim: {verdict}."]


def _answer_lines(summary: dict, sweep_beta: float) -> list[str]:
  """NG-EBM against the baseline and the temperature-scaled baseline, as ratios of mean ECE."""
  v, g = summary["variants"], summary["gamma"]
  base = v.get("baseline")
  if not base:
    return []
  candidates = {}
  if "ngebm" in v:
    candidates["NG-EBM (beta = gamma = 1)"] = v["ngebm"]
  if g:
    best = min(g, key=lambda k: _mean(g[k], "ece") if _mean(g[k], "ece") is not None else 1e9)
    candidates[f"NG-EBM at the best gamma of the sweep (gamma = {best:g}, beta = "
               f"{sweep_beta:g}; chosen on these test figures, so optimistic)"] = g[best]
  lines = ["", "## In numbers", "",
           "Ratios of mean ECE over seeds (best checkpoints; > 1: lower ECE than the baseline).",
           ""]
  for label, agg in candidates.items():
    parts = []
    for key, name in (("ece", "ECE"), ("ece_paper", "ECE as NG-EBM's code")):
      b, n, bts = _mean(base, key), _mean(agg, key), _mean(base, f"{key}_ts")
      if None in (b, n, bts) or n == 0:
        continue
      parts.append(f"{name} {100 * n:.2f}% vs baseline {100 * b:.2f}% ({b / n:.2f}x lower) and "
                   f"vs temperature-scaled baseline {100 * bts:.2f}% "
                   f"({'NG-EBM lower' if n < bts else 'TS lower'}, ratio {bts / n:.2f}x)")
    acc_b, acc_n, nts = _mean(base, "accuracy"), _mean(agg, "accuracy"), _mean(agg, "ece_ts")
    if not parts or None in (acc_b, acc_n, nts):
      lines.append(f"- {label}: –")
      continue
    lines.append(f"- {label}: " + "; ".join(parts) + f"; test accuracy {100 * acc_n:.2f}% vs "
                 f"{100 * acc_b:.2f}% ({100 * (acc_n - acc_b):+.2f} points); with TS on top "
                 f"its ECE is {100 * nts:.2f}%.")
  return lines


# The paired differences the peers' section shows: (key, label, percent?).
COMPARED = (("accuracy", "test accuracy", True), ("ece", "ECE", True), ("nll", "NLL", False),
            ("ece_ts", "ECE after TS", True), ("nll_ts", "NLL after TS", False),
            ("ood_auroc_max_softmax", "OOD AUROC, max p(y|x)", True),
            ("ood_auroc_log_density", "OOD AUROC, log p~(x)", True),
            ("robust_linf", "PGD accuracy, L-inf", True), ("robust_l2", "PGD accuracy, L2", True))
# Whether a higher value is better, for the verdicts.
HIGHER_IS_BETTER = {"accuracy", "ood_auroc_max_softmax", "ood_auroc_log_density", "robust_linf",
                    "robust_l2"}


def _interval(d: Mapping | None, pct: bool) -> str:
  return reporting.interval(d, *((100.0, 2) if pct else (1.0, 3)))


def verdict(key: str, d: Mapping | None, first: str, second: str) -> str:
  """Which of `first` and `second` the 95% interval of `first - second` favours, if any."""
  if not d or d.get("low") is None:
    return "not measured"
  better_if_positive = key in HIGHER_IS_BETTER
  if d["low"] > 0 or d["high"] < 0:
    first_wins = (d["low"] > 0) == better_if_positive
    return f"{first if first_wins else second} better"
  return "no difference resolved"


def best_peer(summary: dict, peer_choice: Mapping[str, Mapping]) -> str | None:
  """The chosen peer with the lowest mean validation NLL over all its seeds."""
  scores = {f: _mean(summary["variants"].get(f), "val_nll") for f in peer_choice}
  scores = {f: v for f, v in scores.items() if v is not None}
  return min(scores, key=scores.get) if scores else None


def _peer_lines(summary: dict, peer_choice: Mapping[str, Mapping],
                comparisons: Mapping[str, Mapping]) -> list[str]:
  """The peers' sweeps (validation figures), NG-EBM minus each, and the step costs."""
  if not peer_choice:
    return []
  select_on = next(iter(peer_choice.values()))["select_on"]
  lines = ["", "## NG-EBM against the calibration peers", "",
           "Label smoothing (Muller et al. 2019) and focal loss (Mukhoti et al. 2020), each "
           f"swept on its own and its setting chosen on the lowest mean validation "
           f"`{select_on}` of the best checkpoint (validation split, never test), then trained "
           "for every seed.", ""]
  rows = []
  for key, agg in summary["peer_settings"].items():
    family, label = key.split(": ", 1)
    chosen = peer_choice.get(family, {}).get("label") == label
    rows.append([family, label + (" (chosen)" if chosen else ""), str(agg["val_nll"]["n"]),
                 _pm(agg["val_nll"], pct=False, digits=3), _pm(agg["val_ece"]),
                 _pm(agg["val_accuracy"])])
  lines += reporting.markdown_table(["peer", "setting", "runs", "validation NLL",
                                     "validation ECE", "validation accuracy"], rows)
  best = best_peer(summary, peer_choice)
  lines += ["", f"Best peer (lowest validation NLL over every seed): **{best}** "
            f"({peer_choice[best]['label']})." if best else "", "",
            "Paired differences by seed, mean [95% t-interval] (percentage points; NLL in nats), "
            "of the best checkpoints; OOD AUROC: mean over the OOD sets; PGD accuracy at the "
            "smallest epsilon > 0 of the config.", ""]
  measured = [c for c in COMPARED if any(c[0] in diffs for diffs in comparisons.values())]
  header = ["difference"] + [label for _, label, _ in measured]
  rows = [[name] + [_interval(diffs.get(k), pct) for k, _, pct in measured]
          for name, diffs in comparisons.items()]
  lines += reporting.markdown_table(header, rows)
  key_best = f"ngebm − {best}"
  if best and key_best in comparisons:
    d = comparisons[key_best]
    lines += ["", f"Verdicts, NG-EBM against {best} (the interval excludes 0, or not):", ""]
    lines += [f"- {label}: {verdict(k, d.get(k), 'NG-EBM', best)}" for k, label, _ in measured]
  base_time = _mean(summary["variants"].get("baseline"), "step_time_s")
  times = [[v, f"{1000 * _mean(agg, 'step_time_s'):.1f}",
            f"{_mean(agg, 'step_time_s') / base_time:.2f}x" if base_time else "–"]
           for v, agg in summary["variants"].items() if _mean(agg, "step_time_s")]
  if times:
    lines += ["", "Step cost: median logged seconds per training step (evaluation and "
              "checkpoint writes included; a shared machine), mean over seeds.", ""]
    lines += reporting.markdown_table(["variant", "ms per step", "vs baseline"], times)
  return lines


def _variant_table(summary: dict) -> list[str]:
  header = ["variant", "runs", "test accuracy", "ECE (mean conf., noisy)",
            "ECE (NG-EBM's: centre, clean)", "confidence gap", "NLL", "Brier", "T"]
  rows = []
  for name, agg in summary["variants"].items():
    for suffix, label in (("", name), ("_ts", f"{name} + TS")):
      rows.append([label, str(agg["ece"]["n"]),
                   _pm(agg["accuracy" if not suffix else "accuracy_ts"]),
                   _pm(agg[f"ece{suffix}"]), _pm(agg[f"ece_paper{suffix}"]),
                   _pm(agg[f"confidence_gap{suffix}"], signed=True),
                   _pm(agg[f"nll{suffix}"], pct=False, digits=3),
                   _pm(agg[f"brier{suffix}"], pct=False, digits=4),
                   _pm(agg["temperature"], pct=False) if suffix else "1"])
  return reporting.markdown_table(header, rows)


def stage_table(stages: Mapping[str, Mapping[int, Mapping]]) -> list[str]:
  """Markdown table of `aggregate_stages` per variant: the figures at each measured step."""
  header = ["variant", "step", "train accuracy", "train confidence", "test accuracy",
            "ECE (noisy)", "ECE (NG-EBM's)", "confidence gap", "NLL", "T", "ECE after TS"]
  rows = []
  for name, by_step in stages.items():
    for step, agg in by_step.items():
      rows.append([name, str(step), _pm(agg["train_accuracy"]),
                   _pm(agg["train_mean_confidence"]), _pm(agg["test_accuracy"]),
                   _pm(agg["test_ece"]), _pm(agg["test_ece_paper"]),
                   _pm(agg["test_confidence_gap"], signed=True),
                   _pm(agg["test_nll"], pct=False, digits=3),
                   _pm(agg["test_temperature"], pct=False), _pm(agg["test_ece_ts"])])
  return reporting.markdown_table(header, rows)


def _sweep_table(groups: Mapping[Any, Mapping], first: str, label) -> list[str]:
  header = [first, "runs", "test accuracy", "ECE (noisy)", "ECE (NG-EBM's)", "confidence gap",
            "NLL", "T", "ECE after TS"]
  rows = [[label(k, agg), str(agg["ece"]["n"]), _pm(agg["accuracy"]), _pm(agg["ece"]),
           _pm(agg["ece_paper"]), _pm(agg["confidence_gap"], signed=True),
           _pm(agg["nll"], pct=False, digits=3), _pm(agg["temperature"], pct=False),
           _pm(agg["ece_ts"])] for k, agg in groups.items()]
  return reporting.markdown_table(header, rows)


def _curves(stages: Mapping[str, Mapping[int, Mapping]], key: str
            ) -> dict[str, tuple[list, list, list]]:
  """variant -> (steps, means, sds) of a stage figure (e.g. `test_ece`)."""
  out = {}
  for name, by_step in stages.items():
    steps = list(by_step)
    out[name] = (steps, [by_step[s][key]["mean"] for s in steps],
                 [by_step[s][key]["sd"] or 0.0 for s in steps])
  return out


def stage_plot(stages: Mapping[str, Mapping[int, Mapping]], path: str) -> str:
  """ECE, confidence gap and training accuracy against training steps, a line per variant."""
  return plots.calibration_vs_steps(
      {"ECE (20 bins, noisy test images)": _curves(stages, "test_ece"),
       "confidence gap (mean confidence − accuracy)": _curves(stages, "test_confidence_gap"),
       "training accuracy": _curves(stages, "train_accuracy")}, path)


def write_plots(summary: dict, results: Mapping[str, Mapping], runs: Mapping[str, dict],
                output: str, *, sweep_beta: float = 1.0) -> dict[str, str]:
  """ECE and confidence gap against steps, ECE against gamma, reliability diagrams (of each
  variant's first seed, from `results`: run name -> its `results.json`); returns plot name ->
  file name in `output`."""
  written = {}
  if summary["stages"]:
    written["calibration_vs_steps"] = stage_plot(
        summary["stages"], os.path.join(output, "calibration_vs_steps.png"))
  if summary["gamma"]:
    gammas = list(summary["gamma"])
    lines = {"NG-EBM": ([summary["gamma"][g]["ece"]["mean"] for g in gammas],
                        [summary["gamma"][g]["ece"]["sd"] or 0.0 for g in gammas]),
             "NG-EBM + TS": ([summary["gamma"][g]["ece_ts"]["mean"] for g in gammas],
                             [summary["gamma"][g]["ece_ts"]["sd"] or 0.0 for g in gammas])}
    base = summary["variants"].get("baseline")
    levels = {} if not base else {"baseline": base["ece"]["mean"],
                                  "baseline + TS": base["ece_ts"]["mean"]}
    written["ece_vs_gamma"] = plots.sweep_plot(
        gammas, lines, os.path.join(output, "ece_vs_gamma.png"),
        xlabel=f"gamma (beta = {sweep_beta:g})", ylabel="ECE (20 bins, noisy test images)",
        levels=levels)
  panels = {}
  first_seed = min(run["seed"] for run in runs.values())
  for name, run in runs.items():
    variant = next((v for kind, v in run["roles"] if kind == "variant"), None)
    if variant is None or run["seed"] != first_seed:
      continue
    cal = results[name]["evaluation"]["calibration"]
    panels[f"{variant} (seed {first_seed})"] = (cal["bins"], cal["ece"])
    if cal.get("bins_ts"):
      panels[f"{variant} + TS (T = {cal['temperature']:.2f})"] = (cal["bins_ts"], cal["ece_ts"])
  if panels:
    written["reliability"] = plots.reliability_grid(panels, os.path.join(output,
                                                                         "reliability.png"))
  return {k: os.path.basename(v) for k, v in written.items()}


TITLE = "Calibration study: NG-EBM against an over-confident baseline"


def markdown(summary: dict, settings: dict, plot_files: Mapping[str, str],
             peer_choice: Mapping[str, Mapping] | None = None,
             comparisons: Mapping[str, Mapping] | None = None, *, title: str = TITLE,
             sections: Sequence[str] = ()) -> str:
  """The report's Markdown: the regime, then `sections` (lines, e.g. the claims study's), the
  answer in numbers, the peers, and the tables of `summary` (`study_statistics.summarize`)."""
  lines = [f"# {title}", "",
           "Same model, data and seeds for every objective; mean ± sd over seeds. Every figure "
           "is of the best checkpoint (by validation accuracy) unless the table says 'step'. "
           "ECE (noisy): 20 bins, mean confidence per bin, test images with the recipe's "
           "test-time noise. ECE (NG-EBM's): the variant of NG-EBM's code behind its published "
           "ratios (bin centres, clean test images). Confidence gap: mean confidence − accuracy "
           "(> 0: over-confident). TS: temperature scaling, one T fitted on the validation "
           "split's NLL.", "",
           "Settings: " + ", ".join(f"`{k}={v}`" for k, v in settings.items())]
  lines += _regime_lines(summary)
  lines += list(sections)
  lines += _answer_lines(summary, settings["sweep_beta"])
  lines += _peer_lines(summary, peer_choice or {}, comparisons or {})
  lines += ["", "## Objectives (best checkpoints)", ""] + _variant_table(summary)
  extra = [(k, label, pct) for k, label, pct in COMPARED[5:]
           if any(_mean(agg, k) is not None for agg in summary["variants"].values())]
  if extra:
    lines += ["", "OOD detection and robustness (best checkpoints):", ""]
    lines += reporting.markdown_table(
        ["variant"] + [label for _, label, _ in extra],
        [[v] + [_pm(agg.get(k), pct=pct) for k, _, pct in extra]
         for v, agg in summary["variants"].items()])
  if "reliability" in plot_files:
    lines += ["", f"![reliability diagrams]({plot_files['reliability']})"]
  if summary["stages"]:
    lines += ["", "## Against training steps (newest parameters at each step)", ""]
    if "calibration_vs_steps" in plot_files:
      lines += [f"![calibration against training steps]({plot_files['calibration_vs_steps']})",
                ""]
    lines += stage_table(summary["stages"])
  if summary["gamma"]:
    lines += ["", f"## Gamma sweep (beta = {settings.get('sweep_beta', 1.0)})", ""]
    if "ece_vs_gamma" in plot_files:
      lines += [f"![ECE against gamma]({plot_files['ece_vs_gamma']})", ""]
    lines += _sweep_table(summary["gamma"], "gamma", lambda g, _: f"{g:g}")
  if summary["train_sizes"]:
    lines += ["", "## Training-set size", ""]
    lines += _sweep_table(summary["train_sizes"], "variant @ training images",
                          lambda k, _: k)
  lines += ["", "## Runs", ""]
  lines += reporting.markdown_table(
      ["run", "test accuracy", "ECE", "ECE (NG-EBM's)", "confidence gap", "T", "ECE after TS",
       "best step"],
      [[name, reporting.fmt(100 * r["accuracy"], ".2f"), reporting.fmt(100 * r["ece"], ".2f"),
        reporting.fmt(100 * r["ece_paper"], ".2f"),
        reporting.fmt(100 * r["confidence_gap"], "+.2f"), reporting.fmt(r["temperature"], ".3f"),
        reporting.fmt(None if r["ece_ts"] is None else 100 * r["ece_ts"], ".2f"),
        str(r["best_step"])] for name, r in summary["runs"].items()])
  lines += ["", f"Numbers: [{RESULTS_FILE}]({RESULTS_FILE}); runs under `runs/`."]
  return "\n".join(lines) + "\n"

