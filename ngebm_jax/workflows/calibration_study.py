r"""Calibration study: does NG-EBM undo an over-fitted classifier's over-confidence, and how does
it compare with temperature scaling?

  python -m experiments.calibration_study --output=runs/calibration_study

NG-EBM's headline claim (arXiv 2304.01297: ECE 2.5x lower than the baseline's on CIFAR-10, 7.5x
on CIFAR-100) is about a regime: a classifier trained long enough to fit its training set
(training accuracy near 100%) whose confidence has grown well above its test accuracy. The study
trains every objective on the same model, data and seeds in such a regime and sweeps what
matters:

- objectives ("variants"): the baseline, NG-EBM at the paper's beta = gamma = 1, and each penalty
  alone (gamma only: the Approximate Mass penalty; beta only: the energy variance), every seed;
- training length: each of those runs is measured at several steps on its way (its newest
  parameters, `train_and_evaluate.train_in_stages`): calibration against training steps;
- gamma, at beta = 1 (ECE against gamma; gamma = 0 and 1 are runs of the first list);
- the training-set size (baseline and NG-EBM);
the two sweeps for every seed or for the first only (`sweep_seeds`, to fit a CPU budget).

Every run is trained with `train_and_evaluate.train_in_stages` / `train_or_reuse` (re-running the
command retrains nothing that finished, an interrupted run resumes), and its best checkpoint
(by validation accuracy, the paper's protocol) is evaluated by the calibration evaluator: ECE in
the standard form (mean confidence, noisy test images) and in NG-EBM's (bin centres, clean
images), the confidence gap, NLL and Brier score, each before and after temperature scaling
fitted on the validation split. Writes into `output`: `report.md` (tables as mean ± sd over seeds,
the answer to the questions above in numbers, the plots), `results.json` (every number) and the
plots: `calibration_vs_steps.png`, `ece_vs_gamma.png`, `reliability.png`.
"""

from __future__ import annotations

import os
from typing import Any, Mapping, Sequence

import ml_collections
import numpy as np

from ngebm_jax import config_validation
from ngebm_jax import reporting
from ngebm_jax.evaluation import plots
from ngebm_jax.workflows import train_and_evaluate

REPORT_FILE = "report.md"
RESULTS_FILE = "results.json"

# The variants of the first list: objective and the NG-EBM weights they set.
DEFAULT_VARIANTS = {
    "baseline": dict(objective="baseline"),
    "ngebm": dict(objective="ngebm", beta=1.0, gamma=1.0),
    "gamma_only": dict(objective="ngebm", beta=0.0, gamma=1.0),
    "beta_only": dict(objective="ngebm", beta=1.0, gamma=0.0),
}
# The figures of a run's calibration evaluation that the tables show (fractions; NLL in nats).
FIGURES = ("accuracy", "ece", "ece_paper", "confidence_gap", "nll", "brier")
# What "over-fitted and over-confident" means in the report's check of the regime.
FITTED_TRAIN_ACCURACY = 0.95
OVERCONFIDENT_GAP = 0.05


# ------------------------------------------------------------------------------------- runs --

def variant_config(base: ml_collections.ConfigDict, variant: Mapping[str, Any],
                   seed: int) -> ml_collections.ConfigDict:
  """`base` with a variant's objective (and NG-EBM weights) and `seed`."""
  unknown = set(variant) - {"objective", "beta", "gamma"}
  if unknown or "objective" not in variant:
    raise ValueError(f"a variant sets 'objective' and optionally 'beta', 'gamma'; got "
                     f"{dict(variant)}.")
  config = base.copy_and_resolve_references()
  config.objective = variant["objective"]
  for weight in ("beta", "gamma"):
    if weight in variant:
      config.ngebm[weight] = float(variant[weight])
  config.seed = int(seed)
  return config


