"""The claims study: its plan, its paired differences and its verdicts, checked by hand."""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest

from configs import claims_study
from configs import claims_study_smoke
from ngebm_jax.evaluation import claims_report
from ngebm_jax.evaluation import study_statistics
from ngebm_jax.workflows import calibration_study
from tests.readme_test import downloads, shared_outputs  # pylint: disable=unused-import (fixtures)

SMOKE_COMMAND = ("python", "-m", "experiments.calibration_study",
                 "--config=configs/claims_study_smoke.py", "--output=runs/claims_smoke")

# Student-t quantiles t(0.975, dof), from a printed table: what the intervals must use.
T_975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776}


def test_the_plan_holds_the_variants_asked_for():
  config = claims_study.get_config()
  runs = calibration_study.plan_runs(config)
  variants = ("baseline", "ngebm", "gamma_only", "beta_only", "sgld", "ngebm_pf0.25",
              "ngebm_pf0.5")
  seeds = (0, 1, 2)
  assert sorted(runs) == sorted(f"{v}_s{s}" for v in variants for s in seeds)
  for seed in seeds:
    c = {v: runs[f"{v}_s{seed}"]["config"] for v in variants}
    assert all(x.seed == seed and "study" not in x for x in c.values())
    assert c["baseline"].objective == "baseline"
    assert (c["ngebm"].objective, c["ngebm"].ngebm.beta, c["ngebm"].ngebm.gamma,
            c["ngebm"].ngebm.penalty_fraction) == ("ngebm", 1.0, 1.0, 1.0)
    assert (c["gamma_only"].ngebm.beta, c["gamma_only"].ngebm.gamma) == (0.0, 1.0)
    assert (c["beta_only"].ngebm.beta, c["beta_only"].ngebm.gamma) == (1.0, 0.0)
    assert c["sgld"].objective == "sgld" and c["sgld"].sgld.num_steps == 5
    assert c["sgld"].sgld.energy_l2 > 0
    for f in (0.25, 0.5):
      pf = c[f"ngebm_pf{f:g}"]
      assert (pf.objective, pf.ngebm.beta, pf.ngebm.gamma, pf.ngebm.penalty_fraction) == (
          "ngebm", 1.0, 1.0, f)
    # Only the objective differs between the variants of a seed: same model, data and steps.
    for x in c.values():
      assert (x.model.width, x.dataset.num_train, x.dataset.augment, x.batch_size,
              x.optimizer.learning_rate, x.num_steps) == (16, 250, False, 32, 2e-3, 1000)
  e = config.eval
  assert set(e.evaluators) == {"classification", "calibration", "ood", "robustness"}
  assert set(e.ood_scores) == {"log_density", "max_softmax", "approximate_mass"}
  assert e.robustness_protocol == "paper" and e.robustness_num_examples == 100
  assert e.max_examples == 1000 and config.study.claims
  assert all(run["stages"] == [] for run in runs.values())


def _interval_by_hand(diffs):
  n = len(diffs)
  mean = sum(diffs) / n
  sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (n - 1))
  half = T_975[n - 1] * sd / math.sqrt(n)
  return mean, mean - half, mean + half


def test_paired_differences_against_a_hand_computation():
  ece = {"baseline": {0: 0.40, 1: 0.45, 2: 0.38, 3: 0.41},
         "ngebm": {0: 0.15, 1: 0.22, 2: 0.16, 3: 0.12}}
  per_run, runs = {}, {}
  for variant, by_seed in ece.items():
    for seed, value in by_seed.items():
      per_run[f"{variant}_s{seed}"] = dict(ece=value, auroc=0.5 + 0.01 * seed)
      runs[f"{variant}_s{seed}"] = dict(seed=seed, roles=[("variant", variant)])
  per_run["ngebm_s3"]["auroc"] = None  # not measured for one seed: that pair is left out
  d = study_statistics.paired_differences(per_run, runs, "ngebm", "baseline", ["ece", "auroc"])
  diffs = [-0.25, -0.23, -0.22, -0.29]
  mean, low, high = _interval_by_hand(diffs)
  assert d["ece"]["n"] == 4 and d["ece"]["diffs"] == pytest.approx(diffs)
  assert (d["ece"]["mean"], d["ece"]["low"], d["ece"]["high"]) == (
      pytest.approx(mean), pytest.approx(low, abs=2e-5), pytest.approx(high, abs=2e-5))
  assert d["auroc"]["n"] == 3 and d["auroc"]["diffs"] == pytest.approx([0.0, 0.0, 0.0])
  assert claims_report.verdict(d["ece"], higher_is_better=False) == claims_report.HOLDS
  assert claims_report.verdict(d["ece"], higher_is_better=True) == claims_report.REVERSED
  assert claims_report.verdict(dict(mean=0.1, low=-0.1, high=0.3), True) == "unresolved"
  assert claims_report.verdict(dict(mean=0.1, low=None, high=None), True) == "not measured"


