"""Can an OOD set answer? How well simple image features tell it from the test set.

An OOD detection figure (AUROC of log p~(x), max p(y|x), Approximate Mass; JEM section 5) only
measures the model when the OOD set differs from the in-distribution test set in something a
detector could see. This module checks that, model-free, on the images as the evaluator feeds
them (pixels in [-1, 1], plus its Gaussian input noise):

- each of a few pixel statistics (`STATISTIC_NAMES`: per-channel mean and standard deviation,
  mean absolute neighbour differences, saturation, the spread of 8x8 block means) used alone as
  a score; its AUROC is oriented (`max(a, 1 - a)`), since either side may be the higher one;
- a logistic regression (scikit-learn, standardized features) on those statistics and on
  gradient-orientation histograms (8 orientations in each cell of a 4x4 grid, HOG-like, for
  shape), trained to tell the set from the test set; its AUROC is cross-validated (stratified
  k-fold, out-of-fold decision values), so it is not the fit's own training error.

Each set is then called (`separation_kind`):

  far          a single pixel statistic separates it (AUROC >= 0.95): any detector that looks at
               image statistics finds it; a model that ranks it in-distribution fails plainly.
  near         no single statistic does, but the classifier does (AUROC >= 0.75): the difference
               is there for a model to learn, in texture or shape.
  unconfirmed  neither (classifier AUROC < 0.75): simple features cannot tell it from the test
               set. If the difference is only semantic (objects never seen in training), a model
               may still separate it, but a low AUROC on it cannot be told from a set that
               measures nothing.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from ngebm_jax.evaluation import ood as ood_metrics

STATISTIC_NAMES = ("mean_r", "mean_g", "mean_b", "std_r", "std_g", "std_b",
                   "horizontal_difference", "vertical_difference", "saturation", "block_spread")
FAR_STATISTIC_AUROC = 0.95
NEAR_CLASSIFIER_AUROC = 0.75
_BLOCK = 8           # block_spread: the standard deviation of the means of 8x8 blocks
_CELLS = 4           # orientation histograms: a 4x4 grid of cells
_ORIENTATIONS = 8    # unsigned gradient orientations in [0, pi)


def _check_images(images, name: str) -> np.ndarray:
  images = np.asarray(images)
  if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
    raise ValueError(f"{name} must be uint8 RGB images [N, H, W, 3]; got {images.dtype} "
                     f"{images.shape}.")
  if images.shape[1] % _BLOCK or images.shape[2] % _BLOCK:
    raise ValueError(f"{name}: height and width must be multiples of {_BLOCK}; got "
                     f"{images.shape[1:3]}.")
  return images


def to_model_input(images: np.ndarray, noise_std: float, rng: np.random.Generator
                   ) -> np.ndarray:
  """uint8 images -> float32 in [-1, 1] plus N(0, noise_std^2) noise, as the evaluator sees them."""
  x = images.astype(np.float32) / 127.5 - 1.0
  if noise_std > 0:
    x = x + noise_std * rng.standard_normal(x.shape).astype(np.float32)
  return x


def pixel_statistics(x: np.ndarray) -> np.ndarray:
  """`[N, 10]` statistics of `x: [N, H, W, 3]` floats, in `STATISTIC_NAMES` order."""
  n, h, w, _ = x.shape
  mean = x.mean(axis=(1, 2))
  std = x.std(axis=(1, 2))
  horizontal = np.abs(np.diff(x, axis=2)).mean(axis=(1, 2, 3))
  vertical = np.abs(np.diff(x, axis=1)).mean(axis=(1, 2, 3))
  saturation = (x.max(axis=-1) - x.min(axis=-1)).mean(axis=(1, 2))
  grey = x.mean(axis=-1)
  blocks = grey.reshape(n, h // _BLOCK, _BLOCK, w // _BLOCK, _BLOCK).mean(axis=(2, 4))
  return np.column_stack([mean, std, horizontal, vertical, saturation,
                          blocks.std(axis=(1, 2))]).astype(np.float64)


def orientation_histograms(x: np.ndarray) -> np.ndarray:
  """`[N, 4 * 4 * 8]` HOG-like features of `x: [N, H, W, 3]`: per cell of a 4x4 grid, the
  gradient magnitude of the grey image summed per unsigned orientation bin (central
  differences, borders left out), normalized to sum 1 over the image."""
  grey = x.mean(axis=-1)
  n, h, w = grey.shape
  gx, gy = np.zeros_like(grey), np.zeros_like(grey)  # 0 on the border pixels
  gx[:, 1:-1, 1:-1] = grey[:, 1:-1, 2:] - grey[:, 1:-1, :-2]
  gy[:, 1:-1, 1:-1] = grey[:, 2:, 1:-1] - grey[:, :-2, 1:-1]
  magnitude = np.hypot(gx, gy)
  angle = np.mod(np.arctan2(gy, gx), np.pi)
  bins = np.minimum((angle / np.pi * _ORIENTATIONS).astype(np.int64), _ORIENTATIONS - 1)
  out = np.zeros((n, _CELLS, _CELLS, _ORIENTATIONS), np.float64)
  for k in range(_ORIENTATIONS):
    weight = np.where(bins == k, magnitude, 0.0)
    out[..., k] = weight.reshape(n, _CELLS, h // _CELLS, _CELLS, w // _CELLS).sum(axis=(2, 4))
  out /= out.sum(axis=(1, 2, 3), keepdims=True) + 1e-12
  return out.reshape(n, -1)


def statistic_aurocs(stats_in: np.ndarray, stats_out: np.ndarray) -> dict[str, float]:
  """The oriented AUROC `max(a, 1 - a)` of each pixel statistic used alone as a score."""
  out = {}
  for j, name in enumerate(STATISTIC_NAMES):
    a = ood_metrics.ood_metrics(stats_in[:, j], stats_out[:, j])["auroc"]
    out[name] = max(a, 1.0 - a)
  return out


def classifier_auroc(features_in: np.ndarray, features_out: np.ndarray, *, folds: int = 5,
                     seed: int = 0) -> float:
  """Cross-validated AUROC of a logistic regression telling `features_in` (positive) from
  `features_out`: the AUROC of the out-of-fold decision values of `folds` stratified folds."""
  from sklearn import linear_model  # pylint: disable=g-import-not-at-top
  from sklearn import model_selection  # pylint: disable=g-import-not-at-top
  from sklearn import pipeline  # pylint: disable=g-import-not-at-top
  from sklearn import preprocessing  # pylint: disable=g-import-not-at-top
  x = np.concatenate([features_in, features_out])
  y = np.concatenate([np.ones(len(features_in)), np.zeros(len(features_out))])
  model = pipeline.make_pipeline(preprocessing.StandardScaler(),
                                 linear_model.LogisticRegression(max_iter=2000))
  cv = model_selection.StratifiedKFold(folds, shuffle=True, random_state=seed)
  decision = model_selection.cross_val_predict(model, x, y, cv=cv, method="decision_function")
  return ood_metrics.ood_metrics(decision[y == 1], decision[y == 0])["auroc"]


def separation_kind(best_statistic_auroc: float, classifier_auroc_: float) -> str:
  """"far", "near" or "unconfirmed", by the rule of the module docstring."""
  if best_statistic_auroc >= FAR_STATISTIC_AUROC:
    return "far"
  if classifier_auroc_ >= NEAR_CLASSIFIER_AUROC:
    return "near"
  return "unconfirmed"


def separability(test_images, ood_sets: Mapping[str, np.ndarray], *, seed: int = 0,
                 noise_std: float = 0.0, noise_variance: Mapping[str, float] | None = None,
                 folds: int = 5) -> dict[str, dict]:
  """How well simple features tell each OOD set from the test set (see the module docstring).

  Args:
    test_images: uint8 `[N, H, W, 3]` in-distribution test images.
    ood_sets: {name: uint8 `[M, H, W, 3]`}.
    seed: seeds the input noise and the folds.
    noise_std: the evaluator's input noise (`config.dataset.noise_std`, 0.03 in the recipe).
    noise_variance: {set: multiple of the noise variance it gets}, as
      `ngebm_jax.data.ood_data.TEST_NOISE_VARIANCE` ("interp": 1.5); others 1.
    folds: cross-validation folds of the classifier.

  Returns:
    {set: {"statistic_auroc": {statistic: oriented AUROC}, "best_statistic": name,
    "best_statistic_auroc", "classifier_auroc", "kind": "far" | "near" | "unconfirmed"}}.
  """
  test_images = _check_images(test_images, "test_images")
  if not ood_sets:
    raise ValueError("ood_sets is empty: name at least one OOD set to check.")
  if isinstance(folds, bool) or not isinstance(folds, int) or folds < 2:
    raise ValueError(f"folds must be an integer >= 2; got {folds!r}.")
  if not (noise_std >= 0 and np.isfinite(noise_std)):
    raise ValueError(f"noise_std must be a finite number >= 0; got {noise_std!r}.")
  checked = {name: _check_images(images, f"OOD set {name!r}") for name, images in ood_sets.items()}
  for name, images in {"test": test_images, **checked}.items():
    if images.shape[1:] != test_images.shape[1:]:
      raise ValueError(f"OOD set {name!r} has images of shape {images.shape[1:]}; the test set "
                       f"has {test_images.shape[1:]}.")
    if len(images) < folds:
      raise ValueError(f"{name!r} has {len(images)} images; {folds}-fold cross-validation needs "
                       f"at least {folds}.")
  noise_variance = dict(noise_variance or {})
  rng = np.random.default_rng(seed)

  def features(images, std):
    x = to_model_input(images, std, rng)
    stats = pixel_statistics(x)
    return stats, np.concatenate([stats, orientation_histograms(x)], axis=1)

  stats_in, features_in = features(test_images, noise_std)
  out = {}
  for name, images in checked.items():
    stats_out, features_out = features(
        images, noise_std * float(np.sqrt(noise_variance.get(name, 1.0))))
    single = statistic_aurocs(stats_in, stats_out)
    best = max(single, key=single.get)
    clf = classifier_auroc(features_in, features_out, folds=folds, seed=seed)
    out[name] = {"statistic_auroc": single, "best_statistic": best,
                 "best_statistic_auroc": single[best], "classifier_auroc": clf,
                 "kind": separation_kind(single[best], clf)}
  return out


def markdown(results: Mapping[str, Mapping]) -> str:
  """A table of `separability`'s results: one row per OOD set."""
  lines = ["| OOD set | best pixel statistic | its AUROC | classifier AUROC (CV) | kind |",
           "| --- | --- | ---: | ---: | --- |"]
  for name, r in results.items():
    lines.append(f"| {name} | {r['best_statistic']} | {r['best_statistic_auroc']:.3f} | "
                 f"{r['classifier_auroc']:.3f} | {r['kind']} |")
  return "\n".join(lines) + "\n"


__all__ = ["STATISTIC_NAMES", "FAR_STATISTIC_AUROC", "NEAR_CLASSIFIER_AUROC", "to_model_input",
           "pixel_statistics", "orientation_histograms", "statistic_aurocs", "classifier_auroc",
           "separation_kind", "separability", "markdown"]
