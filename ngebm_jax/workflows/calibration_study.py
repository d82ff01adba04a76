r"""Calibration study: does NG-EBM undo an over-fitted classifier's over-confidence, and how does
it compare with temperature scaling? With `config.study.claims`: NG-EBM's three claims.

  python -m experiments.calibration_study --output=runs/calibration_study
  python -m experiments.calibration_study --config=configs/claims_study.py \
      --output=runs/claims_study

NG-EBM's headline claim (arXiv 2304.01297: ECE 2.5x lower than the baseline's on CIFAR-10, 7.5x
on CIFAR-100) is about a regime: a classifier trained long enough to fit its training set
(training accuracy near 100%) whose confidence has grown well above its test accuracy. The study
trains every objective on the same model, data and seeds in such a regime and sweeps what
matters. Every setting is a field of `config.study` (configs/calibration_study.py declares them;
`config_validation.validate_study` checks them before anything is trained):

- objectives (`variants`, names of `VARIANTS`): the baseline, NG-EBM at the paper's beta = gamma
  = 1, each penalty alone (gamma only: the Approximate Mass penalty; beta only: the energy
  variance), SGLD-EBM (JEM, with `config.sgld`), and NG-EBM with its penalty on a fraction of
  each batch (`penalty_fractions`, variants `ngebm_pf<f>`), for every one of `seeds`;
- training length: each of those runs is measured at `stages` on its way (its newest
  parameters, `train_and_evaluate.train_in_stages`): calibration against training steps;
- gamma, at beta = `sweep_beta` (`gammas`; gamma = 0 and 1 are runs of the first list);
- the training-set size (`train_sizes`, for `size_variants`);
  the two sweeps for `sweep_seeds` (to fit a CPU budget);
- the calibration peers (`peers`: label smoothing, focal loss), each swept over `PEER_SWEEPS` on
  `peer_sweep_seeds`, its setting chosen on the validation figure `select_on`, then trained for
  every seed and compared with NG-EBM by seed.

Every run is trained with `train_and_evaluate.train_in_stages` / `train_or_reuse` (re-running the
command retrains nothing that finished, an interrupted run resumes), and its best checkpoint
(by validation accuracy, the paper's protocol) is evaluated by the config's evaluators
(calibration before and after temperature scaling; OOD detection and robustness where listed).
The numbers come from `ngebm_jax.evaluation.study_statistics`, the report from
`ngebm_jax.evaluation.study_report` and, with `study.claims`, `ngebm_jax.evaluation.claims_report`
(each variant against the baseline claim by claim, the OOD sets named with their separability,
training seconds against benefit). Writes into `output`: `report.md`, `results.json` (every
number) and the plots (`calibration_vs_steps.png`, `ece_vs_gamma.png`, `reliability.png`,
`cost_benefit.png`).
"""

from __future__ import annotations

import json
import os
from typing import Any, Mapping, Sequence

import ml_collections
import numpy as np

from ngebm_jax import config_validation
from ngebm_jax import data as data_lib
from ngebm_jax import reporting
from ngebm_jax.data import ood_data
from ngebm_jax.evaluation import claims_report
from ngebm_jax.evaluation import ood_separability
from ngebm_jax.evaluation import study_report
from ngebm_jax.evaluation import study_statistics as stats
from ngebm_jax.workflows import train_and_evaluate

REPORT_FILE = "report.md"
RESULTS_FILE = study_report.RESULTS_FILE
SEPARABILITY_FILE = "separability.json"

