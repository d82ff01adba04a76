"""Evaluators chosen by name: classification, calibration, OOD detection, robustness.

Each evaluator is one function `evaluate(inputs: EvalInputs, output_dir: str) -> dict` that
computes its figures on a trained classifier, writes its plots under `output_dir`, and returns
a JSON-able dict (Python floats, ints, strings and lists; plot paths relative to `output_dir`
under the key `"plots"`). `EVALUATORS` maps the names a config lists (`config.eval.evaluators`)
to them; `run_evaluators` runs a list of names (the big_vision pattern: one small job each).

Protocol (docs/method.rst): the NG-EBM recipe adds Gaussian noise of std 0.03
to every input at test time. Here that is `EvalOptions.noise_std`, applied by the evaluators to
the test images, to every OOD set, and to the adversarial images before they are classified; the
metrics and attacks themselves know nothing of it. "interp" gets std `noise_std * sqrt(1.5)`:
the reference averages two test images that already carry the noise and adds it again
(`ngebm_jax.data.ood.TEST_NOISE_VARIANCE`). The noise of example `i`
of a set is drawn from `fold_in(fold_in(key, set), i)`: it does not depend on the batch size.

Calibration is reported two ways (see `evaluate_calibration`): the standard ECE on those noisy
inputs, and the variant behind NG-EBM's published ratios (clean inputs, bin centres), each before
and after temperature scaling fitted on the validation split (`EvalInputs.validation_images`).
"""

from __future__ import annotations

import dataclasses
import os
import re
from typing import Any, Callable, Mapping, Sequence

from absl import logging
from etils import epath
import jax
import numpy as np

from ngebm_jax.data import ood as ood_sets
from ngebm_jax.energy import ApplyFn
from ngebm_jax.evaluation import calibration
from ngebm_jax.evaluation import inference
from ngebm_jax.evaluation.inference import make_noisy_fn
from ngebm_jax.evaluation.inference import purpose_key
from ngebm_jax.evaluation import ood
from ngebm_jax.evaluation import plots
from ngebm_jax.evaluation import robustness
from ngebm_jax.evaluation import temperature as temperature_lib


