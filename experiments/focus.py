r"""Focus losses on the authentic-vs-generated task: train, measure, and one report (FOCUS.md).

  python -m experiments.focus --output=runs/focus
  python -m experiments.focus --config=configs/focus_smoke.py --output=/tmp/focus_smoke \
      --recipes=ce,cyborg --seeds=0,1 --entropy_sweep= --num_salience_images=32

For every recipe of the config file (`RECIPES` of configs/focus.py: cross-entropy, CYBORG,
entropy-only, blended, ...) and every seed, trains `OUTPUT/runs/<recipe>_s<seed>` with
`ngebm_jax.experiment.train_and_evaluate` (a finished run is reused, an interrupted one resumed),
then the entropy-weight sweep (`ENTROPY_SWEEP`, seed 0; a sweep point whose config equals a run
already made reuses it). Every run gets the same data (`config.dataset.seed`); seeds change the
initialisation and the data order. Then, on the best checkpoint (by validation accuracy) of each:

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
  `--num_salience_images` test images), with (d) stability over the seeds of each recipe.

Writes into `--output`: `report.md` (one table per recipe, the per-run table, the sweep, and the
answer to "does lower CAM entropy go with better open-set AUROC?" as Spearman rank correlations
across runs), `results.json` (every number), and `salience/` (the salience report).
"""

from __future__ import annotations

import functools
import json
import os
import sys
import time
from typing import Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from ngebm_jax import experiment
from ngebm_jax import focus
from ngebm_jax.data import focus_task
from ngebm_jax.training import checkpoints as ckpt_lib
from ngebm_jax.training import logging_utils
from ngebm_jax.training import loop
from ngebm_jax.training import objectives

_DEFAULT_CONFIG = os.path.join(os.path.dirname(__file__), "..", "configs", "focus.py")
# Own FlagValues: importing this module (tests) defines no global flags that could clash.
FLAGS = flags.FlagValues()
_CONFIG = config_flags.DEFINE_config_file(
    "config", _DEFAULT_CONFIG, "Focus config file (configs/focus.py or a variant of it); "
    "--config.x=y overrides apply to every run.", lock_config=False, flag_values=FLAGS)
_OUTPUT = flags.DEFINE_string("output", None, "Folder for the runs and the report.",
                              flag_values=FLAGS)
_RECIPES = flags.DEFINE_list("recipes", ["ce", "cyborg", "entropy", "blend"],
                             "Recipes of the config file's RECIPES to train.", flag_values=FLAGS)
_SEEDS = flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds of every recipe (stability needs 2+).",
                           flag_values=FLAGS)
_ENTROPY_SWEEP = flags.DEFINE_list(
    "entropy_sweep", None, "Entropy weights of the sweep (recipe 'entropy', first seed); default: "
    "the config file's ENTROPY_SWEEP; empty: no sweep.", flag_values=FLAGS)
_SALIENCE = flags.DEFINE_bool("salience", True, "Run the five salience measures.",
                              flag_values=FLAGS)
_NUM_SALIENCE_IMAGES = flags.DEFINE_integer(
    "num_salience_images", 500, "Test images per run for the salience measures.",
    flag_values=FLAGS)
flags.mark_flags_as_required(["output"], flag_values=FLAGS)

SPLITS = ("test", "open_set_test")
RESULTS_FILE = "results.json"
LEARNED_AUROC = 0.8  # runs below this closed-set AUROC count as not having learned the task
REPORT_FILE = "report.md"


# ------------------------------------------------------------------------------------- runs --

def _config_module(path: str):
  """The config file as a module (for its RECIPES, ENTROPY_SWEEP and apply_recipe)."""
  import importlib.util  # pylint: disable=g-import-not-at-top
  path = path.split(":", 1)[0]
  spec = importlib.util.spec_from_file_location("_focus_config", path)
  module = importlib.util.module_from_spec(spec)
  repo = os.path.abspath(os.path.join(os.path.dirname(path), ".."))
  if repo not in sys.path:  # the config files import `configs.default`
    sys.path.insert(0, repo)
  spec.loader.exec_module(module)
  for name in ("RECIPES", "apply_recipe"):
    if not hasattr(module, name):
      raise ValueError(f"{path} has no {name}: pass configs/focus.py or a variant of it.")
  return module


