r"""Focus losses on the authentic-vs-generated task: train, measure, one report (arXiv 2303.00818).

  python -m experiments.focus --output=runs/focus
  python -m experiments.focus --config=configs/focus_smoke.py --output=/tmp/focus_smoke

Every setting is a field of `config.focus_study` (configs/focus.py; checked by
`config_validation.validate_focus_study` before anything is trained). For every recipe of
`focus_study.recipes` (cross-entropy, CYBORG, entropy-only, blended, ...; each defined in
`focus_study.recipe_settings`), every CAM class (`focus_study.cam_classes`: the class whose CAM
the loss shapes, "predicted" as in CYBORG's training code or "true"; recipes without a CAM term
train once) and every seed of `focus_study.seeds`, trains `OUTPUT/runs/<recipe>[-<cam_class>]_s<seed>`
with `ngebm_jax.workflows.train_and_evaluate.train_and_evaluate` (a finished run is reused, an
interrupted one resumed), then the entropy-weight sweep (`focus_study.entropy_sweep`, first
seed; a sweep point whose config equals a run already made reuses it). A run's config is the
base config with its recipe applied and without the `focus_study` block. Every run gets the same data
(`config.dataset.seed`); seeds change the initialisation and the data order. Then, on the best
checkpoint (by validation accuracy) of each:

- AUROC of the "generated" score `logit_generated - logit_authentic` on the closed-set `test`
  split (artifact kinds seen in training) and on `open_set_test` (kinds never seen), overall and
  per kind (each kind's generated images against all authentic images of the split);
- the classic CAM that the losses shape (`ngebm_jax.focus`): mean spatial entropy in nats of the
  true-class CAM (what the entropy terms minimize), its MSE to the human maps (what CYBORG
  minimizes), and the *artifact hit rate*: the fraction of generated images whose "generated"
  CAM peaks in a cell that overlaps the artifact (cells of the CAM grid; chance is about the
  artifact's share of the image, ~0.25);
- the five salience measures of Explain2Me (`ngebm_jax.salience`, through
  `experiments/salience.py`; Grad-CAM of the predicted class on the first
  `focus_study.num_salience_images` test images), with (d) stability over the seeds of each
  recipe, and (a), (b), (e) under each of `focus_study.salience_variants`
  (`ngebm_jax.salience.variants`; the report lists each variant's options next to its numbers).

Writes into `--output`: `report.md` (`ngebm_jax.evaluation.focus_study_report`: one table per
recipe, the per-run table, the sweep, and the answer to "does lower CAM entropy go with better
open-set AUROC?" as Spearman rank correlations across runs), `results.json` (every number), and
`salience/` (the salience report).
"""

from __future__ import annotations

import os
from typing import Sequence

import ml_collections
import numpy as np
from absl import logging

from ngebm_jax import config_validation
from ngebm_jax import data as data_lib
from ngebm_jax import focus as focus_lib
from ngebm_jax import reporting
from ngebm_jax.evaluation import focus_study_report
from ngebm_jax.evaluation import focus_task as focus_task_eval
from ngebm_jax.training import checkpoints as ckpt_lib
from ngebm_jax.workflows import salience_study
from ngebm_jax.workflows import train_and_evaluate

SPLITS = ("test", "open_set_test")
RESULTS_FILE = focus_study_report.RESULTS_FILE
LEARNED_AUROC = focus_study_report.LEARNED_AUROC
REPORT_FILE = "report.md"


# ------------------------------------------------------------------------------------- runs --

def uses_cam(config: ml_collections.ConfigDict) -> bool:
  """Whether the recipe's loss has a CAM term (so `config.focus.cam_class` changes training)."""
  if config.objective == "cyborg":
    return config.focus.alpha < 1.0
  return config.objective == "focus" and (config.focus.human_weight > 0
                                          or config.focus.entropy_weight > 0)


