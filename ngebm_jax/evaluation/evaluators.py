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

  def __post_init__(self):
    if not (np.isfinite(self.noise_std) and self.noise_std >= 0):
      raise ValueError(f"noise_std must be a finite number >= 0; got {self.noise_std}.")
    for name in ("batch_size", "num_bins", "pgd_steps"):
      value = getattr(self, name)
      if isinstance(value, bool) or int(value) != value or value < 1:
        raise ValueError(f"{name} must be a positive integer; got {value!r}.")
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
  """
  apply_fn: ApplyFn
  params: Any
  images: np.ndarray
  labels: np.ndarray
  ood_images: Mapping[str, np.ndarray] = dataclasses.field(default_factory=dict)
  key: jax.Array = dataclasses.field(default_factory=lambda: jax.random.key(0))
  options: EvalOptions = dataclasses.field(default_factory=EvalOptions)
  split: str = "test"
  # Test-set logits shared by the classification and calibration evaluators (same noise).
  _logits: np.ndarray | None = dataclasses.field(default=None, repr=False, compare=False)

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
    for name, x in self.ood_images.items():
      if np.ndim(x) != 4 or not np.issubdtype(np.asarray(x).dtype, np.floating):
        raise ValueError(f"OOD set {name!r} must be float [M, H, W, C] in [-1, 1]; got "
                         f"{np.asarray(x).dtype} {np.shape(x)}.")


def _noisy_map(step: Callable, inputs: EvalInputs, x: np.ndarray, purpose: str) -> Any:
  """`step` (from `inference.make_noisy_fn`) over all of `x` in batches, with the set's key."""
  return inference.predict(step, inputs.params, x, purpose_key(inputs.key, "noise/" + purpose),
                           batch_size=inputs.options.batch_size)


def test_logits(inputs: EvalInputs) -> np.ndarray:
  """`[N, K]` float32 logits of the (noisy) test images, computed once per `EvalInputs`."""
  if inputs._logits is None:
    logging.info("Computing logits of %d test images.", inputs.images.shape[0])
    step = make_noisy_fn(inference.logits_fn(inputs.apply_fn), inputs.options.noise_std)
    inputs._logits = np.asarray(_noisy_map(step, inputs, inputs.images, inputs.split))
  return inputs._logits


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


def evaluate_calibration(inputs: EvalInputs, output_dir: str) -> dict:
  """ECE (mean-confidence form, and the bin-centre variant), per-bin data, reliability plot."""
  probs = np.exp(calibration.log_probabilities(test_logits(inputs), inputs.labels,
                                               from_logits=True))  # float64 softmax
  num_bins = inputs.options.num_bins
  bins = calibration.calibration_bins(probs, inputs.labels, num_bins=num_bins)
  ece = calibration.expected_calibration_error(probs, inputs.labels, num_bins=num_bins)
  ece_center = calibration.expected_calibration_error(
      probs, inputs.labels, num_bins=num_bins, bin_confidence="center")
  plot = plots.reliability_diagram(
      bins, os.path.join(output_dir, "reliability.png"),
      title=f"Reliability ({num_bins} bins)", ece=ece)
  return dict(
      ece=ece,
      ece_bin_center=ece_center,
      num_bins=int(num_bins),
      bins={k: np.asarray(v).tolist() for k, v in bins.items()},
      plots=dict(reliability=os.path.relpath(plot, output_dir)),
  )


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
  """Accuracy under PGD (each norm, each epsilon) on the first test examples; a curve per norm."""
  opts = inputs.options
  n = inputs.images.shape[0]
  if opts.robustness_num_examples is not None:
    n = min(n, int(opts.robustness_num_examples))
  x, y = inputs.images[:n], inputs.labels[:n]
  out = dict(num_examples=int(n), num_steps=int(opts.pgd_steps),
             step_size=None if opts.pgd_step_size is None else float(opts.pgd_step_size),
             noise_std=float(opts.noise_std), plots={})
  for norm in opts.robustness_norms:
    epsilons = tuple(opts.epsilons.get(norm, robustness.DEFAULT_EPSILONS[norm]))
    acc = robustness.robust_accuracy(
        inputs.apply_fn, inputs.params, x, y, key=purpose_key(inputs.key, "pgd/" + norm),
        norm=norm, epsilons=epsilons, num_steps=opts.pgd_steps, step_size=opts.pgd_step_size,
        batch_size=opts.batch_size, noise_std=opts.noise_std)
    out[norm] = dict(epsilons=[float(e) for e in acc], accuracy=[float(a) for a in acc.values()])
    path = plots.robustness_curves({"this run": (out[norm]["epsilons"], out[norm]["accuracy"])},
                                   os.path.join(output_dir, f"robustness_{norm}.png"), norm=norm)
    out["plots"][norm] = os.path.relpath(path, output_dir)
  return out


EVALUATORS: dict[str, Callable[[EvalInputs, str], dict]] = {
    "classification": evaluate_classification,
    "calibration": evaluate_calibration,
    "ood": evaluate_ood,
    "robustness": evaluate_robustness,
}


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
