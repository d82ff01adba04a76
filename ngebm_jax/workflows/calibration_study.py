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

import json
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
# The calibration peers' sweeps (family -> setting -> variant), chosen on validation: label
# smoothing (Muller et al. 2019) and focal loss (Mukhoti et al. 2020: FL-1, FL-3, FLSD-53).
PEER_SWEEPS = {
    "label_smoothing": {
        f"alpha={a:g}": {"objective": "label_smoothing", "label_smoothing.alpha": a}
        for a in (0.05, 0.1, 0.2)},
    "focal": {
        **{f"gamma={g:g}": {"objective": "focal", "focal.schedule": "fixed", "focal.gamma": g}
           for g in (1.0, 3.0)},
        "FLSD-53": {"objective": "focal", "focal.schedule": "flsd53"}},
}
# The figures of a run's calibration evaluation that the tables show (fractions; NLL in nats).
FIGURES = ("accuracy", "ece", "ece_paper", "confidence_gap", "nll", "brier")
# What "over-fitted and over-confident" means in the report's check of the regime.
FITTED_TRAIN_ACCURACY = 0.95
ROBUSTNESS_NORMS = ("linf", "l2")
OVERCONFIDENT_GAP = 0.05


# ------------------------------------------------------------------------------------- runs --

def variant_config(base: ml_collections.ConfigDict, variant: Mapping[str, Any],
                   seed: int) -> ml_collections.ConfigDict:
  """`base` with a variant's objective (NG-EBM weights, other config fields) and `seed`.

  A variant sets `objective`, optionally NG-EBM's `beta` and `gamma`, and any other field of
  the config by its dotted name (`"label_smoothing.alpha"`, `"focal.schedule"`).
  """
  unknown = {k for k in variant if "." not in k} - {"objective", "beta", "gamma"}
  if unknown or "objective" not in variant:
    raise ValueError(f"a variant sets 'objective' and optionally 'beta', 'gamma' and dotted "
                     f"config fields ('focal.gamma'); got {dict(variant)}.")
  config = base.copy_and_resolve_references()
  config.objective = variant["objective"]
  for weight in ("beta", "gamma"):
    if weight in variant:
      config.ngebm[weight] = float(variant[weight])
  for name, value in variant.items():
    if "." in name:
      block, field = name.rsplit(".", 1)
      parent = config
      for part in block.split("."):
        parent = parent[part]
      if field not in parent:
        raise ValueError(f"a variant sets {name!r}, which is not a config field.")
      parent[field] = value
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
  add = lambda *args: add_run(runs, *args)

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


def add_run(runs: dict[str, dict], name: str, config, seed: int, role: tuple,
            run_stages: Sequence[int]) -> str:
  """Adds a run to `runs`, or `role` to the run with an equal config; returns its name."""
  key = config.to_json_best_effort(sort_keys=True)
  for other, run in runs.items():
    if run["config"].to_json_best_effort(sort_keys=True) == key:
      run["roles"].append(role)
      return other
  runs[name] = dict(config=config, seed=int(seed), stages=list(run_stages), roles=[role])
  return name


def plan_peer_sweep(runs: dict[str, dict], base: ml_collections.ConfigDict,
                    peers: Mapping[str, Mapping[str, Mapping[str, Any]]],
                    seeds: Sequence[int], stages: Sequence[int]) -> None:
  """Adds each peer setting (family -> label -> variant) for `seeds` to `runs`, with the role
  `("peer_setting", (family, label))`."""
  for seed in seeds:
    for family, settings in peers.items():
      for label, variant in settings.items():
        add_run(runs, f"{family}_{_slug(label)}_s{seed}", variant_config(base, variant, seed),
                seed, ("peer_setting", (family, label)), stages)


def _slug(label: str) -> str:
  return "".join(c if c.isalnum() or c in "._-" else "_" for c in label)


def read_metrics(workdir: str) -> list[dict]:
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f if line.strip()]


def validation_figures(workdir: str, best_step: int | None) -> dict[str, float | None]:
  """The validation accuracy, NLL and ECE that training logged at the best checkpoint's step:
  what a peer's setting is chosen on (never a test figure)."""
  out = dict(val_accuracy=None, val_nll=None, val_ece=None)
  for record in read_metrics(workdir):
    if record.get("step") == best_step and "val/accuracy" in record:
      out = {f"val_{k}": record.get(f"val/{k}") for k in ("accuracy", "nll", "ece")}
  return out


def median_step_time(workdir: str) -> float | None:
  """Median of the logged seconds per training step (evaluation and checkpoints included, the
  first interval, with the compilation, left out)."""
  times = [r["train/step_time_s"] for r in read_metrics(workdir) if "train/step_time_s" in r]
  return float(np.median(times[1:])) if len(times) > 1 else None


