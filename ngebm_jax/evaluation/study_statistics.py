"""Statistics of a study over seeds: a run's flat figures, mean ± sd, paired differences.

A study (`ngebm_jax.workflows.calibration_study`) trains each variant for several seeds and
reads every run's `results.json`. This module turns those into numbers and nothing else (no
files, no plots):

- `run_figures`: the flat figures of one run's best checkpoint (calibration before and after
  temperature scaling, OOD detection per set and score, robustness per norm);
- `mean_sd` / `aggregate`: mean and sample standard deviation over seeds;
- `paired_differences`: one variant minus another, paired by seed, with a two-sided 95%
  Student-t interval over the seeds' differences (the seeds share data, initialization and
  batches between variants, so the pairing removes what they have in common);
- `summarize`: the aggregates per variant, gamma, training-set size, stage and peer setting.

A plan's runs are `name -> {"seed", "roles": [(kind, value), ...], ...}`; the roles say what a
run stands for: `("variant", name)`, `("gamma", g)`, `("train_size", (variant, n))`,
`("peer_setting", (family, label))`.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

# The figures of a run's calibration evaluation that the tables show (fractions; NLL in nats).
FIGURES = ("accuracy", "ece", "ece_paper", "confidence_gap", "nll", "brier")
ROBUSTNESS_NORMS = ("linf", "l2")
CONFIDENCE = 0.95


def ood_key(metric: str, score: str, ood_set: str) -> str:
  """The flat key of an OOD figure of one set: `ood_auroc_max_softmax@uniform`."""
  return f"ood_{metric}_{score}@{ood_set}"


def robust_at_key(norm: str, epsilon: float) -> str:
  """The flat key of the accuracy at one epsilon (pixel units): `robust_linf_at_0.031373`."""
  return f"robust_{norm}_at_{epsilon:.6g}"


def run_figures(results: Mapping) -> dict[str, Any]:
  """The flat figures of one run's best checkpoint (`results.json` of `train_and_evaluate`).

  Calibration: `x` before and `x_ts` after temperature scaling for `FIGURES`, `temperature`,
  `best_step`. With the ood evaluator: `ood_auroc_<score>` (mean AUROC over the OOD sets) and,
  per set, `ood_key("auroc" | "fpr95", score, set)`. With the robustness evaluator, per norm:
  `robust_<norm>` (accuracy at the smallest epsilon > 0, `robust_<norm>_epsilon`), the accuracy
  at every epsilon (`robust_at_key`) and, under the paper protocol, `robust_<norm>_median_epsilon`
  (the median smallest successful epsilon of the images the attack fooled).
  """
  cal = results["evaluation"]["calibration"]
  row = {k: cal[k] for k in FIGURES}
  row.update({f"{k}_ts": cal[f"{k}_ts"] for k in FIGURES if k != "accuracy"})
  row.update(accuracy_ts=cal["accuracy"], temperature=cal["temperature"],
             best_step=results.get("best_step"))
  evaluation = results["evaluation"]
  metrics = evaluation.get("ood", {}).get("metrics", {})
  for score in sorted({s for by_score in metrics.values() for s in by_score}):
    row[f"ood_auroc_{score}"] = float(np.mean([m[score]["auroc"] for m in metrics.values()
                                               if score in m]))
  for ood_set, by_score in metrics.items():
    for score, m in by_score.items():
      row[ood_key("auroc", score, ood_set)] = m["auroc"]
      row[ood_key("fpr95", score, ood_set)] = m["fpr_at_95_tpr"]
  for norm in ROBUSTNESS_NORMS:
    curve = evaluation.get("robustness", {}).get(norm)
    if curve:
      i = next((j for j, e in enumerate(curve["epsilons"]) if e > 0), None)
      row[f"robust_{norm}"] = None if i is None else curve["accuracy"][i]
      row[f"robust_{norm}_epsilon"] = None if i is None else curve["epsilons"][i]
      for eps, acc in zip(curve["epsilons"], curve["accuracy"]):
        if eps > 0:
          row[robust_at_key(norm, eps)] = acc
      if "median_minimal_epsilon" in curve:
        row[f"robust_{norm}_median_epsilon"] = curve["median_minimal_epsilon"]
  return row


def mean_sd(values: Sequence[float | None]) -> tuple[float | None, float | None, int]:
  """`(mean, sample sd, n)` of the finite values; sd is None for fewer than two."""
  v = np.asarray([x for x in values if x is not None and np.isfinite(x)], float)
  if not v.size:
    return None, None, 0
  return float(v.mean()), (float(v.std(ddof=1)) if v.size > 1 else None), int(v.size)


def aggregate(rows: Sequence[Mapping[str, Any]], keys: Sequence[str]) -> dict[str, dict]:
  """key -> {"mean", "sd", "n"} over `rows` (one per seed)."""
  out = {}
  for k in keys:
    m, sd, n = mean_sd([r.get(k) for r in rows])
    out[k] = dict(mean=m, sd=sd, n=n)
  return out


def t_interval(diffs: Sequence[float]) -> dict[str, Any]:
  """{"mean", "low", "high", "n", "diffs"}: the mean of `diffs` and its two-sided 95% Student-t
  interval (`low`, `high` None for a single value)."""
  from scipy import stats  # pylint: disable=g-import-not-at-top
  d = np.asarray(diffs, float)
  half = (float(stats.t.ppf(0.5 + CONFIDENCE / 2, d.size - 1) * d.std(ddof=1) / np.sqrt(d.size))
          if d.size > 1 else None)
  m = float(d.mean())
  return dict(mean=m, low=None if half is None else m - half,
              high=None if half is None else m + half, n=int(d.size),
              diffs=[float(x) for x in d])


def variant_runs(runs: Mapping[str, Mapping], variant: str) -> dict[int, str]:
  """seed -> name of the run that stands for `variant` with that seed."""
  return {int(run["seed"]): name for name, run in runs.items()
          if any(kind == "variant" and value == variant for kind, value in run["roles"])}


def paired_differences(per_run: Mapping[str, Mapping], runs: Mapping[str, Mapping], first: str,
                       second: str, keys: Sequence[str]) -> dict[str, dict]:
  """`first` minus `second` (variant names), paired by seed: key -> `t_interval` of the
  seeds' differences; keys that neither pair measured are left out."""
  a, b = variant_runs(runs, first), variant_runs(runs, second)
  seeds = sorted(set(a) & set(b))
  out = {}
  for key in keys:
    diffs = [per_run[a[s]][key] - per_run[b[s]][key] for s in seeds
             if per_run[a[s]].get(key) is not None and per_run[b[s]].get(key) is not None]
    if diffs:
      out[key] = t_interval(diffs)
  return out