def apply_recipe(base: ml_collections.ConfigDict, recipe: str) -> ml_collections.ConfigDict:
  """A run's config: a copy of `base` with `base.focus_study.recipe_settings[recipe]` applied
  (its objective and `config.focus` fields), without the `focus_study` block."""
  settings = base.focus_study.recipe_settings
  if recipe not in settings:
    raise ValueError(f"Unknown focus recipe {recipe!r}; choose one of {sorted(settings)}.")
  config = base.copy_and_resolve_references()
  del config["focus_study"]  # the study's, not the run's: runs stay reusable across studies
  config.objective = settings[recipe].objective
  config.focus.update(settings[recipe].focus.to_dict())
  return config


def plan_runs(base: ml_collections.ConfigDict, recipes: Sequence[str], seeds: Sequence[int],
              entropy_sweep: Sequence[float],
              cam_classes: Sequence[str] | None = None) -> dict[str, dict]:
  """name -> {"config", "recipe", "seed", "sweep_weight", "aliases"}; equal configs merge.

  Each recipe's config comes from `apply_recipe` (`base.focus_study.recipe_settings`; unknown
  names raise ValueError).
  `cam_classes` ("predicted", "true"; default: the base config's `focus.cam_class`) are trained
  for every recipe whose loss has a CAM term (`uses_cam`), as recipe `<recipe>-<cam_class>`
  when there are several; a recipe without one (cross-entropy) is trained once, with the first.
  The entropy sweep uses the first.
  """
  if not seeds:
    raise ValueError("Give at least one seed.")
  cam_classes = list(cam_classes or [base.focus.cam_class])
  for c in cam_classes:
    if c not in focus_lib.CAM_CLASSES:
      raise ValueError(f"cam_class must be one of {focus_lib.CAM_CLASSES}; got {c!r}.")
  runs: dict[str, dict] = {}

  def add(name, config, recipe, seed, sweep_weight=None):
    key = config.to_json_best_effort(sort_keys=True)
    for other in runs.values():
      if other["config"].to_json_best_effort(sort_keys=True) == key:
        other["aliases"].append(name)
        if sweep_weight is not None:
          other["sweep_weight"] = sweep_weight
        return
    runs[name] = {"config": config, "recipe": recipe, "seed": seed, "aliases": [],
                  "sweep_weight": sweep_weight}

  for recipe in recipes:
    for cam_class in cam_classes:
      config = apply_recipe(base, recipe)
      config.focus.cam_class = cam_class
      if not uses_cam(config) and cam_class != cam_classes[0]:
        continue  # no CAM term: the CAM's class cannot change training
      label = f"{recipe}-{cam_class}" if len(cam_classes) > 1 and uses_cam(config) else recipe
      for seed in seeds:
        c = config.copy_and_resolve_references()
        c.seed = int(seed)
        add(f"{label}_s{seed}", c, label, int(seed))
  for w in entropy_sweep:
    config = apply_recipe(base, "entropy")
    config.focus.cam_class = cam_classes[0]
    config.focus.entropy_weight = float(w)
    config.seed = int(seeds[0])
    add(f"entropy_w{float(w):g}_s{seeds[0]}", config, f"entropy_w{float(w):g}", int(seeds[0]),
        float(w))
  return runs


def train_runs(runs: dict[str, dict], output: str) -> dict[str, dict]:
  """Trains (or reuses) every run; returns name -> train_and_evaluate's results."""
  results = {}
  for i, (name, run) in enumerate(runs.items()):
    run["workdir"] = os.path.join(output, "runs", name)
    print(f"== [{i + 1}/{len(runs)}] {name} ({run['config'].objective}, "
          f"{run['config'].num_steps} steps) -> {run['workdir']}", flush=True)
    results[name] = train_and_evaluate.train_or_reuse(run["config"], run["workdir"])
  return results


# ------------------------------------------------------------------------------- evaluation --

def evaluate_focus_runs(runs: dict[str, dict]) -> dict[str, dict]:
  """name -> {split -> focus_task evaluation} on each run's best checkpoint."""
  results = {}
  for name, run in runs.items():
    config, fns, params = ckpt_lib.load_run(run["workdir"])
    splits = data_lib.focus_task_splits(config)
    results[name] = {split: focus_task_eval.evaluate_split(fns, params, splits[split],
                                                           batch_size=config.eval.batch_size)
                     for split in SPLITS}
    logging.info("%s: closed-set AUROC %.4f, open-set AUROC %.4f.", name,
                 results[name]["test"]["auroc"], results[name]["open_set_test"]["auroc"])
  return results