def choose_peers(runs: Mapping[str, dict], figures: Mapping[str, Mapping],
                 select_on: str = "val_nll") -> dict[str, dict]:
  """family -> {"label", "validation": label -> mean figure}: each peer's setting with the lowest
  mean `select_on` (a validation figure) over its sweep runs."""
  if not select_on.startswith("val_"):
    raise ValueError(f"peers are chosen on a validation figure (val_nll, val_ece, "
                     f"val_accuracy), never on test; got {select_on!r}.")
  values: dict[str, dict[str, list]] = {}
  for name, run in runs.items():
    for kind, value in run["roles"]:
      if kind == "peer_setting":
        family, label = value
        values.setdefault(family, {}).setdefault(label, []).append(figures[name][select_on])
  sign = -1.0 if select_on == "val_accuracy" else 1.0
  out = {}
  for family, by_label in values.items():
    means = {label: mean_sd(v)[0] for label, v in by_label.items()}
    finite = {k: v for k, v in means.items() if v is not None}
    if not finite:
      raise ValueError(f"no {select_on} was logged for the {family} runs.")
    out[family] = dict(label=min(finite, key=lambda k: sign * finite[k]), validation=means,
                       select_on=select_on)
  return out


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


def run_figures(results: Mapping, workdir: str | None = None) -> dict[str, Any]:
  """The flat figures of one run's best checkpoint, before (`x`) and after (`x_ts`) TS.

  With the ood and robustness evaluators: `ood_auroc_<score>` (the mean AUROC over the OOD
  sets) and `robust_<norm>` (accuracy under PGD at the smallest epsilon > 0). With `workdir`:
  the validation figures logged at the best step (`val_accuracy`, `val_nll`, `val_ece`) and the
  median seconds per training step (`step_time_s`).
  """
  cal = _calibration(results)
  row = {k: cal[k] for k in FIGURES}
  row.update({f"{k}_ts": cal[f"{k}_ts"] for k in FIGURES if k != "accuracy"})
  row.update(accuracy_ts=cal["accuracy"], temperature=cal["temperature"],
             best_step=results.get("best_step"))
  evaluation = results["evaluation"]
  metrics = evaluation.get("ood", {}).get("metrics", {})
  for score in sorted({s for by_score in metrics.values() for s in by_score}):
    row[f"ood_auroc_{score}"] = float(np.mean([m[score]["auroc"] for m in metrics.values()
                                               if score in m]))
  for norm in ROBUSTNESS_NORMS:
    curve = evaluation.get("robustness", {}).get(norm)
    if curve:
      i = next((j for j, e in enumerate(curve["epsilons"]) if e > 0), None)
      row[f"robust_{norm}"] = None if i is None else curve["accuracy"][i]
      row[f"robust_{norm}_epsilon"] = None if i is None else curve["epsilons"][i]
  if workdir is not None:
    row.update(validation_figures(workdir, results.get("best_step")),
               step_time_s=median_step_time(workdir))
  return row