@dataclasses.dataclass(frozen=True)
class EvalOptions:
  """Settings of the evaluators; the defaults follow the NG-EBM / JEM protocol.

  Attributes:
    noise_std: std of the Gaussian input noise added at test time (model units; 0.03 in the
      recipe; 0 to evaluate clean inputs).
    batch_size: examples per device call.
    num_bins: confidence bins of ECE and the reliability diagram (20 as in JEM / NG-EBM).
    ood_scores: OOD scores to evaluate, a subset of `ood.SCORE_NAMES`.
    robustness_norms: PGD norms, a subset of `("linf", "l2")`.
    epsilons: norm -> epsilons in [0, 1] pixel units; a norm left out gets
      `robustness.DEFAULT_EPSILONS[norm]`.
    pgd_steps: PGD iterations (40 as in JEM).
    pgd_step_size: PGD step in pixel units; `None` for `2.5 * eps / pgd_steps`.
    robustness_num_examples: attack only the first this many test examples (PGD costs
      `pgd_steps` forward-backward passes per epsilon); `None` for all.
    robustness_protocol: "fixed_epsilon" (accuracy under PGD at each epsilon) or "paper" (the
      smallest successful epsilon per correctly classified image, by foolbox 1.8's search,
      against the model averaging `noise_copies` noisy copies; see `robustness.minimal_epsilons`).
    binary_search_steps: the "paper" search's growth and bisection steps (foolbox: 20).
    noise_copies: noisy copies the attacked model averages in the "paper" protocol (5); their
      noise is `noise_std` for L-inf and 0 for L2, as in the reference.
    refine_steps: "paper" protocol: SGLD steps on log p~(x) that refine each copy before it is
      classified (the reference's `--n_steps_refine 1`; `robustness.refine`); 0: none.
    refine_noise_std: std of their Langevin noise, model units (the reference's 0.01).
  """
  noise_std: float = 0.03
  batch_size: int = 100
  num_bins: int = 20
  ood_scores: tuple[str, ...] = ood.SCORE_NAMES
  robustness_norms: tuple[str, ...] = robustness.NORMS
  epsilons: Mapping[str, Sequence[float]] = dataclasses.field(default_factory=dict)
  pgd_steps: int = 40
  pgd_step_size: float | None = None
  robustness_num_examples: int | None = 1000
  robustness_protocol: str = "fixed_epsilon"
  binary_search_steps: int = 20
  noise_copies: int = robustness.PAPER_NUM_COPIES
  refine_steps: int = robustness.PAPER_REFINE_STEPS
  refine_noise_std: float = robustness.PAPER_REFINE_NOISE_STD

  def __post_init__(self):
    if not (np.isfinite(self.noise_std) and self.noise_std >= 0):
      raise ValueError(f"noise_std must be a finite number >= 0; got {self.noise_std}.")
    if self.robustness_protocol not in robustness.PROTOCOLS:
      raise ValueError(f"robustness_protocol must be one of {robustness.PROTOCOLS}; got "
                       f"{self.robustness_protocol!r}.")
    for name in ("batch_size", "num_bins", "pgd_steps", "binary_search_steps", "noise_copies"):
      value = getattr(self, name)
      if isinstance(value, bool) or int(value) != value or value < 1:
        raise ValueError(f"{name} must be a positive integer; got {value!r}.")
    if isinstance(self.refine_steps, bool) or int(self.refine_steps) != self.refine_steps or (
        self.refine_steps < 0):
      raise ValueError(f"refine_steps must be an integer >= 0; got {self.refine_steps!r}.")
    if not (np.isfinite(self.refine_noise_std) and self.refine_noise_std >= 0):
      raise ValueError(f"refine_noise_std must be a finite number >= 0; got "
                       f"{self.refine_noise_std}.")
    n = self.robustness_num_examples
    if n is not None and (isinstance(n, bool) or int(n) != n or n < 1):
      raise ValueError(f"robustness_num_examples must be a positive integer or None; got {n!r}.")
    bad_scores = set(self.ood_scores) - set(ood.SCORE_NAMES)
    if bad_scores:
      raise ValueError(f"ood_scores must be among {ood.SCORE_NAMES}; got {sorted(bad_scores)}.")
    bad_norms = (set(self.robustness_norms) | set(self.epsilons)) - set(robustness.NORMS)
    if bad_norms:
      raise ValueError(f"norms must be among {robustness.NORMS}; got {sorted(bad_norms)}.")