def plan_runs(base: ml_collections.ConfigDict, *, variants: Mapping[str, Mapping[str, Any]],
              seeds: Sequence[int], stages: Sequence[int], gammas: Sequence[float] = (),
              sweep_beta: float = 1.0, train_sizes: Sequence[int] = (),
              size_variants: Sequence[str] = ("baseline", "ngebm"),
              sweep_seeds: Sequence[int] | None = None) -> dict[str, dict]:
  """name -> {"config", "seed", "stages", "roles"}; runs with equal configs are one run.

  `roles` lists what a run stands for: `("variant", name)`, `("gamma", g)` (NG-EBM at
  `sweep_beta` and gamma `g`) and `("train_size", (variant, n))`. Variant runs are made for
  every seed and measured at `stages` (training length); the sweeps for `sweep_seeds` (default:
  every seed), measured at the end only.
  """
  if not seeds:
    raise ValueError("give at least one seed.")
  missing = [v for v in size_variants if train_sizes and v not in variants]
  if missing:
    raise ValueError(f"size_variants {missing} are not among the variants {list(variants)}.")
  runs: dict[str, dict] = {}
  by_config: dict[str, str] = {}

  def add(name, config, seed, role, run_stages):
    key = config.to_json_best_effort(sort_keys=True)
    if key in by_config:
      runs[by_config[key]]["roles"].append(role)
      return
    by_config[key] = name
    runs[name] = dict(config=config, seed=int(seed), stages=list(run_stages), roles=[role])

  for seed in seeds:
    for name, variant in variants.items():
      add(f"{name}_s{seed}", variant_config(base, variant, seed), seed, ("variant", name), stages)
  for seed in (seeds if sweep_seeds is None else sweep_seeds):
    for g in gammas:
      config = variant_config(base, dict(objective="ngebm", beta=sweep_beta, gamma=g), seed)
      add(f"gamma{g:g}_beta{sweep_beta:g}_s{seed}", config, seed, ("gamma", float(g)), ())
    for n in train_sizes:
      for name in size_variants:
        config = variant_config(base, variants[name], seed)
        config.dataset.num_train = int(n)
        add(f"{name}_n{n}_s{seed}", config, seed, ("train_size", (name, int(n))), ())
  return runs


def train_runs(runs: dict[str, dict], output: str) -> dict[str, dict]:
  """Trains (or reuses) every run; returns name -> {"results", "stages"}."""
  out = {}
  for i, (name, run) in enumerate(runs.items()):
    workdir = os.path.join(output, "runs", name)
    config = run["config"]
    print(f"== [{i + 1}/{len(runs)}] {name} ({config.objective}, beta={config.ngebm.beta:g}, "
          f"gamma={config.ngebm.gamma:g}, {config.dataset.num_train} images, "
          f"{config.num_steps} steps) -> {workdir}", flush=True)
    results, records = train_and_evaluate.train_in_stages(config, workdir, run["stages"])
    out[name] = dict(results=results, stages=records, workdir=workdir)
  return out


# --------------------------------------------------------------------------------- summary --

def _calibration(results: Mapping) -> Mapping:
  return results["evaluation"]["calibration"]


def mean_sd(values: Sequence[float | None]) -> tuple[float | None, float | None, int]:
  """`(mean, sample sd, n)` of the finite values; sd is None for fewer than two."""
  v = np.asarray([x for x in values if x is not None and np.isfinite(x)], float)
  if not v.size:
    return None, None, 0
  return float(v.mean()), (float(v.std(ddof=1)) if v.size > 1 else None), int(v.size)


def _aggregate(rows: Sequence[Mapping[str, Any]], keys: Sequence[str]) -> dict[str, dict]:
  out = {}
  for k in keys:
    m, sd, n = mean_sd([r.get(k) for r in rows])
    out[k] = dict(mean=m, sd=sd, n=n)
  return out


def run_figures(results: Mapping) -> dict[str, Any]:
  """The flat figures of one run's best checkpoint, before (`x`) and after (`x_ts`) TS."""
  cal = _calibration(results)
  row = {k: cal[k] for k in FIGURES}
  row.update({f"{k}_ts": cal[f"{k}_ts"] for k in FIGURES if k != "accuracy"})
  row.update(accuracy_ts=cal["accuracy"], temperature=cal["temperature"],
             best_step=results.get("best_step"))
  return row


