"""`validate_config`: every config value checked before any program writes a file.

Every program calls it first (the workflows `train_and_evaluate`, `evaluate_runs`, `benchmark`
and the studies, and `training.loop.train`): a value that is not allowed fails with the allowed
values in the message, before a workdir, a checkpoint or a report exists. The allowed values are
read from the modules that define them (the objective registry, the models, the evaluators), so
a new objective or evaluator is allowed as soon as it is registered. Checks that need data (is
the dataset prepared?) are left to the data layer, which fails fast too.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import jax
from absl import logging

from ngebm_jax import data as data_lib
from ngebm_jax import focus as focus_lib
from ngebm_jax import models
from ngebm_jax import objectives as objectives_lib
from ngebm_jax.data import ood_data
from ngebm_jax.training import objective_registry

MODEL_DTYPES = ("float32", "bfloat16")


def _one_of(name: str, value: Any, allowed: Sequence[Any]) -> None:
  if value not in allowed:
    raise ValueError(f"config.{name} must be one of {tuple(allowed)}; got {value!r}.")


def _subset_of(name: str, values: Sequence[Any], allowed: Sequence[Any]) -> None:
  if isinstance(values, str):
    raise ValueError(f"config.{name} must be a tuple of names from {tuple(allowed)}; got the "
                     f"string {values!r} (write ({values!r},)).")
  bad = [v for v in values if v not in allowed]
  if bad:
    raise ValueError(f"config.{name} must hold only values from {tuple(allowed)}; got {bad}.")


def _number(name: str, value: Any, *, low: float | None = None, high: float | None = None,
            low_open: bool = False, high_open: bool = False, integer: bool = False) -> None:
  """`value` must be a (finite) number in the interval; the message states the interval."""
  left = "(-inf" if low is None else ("(" if low_open else "[") + f"{low:g}"
  right = "inf)" if high is None else f"{high:g}" + (")" if high_open else "]")
  interval = f"{left}, {right}"
  kind = "an integer" if integer else "a number"
  ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
  if ok and integer:
    ok = int(value) == value
  if ok and low is not None:
    ok = value > low if low_open else value >= low
  if ok and high is not None:
    ok = value < high if high_open else value <= high
  if not ok:
    raise ValueError(f"config.{name} must be {kind} in {interval}; got {value!r}.")


def validate_training(config, num_devices: int) -> None:
  """The objective's, optimizer's and loop's fields (batch sizes over `num_devices`)."""
  _one_of("objective", config.objective, objective_registry.names())
  _one_of("ngebm.grad_mode", config.ngebm.grad_mode, objectives_lib.GRAD_MODES)
  _number("ngebm.beta", config.ngebm.beta, low=0)
  _number("ngebm.gamma", config.ngebm.gamma, low=0)
  _number("ngebm.penalty_fraction", config.ngebm.penalty_fraction, low=0, low_open=True, high=1)
  s = config.sgld
  _number("sgld.num_steps", s.num_steps, low=1, integer=True)
  _number("sgld.step_size", s.step_size, low=0, low_open=True)
  _number("sgld.noise_std", s.noise_std, low=0)
  _number("sgld.buffer_size", s.buffer_size, low=1, integer=True)
  _number("sgld.reinit_prob", s.reinit_prob, low=0, high=1)
  _number("sgld.energy_l2", s.energy_l2, low=0)
  if s.unroll is not None:
    _number("sgld.unroll", s.unroll, low=1, integer=True)
  f = config.focus
  _one_of("focus.entropy_form", f.entropy_form, focus_lib.ENTROPY_FORMS)
  _one_of("focus.cam_class", f.cam_class, focus_lib.CAM_CLASSES)
  _number("focus.alpha", f.alpha, low=0, high=1)
  for name in ("ce_weight", "human_weight", "entropy_weight"):
    _number(f"focus.{name}", f[name], low=0)
  _number("focus.start_step", f.start_step, low=0, integer=True)
  _number("focus.ramp_steps", f.ramp_steps, low=0, integer=True)
  _optimizer_and_loop(config, num_devices)


def validate_model(config) -> None:
  """`config.model`: architecture name, dtype and sizes."""
  m = config.model
  _one_of("model.name", m.name, models.MODEL_NAMES)
  _one_of("model.dtype", m.dtype, MODEL_DTYPES)
  _number("model.width", m.width, low=1, integer=True)
  _number("model.dropout_rate", m.dropout_rate, low=0, high=1, high_open=True)
  if m.name == "wide_resnet" and (m.depth < 10 or (m.depth - 4) % 6):
    raise ValueError(f"config.model.depth of a wide_resnet must be 6 n + 4 with n >= 1 (10, 16, "
                     f"22, 28, ...); got {m.depth!r}.")