@dataclasses.dataclass
class EvalInputs:
  """What every evaluator gets: the model, the data, a key and the options.

  Attributes:
    apply_fn: `apply_fn(params, x) -> logits [B, K]`, deterministic (no dropout).
    params: parameters of `apply_fn`.
    images: `[N, H, W, C]` float test images in model space, [-1, 1] (uint8 / 127.5 - 1).
    labels: `[N]` int32 test labels.
    ood_images: OOD set name -> `[M, H, W, C]` float images in model space.
    key: PRNG key; split by purpose inside (input noise per set, PGD starts).
    options: `EvalOptions`.
    split: the name of the split `images` come from ("test", "validation"); it names the key
      of their input noise (`inference.noise_key(seed, split)`), so a split has the same noise
      here as in training's validation.
    validation_images: `[V, H, W, C]` float validation images in model space, the held-out set
      temperature scaling is fitted on (with the noise training validated with); `None`: no
      temperature scaling.
    validation_labels: `[V]` int labels of `validation_images`.
  """
  apply_fn: ApplyFn
  params: Any
  images: np.ndarray
  labels: np.ndarray
  ood_images: Mapping[str, np.ndarray] = dataclasses.field(default_factory=dict)
  key: jax.Array = dataclasses.field(default_factory=lambda: jax.random.key(0))
  options: EvalOptions = dataclasses.field(default_factory=EvalOptions)
  split: str = "test"
  validation_images: np.ndarray | None = None
  validation_labels: np.ndarray | None = None
  # Logits computed once and shared by the evaluators: noisy test (classification and
  # calibration), clean test and noisy validation (calibration).
  _logits: np.ndarray | None = dataclasses.field(default=None, repr=False, compare=False)
  _clean_logits: np.ndarray | None = dataclasses.field(default=None, repr=False, compare=False)
  _validation_logits: np.ndarray | None = dataclasses.field(default=None, repr=False,
                                                            compare=False)

  def __post_init__(self):
    self.images = np.asarray(self.images)
    self.labels = np.asarray(self.labels)
    if self.images.ndim != 4 or not np.issubdtype(self.images.dtype, np.floating):
      raise ValueError(
          f"images must be float [N, H, W, C] in [-1, 1]; got {self.images.dtype} "
          f"{self.images.shape}. Convert uint8 images with x / 127.5 - 1.")
    if self.labels.shape != (self.images.shape[0],) or not np.issubdtype(
        self.labels.dtype, np.integer):
      raise ValueError(f"labels must be int [{self.images.shape[0]}]; got {self.labels.dtype} "
                       f"{self.labels.shape}.")
    if (self.validation_images is None) != (self.validation_labels is None):
      raise ValueError("give validation_images and validation_labels together, or neither.")
    if self.validation_images is not None:
      self.validation_images = np.asarray(self.validation_images)
      self.validation_labels = np.asarray(self.validation_labels)
      v = self.validation_images
      if v.ndim != 4 or v.shape[1:] != self.images.shape[1:] or not np.issubdtype(
          v.dtype, np.floating):
        raise ValueError(f"validation_images must be float [V, H, W, C] with the shape "
                         f"{self.images.shape[1:]} of images; got {v.dtype} {v.shape}.")
      if self.validation_labels.shape != (v.shape[0],) or not np.issubdtype(
          self.validation_labels.dtype, np.integer):
        raise ValueError(f"validation_labels must be int [{v.shape[0]}]; got "
                         f"{self.validation_labels.dtype} {self.validation_labels.shape}.")
    for name, x in self.ood_images.items():
      if np.ndim(x) != 4 or not np.issubdtype(np.asarray(x).dtype, np.floating):
        raise ValueError(f"OOD set {name!r} must be float [M, H, W, C] in [-1, 1]; got "
                         f"{np.asarray(x).dtype} {np.shape(x)}.")


def _noisy_map(step: Callable, inputs: EvalInputs, x: np.ndarray, purpose: str) -> Any:
  """`step` (from `inference.make_noisy_fn`) over all of `x` in batches, with the set's key."""
  return inference.predict(step, inputs.params, x, purpose_key(inputs.key, "noise/" + purpose),
                           batch_size=inputs.options.batch_size)


def _logits_of(inputs: EvalInputs, x: np.ndarray, purpose: str, noise_std: float) -> np.ndarray:
  logging.info("Computing logits of %d %s images (input noise %g).", x.shape[0], purpose,
               noise_std)
  step = make_noisy_fn(inference.logits_fn(inputs.apply_fn), noise_std)
  return np.asarray(_noisy_map(step, inputs, x, purpose))


def test_logits(inputs: EvalInputs) -> np.ndarray:
  """`[N, K]` float32 logits of the (noisy) test images, computed once per `EvalInputs`."""
  if inputs._logits is None:
    inputs._logits = _logits_of(inputs, inputs.images, inputs.split, inputs.options.noise_std)
  return inputs._logits


def clean_test_logits(inputs: EvalInputs) -> np.ndarray:
  """`[N, K]` float32 logits of the test images without input noise (NG-EBM's ECE protocol)."""
  if inputs.options.noise_std == 0:
    return test_logits(inputs)
  if inputs._clean_logits is None:
    inputs._clean_logits = _logits_of(inputs, inputs.images, inputs.split, 0.0)
  return inputs._clean_logits