STAGE_TEST_FIGURES = ("accuracy", "ece", "ece_paper", "confidence_gap", "nll", "ece_ts",
                      "temperature")


def aggregate_stages(runs_records: Sequence[Sequence[Mapping]]) -> dict[int, dict]:
  """step -> mean ± sd over runs (seeds) of the stage records' figures (`StageEvaluator`):
  `test_<figure>` and `train_accuracy`, `train_mean_confidence`."""
  by_step: dict[int, list[dict]] = {}
  for records in runs_records:
    for rec in records:
      flat = {f"test_{k}": rec["test"][k] for k in STAGE_TEST_FIGURES}
      flat.update({f"train_{k}": rec["train"][k] for k in ("accuracy", "mean_confidence")})
      by_step.setdefault(int(rec["step"]), []).append(flat)
  return {step: aggregate(rows, list(rows[0])) for step, rows in sorted(by_step.items())}


def summarize(runs: Mapping[str, dict], per_run: Mapping[str, Mapping],
              stage_records: Mapping[str, Sequence[Mapping]]) -> dict:
  """The per-run figures and their aggregates over seeds: variants, stages, gamma, training-set
  sizes, the peers' settings.

  Args:
    runs: the plan (name -> {"seed", "roles", ...}).
    per_run: name -> flat figures (`run_figures`, plus what the workflow adds).
    stage_records: name -> the run's stage records (`train_and_evaluate.train_in_stages`).
  """
  per_run = {name: dict(per_run[name]) for name in runs}
  keys = sorted({k for row in per_run.values() for k in row})
  groups: dict[tuple, list[str]] = {}
  for name, run in runs.items():
    for role in run["roles"]:
      groups.setdefault(tuple(role), []).append(name)

  def agg(names):
    return aggregate([per_run[n] for n in names], keys)

  variants = {v: agg(names) for (kind, v), names in groups.items() if kind == "variant"}
  gamma = {g: agg(names) for (kind, g), names in groups.items() if kind == "gamma"}
  sizes = {f"{value[0]} @ {value[1]}": agg(names) for (kind, value), names in groups.items()
           if kind == "train_size"}
  stages = {v: aggregate_stages([stage_records[n] for n in names])
            for (kind, v), names in groups.items() if kind == "variant"}
  peer_settings = {f"{v[0]}: {v[1]}": agg(names)
                   for (kind, v), names in groups.items() if kind == "peer_setting"}
  return dict(runs=per_run, variants=variants, gamma=dict(sorted(gamma.items())),
              peer_settings=peer_settings, train_sizes=sizes, stages=stages,
              members={f"{k[0]}:{k[1]}": names for k, names in groups.items()})


__all__ = ["FIGURES", "ROBUSTNESS_NORMS", "ood_key", "robust_at_key", "run_figures", "mean_sd",
           "aggregate", "t_interval", "variant_runs", "paired_differences", "aggregate_stages",
           "summarize"]