def _optimizer_and_loop(config, num_devices: int) -> None:
  o = config.optimizer
  _number("optimizer.learning_rate", o.learning_rate, low=0, low_open=True)
  _number("optimizer.warmup_steps", o.warmup_steps, low=0, integer=True)
  _number("optimizer.decay_rate", o.decay_rate, low=0, low_open=True)
  _number("optimizer.b1", o.b1, low=0, high=1, high_open=True)
  _number("optimizer.b2", o.b2, low=0, high=1, high_open=True)
  _number("optimizer.weight_decay", o.weight_decay, low=0)
  for e in o.decay_epochs:
    _number("optimizer.decay_epochs (each)", e, low=0)

  _number("batch_size", config.batch_size, low=1, integer=True)
  for name, size in (("batch_size", config.batch_size),
                     ("eval.batch_size", config.eval.batch_size)):
    if size % num_devices:
      raise ValueError(f"config.{name} ({size}) must be divisible by the number of devices "
                       f"({num_devices}).")
  if config.num_steps <= 0 and config.num_epochs <= 0:
    raise ValueError("Set config.num_steps or config.num_epochs to a positive number.")
  for field in ("log_every_steps", "eval_every_steps", "checkpoint_every_steps"):
    _number(field, config[field], low=1, integer=True)
  _number("max_abs_loss", config.max_abs_loss, low=0, low_open=True)
  _number("max_restarts", config.max_restarts, low=0, integer=True)


def validate_dataset(config) -> None:
  """`config.dataset` (and whether the objective's data needs are met)."""
  d = config.dataset
  info = data_lib.dataset_info(config)  # an unknown name raises with the allowed ones
  if objective_registry.needs_human_maps(config) and not info.human_maps:
    raise ValueError(
        f"objective {config.objective!r} with these config.focus weights needs human salience "
        f"maps, and dataset {info.name!r} has none. Train it on the focus task "
        f"(--config.dataset.name={data_lib.FOCUS_TASK}, e.g. --config=configs/focus.py:cyborg), "
        "or use objective 'focus' with focus.human_weight=0.")
  _number("dataset.noise_std", d.noise_std, low=0)
  _number("dataset.num_workers", d.num_workers, low=0, integer=True)
  _number("dataset.read_threads", d.read_threads, low=0, integer=True)
  _number("dataset.seed", d.seed, low=0, integer=True)
  _number("dataset.split_seed", d.split_seed, low=0, integer=True)
  _number("dataset.split_num_validation", d.split_num_validation, low=1, integer=True)
  if info.name == data_lib.FOCUS_TASK:
    from ngebm_jax.data.procedural import focus_task  # pylint: disable=g-import-not-at-top
    _subset_of("dataset.train_kinds", d.train_kinds, focus_task.KINDS)
    _subset_of("dataset.open_set_kinds", d.open_set_kinds, focus_task.KINDS)


def validate_evaluation(config) -> None:
  """`config.eval`: evaluator names, OOD sets and scores, attack protocol and sizes."""
  # Imported here: the training loop imports this module, and the evaluators (matplotlib) are
  # not its to load.
  # pylint: disable=g-import-not-at-top
  from ngebm_jax.evaluation import evaluators as evaluators_lib
  from ngebm_jax.evaluation import ood as ood_scores
  from ngebm_jax.evaluation import robustness
  # pylint: enable=g-import-not-at-top
  e = config.eval
  _subset_of("eval.evaluators", e.evaluators, tuple(evaluators_lib.EVALUATORS))
  _subset_of("eval.ood_scores", e.ood_scores, ood_scores.SCORE_NAMES)
  _subset_of("eval.robustness_norms", e.robustness_norms, robustness.NORMS)
  _one_of("eval.robustness_protocol", e.robustness_protocol, robustness.PROTOCOLS)
  known_ood = (*sorted(ood_data.OOD_DATASETS), *ood_data.SYNTHETIC_OOD)
  _subset_of("eval.ood_sets", e.ood_sets, known_ood)
  for name in e.ood_sets:
    if ood_data.OOD_DATASETS.get(name) == config.dataset.name:
      raise ValueError(f"config.eval.ood_sets holds {name!r}, the in-distribution dataset, not "
                       "an OOD set.")
  for name in ("batch_size", "num_bins", "pgd_steps", "binary_search_steps", "noise_copies",
               "robustness_num_examples"):
    _number(f"eval.{name}", e[name], low=1, integer=True)
  _number("eval.seed", e.seed, low=0, integer=True)
  if not isinstance(e.figures, bool):
    raise ValueError(f"config.eval.figures must be True or False; got {e.figures!r}.")
  _number("eval.refine_steps", e.refine_steps, low=0, integer=True)
  _number("eval.refine_noise_std", e.refine_noise_std, low=0)
  if e.max_examples is not None:
    _number("eval.max_examples", e.max_examples, low=1, integer=True)
  if e.pgd_step_size is not None:
    _number("eval.pgd_step_size", e.pgd_step_size, low=0, low_open=True)
  for norm in robustness.NORMS:
    for eps in e[f"epsilons_{norm}"]:
      _number(f"eval.epsilons_{norm} (each)", eps, low=0)