def validation_logits(inputs: EvalInputs) -> np.ndarray | None:
  """`[V, K]` logits of the validation images with the noise training validated with, or None.

  The key is the split's own (`"noise/validation"`), as in `inference.noise_key(seed,
  "validation")`: these are the logits that chose the best checkpoint.
  """
  if inputs.validation_images is None:
    return None
  if inputs.split == "validation" and inputs.validation_images is inputs.images:
    return test_logits(inputs)
  if inputs._validation_logits is None:
    inputs._validation_logits = _logits_of(inputs, inputs.validation_images, "validation",
                                           inputs.options.noise_std)
  return inputs._validation_logits


def _slug(name: str) -> str:
  return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def evaluate_classification(inputs: EvalInputs, output_dir: str) -> dict:
  """Accuracy, NLL (nats) and Brier score on the test set."""
  del output_dir  # no plots
  logits = test_logits(inputs)
  return dict(
      accuracy=calibration.accuracy(logits, inputs.labels),
      nll=calibration.negative_log_likelihood(logits, inputs.labels, from_logits=True),
      brier=calibration.brier_score(logits, inputs.labels, from_logits=True),
      num_examples=int(inputs.labels.shape[0]),
      noise_std=float(inputs.options.noise_std),
  )


# The flat figures of `evaluate_calibration` that temperature scaling changes (accuracy does not
# change: dividing the logits by one T keeps the arg-max); each also exists as `<name>_ts`.
CALIBRATION_FIGURES = ("ece", "ece_paper", "confidence_gap", "mean_confidence", "nll", "brier")


def evaluate_calibration(inputs: EvalInputs, output_dir: str) -> dict:
  """Calibration as the standard protocol and as NG-EBM's code measure it, before and after TS.

  Figures (fractions; NLL in nats):
  - `ece`: expected calibration error, `num_bins` bins, mean confidence per bin (Guo et al.),
    on the test images with the recipe's test-time noise (`options.noise_std`);
  - `ece_paper`: NG-EBM's variant (its evaluation code): 20 bins compared with their bin
    centres, on CLEAN test images: the ECE behind the published 2.5x / 7.5x ratios;
  - `confidence_gap` (mean confidence - accuracy; > 0: over-confident), `mean_confidence`,
    `accuracy`, `nll`, `brier` on the noisy test images (`clean` holds them all on clean ones);
  - `temperature`: the `T` minimizing the NLL of `softmax(logits / T)` on the validation split
    (its noisy logits, as validation in training saw them; `temperature.fit_temperature`), and
    every figure above again with the test logits divided by `T`: `ece_ts`, `ece_paper_ts`
    (clean logits / the same `T`), `confidence_gap_ts`, `mean_confidence_ts`, `nll_ts`,
    `brier_ts`. Without validation images these are `None`.
  Plots: `reliability` (before TS) and `reliability_ts` (after), of the noisy test images.
  """
  num_bins = inputs.options.num_bins
  labels = inputs.labels
  noisy = calibration.calibration_figures(test_logits(inputs), labels, num_bins=num_bins)
  clean = calibration.calibration_figures(clean_test_logits(inputs), labels, num_bins=num_bins)
  out = dict(
      accuracy=noisy["accuracy"],
      **{k: noisy[k] for k in CALIBRATION_FIGURES if k != "ece_paper"},
      ece_paper=clean["ece_center"],
      num_bins=int(num_bins),
      paper_num_bins=calibration.PAPER_NUM_BINS,
      noise_std=float(inputs.options.noise_std),
      clean={k: clean[k] for k in ("accuracy", "ece", "confidence_gap", "mean_confidence", "nll",
                                   "brier")},
      bins=noisy["bins"],
      temperature=None,
      temperature_fitted_on=None,
      **{f"{k}_ts": None for k in CALIBRATION_FIGURES},
      bins_ts=None,
      plots={},
  )
  plot = plots.reliability_diagram(
      noisy["bins"], os.path.join(output_dir, "reliability.png"),
      title=f"Reliability ({num_bins} bins)", ece=noisy["ece"])
  out["plots"]["reliability"] = os.path.relpath(plot, output_dir)
  val_logits = validation_logits(inputs)
  if val_logits is None:
    logging.warning("No validation images: no temperature scaling.")
    return out
  t = temperature_lib.fit_temperature(val_logits, inputs.validation_labels)
  scaled = calibration.calibration_figures(
      temperature_lib.scale_logits(test_logits(inputs), t), labels, num_bins=num_bins)
  scaled_clean = calibration.calibration_figures(
      temperature_lib.scale_logits(clean_test_logits(inputs), t), labels, num_bins=num_bins)
  out.update(temperature=t, temperature_fitted_on=f"validation ({val_logits.shape[0]} images)",
             **{f"{k}_ts": scaled[k] for k in CALIBRATION_FIGURES if k != "ece_paper"},
             ece_paper_ts=scaled_clean["ece_center"], bins_ts=scaled["bins"])
  plot = plots.reliability_diagram(
      scaled["bins"], os.path.join(output_dir, "reliability_ts.png"),
      title=f"Reliability after temperature scaling (T = {t:.3g})", ece=scaled["ece"])
  out["plots"]["reliability_ts"] = os.path.relpath(plot, output_dir)
  return out