def plan_runs(base: ml_collections.ConfigDict, module, recipes: Sequence[str],
              seeds: Sequence[int], entropy_sweep: Sequence[float]) -> dict[str, dict]:
  """name -> {"config", "recipe", "seed", "sweep_weight", "aliases"}; equal configs merge."""
  unknown = [r for r in recipes if r not in module.RECIPES]
  if unknown:
    raise ValueError(f"Unknown recipes {unknown}; the config file has {sorted(module.RECIPES)}.")
  if not seeds:
    raise ValueError("Give at least one seed.")
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
    for seed in seeds:
      config = module.apply_recipe(base.copy_and_resolve_references(), recipe)
      config.seed = int(seed)
      add(f"{recipe}_s{seed}", config, recipe, int(seed))
  for w in entropy_sweep:
    config = module.apply_recipe(base.copy_and_resolve_references(), "entropy")
    config.focus.entropy_weight = float(w)
    config.seed = int(seeds[0])
    add(f"entropy_w{float(w):g}_s{seeds[0]}", config, f"entropy_w{float(w):g}", int(seeds[0]),
        float(w))
  return runs


def train_runs(runs: dict[str, dict], output: str) -> dict[str, dict]:
  """Trains (or reuses) every run; returns name -> train_and_evaluate's results."""
  results = {}
  for i, (name, run) in enumerate(runs.items()):
    workdir = os.path.join(output, "runs", name)
    run["workdir"] = workdir
    done = os.path.join(workdir, experiment.RESULTS_FILE)
    if os.path.exists(done):
      diffs = ckpt_lib.config_differences(ckpt_lib.load_config(workdir), run["config"],
                                          ignore=loop.RESUMABLE_FIELDS)
      if diffs:
        raise ValueError(f"{workdir} holds a finished run of another config; fields that "
                         "differ:\n  " + "\n  ".join(diffs) + "\nUse another --output.")
      with open(done) as f:
        results[name] = json.load(f)
      logging.info("Run %s is finished; reusing %s.", name, workdir)
      continue
    start = time.time()
    print(f"== [{i + 1}/{len(runs)}] training {name} ({run['config'].objective}, "
          f"{run['config'].num_steps} steps) -> {workdir}", flush=True)
    results[name] = experiment.train_and_evaluate(run["config"], workdir)
    if results[name].get("preempted"):
      raise SystemExit(f"Training of {name} was interrupted; run the same command to resume.")
    logging.info("%s trained in %.0f s.", name, time.time() - start)
  return results


# ------------------------------------------------------------------------------- evaluation --

def auroc(labels: np.ndarray, scores: np.ndarray) -> float:
  """Area under the ROC curve of `scores` for `labels == 1` (ties count one half)."""
  from sklearn.metrics import roc_auc_score  # pylint: disable=g-import-not-at-top
  labels = np.asarray(labels)
  if labels.min() == labels.max():
    return float("nan")
  return float(roc_auc_score(labels, scores))