def measure_salience(runs: dict[str, dict], output: str, *, num_images: int,
                     variants: Sequence[str] = ("default",)) -> dict:
  """The five measures (the salience-study workflow); returns its salience.json."""
  by_recipe: dict[str, list[str]] = {}
  for run in runs.values():
    if run["sweep_weight"] is None or run["aliases"]:
      by_recipe.setdefault(run["recipe"], []).append(run["workdir"])
  groups = {r: ws for r, ws in by_recipe.items() if len(ws) > 1}
  paths = salience_study.run([r["workdir"] for r in runs.values()], groups,
                             os.path.join(output, "salience"), auto_group=False,
                             num_images=num_images, variants=variants, sigma_factors=(1.0,))
  return reporting.read_json(paths["json"])


# ------------------------------------------------------------------------------- statistics --

def _salience_row(summary: dict) -> dict:
  """(a), (c) and, per salience variant, (a), (b) SSIM at 10% noise and the (e) gap obj - bg."""
  row = {"entropy": summary["entropy"]["mean"],
         "equivariance": summary["equivariance"]["overall"], "variants": {}}
  for name in summary["variants"]:
    oos = summary["out_of_set"][name]
    d = summary["degradation"][name]
    row["variants"][name] = {
        "entropy": summary["entropy"]["by_variant"][name],
        "oos_ssim_0.1": oos["ssim"][oos["amounts"].index(0.1)] if 0.1 in oos["amounts"]
        else np.nan,
        "degradation_gap": d["object"]["score_change"] - d["background"]["score_change"],
        "degradation_ssim_background": d["background"]["ssim"],
        "degradation_ssim_object": d["object"]["ssim"]}
  primary = row["variants"][summary["primary_variant"]]
  row["oos_ssim_0.1"] = primary["oos_ssim_0.1"]
  row["degradation_gap"] = primary["degradation_gap"]
  return row


def spearman(a: Sequence[float], b: Sequence[float]) -> dict:
  from scipy import stats  # pylint: disable=g-import-not-at-top
  a, b = np.asarray(a, float), np.asarray(b, float)
  ok = np.isfinite(a) & np.isfinite(b)
  if ok.sum() < 3 or np.ptp(a[ok]) == 0 or np.ptp(b[ok]) == 0:
    return {"rho": float("nan"), "p_value": float("nan"), "n": int(ok.sum())}
  r = stats.spearmanr(a[ok], b[ok])
  return {"rho": float(r.statistic), "p_value": float(r.pvalue), "n": int(ok.sum())}