# The variants `config.study.variants` names: objective, the NG-EBM weights they set and other
# config fields by dotted name. SGLD-EBM takes K, the step and its stabilizer from `config.sgld`.
VARIANTS = {
    "baseline": dict(objective="baseline"),
    "ngebm": dict(objective="ngebm", beta=1.0, gamma=1.0),
    "gamma_only": dict(objective="ngebm", beta=0.0, gamma=1.0),
    "beta_only": dict(objective="ngebm", beta=1.0, gamma=0.0),
    "sgld": dict(objective="sgld"),
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
SELECT_ON = ("val_nll", "val_ece", "val_accuracy")


def validate(config) -> None:
  """`config.study` against the variants and peers this study knows (ValueError)."""
  config_validation.validate_study(config, variants=tuple(VARIANTS), peers=tuple(PEER_SWEEPS),
                                   select_on=SELECT_ON)


def study_variants(study) -> dict[str, dict]:
  """name -> variant of `study.variants`, then NG-EBM at each of `study.penalty_fractions`."""
  out = {name: dict(VARIANTS[name]) for name in study.variants}
  for f in study.penalty_fractions:
    out[f"ngebm_pf{f:g}"] = dict(VARIANTS["ngebm"], **{"ngebm.penalty_fraction": float(f)})
  return out


# ------------------------------------------------------------------------------------- runs --

def variant_config(base: ml_collections.ConfigDict, variant: Mapping[str, Any],
                   seed: int) -> ml_collections.ConfigDict:
  """`base` with a variant's objective (NG-EBM weights, other config fields) and `seed`.

  A variant sets `objective`, optionally NG-EBM's `beta` and `gamma`, and any other field of
  the config by its dotted name (`"label_smoothing.alpha"`, `"focal.schedule"`). The study's own
  block (`study`) is left out: a run's config is what it trains, so adding a seed or a sweep to
  the study leaves its finished runs reusable.
  """
  unknown = {k for k in variant if "." not in k} - {"objective", "beta", "gamma"}
  if unknown or "objective" not in variant:
    raise ValueError(f"a variant sets 'objective' and optionally 'beta', 'gamma' and dotted "
                     f"config fields ('focal.gamma'); got {dict(variant)}.")
  config = base.copy_and_resolve_references()
  with config.unlocked():
    if "study" in config:
      del config["study"]
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


def plan_runs(config: ml_collections.ConfigDict) -> dict[str, dict]:
  """name -> {"config", "seed", "stages", "roles"} of `config.study`; runs with equal configs
  are one run.

  `roles` lists what a run stands for: `("variant", name)`, `("gamma", g)` (NG-EBM at
  `sweep_beta` and gamma `g`) and `("train_size", (variant, n))`. Variant runs are made for
  every seed and measured at `stages` (training length); the sweeps for `sweep_seeds`, measured
  at the end only. The peers' runs are added by `plan_peer_sweep` and `run`.
  """
  validate(config)
  study = config.study
  variants = study_variants(study)
  runs: dict[str, dict] = {}
  add = lambda *args: add_run(runs, *args)

  for seed in study.seeds:
    for name, variant in variants.items():
      add(f"{name}_s{seed}", variant_config(config, variant, seed), seed, ("variant", name),
          study.stages)
  beta = study.sweep_beta
  for seed in study.sweep_seeds:
    for g in study.gammas:
      run_config = variant_config(config, dict(objective="ngebm", beta=beta, gamma=g), seed)
      add(f"gamma{g:g}_beta{beta:g}_s{seed}", run_config, seed, ("gamma", float(g)), ())
    for n in study.train_sizes:
      for name in study.size_variants:
        run_config = variant_config(config, variants[name], seed)
        run_config.dataset.num_train = int(n)
        add(f"{name}_n{n}_s{seed}", run_config, seed, ("train_size", (name, int(n))), ())
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
    means = {label: stats.mean_sd(v)[0] for label, v in by_label.items()}
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

def train_seconds(workdir: str) -> float | None:
  """Seconds the training loop ran: the logged intervals (`train/step_time_s` times the steps
  since the last record, compilation, validation and checkpoint writes included), summed; a step
  logged twice (a resumed run) counts once, with its last record."""
  by_step = {int(r["step"]): r["train/step_time_s"] for r in read_metrics(workdir)
             if "train/step_time_s" in r}
  total, previous = 0.0, 0
  for step in sorted(by_step):
    total += by_step[step] * (step - previous)
    previous = step
  return total if by_step else None


def run_figures(results: Mapping, workdir: str) -> dict[str, Any]:
  """`study_statistics.run_figures`, plus what training logged in `workdir`: the validation
  figures at the best step (`val_accuracy`, `val_nll`, `val_ece`), the median seconds per step
  (`step_time_s`) and the training seconds (`train_seconds`)."""
  row = stats.run_figures(results)
  row.update(validation_figures(workdir, results.get("best_step")),
             step_time_s=median_step_time(workdir), train_seconds=train_seconds(workdir))
  return row


def separability(config, output: str) -> dict[str, dict]:
  """The OOD sets' separability from the test set (`ood_separability`), computed once into
  `output/SEPARABILITY_FILE` on the images the ood evaluator reads (at most
  `config.eval.max_examples` of each)."""
  path = os.path.join(output, SEPARABILITY_FILE)
  if os.path.exists(path):
    return reporting.read_json(path)
  n = config.eval.max_examples
  data = data_lib.load_eval_data(config, ood_sets=config.eval.ood_sets or None,
                                 strict=config.eval.ood_strict, max_examples=n)
  cap = (lambda x: x) if n is None else (lambda x: x[:n])
  sets = ood_separability.separability(
      cap(data["test"][0]), {k: cap(v) for k, v in data["ood"].items()},
      seed=int(config.eval.seed), noise_std=float(config.dataset.noise_std),
      noise_variance=ood_data.TEST_NOISE_VARIANCE)
  reporting.write_json(path, sets)
  return sets


def _settings(config) -> dict:
  study = config.study
  return dict(dataset=config.dataset.name, num_train=config.dataset.num_train,
              augment=config.dataset.augment,
              model=f"{config.model.name}(width={config.model.width})",
              batch_size=config.batch_size, learning_rate=config.optimizer.learning_rate,
              num_steps=config.num_steps, seeds=list(study.seeds),
              sweep_seeds=list(study.sweep_seeds),
              stages=train_and_evaluate.stage_steps(config, study.stages),
              gammas=list(study.gammas), sweep_beta=study.sweep_beta,
              train_sizes=list(study.train_sizes), evaluators=list(config.eval.evaluators))


def run(config: ml_collections.ConfigDict, output) -> dict[str, str]:
  """Trains every run of `config.study`, evaluates, and writes the report; returns the paths.

  Args:
    config: the config every run starts from, with its `study` block (e.g.
      configs/calibration_study.py or configs/claims_study.py), command-line overrides included.
    output: folder for the runs (`runs/<name>`), the report and its plots.
  """
  output = os.fspath(output)
  study = config.study
  runs = plan_runs(config)  # validates config.study first
  peers = {p: PEER_SWEEPS[p] for p in study.peers}
  if peers:
    plan_peer_sweep(runs, config, peers, study.peer_sweep_seeds, study.stages)
  for run_plan in runs.values():  # every run's config checked before the first is trained
    config_validation.validate_config(run_plan["config"])
  trained = train_runs(runs, output)
  peer_choice = {}
  if peers:
    figures = {n: run_figures(trained[n]["results"], trained[n]["workdir"]) for n in runs}
    peer_choice = choose_peers(runs, figures, study.select_on)
    for family, choice in peer_choice.items():
      print(f"== {family}: {choice['label']} chosen on validation {study.select_on} "
            f"{choice['validation']}", flush=True)
      for seed in study.seeds:
        add_run(runs, f"{family}_s{seed}",
                variant_config(config, peers[family][choice["label"]], seed), seed,
                ("variant", family), study.stages)
    trained.update(train_runs({n: r for n, r in runs.items() if n not in trained}, output))
  summary = stats.summarize(runs, {n: run_figures(trained[n]["results"], trained[n]["workdir"])
                                   for n in runs},
                            {n: trained[n]["stages"] for n in runs})
  comparisons = {}
  if peers:
    keys = [k for k, _, _ in study_report.COMPARED]
    best = study_report.best_peer(summary, peer_choice)
    for other in ([best] if best else []) + [f for f in peer_choice if f != best] + ["baseline"]:
      if other in summary["variants"]:
        comparisons[f"ngebm − {other}"] = stats.paired_differences(summary["runs"], runs,
                                                                   "ngebm", other, keys)
  settings = _settings(config)
  plot_files = study_report.write_plots(summary, {n: t["results"] for n, t in trained.items()},
                                        runs, output, sweep_beta=study.sweep_beta)
  claims, sections, title = {}, [], study_report.TITLE
  if study.claims:
    claims = claims_report.claim_comparisons(summary, runs)
    sets = (separability(config, output) if "ood" in config.eval.evaluators else {})
    plot_files["cost_benefit"] = os.path.basename(claims_report.cost_plot(
        summary, os.path.join(output, "cost_benefit.png")))
    sections = claims_report.section(summary, claims, separability=sets,
                                     plot_file=plot_files["cost_benefit"])
    title = claims_report.TITLE
  paths = {"report": os.path.join(output, REPORT_FILE),
           "results": os.path.join(output, RESULTS_FILE),
           **{k: os.path.join(output, v) for k, v in plot_files.items()}}
  reporting.write_json(paths["results"], dict(
      settings=settings, study=study.to_dict(), variant_settings=study_variants(study),
      peers=peers,
      peer_choice=peer_choice, comparisons=comparisons, claims=claims, **summary,
      run_configs={n: r["config"].to_dict() for n, r in runs.items()},
      roles={n: r["roles"] for n, r in runs.items()}))
  reporting.write_text(paths["report"], study_report.markdown(
      summary, settings, plot_files, peer_choice, comparisons, title=title, sections=sections))
  print(f"Report: {paths['report']}", flush=True)
  return paths