def _slow_verdicts(results: dict) -> dict[tuple[str, str], str]:
  """(variant, figure key) -> verdict, recomputed from results.json's per-run figures."""
  runs, roles = results["runs"], results["roles"]
  by_variant: dict[str, dict[int, str]] = {}
  for name, run_roles in roles.items():
    for kind, value in run_roles:
      if kind == "variant":
        seed = results["run_configs"][name]["seed"]
        by_variant.setdefault(value, {})[seed] = name
  lower_is_better = ("ece", "ece_paper", "nll")
  out = {}
  for variant, by_seed in by_variant.items():
    if variant == "baseline":
      continue
    for key in runs[by_seed[0]]:
      claimed = (key in lower_is_better or key.startswith("ood_auroc_") and "@" in key
                 or key.startswith("ood_fpr95_") or key.startswith("robust_")
                 and (key.endswith("_median_epsilon") or "_at_" in key))
      if not claimed:
        continue
      higher = not (key in lower_is_better or key.startswith("ood_fpr95_"))
      diffs = [runs[by_seed[s]][key] - runs[by_variant["baseline"][s]][key]
               for s in sorted(by_seed) if runs[by_seed[s]].get(key) is not None
               and runs[by_variant["baseline"][s]].get(key) is not None]
      if len(diffs) < 2:
        out[(variant, key)] = "not measured"
        continue
      _, low, high = _interval_by_hand(diffs)
      if low > 1e-4 or high < -1e-4:  # clear of the tolerance of the table's t quantiles
        better = (low > 0) == higher
        out[(variant, key)] = "holds" if better else "reversed"
      elif low < -1e-4 and high > 1e-4:
        out[(variant, key)] = "unresolved"
  return out


def test_claims_study_end_to_end_verdicts_match_a_slow_recomputation(shared_outputs):
  # configs/claims_study_smoke.py's command as typed, which the README test runs once per session.
  out = os.path.join(shared_outputs(SMOKE_COMMAND), "runs", "claims_smoke")
  paths = {k: os.path.join(out, name) for k, name in (
      ("results", calibration_study.RESULTS_FILE), ("report", calibration_study.REPORT_FILE),
      ("cost_benefit", "cost_benefit.png"))}
  with open(paths["results"]) as f:
    results = json.load(f)
  assert results["study"]["seeds"] == list(claims_study_smoke.get_config().study.seeds)
  assert set(results["variants"]) == {"baseline", "ngebm", "ngebm_pf0.5"}
  one = results["runs"]["ngebm_s0"]
  for ood_set in ("uniform", "constant", "interp", "digits", "shifted"):
    for score in ("log_density", "max_softmax", "approximate_mass"):
      assert 0 <= one[f"ood_auroc_{score}@{ood_set}"] <= 1
      assert 0 <= one[f"ood_fpr95_{score}@{ood_set}"] <= 1
  assert one[study_statistics.robust_at_key("linf", 8 / 255)] is not None
  assert one["robust_linf_median_epsilon"] is None or one["robust_linf_median_epsilon"] > 0
  assert one["train_seconds"] > 0
  slow = _slow_verdicts(results)
  assert len(slow) > 20
  with open(paths["report"]) as f:
    md = f.read()
  assert "## NG-EBM's claims, variant by variant against the baseline" in md
  figures = {f.key: f for f in claims_report.figures_of(results)}
  for (variant, key), expected in slow.items():
    found = claims_report.verdict(results["claims"][variant].get(key),
                                  figures[key].higher_is_better)
    assert found == expected, (variant, key, results["claims"][variant].get(key))
    # The report's row of this figure carries the same verdict in the variant's column.
    row = next(line for line in md.splitlines()
               if line.startswith(f"| {figures[key].label.replace('|', chr(92) + '|')} |"))
    column = list(results["claims"]).index(variant)
    assert f"**{expected}**" in row.split(" | ")[2 + column], (row, variant)
  assert os.path.getsize(paths["cost_benefit"]) > 1000
  assert "training s per run" in md and "The cheaper NG-EBM" in md
  with open(os.path.join(out, calibration_study.SEPARABILITY_FILE)) as f:
    separability = json.load(f)
  assert set(separability) == {"interp", "uniform", "constant", "digits", "shifted"}
  for ood_set, r in separability.items():
    assert f"- {ood_set} (" in md and r["kind"] in ("far", "near", "unconfirmed")
