"""What every evaluator gets: `EvalOptions` (from `config.eval`), `EvalInputs`, shared logits.

`EvalOptions` holds no defaults of its own: `EvalOptions.from_config(config)` reads them from
`config.eval` (and the test-time noise from `config.dataset.noise_std`), the one home of every
evaluation setting (`configs/default.py`).

Protocol (docs/method.rst): the NG-EBM recipe adds Gaussian noise of std 0.03
to every input at test time. Here that is `EvalOptions.noise_std`, applied by the evaluators to
the test images, to every OOD set, and to the adversarial images before they are classified; the
metrics and attacks themselves know nothing of it. "interp" gets std `noise_std * sqrt(1.5)`:
the reference averages two test images that already carry the noise and adds it again
(`ngebm_jax.data.ood_data.TEST_NOISE_VARIANCE`). The noise of example `i`
of a set is drawn from `fold_in(fold_in(key, set), i)`: it does not depend on the batch size.

The logits of a set are computed once per `EvalInputs` and shared by the evaluators
(`test_logits`, `clean_test_logits`, `validation_logits`); the jitted step that computes them is
built once per model, noise level and mesh, so validating every few thousand steps compiles once.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Mapping, Sequence

from absl import logging
import jax
import numpy as np

from ngebm_jax.energy import ApplyFn
from ngebm_jax.evaluation import inference
from ngebm_jax.evaluation import ood
from ngebm_jax.evaluation import robustness
from ngebm_jax.evaluation.inference import purpose_key


@dataclasses.dataclass(frozen=True)
class EvalOptions:
  """Settings of the evaluators, read from a config by `from_config` (no defaults here).

  Attributes (the `config.eval` field of the same name, unless said otherwise):
    noise_std: std of the Gaussian input noise added at test time (model units;
      `config.dataset.noise_std`, 0.03 in the recipe; 0 to evaluate clean inputs).
    batch_size: examples per device call.
    num_bins: confidence bins of ECE and the reliability diagram (20 as in JEM / NG-EBM).
    ood_scores: OOD scores to evaluate, a subset of `ood.SCORE_NAMES`.
    robustness_norms: PGD norms, a subset of `("linf", "l2")`.
    epsilons: norm -> epsilons in [0, 1] pixel units (`config.eval.epsilons_<norm>`), for every
      norm of `robustness_norms`.
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
    figures: whether the evaluators draw their figures (PNGs under their `output_dir`); off,
      their `plots` are empty and the report says "–" where it would link one.
  """
  noise_std: float
  batch_size: int
  num_bins: int
  ood_scores: tuple[str, ...]
  robustness_norms: tuple[str, ...]
  epsilons: Mapping[str, Sequence[float]]
  pgd_steps: int
  pgd_step_size: float | None
  robustness_num_examples: int | None
  robustness_protocol: str
  binary_search_steps: int
  noise_copies: int
  refine_steps: int
  refine_noise_std: float
  figures: bool

  @classmethod
  def from_config(cls, config) -> "EvalOptions":
    """The options of `config.eval` (and `config.dataset.noise_std`)."""
    e = config.eval
    fields = {f.name for f in dataclasses.fields(cls)} - {"noise_std", "epsilons"}
    values = {name: e[name] for name in fields}
    for name in ("ood_scores", "robustness_norms"):
      values[name] = tuple(values[name])
    return cls(noise_std=float(config.dataset.noise_std),
               epsilons={norm: tuple(float(x) for x in e[f"epsilons_{norm}"])
                         for norm in robustness.NORMS}, **values)

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
    no_epsilons = sorted(set(self.robustness_norms) - set(self.epsilons))
    if no_epsilons:
      raise ValueError(f"epsilons must give the epsilons of every norm attacked; "
                       f"{no_epsilons} have none.")


@dataclasses.dataclass
class EvalInputs:
  """What every evaluator gets: the model, the data, a key and the options.

  Attributes:
    apply_fn: `apply_fn(params, x) -> logits [B, K]`, deterministic (no dropout).
    params: parameters of `apply_fn`.
    images: `[N, H, W, C]` float test images in model space, [-1, 1] (uint8 / 127.5 - 1).
    labels: `[N]` int32 test labels.
    ood_images: OOD set name -> `[M, H, W, C]` float images in model space.
    key: PRNG key, `jax.random.key(config.eval.seed)`; split by purpose inside (input noise per
      set, PGD starts).
    options: `EvalOptions`.
    split: the name of the split `images` come from ("test", "validation"); it names the key
      of their input noise (`inference.noise_key(seed, split)`), so a split has the same noise
      here as in training's validation.
    validation_images: `[V, H, W, C]` float validation images in model space, the held-out set
      temperature scaling is fitted on (with the noise training validated with); `None`: no
      temperature scaling.
    validation_labels: `[V]` int labels of `validation_images`.
    mesh: a device mesh with one data axis to split each batch of logits over (validation
      during training); None: one device.
    model: the model's `ModelFns`, for evaluators that need more than `apply_fn` (the focus
      task's class activation maps); None when only `apply_fn` is known.
    extras: per-example arrays of the split besides images and labels (the focus task's
      `human_map`, `artifact_mask`, `kind`), each `[N, ...]`.
  """
  apply_fn: ApplyFn
  params: Any
  images: np.ndarray
  labels: np.ndarray
  key: jax.Array
  options: EvalOptions
  ood_images: Mapping[str, np.ndarray] = dataclasses.field(default_factory=dict)
  split: str = "test"
  validation_images: np.ndarray | None = None
  validation_labels: np.ndarray | None = None
  mesh: Any = None
  model: Any = None
  extras: Mapping[str, np.ndarray] = dataclasses.field(default_factory=dict)
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


def noisy_map(step: Callable, inputs: EvalInputs, x: np.ndarray, purpose: str) -> Any:
  """`step` (from `inference.make_noisy_fn`) over all of `x` in batches, with the set's key."""
  return inference.predict(step, inputs.params, x, purpose_key(inputs.key, "noise/" + purpose),
                           batch_size=inputs.options.batch_size)


@functools.lru_cache(maxsize=8)
def _logits_step(apply_fn: ApplyFn, noise_std: float, mesh) -> Callable:
  """The jitted noisy-logits step of one model, noise level and mesh, built once."""
  return inference.make_noisy_fn(inference.logits_fn(apply_fn), noise_std, mesh)


def _logits_of(inputs: EvalInputs, x: np.ndarray, purpose: str, noise_std: float) -> np.ndarray:
  logging.info("Computing logits of %d %s images (input noise %g).", x.shape[0], purpose,
               noise_std)
  step = _logits_step(inputs.apply_fn, float(noise_std), inputs.mesh)
  return np.asarray(noisy_map(step, inputs, x, purpose))


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