def evaluate_ood(inputs: EvalInputs, output_dir: str) -> dict:
  """AUROC, AUPR in/out and FPR@95TPR of each score on each OOD set; histograms and ROC plots."""
  score_names = tuple(inputs.options.ood_scores)
  if not inputs.ood_images:
    logging.warning("No OOD sets given: the ood evaluator has nothing to do.")
    return dict(metrics={}, score_means={}, plots={})
  steps = {}

  def scores_of(x, purpose, noise_std=inputs.options.noise_std):
    if noise_std not in steps:  # one compilation per noise level
      steps[noise_std] = make_noisy_fn(ood.make_score_fn(inputs.apply_fn, score_names), noise_std)
    return _noisy_map(steps[noise_std], inputs, np.asarray(x), purpose)

  def noise_std_of(set_name):
    return inputs.options.noise_std * float(
        np.sqrt(ood_sets.TEST_NOISE_VARIANCE.get(set_name, 1.0)))

  logging.info("OOD scores of the in-distribution test set.")
  scores_in = scores_of(inputs.images, inputs.split)
  metrics, means, plot_paths = {}, {"in_distribution": {}}, {}
  for s in score_names:
    means["in_distribution"][s] = float(np.mean(scores_in[s]))
  roc = {s: {} for s in score_names}
  for set_name, x_out in inputs.ood_images.items():
    logging.info("OOD scores of %r (%d images).", set_name, np.shape(x_out)[0])
    scores_out = scores_of(x_out, "ood/" + set_name, noise_std_of(set_name))
    metrics[set_name], means[set_name] = {}, {}
    for s in score_names:
      m = ood.ood_metrics(scores_in[s], scores_out[s])
      metrics[set_name][s] = m
      means[set_name][s] = float(np.mean(scores_out[s]))
      roc[s][f"{set_name} (AUROC {m['auroc']:.3f})"] = ood.roc_curve(scores_in[s], scores_out[s])
      path = plots.ood_histogram(
          scores_in[s], scores_out[s],
          os.path.join(output_dir, f"ood_hist_{s}_{_slug(set_name)}.png"),
          score_name=ood.SCORE_TITLES[s], in_name="test", out_name=set_name)
      plot_paths[f"hist/{s}/{set_name}"] = os.path.relpath(path, output_dir)
  for s in score_names:
    path = plots.roc_curves(roc[s], os.path.join(output_dir, f"roc_{s}.png"),
                            title=f"ROC, score {ood.SCORE_TITLES[s]}")
    plot_paths[f"roc/{s}"] = os.path.relpath(path, output_dir)
  return dict(metrics=metrics, score_means=means, num_in=int(inputs.images.shape[0]),
              num_out={k: int(np.shape(v)[0]) for k, v in inputs.ood_images.items()},
              noise_std={k: noise_std_of(k) for k in ("in_distribution", *inputs.ood_images)},
              plots=plot_paths)