def validate_race(config) -> None:
  """`config.race`, the benchmark's race: only benchmark configs add it (configs/default.py's
  `race_config()`), so the benchmark calls this itself, before its step timing."""
  if "race" not in config:
    raise ValueError("This config has no race block: the benchmark needs one. Start from a "
                     "benchmark config (configs/benchmark_*.py) or add "
                     "`config.race = default.race_config()` to yours.")
  r = config.race
  _number("race.target_accuracy", r.target_accuracy, high=1)  # <= 0 skips the race
  for name in ("max_steps", "eval_every"):
    _number(f"race.{name}", r[name], low=1, integer=True)
  _number("race.max_seconds", r.max_seconds)  # <= 0: no cap
  if r.budget_s is not None and (r.budget_s <= 0 or 0 < r.max_seconds < r.budget_s):
    raise ValueError(f"config.race.budget_s must be > 0 and at most config.race.max_seconds "
                     f"({r.max_seconds}); got {r.budget_s}.")


def validate_focus_study(config) -> None:
  """`config.focus_study` (configs/focus.py), which the focus study checks before it trains."""
  if "focus_study" not in config:
    raise ValueError("This config has no focus_study block: the focus study needs one. Start "
                     "from configs/focus.py (or a variant of it).")
  s = config.focus_study
  recipes = tuple(s.recipe_settings)
  _subset_of("focus_study.recipes", s.recipes, recipes)
  if not s.seeds:
    raise ValueError("config.focus_study.seeds must hold at least one seed.")
  for seed in s.seeds:
    _number("focus_study.seeds (each)", seed, low=0, integer=True)
  for w in s.entropy_sweep:
    _number("focus_study.entropy_sweep (each)", w, low=0)
  if s.entropy_sweep and "entropy" not in recipes:
    raise ValueError("config.focus_study.entropy_sweep sweeps the 'entropy' recipe, which "
                     "config.focus_study.recipe_settings does not define.")
  _subset_of("focus_study.cam_classes", s.cam_classes, focus_lib.CAM_CLASSES)
  if s.salience and not s.salience_variants:
    raise ValueError("config.focus_study.salience_variants must name at least one variant "
                     "(e.g. ('default',)).")
  _number("focus_study.num_salience_images", s.num_salience_images, low=1, integer=True)
  objectives = objective_registry.names()
  for name, r in s.recipe_settings.items():
    _one_of(f"focus_study.recipe_settings.{name}.objective", r.objective, objectives)
    unknown = sorted(set(r.focus) - set(config.focus))
    if unknown:
      raise ValueError(f"config.focus_study.recipe_settings.{name}.focus sets {unknown}, which "
                       f"are not fields of config.focus ({sorted(config.focus)}).")


ON_CPU = ("run", "warn", "refuse")
_warned_on_cpu = False  # the warning of `check_backend`, once per process
INSTALL_HINT = ("install JAX's accelerator build: `make gpu-check` or `make bench-gpu` (they "
                "detect it; ACCEL=cuda12|cuda13|tpu), or pip install -e '.[cuda13]' (or "
                "'.[cuda12]', '.[tpu]')")


def check_backend(config, backend: str | None = None) -> None:
  """Refuses, or warns about, a config meant for accelerators on a CPU-only JAX (`on_cpu`)."""
  if config.on_cpu not in ON_CPU:
    raise ValueError(f"config.on_cpu must be one of {ON_CPU}; got {config.on_cpu!r}.")
  backend = backend or jax.default_backend()
  if backend != "cpu" or config.on_cpu == "run":
    return
  if config.on_cpu == "refuse":
    raise ValueError(
        f"This config is meant for a GPU or TPU, and JAX {jax.__version__} found only the CPU: "
        f"{INSTALL_HINT}. To run it on the CPU anyway (tests, a trial), add "
        "--config.on_cpu=run.")
  global _warned_on_cpu
  if _warned_on_cpu:  # validate_config runs at each layer of a program (workflow, loop): once
    return
  _warned_on_cpu = True
  logging.warning("This config is meant for a GPU or TPU, and JAX found only the CPU (slow: "
                  "days for the full recipe). To use an accelerator, %s.", INSTALL_HINT)