def aggregate_stages(runs_records: Sequence[Sequence[Mapping]]) -> dict[int, dict]:
  """step -> mean ± sd over runs (seeds) of the stage records' figures (`StageEvaluator`):
  `test_<figure>` and `train_accuracy`, `train_mean_confidence`."""
  by_step: dict[int, list[dict]] = {}
  for records in runs_records:
    for rec in records:
      flat = {f"test_{k}": rec["test"][k] for k in ("accuracy", "ece", "ece_paper",
                                                    "confidence_gap", "nll", "ece_ts",
                                                    "temperature")}
      flat.update({f"train_{k}": rec["train"][k] for k in ("accuracy", "mean_confidence")})
      by_step.setdefault(int(rec["step"]), []).append(flat)
  return {step: _aggregate(rows, list(rows[0])) for step, rows in sorted(by_step.items())}


def summarize(runs: Mapping[str, dict], trained: Mapping[str, dict]) -> dict:
  """Per-run figures and their aggregates over seeds: variants, stages, gamma, train sizes."""
  per_run = {name: run_figures(trained[name]["results"]) for name in runs}
  keys = list(next(iter(per_run.values())))
  groups: dict[tuple, list[str]] = {}
  for name, run in runs.items():
    for role in run["roles"]:
      groups.setdefault(role, []).append(name)

  variants = {v: _aggregate([per_run[n] for n in names], keys)
              for (kind, v), names in groups.items() if kind == "variant"}
  gamma = {g: _aggregate([per_run[n] for n in names], keys)
           for (kind, g), names in groups.items() if kind == "gamma"}
  sizes = {}
  for (kind, value), names in groups.items():
    if kind == "train_size":
      variant, n = value
      sizes[f"{variant} @ {n}"] = _aggregate([per_run[m] for m in names], keys)
  stages = {v: aggregate_stages([trained[n]["stages"] for n in names])
            for (kind, v), names in groups.items() if kind == "variant"}
  return dict(runs=per_run, variants=variants, gamma=dict(sorted(gamma.items())),
              train_sizes=sizes, stages=stages,
              members={f"{k[0]}:{k[1]}": names for k, names in groups.items()})


# ---------------------------------------------------------------------------------- report --

def _pm(stat: Mapping | None, *, pct: bool = True, digits: int = 2, signed: bool = False) -> str:
  """`mean ± sd` (percent for fractions), `–` when missing."""
  if not stat or stat.get("mean") is None:
    return "–"
  scale = 100.0 if pct else 1.0
  sign = "+" if signed else ""
  text = f"{scale * stat['mean']:{sign}.{digits}f}"
  if stat.get("sd") is not None:
    text += f" ± {scale * stat['sd']:.{digits}f}"
  return text + ("%" if pct else "")


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


def write_plots(summary: dict, trained: Mapping[str, dict], runs: Mapping[str, dict],
                output: str, *, sweep_beta: float = 1.0) -> dict[str, str]:
  """ECE and confidence gap against steps, ECE against gamma, reliability diagrams."""
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
    cal = _calibration(trained[name]["results"])
    panels[f"{variant} (seed {first_seed})"] = (cal["bins"], cal["ece"])
    if cal.get("bins_ts"):
      panels[f"{variant} + TS (T = {cal['temperature']:.2f})"] = (cal["bins_ts"], cal["ece_ts"])
  if panels:
    written["reliability"] = plots.reliability_grid(panels, os.path.join(output,
                                                                         "reliability.png"))
  return {k: os.path.basename(v) for k, v in written.items()}