def evaluate_robustness(inputs: EvalInputs, output_dir: str) -> dict:
  """Robustness to PGD on the first test examples, by `options.robustness_protocol`.

  "fixed_epsilon": accuracy under PGD at each epsilon (test-time noise added to the attacked
  images). "paper": the smallest successful epsilon of each image (`robustness.minimal_epsilons`,
  the NG-EBM code's protocol), and from it the accuracy at each epsilon. Either way
  `out[norm]` has `epsilons` and `accuracy`, plotted as a curve per norm.
  """
  opts = inputs.options
  n = attacked_examples(inputs)
  x, y = inputs.images[:n], inputs.labels[:n]
  out = dict(protocol=opts.robustness_protocol, num_examples=int(n),
             num_steps=int(opts.pgd_steps),
             step_size=None if opts.pgd_step_size is None else float(opts.pgd_step_size),
             noise_std=float(opts.noise_std), plots={})
  for norm in opts.robustness_norms:
    epsilons = tuple(opts.epsilons.get(norm, robustness.DEFAULT_EPSILONS[norm]))
    key = purpose_key(inputs.key, "pgd/" + norm)
    path = os.path.join(output_dir, f"robustness_{norm}.png")
    if opts.robustness_protocol == "paper":
      # The reference attacks 5 noisy copies (sigma 0.03) under L-inf, the clean model under L2.
      sigma = float(opts.noise_std) if norm == "linf" else 0.0
      found = robustness.minimal_epsilons(
          inputs.apply_fn, inputs.params, x, y, key=key, norm=norm, num_steps=opts.pgd_steps,
          binary_search_steps=opts.binary_search_steps, num_copies=opts.noise_copies,
          noise_std=sigma, batch_size=opts.batch_size, refine_steps=opts.refine_steps,
          refine_noise_std=opts.refine_noise_std)
      min_eps = found["epsilons"]
      fooled = np.isfinite(min_eps) & found["clean_correct"]
      out[norm] = dict(
          epsilons=[float(e) for e in epsilons],
          accuracy=robustness.accuracy_at(min_eps, epsilons),
          minimal_epsilons=[float(e) if np.isfinite(e) else None for e in min_eps],
          clean_accuracy=float(np.mean(found["clean_correct"])),
          median_minimal_epsilon=float(np.median(min_eps[fooled])) if fooled.any() else None,
          never_fooled=int(np.sum(found["clean_correct"] & ~np.isfinite(min_eps))),
          attack_noise_std=sigma, refine_steps=int(opts.refine_steps),
          refine_noise_std=float(opts.refine_noise_std),
          noise_copies=int(opts.noise_copies) if sigma > 0 or (
              opts.refine_steps > 0 and opts.refine_noise_std > 0) else 1)
      plots.minimal_epsilon_curves({"this run": min_eps}, path, norm=norm)
    else:
      acc = robustness.robust_accuracy(
          inputs.apply_fn, inputs.params, x, y, key=key, norm=norm, epsilons=epsilons,
          num_steps=opts.pgd_steps, step_size=opts.pgd_step_size, batch_size=opts.batch_size,
          noise_std=opts.noise_std)
      out[norm] = dict(epsilons=[float(e) for e in acc],
                       accuracy=[float(a) for a in acc.values()])
      plots.robustness_curves({"this run": (out[norm]["epsilons"], out[norm]["accuracy"])},
                              path, norm=norm)
    out["plots"][norm] = os.path.relpath(path, output_dir)
  return out