def summarize(runs: dict[str, dict], evals: dict, salience: dict | None) -> dict:
  """Per-run rows, per-recipe aggregates, the sweep, and the entropy/open-set correlations."""
  rows = {}
  for name, run in runs.items():
    e = evals[name]
    row = {"recipe": run["recipe"], "seed": run["seed"], "aliases": run["aliases"],
           "objective": run["config"].objective, "focus": run["config"].focus.to_dict(),
           "cam_class": run["config"].focus.cam_class if uses_cam(run["config"]) else None,
           "closed_auroc": e["test"]["auroc"], "open_auroc": e["open_set_test"]["auroc"],
           "cam_entropy": e["test"]["cam_entropy"], "human_mse": e["test"]["human_mse"],
           "hit_closed": e["test"]["artifact_hit_rate"],
           "hit_open": e["open_set_test"]["artifact_hit_rate"],
           "open_per_kind": {k: v["auroc"] for k, v in e["open_set_test"]["per_kind"].items()},
           "closed_per_kind": {k: v["auroc"] for k, v in e["test"]["per_kind"].items()}}
    if salience is not None:
      row["salience"] = _salience_row(salience["models"][name])
    rows[name] = row
  recipes: dict[str, list[str]] = {}
  for name, run in runs.items():
    if run["sweep_weight"] is None or run["aliases"]:
      recipes.setdefault(run["recipe"], []).append(name)
  stability = {}
  if salience is not None:
    stability = {g: r["mean"] for g, r in salience.get("groups", {}).items()}
  sweep = sorted(((run["sweep_weight"], name) for name, run in runs.items()
                  if run["sweep_weight"] is not None))
  names = list(rows)
  learned = [n for n in names if rows[n]["closed_auroc"] >= LEARNED_AUROC]
  pairs = {"cam_entropy_vs_open_auroc": ("cam_entropy", "open_auroc"),
           "cam_entropy_vs_closed_auroc": ("cam_entropy", "closed_auroc")}
  correlations = {}
  for subset, members in (("all runs", names),
                          (f"runs with closed AUROC >= {LEARNED_AUROC}", learned)):
    for key, (a, b) in pairs.items():
      correlations[f"{key} ({subset})"] = spearman([rows[n][a] for n in members],
                                                   [rows[n][b] for n in members])
    if salience is not None:
      correlations[f"salience_entropy_vs_open_auroc ({subset})"] = spearman(
          [rows[n]["salience"]["entropy"] for n in members],
          [rows[n]["open_auroc"] for n in members])
  chance = float(np.mean([evals[n]["test"]["artifact_cell_share"] for n in names]))
  variants = {}
  if salience is not None:
    first = next(iter(salience["models"].values()))
    order = salience["settings"]["variants"]  # (the JSON file sorts the keys of its objects)
    variants = {"primary": first["primary_variant"],
                "options": {v: first["variants"][v] for v in order}}
  return {"runs": rows, "recipes": recipes, "stability": stability,
          "salience_variants": variants,
          "sweep": [{"entropy_weight": w, "run": n} for w, n in sweep],
          "correlations": correlations, "hit_rate_chance": chance}


def run(base: ml_collections.ConfigDict, output) -> dict[str, str]:
  """Trains, evaluates and reports the study of `base.focus_study`; returns the paths of
  `report.md` and `results.json`.

  Args:
    base: the focus config every run starts from (configs/focus.py), command-line overrides
      included; `config.dataset.name` must be "focus_task". Its `focus_study` block names the
      recipes, seeds, entropy sweep, CAM classes (empty: `base.focus.cam_class`; see
      `plan_runs`) and the salience measures (`salience`, `salience_variants`: the first fills
      the recipe table, every one gets a row in the variants table; `num_salience_images`).
    output: folder for the runs (`runs/<name>`), the salience report and the study's report.
  """
  config_validation.validate_focus_study(base)
  if base.dataset.name != "focus_task":
    raise ValueError(f"the focus study needs config.dataset.name='focus_task' (the task with "
                     f"human maps and artifact kinds); got {base.dataset.name!r}.")
  study = base.focus_study
  recipes, seeds = list(study.recipes), [int(s) for s in study.seeds]
  entropy_sweep = [float(w) for w in study.entropy_sweep]
  cam_classes = list(study.cam_classes) or [base.focus.cam_class]
  salience_variants = list(study.salience_variants)
  output = os.fspath(output)
  runs = plan_runs(base, recipes, seeds, entropy_sweep, cam_classes)
  for run_plan in runs.values():  # every run's config checked before the first is trained
    config_validation.validate_config(run_plan["config"])
  train_results = train_runs(runs, output)
  evals = evaluate_focus_runs(runs)
  salience_json = (measure_salience(runs, output, num_images=study.num_salience_images,
                                    variants=salience_variants) if study.salience else None)
  summary = summarize(runs, evals, salience_json)
  settings = {"recipes": recipes, "seeds": seeds, "entropy_sweep": entropy_sweep,
              "cam_classes": cam_classes,
              "salience_variants": salience_variants if study.salience else [],
              "num_steps": base.num_steps,
              "model": f"{base.model.name}(width={base.model.width})",
              "num_train": base.dataset.num_train, "strength": base.dataset.strength}
  paths = {"report": os.path.join(output, REPORT_FILE),
           "results": os.path.join(output, RESULTS_FILE)}
  reporting.write_json(paths["results"], {"settings": settings, **summary, "evaluation": evals,
                                          "train_results": train_results})
  reporting.write_text(paths["report"], focus_study_report.markdown(summary, settings))
  print(f"Report: {paths['report']}", flush=True)
  return paths