def paired_differences(per_run: Mapping[str, Mapping], runs: Mapping[str, dict], first: str,
                       second: str, keys: Sequence[str]) -> dict[str, dict]:
  """`first` minus `second` (variant names), paired by seed: key -> {"mean", "low", "high",
  "n", "diffs"} with a two-sided 95% Student-t interval over the seeds' differences."""
  from scipy import stats  # pylint: disable=g-import-not-at-top

  by_seed: dict[str, dict[int, str]] = {first: {}, second: {}}
  for name, run in runs.items():
    for kind, value in run["roles"]:
      if kind == "variant" and value in by_seed:
        by_seed[value][run["seed"]] = name
  seeds = sorted(set(by_seed[first]) & set(by_seed[second]))
  out = {}
  for key in keys:
    diffs = [per_run[by_seed[first][s]].get(key) - per_run[by_seed[second][s]].get(key)
             for s in seeds if per_run[by_seed[first][s]].get(key) is not None
             and per_run[by_seed[second][s]].get(key) is not None]
    d = np.asarray(diffs, float)
    if d.size == 0:
      continue
    half = (float(stats.t.ppf(0.975, d.size - 1) * d.std(ddof=1) / np.sqrt(d.size))
            if d.size > 1 else None)
    m = float(d.mean())
    out[key] = dict(mean=m, low=None if half is None else m - half,
                    high=None if half is None else m + half, n=int(d.size),
                    diffs=[float(x) for x in d])
  return out


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
  """Per-run figures and their aggregates over seeds: variants, stages, gamma, train sizes, the
  peers' settings."""
  per_run = {name: run_figures(trained[name]["results"], trained[name].get("workdir"))
             for name in runs}
  keys = sorted({k for row in per_run.values() for k in row})
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
  peer_settings = {f"{v[0]}: {v[1]}": _aggregate([per_run[n] for n in names], keys)
                   for (kind, v), names in groups.items() if kind == "peer_setting"}
  return dict(runs=per_run, variants=variants, gamma=dict(sorted(gamma.items())),
              peer_settings=peer_settings,
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
  if not d:
    return "–"
  scale, unit, digits = (100.0, "", 2) if pct else (1.0, "", 3)
  text = f"{scale * d['mean']:+.{digits}f}"
  if d.get("low") is not None:
    text += f" [{scale * d['low']:+.{digits}f}, {scale * d['high']:+.{digits}f}]"
  return text + unit


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


def markdown(summary: dict, settings: dict, plot_files: Mapping[str, str],
             peer_choice: Mapping[str, Mapping] | None = None,
             comparisons: Mapping[str, Mapping] | None = None) -> str:
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


def run(base: ml_collections.ConfigDict, output, *,
        variants: Mapping[str, Mapping[str, Any]] | None = None, seeds: Sequence[int] = (0, 1, 2),
        stages: Sequence[int] = (), gammas: Sequence[float] = (), sweep_beta: float = 1.0,
        train_sizes: Sequence[int] = (),
        size_variants: Sequence[str] = ("baseline", "ngebm"),
        sweep_seeds: Sequence[int] | None = None,
        peers: Mapping[str, Mapping[str, Mapping[str, Any]]] | None = None,
        peer_sweep_seeds: Sequence[int] | None = None,
        select_on: str = "val_nll") -> dict[str, str]:
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
    peers: the calibration peers' sweeps, family -> setting label -> variant (`PEER_SWEEPS`);
      each setting is trained for `peer_sweep_seeds`, the one with the lowest mean validation
      `select_on` is chosen per family and trained for every seed, as the variant `family`;
      the report then shows NG-EBM minus each peer, paired by seed. None: no peers.
    peer_sweep_seeds: seeds of the peers' sweeps (default: the first seed).
    select_on: the validation figure the peers' settings are chosen on: "val_nll" (default),
      "val_ece" or "val_accuracy".
  """
  variants = dict(DEFAULT_VARIANTS if variants is None else variants)
  output = os.fspath(output)
  runs = plan_runs(base, variants=variants, seeds=seeds, stages=stages, gammas=gammas,
                   sweep_beta=sweep_beta, train_sizes=train_sizes, size_variants=size_variants,
                   sweep_seeds=sweep_seeds)
  peers = dict(peers or {})
  if peers:
    if "ngebm" not in variants:
      raise ValueError("the peers are compared with NG-EBM: keep the 'ngebm' variant.")
    clash = sorted(set(peers) & set(variants))
    if clash:
      raise ValueError(f"peer families {clash} have the names of variants.")
    if not select_on.startswith("val_"):  # before any training
      raise ValueError(f"peers are chosen on a validation figure; got {select_on!r}.")
    plan_peer_sweep(runs, base, peers, seeds[:1] if peer_sweep_seeds is None else
                    peer_sweep_seeds, stages)
  for run_plan in runs.values():  # every run's config checked before the first is trained
    config_validation.validate_config(run_plan["config"])
  trained = train_runs(runs, output)
  peer_choice = {}
  if peers:
    figures = {n: run_figures(trained[n]["results"], trained[n]["workdir"]) for n in runs}
    peer_choice = choose_peers(runs, figures, select_on)
    for family, choice in peer_choice.items():
      print(f"== {family}: {choice['label']} chosen on validation {select_on} "
            f"{choice['validation']}", flush=True)
      for seed in seeds:
        add_run(runs, f"{family}_s{seed}",
                variant_config(base, peers[family][choice["label"]], seed), seed,
                ("variant", family), stages)
    trained.update(train_runs({n: r for n, r in runs.items() if n not in trained}, output))
  summary = summarize(runs, trained)
  comparisons = {}
  if peers:
    keys = [k for k, _, _ in COMPARED]
    best = best_peer(summary, peer_choice)
    for other in ([best] if best else []) + [f for f in peer_choice if f != best] + ["baseline"]:
      if other in summary["variants"]:
        comparisons[f"ngebm − {other}"] = paired_differences(summary["runs"], runs, "ngebm",
                                                             other, keys)
  settings = dict(dataset=base.dataset.name, num_train=base.dataset.num_train,
                  augment=base.dataset.augment,
                  model=f"{base.model.name}(width={base.model.width})", batch_size=base.batch_size,
                  learning_rate=base.optimizer.learning_rate, num_steps=base.num_steps,
                  seeds=list(seeds), sweep_seeds=list(seeds if sweep_seeds is None else
                                                      sweep_seeds),
                  stages=train_and_evaluate.stage_steps(base, stages),
                  gammas=list(gammas), sweep_beta=sweep_beta, train_sizes=list(train_sizes),
                  evaluators=list(base.eval.evaluators))
  plot_files = write_plots(summary, trained, runs, output, sweep_beta=sweep_beta)
  paths = {"report": os.path.join(output, REPORT_FILE),
           "results": os.path.join(output, RESULTS_FILE),
           **{k: os.path.join(output, v) for k, v in plot_files.items()}}
  reporting.write_json(paths["results"], dict(
      settings=settings, variant_settings=variants, peers=peers, peer_choice=peer_choice,
      comparisons=comparisons, **summary,
      run_configs={n: r["config"].to_dict() for n, r in runs.items()},
      roles={n: r["roles"] for n, r in runs.items()}))
  reporting.write_text(paths["report"], markdown(summary, settings, plot_files, peer_choice,
                                                 comparisons))
  print(f"Report: {paths['report']}", flush=True)
  return paths