EVALUATORS: dict[str, Callable[[EvalInputs, str], dict]] = {
    "classification": evaluate_classification,
    "calibration": evaluate_calibration,
    "ood": evaluate_ood,
    "robustness": evaluate_robustness,
}


def attacked_examples(inputs: EvalInputs) -> int:
  """How many test images the robustness evaluator attacks: the first
  `options.robustness_num_examples` of `inputs.images` (which `max_examples` already caps)."""
  n = int(inputs.images.shape[0])
  limit = inputs.options.robustness_num_examples
  return n if limit is None else min(n, int(limit))


def evaluation_plan(names: Sequence[str], inputs: EvalInputs) -> dict[str, dict]:
  """What each named evaluator will compute, before it starts: images, sets, epsilons, steps.

  The robustness entry gives the attack's size: images x epsilons x PGD steps (fixed-epsilon
  protocol), or images x at most `2 * binary_search_steps` tries x PGD steps (paper protocol,
  each try on `noise_copies` refined copies).
  """
  opts = inputs.options
  n = int(inputs.images.shape[0])
  plan = {}
  for name in names:
    if name == "classification":
      plan[name] = dict(images=n)
    elif name == "calibration":
      v = inputs.validation_images
      plan[name] = dict(images=n, validation_images=0 if v is None else int(v.shape[0]))
    elif name == "ood":
      plan[name] = dict(images=n, scores=list(opts.ood_scores),
                        ood_sets={k: int(v.shape[0]) for k, v in inputs.ood_images.items()})
    elif name == "robustness":
      entry = dict(images=attacked_examples(inputs), protocol=opts.robustness_protocol,
                   pgd_steps=int(opts.pgd_steps),
                   epsilons={norm: len(opts.epsilons.get(norm, robustness.DEFAULT_EPSILONS[norm]))
                             for norm in opts.robustness_norms})
      if opts.robustness_protocol == "paper":
        entry.update(max_tries=2 * int(opts.binary_search_steps),
                     noise_copies=int(opts.noise_copies), refine_steps=int(opts.refine_steps))
      plan[name] = entry
    else:
      plan[name] = {}
  return plan


def describe_plan(plan: Mapping[str, Mapping[str, Any]]) -> str:
  """One line per evaluator of `evaluation_plan`, for the log."""
  lines = []
  for name, entry in plan.items():
    if name == "robustness":
      eps = ", ".join(f"{norm}: {k} epsilons" for norm, k in entry["epsilons"].items())
      per = (f"{entry['pgd_steps']} PGD steps per epsilon" if entry["protocol"] != "paper" else
             f"up to {entry['max_tries']} searches of {entry['pgd_steps']} PGD steps on "
             f"{entry['noise_copies']} copies, {entry['refine_steps']} refinement step(s)")
      lines.append(f"robustness ({entry['protocol']}): {entry['images']} images; {eps}; {per}")
    else:
      lines.append(f"{name}: " + ", ".join(f"{k} {v}" for k, v in entry.items()))
  return "\n  ".join(lines)


def run_evaluators(names: Sequence[str], inputs: EvalInputs, output_dir: str) -> dict:
  """Runs the named evaluators in order; returns name -> figures (JSON-able).

  Args:
    names: keys of `EVALUATORS`.
    inputs: the model, data, key and options.
    output_dir: folder for this run's plots (created).

  Returns:
    dict evaluator name -> its dict of figures, plot paths relative to `output_dir`.
  """
  unknown = [n for n in names if n not in EVALUATORS]
  if unknown:
    raise ValueError(f"unknown evaluators {unknown}; choose from {sorted(EVALUATORS)}.")
  epath.Path(output_dir).mkdir(parents=True, exist_ok=True)  # a gs:// folder too
  results = {}
  for name in names:
    logging.info("Running evaluator %r.", name)
    results[name] = EVALUATORS[name](inputs, output_dir)
  return results