def markdown(summary: dict, settings: dict, plot_files: Mapping[str, str]) -> str:
  lines = ["# Calibration study: NG-EBM against an over-confident baseline", "",
           "Same model, data and seeds for every objective; mean ± sd over seeds. Every figure "
           "is of the best checkpoint (by validation accuracy) unless the table says 'step'. "
           "ECE (noisy): 20 bins, mean confidence per bin, test images with the recipe's "
           "test-time noise. ECE (NG-EBM's): the variant of NG-EBM's code behind its published "
           "ratios (bin centres, clean test images). Confidence gap: mean confidence − accuracy "
           "(> 0: over-confident). TS: temperature scaling, one T fitted on the validation "
           "split's NLL.", "",
           "Settings: " + ", ".join(f"`{k}={v}`" for k, v in settings.items())]
  lines += _regime_lines(summary)
  lines += _answer_lines(summary, settings.get("sweep_beta", 1.0))
  lines += ["", "## Objectives (best checkpoints)", ""] + _variant_table(summary)
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


def run(base: ml_collections.ConfigDict, output, *,
        variants: Mapping[str, Mapping[str, Any]] | None = None, seeds: Sequence[int] = (0, 1, 2),
        stages: Sequence[int] = (), gammas: Sequence[float] = (), sweep_beta: float = 1.0,
        train_sizes: Sequence[int] = (),
        size_variants: Sequence[str] = ("baseline", "ngebm"),
        sweep_seeds: Sequence[int] | None = None) -> dict[str, str]:
  """Trains every run of the study, evaluates, and writes the report; returns the paths.

  Args:
    base: the config every run starts from (e.g. configs/calibration_study.py), command-line
      overrides included.
    output: folder for the runs (`runs/<name>`), the report and its plots.
    variants: name -> {"objective", optional "beta", "gamma"}; default `DEFAULT_VARIANTS`.
    seeds: seeds of every run (mean ± sd over them).
    stages: steps at which the variant runs are measured on their way (multiples of
      `base.eval_every_steps`); the last is always `base.num_steps`.
    gammas: the gamma sweep (NG-EBM at `sweep_beta`); empty: no sweep.
    sweep_beta: beta of the gamma sweep.
    train_sizes: training-set sizes for `size_variants`; empty: no sweep.
    size_variants: the variants of the training-set-size sweep.
    sweep_seeds: seeds of the two sweeps (default: `seeds`); gamma = 0 and 1 come from the
      variant runs, with every seed.
  """
  variants = dict(DEFAULT_VARIANTS if variants is None else variants)
  output = os.fspath(output)
  runs = plan_runs(base, variants=variants, seeds=seeds, stages=stages, gammas=gammas,
                   sweep_beta=sweep_beta, train_sizes=train_sizes, size_variants=size_variants,
                   sweep_seeds=sweep_seeds)
  for run_plan in runs.values():  # every run's config checked before the first is trained
    config_validation.validate_config(run_plan["config"])
  trained = train_runs(runs, output)
  summary = summarize(runs, trained)
  settings = dict(dataset=base.dataset.name, num_train=base.dataset.num_train,
                  augment=base.dataset.augment,
                  model=f"{base.model.name}(width={base.model.width})", batch_size=base.batch_size,
                  learning_rate=base.optimizer.learning_rate, num_steps=base.num_steps,
                  seeds=list(seeds), sweep_seeds=list(seeds if sweep_seeds is None else
                                                      sweep_seeds),
                  stages=train_and_evaluate.stage_steps(base, stages),
                  gammas=list(gammas), sweep_beta=sweep_beta, train_sizes=list(train_sizes))
  plot_files = write_plots(summary, trained, runs, output, sweep_beta=sweep_beta)
  paths = {"report": os.path.join(output, REPORT_FILE),
           "results": os.path.join(output, RESULTS_FILE),
           **{k: os.path.join(output, v) for k, v in plot_files.items()}}
  reporting.write_json(paths["results"], dict(
      settings=settings, variant_settings=variants, **summary,
      run_configs={n: r["config"].to_dict() for n, r in runs.items()},
      roles={n: r["roles"] for n, r in runs.items()}))
  reporting.write_text(paths["report"], markdown(summary, settings, plot_files))
  print(f"Report: {paths['report']}", flush=True)
  return paths