def _cell_masks(masks: np.ndarray, size: tuple[int, int]) -> np.ndarray:
  """`[N, H, W]` 0/1 pixel masks -> `[N, h, w]` bool: does a CAM cell overlap the mask."""
  n, hh, ww = masks.shape
  h, w = size
  if hh % h or ww % w:
    raise ValueError(f"the image size {(hh, ww)} is not a multiple of the CAM size {size}.")
  return masks.reshape(n, h, hh // h, w, ww // w).max(axis=(2, 4)) > 0


@functools.lru_cache(maxsize=8)
def _cam_fn(model_fns):
  @jax.jit
  def fn(params, x, labels, human_maps):
    features = model_fns.features_fn(params, x)
    logits = model_fns.head_fn(params, features)
    kernel = model_fns.head_kernel(params)
    cam_true = focus.class_activation_map(features, kernel, labels)
    cam_generated = focus.class_activation_map(features, kernel, jnp.ones_like(labels))
    return (logits, focus.spatial_entropy(cam_true),
            focus.human_salience_mse(cam_true, human_maps), cam_generated)
  return fn


def evaluate_split(model_fns, params, arrays: dict, *, batch_size: int) -> dict:
  """AUROC and CAM statistics of one split (a `focus_task` dict of arrays)."""
  fn = _cam_fn(model_fns)
  n = len(arrays["label"])
  outs = []
  for start in range(0, n, batch_size):
    stop = min(start + batch_size, n)
    pad = lambda a: np.concatenate([a, np.repeat(a[-1:], batch_size - (stop - start), 0)])
    x = pad(arrays["image"][start:stop]).astype(np.float32) / 127.5 - 1.0
    out = fn(params, x, pad(arrays["label"][start:stop]), pad(arrays["human_map"][start:stop]))
    outs.append([np.asarray(o)[:stop - start] for o in out])
  logits, entropy, human_mse, cam_generated = (np.concatenate(o) for o in zip(*outs))
  labels, kinds = arrays["label"], arrays["kind"]
  score = logits[:, 1].astype(np.float64) - logits[:, 0]
  generated = labels == 1
  cells = _cell_masks(arrays["artifact_mask"][generated], cam_generated.shape[1:])
  peaks = cam_generated[generated].reshape(int(generated.sum()), -1).argmax(-1)
  hits = cells.reshape(len(peaks), -1)[np.arange(len(peaks)), peaks]
  res = {
      "auroc": auroc(labels, score),
      "accuracy": float(np.mean((score > 0) == generated)),
      "cam_entropy": float(entropy.mean()),
      "cam_entropy_authentic": float(entropy[~generated].mean()),
      "cam_entropy_generated": float(entropy[generated].mean()),
      "human_mse": float(human_mse.mean()),
      "artifact_hit_rate": float(hits.mean()),
      "artifact_cell_share": float(cells.mean()),
      "per_kind": {},
  }
  for k in np.unique(kinds[generated]):
    sel = (kinds == k) | ~generated
    kind_hits = hits[kinds[generated] == k]
    res["per_kind"][focus_task.KINDS[k]] = {"auroc": auroc(labels[sel], score[sel]),
                                            "artifact_hit_rate": float(kind_hits.mean())}
  return res


def task_splits(config) -> dict:
  """The four splits of the focus task that `config.dataset` describes."""
  d = config.dataset
  if d.name != "focus_task":
    raise ValueError(f"experiments/focus.py needs config.dataset.name='focus_task'; got "
                     f"{d.name!r}.")
  return focus_task.load(
      seed=d.seed, num_train=d.num_train, num_validation=d.num_validation, num_test=d.num_test,
      num_open_set_test=d.num_open_set_test, strength=d.strength,
      train_kinds=tuple(d.train_kinds), open_set_kinds=tuple(d.open_set_kinds))


def evaluate_runs(runs: dict[str, dict]) -> dict[str, dict]:
  """name -> {split -> evaluate_split(...)} on each run's best checkpoint."""
  results = {}
  for name, run in runs.items():
    config, fns, params = ckpt_lib.load_run(run["workdir"])
    splits = task_splits(config)
    results[name] = {split: evaluate_split(fns, params, splits[split],
                                           batch_size=config.eval.batch_size)
                     for split in SPLITS}
    logging.info("%s: closed-set AUROC %.4f, open-set AUROC %.4f.", name,
                 results[name]["test"]["auroc"], results[name]["open_set_test"]["auroc"])
  return results


def measure_salience(runs: dict[str, dict], output: str, *, num_images: int) -> dict:
  """The five measures through experiments/salience.py; returns its salience.json."""
  from experiments import salience as salience_program  # pylint: disable=g-import-not-at-top
  by_recipe: dict[str, list[str]] = {}
  for run in runs.values():
    if run["sweep_weight"] is None or run["aliases"]:
      by_recipe.setdefault(run["recipe"], []).append(run["workdir"])
  groups = {r: ws for r, ws in by_recipe.items() if len(ws) > 1}
  paths = salience_program.run([r["workdir"] for r in runs.values()], groups,
                               os.path.join(output, "salience"), auto_group=False,
                               num_images=num_images, max_sigma_factors=(1.0,))
  with open(paths["json"]) as f:
    return json.load(f)


# ----------------------------------------------------------------------------------- report --

def _salience_row(summary: dict) -> dict:
  oos = summary["out_of_set"]
  at = lambda key, a: (oos[key][oos["amounts"].index(a)] if a in oos["amounts"] else np.nan)
  d = summary["degradation"]
  return {"entropy": summary["entropy"]["mean"], "oos_ssim_0.1": at("ssim", 0.1),
          "equivariance": summary["equivariance"]["overall"],
          "degradation_gap": d["object"]["score_change"] - d["background"]["score_change"]}


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
  return {"runs": rows, "recipes": recipes, "stability": stability,
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
      "Procedural task: `ngebm_jax/data/focus_task.py`; losses: `ngebm_jax/focus.py` (FOCUS.md). "
      "AUROC of `logit_generated - logit_authentic`: closed set = artifact kinds seen in "
      f"training, open set = unseen kinds ({', '.join(kinds)}). CAM: the classic CAM the "
      "losses shape; entropy in nats of the true-class CAM (max ln 64 = 4.16 on an 8x8 map); "
      "hit rate: generated images whose 'generated' CAM peaks on the artifact (chance, the "
      f"share of CAM cells the artifact touches: {summary['hit_rate_chance']:.3f}). Salience "
      "(a)-(e): Explain2Me measures of Grad-CAM maps (`salience/report.md`): (a) histogram "
      "entropy, (b) map SSIM under 10% salt-and-pepper noise, (c) equivariance SSIM, (d) SSIM "
      "across seeds, (e) drop of p(y) when blurring where the map looks minus where it does "
      "not. Mean ± std over seeds.",
      "",
      "Settings: " + ", ".join(f"`{k}={v}`" for k, v in settings.items()),
      "",
      "## Recipes",
      "",
  ]
  header = ["recipe", "runs", "closed AUROC", "open AUROC", *[f"open {k}" for k in kinds],
            "CAM entropy ↓", "human MSE ↓", "hit closed", "hit open"]
  if have_salience:
    header += ["(a) entropy ↓", "(b) SSIM@0.1", "(c) equivariance ↑", "(d) stability ↑",
               "(e) Δp obj − bg"]
  lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  for recipe, names in recipes.items():
    cells = [recipe, str(len(names)), col(names, lambda r: r["closed_auroc"]),
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
            "| run | objective | closed AUROC | open AUROC | CAM entropy | human MSE | "
            "hit closed | hit open |", "|---|---|---|---|---|---|---|---|"]
  for name, r in rows.items():
    alias = f" (= {', '.join(r['aliases'])})" if r["aliases"] else ""
    lines.append(f"| {name}{alias} | {r['objective']} | {r['closed_auroc']:.3f} | "
                 f"{r['open_auroc']:.3f} | {r['cam_entropy']:.3f} | {r['human_mse']:.4f} | "
                 f"{r['hit_closed']:.3f} | {r['hit_open']:.3f} |")
  lines += ["", f"Numbers: [{RESULTS_FILE}]({RESULTS_FILE})."]
  if have_salience:
    lines.append("Salience report: [salience/report.md](salience/report.md).")
  return "\n".join(lines) + "\n"


def run(base: ml_collections.ConfigDict, module, output: str, *, recipes: Sequence[str],
        seeds: Sequence[int], entropy_sweep: Sequence[float], salience: bool = True,
        num_salience_images: int = 500) -> dict[str, str]:
  """Trains, evaluates and reports; returns the paths of `report.md` and `results.json`."""
  missing = [o for o in ("cyborg", "focus") if o not in objectives.names()]
  if missing:
    raise RuntimeError(f"The trainer has no objective {missing}: ngebm_jax/training/objectives.py "
                       "must register 'cyborg' and 'focus'.")
  output = os.path.abspath(output)
  os.makedirs(output, exist_ok=True)
  runs = plan_runs(base, module, recipes, seeds, entropy_sweep)
  train_results = train_runs(runs, output)
  evals = evaluate_runs(runs)
  salience_json = (measure_salience(runs, output, num_images=num_salience_images)
                   if salience else None)
  summary = summarize(runs, evals, salience_json)
  settings = {"recipes": list(recipes), "seeds": list(seeds),
              "entropy_sweep": list(entropy_sweep), "num_steps": base.num_steps,
              "model": f"{base.model.name}(width={base.model.get('width')})",
              "num_train": base.dataset.num_train, "strength": base.dataset.strength}
  paths = {"report": os.path.join(output, REPORT_FILE),
           "results": os.path.join(output, RESULTS_FILE)}
  with open(paths["results"], "w") as f:
    json.dump({"settings": settings, **summary, "evaluation": evals,
               "train_results": train_results}, f, indent=2, default=float)
  with open(paths["report"], "w") as f:
    f.write(_markdown(summary, settings))
  print(f"Report: {paths['report']}", flush=True)
  return paths


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {list(argv[1:])}")
  logging_utils.quiet_library_logs()
  module = _config_module(config_flags.get_config_filename(FLAGS["config"]))
  sweep = (_ENTROPY_SWEEP.value if _ENTROPY_SWEEP.value is not None
           else [str(w) for w in getattr(module, "ENTROPY_SWEEP", ())])
  run(_CONFIG.value, module, _OUTPUT.value, recipes=_RECIPES.value,
      seeds=[int(s) for s in _SEEDS.value], entropy_sweep=[float(w) for w in sweep if w != ""],
      salience=_SALIENCE.value, num_salience_images=_NUM_SALIENCE_IMAGES.value)


def _parse_flags(argv: list[str]) -> list[str]:
  if any(a in ("-h", "-?", "--help", "--helpshort", "--helpfull") for a in argv[1:]):
    print(__doc__)
    print(FLAGS.get_help())
    sys.exit(0)
  try:
    remaining = FLAGS(argv, known_only=True)
    return flags.FLAGS(remaining)  # absl's own flags (--verbosity, ...); rejects unknown ones
  except flags.Error as e:
    sys.stderr.write(f"FATAL Flags parsing error: {e}\nPass --help for usage.\n")
    sys.exit(1)


if __name__ == "__main__":
  app.run(main, flags_parser=_parse_flags)
