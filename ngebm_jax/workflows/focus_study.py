r"""Focus losses on the authentic-vs-generated task: train, measure, one report (arXiv 2303.00818).

  python -m experiments.focus --output=runs/focus
  python -m experiments.focus --config=configs/focus_smoke.py --output=/tmp/focus_smoke \
      --recipes=ce,cyborg --seeds=0,1 --entropy_sweep= --num_salience_images=32

For every recipe of the config file (`RECIPES` of configs/focus.py: cross-entropy, CYBORG,
entropy-only, blended, ...), every CAM class (`cam_classes`: the class whose CAM the loss shapes,
"predicted" as in CYBORG's training code or "true"; recipes without a CAM term train once) and every
seed, trains `OUTPUT/runs/<recipe>[-<cam_class>]_s<seed>` with
`ngebm_jax.workflows.train_and_evaluate.train_and_evaluate` (a finished run is reused, an
interrupted one resumed), then the entropy-weight sweep (`ENTROPY_SWEEP`, seed 0; a sweep point
whose config equals a run already made reuses it). Every run gets the same data
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
  `--num_salience_images` test images), with (d) stability over the seeds of each recipe, and
  (a), (b), (e) under each of `salience_variants` (`ngebm_jax.salience.variants`; the report lists
  each variant's options next to its numbers).

Writes into `--output`: `report.md` (one table per recipe, the per-run table, the sweep, and the
answer to "does lower CAM entropy go with better open-set AUROC?" as Spearman rank correlations
across runs), `results.json` (every number), and `salience/` (the salience report).
"""

from __future__ import annotations

import os
from typing import Callable, Sequence

import ml_collections
import numpy as np
from absl import logging

from ngebm_jax import config_validation
from ngebm_jax import data as data_lib
from ngebm_jax import focus as focus_lib
from ngebm_jax import reporting
from ngebm_jax.evaluation import focus_task as focus_task_eval
from ngebm_jax.training import checkpoints as ckpt_lib
from ngebm_jax.workflows import salience_study
from ngebm_jax.workflows import train_and_evaluate

ApplyRecipe = Callable[[ml_collections.ConfigDict, str], ml_collections.ConfigDict]

SPLITS = ("test", "open_set_test")
RESULTS_FILE = "results.json"
LEARNED_AUROC = 0.8  # runs below this closed-set AUROC count as not having learned the task
REPORT_FILE = "report.md"


# ------------------------------------------------------------------------------------- runs --

def uses_cam(config: ml_collections.ConfigDict) -> bool:
  """Whether the recipe's loss has a CAM term (so `config.focus.cam_class` changes training)."""
  if config.objective == "cyborg":
    return config.focus.alpha < 1.0
  return config.objective == "focus" and (config.focus.human_weight > 0
                                          or config.focus.entropy_weight > 0)


def plan_runs(base: ml_collections.ConfigDict, apply_recipe: ApplyRecipe,
              recipes: Sequence[str], seeds: Sequence[int],
              entropy_sweep: Sequence[float],
              cam_classes: Sequence[str] | None = None) -> dict[str, dict]:
  """name -> {"config", "recipe", "seed", "sweep_weight", "aliases"}; equal configs merge.

  `apply_recipe(config, name)` sets the objective and focus fields of recipe `name` (the
  config file's `apply_recipe`, e.g. configs/focus.py) and raises ValueError for unknown names.
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
      config = apply_recipe(base.copy_and_resolve_references(), recipe)
      config.focus.cam_class = cam_class
      if not uses_cam(config) and cam_class != cam_classes[0]:
        continue  # no CAM term: the CAM's class cannot change training
      label = f"{recipe}-{cam_class}" if len(cam_classes) > 1 and uses_cam(config) else recipe
      for seed in seeds:
        c = config.copy_and_resolve_references()
        c.seed = int(seed)
        add(f"{label}_s{seed}", c, label, int(seed))
  for w in entropy_sweep:
    config = apply_recipe(base.copy_and_resolve_references(), "entropy")
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


# ----------------------------------------------------------------------------------- report --

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


def _mean_std(values: Sequence[float]) -> str:
  v = np.asarray([x for x in values if np.isfinite(x)], float)
  if not v.size:
    return "-"
  return f"{v.mean():.3f}" if v.size == 1 else f"{v.mean():.3f} ± {v.std(ddof=1):.3f}"


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


def _markdown(summary: dict, settings: dict) -> str:
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
  variants = summary.get("salience_variants") or {}
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


def run(base: ml_collections.ConfigDict, apply_recipe: ApplyRecipe, output, *,
        recipes: Sequence[str], seeds: Sequence[int], entropy_sweep: Sequence[float],
        cam_classes: Sequence[str] | None = None, salience: bool = True,
        num_salience_images: int = 500,
        salience_variants: Sequence[str] = ("default",)) -> dict[str, str]:
  """Trains, evaluates and reports; returns the paths of `report.md` and `results.json`.

  Args:
    base: the focus config every run starts from (configs/focus.py), command-line overrides
      included; `config.dataset.name` must be "focus_task".
    apply_recipe: sets a recipe's objective and focus fields (see `plan_runs`).
    output: folder for the runs (`runs/<name>`), the salience report and the study's report.
    recipes: recipe names; seeds: seeds of each; entropy_sweep: entropy weights (first seed).
    cam_classes: the CAM classes to train recipes with a CAM term with ("predicted", "true");
      default: `base.focus.cam_class` (see `plan_runs`).
    salience: also run the five salience measures.
    num_salience_images: test images per run for the salience measures.
    salience_variants: variants of salience measures (b) and (e) (`salience.variants`); the
      first fills the recipe table, every one gets a row in the variants table.
  """
  if base.dataset.name != "focus_task":
    raise ValueError(f"the focus study needs config.dataset.name='focus_task' (the task with "
                     f"human maps and artifact kinds); got {base.dataset.name!r}.")
  output = os.fspath(output)
  runs = plan_runs(base, apply_recipe, recipes, seeds, entropy_sweep, cam_classes)
  for run_plan in runs.values():  # every run's config checked before the first is trained
    config_validation.validate_config(run_plan["config"])
  train_results = train_runs(runs, output)
  evals = evaluate_focus_runs(runs)
  salience_json = (measure_salience(runs, output, num_images=num_salience_images,
                                    variants=salience_variants) if salience else None)
  summary = summarize(runs, evals, salience_json)
  settings = {"recipes": list(recipes), "seeds": list(seeds),
              "entropy_sweep": list(entropy_sweep),
              "cam_classes": list(cam_classes or [base.focus.cam_class]),
              "salience_variants": list(salience_variants) if salience else [],
              "num_steps": base.num_steps,
              "model": f"{base.model.name}(width={base.model.width})",
              "num_train": base.dataset.num_train, "strength": base.dataset.strength}
  paths = {"report": os.path.join(output, REPORT_FILE),
           "results": os.path.join(output, RESULTS_FILE)}
  reporting.write_json(paths["results"], {"settings": settings, **summary, "evaluation": evals,
                                          "train_results": train_results})
  reporting.write_text(paths["report"], _markdown(summary, settings))
  print(f"Report: {paths['report']}", flush=True)
  return paths