def validate_config(config, num_devices: int | None = None) -> None:
  """Raises ValueError, naming the field and its allowed values, on any value not allowed.

  Args:
    config: a run's `ml_collections.ConfigDict` (configs/default.py declares every field).
    num_devices: devices of the data-parallel mesh (batch sizes must divide over them);
      default: all devices.
  """
  check_backend(config)
  validate_training(config, num_devices or jax.device_count())
  validate_model(config)
  validate_dataset(config)
  validate_evaluation(config)
  if "race" in config:
    validate_race(config)


def _integers(name: str, values: Sequence[Any], *, low: int, nonempty: bool = False) -> None:
  if isinstance(values, str) or not isinstance(values, (tuple, list)):
    raise ValueError(f"config.{name} must be a tuple of integers (e.g. (0, 1, 2)); got "
                     f"{values!r}.")
  if nonempty and not values:
    raise ValueError(f"config.{name} must hold at least one value.")
  for v in values:
    _number(f"{name} (each)", v, low=low, integer=True)
  if len(set(values)) != len(values):
    raise ValueError(f"config.{name} repeats a value: {tuple(values)}.")


def validate_study(config, *, variants: Sequence[str], peers: Sequence[str],
                   select_on: Sequence[str]) -> None:
  """`config.study` of the calibration and claims studies (ngebm_jax.workflows.
  calibration_study), against the `variants`, `peers` and `select_on` figures it knows."""
  if "study" not in config:
    raise ValueError("this program needs a config with a `study` block, such as "
                     "configs/calibration_study.py or configs/claims_study.py.")
  s = config.study
  _integers("study.seeds", s.seeds, low=0, nonempty=True)
  _integers("study.sweep_seeds", s.sweep_seeds, low=0)
  _integers("study.peer_sweep_seeds", s.peer_sweep_seeds, low=0, nonempty=bool(s.peers))
  _integers("study.stages", s.stages, low=1)
  # Stages at or past the end are the end, which is always measured.
  bad = [x for x in s.stages if x % config.eval_every_steps and x < config.num_steps]
  if bad:
    raise ValueError(f"config.study.stages {bad} must be multiples of config.eval_every_steps "
                     f"({config.eval_every_steps}).")
  for name in ("variants", "size_variants", "peers"):
    joined = [v for v in s[name] if isinstance(v, str) and "," in v]
    if joined:
      raise ValueError(f"config.study.{name} holds {joined[0]!r}: write a tuple of names, "
                       f"--config.study.{name}=\"('a','b')\".")
  _subset_of("study.variants", s.variants, variants)
  if not s.variants or len(set(s.variants)) != len(s.variants):
    raise ValueError(f"config.study.variants must name each variant once, at least one; got "
                     f"{tuple(s.variants)}.")
  for f in s.penalty_fractions:
    _number("study.penalty_fractions (each)", f, low=0, low_open=True, high=1, high_open=True)
  for g in s.gammas:
    _number("study.gammas (each)", g, low=0)
  _number("study.sweep_beta", s.sweep_beta, low=0)
  _integers("study.train_sizes", s.train_sizes, low=1)
  _subset_of("study.size_variants", s.size_variants, variants)
  missing = [v for v in s.size_variants if s.train_sizes and v not in s.variants]
  if missing:
    raise ValueError(f"config.study.size_variants {missing} are not among config.study.variants "
                     f"{tuple(s.variants)}.")
  _subset_of("study.peers", s.peers, peers)
  if s.peers and "ngebm" not in s.variants:
    raise ValueError("the peers are compared with NG-EBM: keep 'ngebm' in config.study.variants "
                     "or set config.study.peers=().")
  _one_of("study.select_on", s.select_on, select_on)
  if not isinstance(s.claims, bool):
    raise ValueError(f"config.study.claims must be True or False; got {s.claims!r}.")
  if s.claims and "baseline" not in s.variants:
    raise ValueError("the claims are judged against the baseline: keep 'baseline' in "
                     "config.study.variants or set config.study.claims=False.")
