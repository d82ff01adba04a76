"""Calibration metrics: expected calibration error, reliability bins, NLL and Brier score.

Expected Calibration Error (Guo et al., "On Calibration of Modern Neural Networks", ICML 2017,
eq. 3): the confidence `conf_i = max_k p_ik` of each prediction is put into one of `M`
equal-width bins of [0, 1], and

  ECE = sum_b |B_b| / n * |acc(B_b) - conf(B_b)|,

with `acc(B_b)` the accuracy and `conf(B_b)` the mean confidence of the examples in bin `b`.
JEM and NG-EBM report 20 bins (the default here); the calibration literature often uses 15.

Bin convention (as Guo et al.'s code): bin `b` is the half-open interval `(b/M, (b+1)/M]`, the
edges being `np.linspace(0, 1, M + 1)` in float64; the first bin is closed, `[0, 1/M]`, so that a
confidence of exactly 0 is counted (Guo's code drops it). Empty bins contribute nothing.

The NG-EBM code computes a variant that replaces the mean confidence of a bin by the bin centre
`(b + 0.5) / M` (and bins left-closed, `[b/M, (b+1)/M)`, which differs only for confidences that
fall exactly on an edge). `bin_confidence="center"` gives that variant, for comparison with the
numbers NG-EBM published; it is never the default (docs/method.rst).

These are host-side metrics on a whole test set: NumPy in float64, arrays in, Python floats out.
"""

from __future__ import annotations

from typing import Any

import numpy as np

# Rows of `probs` must sum to 1 within this tolerance (float32 softmax over 100 classes is
# off by about 1e-6).
_SUM_TOLERANCE = 1e-3


def _as_labels(labels: Any, num_examples: int, num_classes: int | None = None) -> np.ndarray:
  """Validates integer labels `[N]`, in `[0, num_classes)` when that is given."""
  labels = np.asarray(labels)
  if labels.shape != (num_examples,):
    raise ValueError(
        f"labels must be integer class indices with shape [{num_examples}] (one per example); "
        f"got shape {labels.shape}.")
  if not np.issubdtype(labels.dtype, np.integer):
    raise ValueError(f"labels must be integer class indices; got dtype {labels.dtype}.")
  if num_classes is not None and (labels.min() < 0 or labels.max() >= num_classes):
    raise ValueError(f"labels must be in [0, {num_classes}); got min {labels.min()}, "
                     f"max {labels.max()}.")
  return labels


def _check_probs(probs: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
  """Validates `probs [N, K]` (a distribution per row) and `labels [N]`; returns float64 arrays."""
  probs = np.asarray(probs)
  if probs.ndim != 2:
    raise ValueError(f"probs must have shape [N, K] (one distribution per row); got shape "
                     f"{probs.shape}.")
  if probs.shape[0] == 0 or probs.shape[1] == 0:
    raise ValueError(f"probs is empty: shape {probs.shape}.")
  if not (np.issubdtype(probs.dtype, np.floating) or np.issubdtype(probs.dtype, np.integer)):
    raise ValueError(f"probs must be real numbers; got dtype {probs.dtype}.")
  probs = probs.astype(np.float64)
  if not np.all(np.isfinite(probs)):
    raise ValueError("probs contains NaN or infinite values.")
  if probs.min() < 0.0 or probs.max() > 1.0:
    raise ValueError(
        f"probs must lie in [0, 1]; got values in [{probs.min()}, {probs.max()}]. Pass "
        f"softmax probabilities, not logits (or use from_logits=True where offered).")
  sums = probs.sum(axis=1)
  worst = np.max(np.abs(sums - 1.0))
  if worst > _SUM_TOLERANCE:
    raise ValueError(
        f"each row of probs must sum to 1 (within {_SUM_TOLERANCE}); the worst row sums to "
        f"{sums[np.argmax(np.abs(sums - 1.0))]}.")
  labels = _as_labels(labels, probs.shape[0], probs.shape[1])
  return probs, labels


def _check_num_bins(num_bins: int) -> None:
  if isinstance(num_bins, bool) or not isinstance(num_bins, (int, np.integer)) or num_bins < 1:
    raise ValueError(f"num_bins must be a positive integer; got {num_bins!r}.")


def bin_indices(confidences: np.ndarray, num_bins: int) -> np.ndarray:
  """Bin of each confidence: `b` such that `conf in (b/M, (b+1)/M]`, with 0 in bin 0.

  Args:
    confidences: `[N]` values in [0, 1].
    num_bins: `M`, the number of equal-width bins.

  Returns:
    `[N]` int64 bin indices in `[0, M)`.
  """
  _check_num_bins(num_bins)
  edges = np.linspace(0.0, 1.0, num_bins + 1)
  # side="left": the first edge >= conf, so conf == edge lands in the bin that edge closes.
  return np.clip(np.searchsorted(edges, confidences, side="left") - 1, 0, num_bins - 1)


def calibration_bins(probs: Any, labels: Any, *, num_bins: int = 20) -> dict[str, np.ndarray]:
  """Per-bin accuracy, mean confidence and count behind ECE and the reliability diagram.

  Args:
    probs: `[N, K]` predicted class probabilities (rows sum to 1).
    labels: `[N]` integer true classes.
    num_bins: `M` equal-width confidence bins (JEM / NG-EBM use 20).

  Returns:
    A dict of NumPy arrays, by key.

    - `accuracy`: `[M]` fraction of correct predictions in each bin (0 for an empty bin);
    - `confidence`: `[M]` mean max-probability in each bin (0 for an empty bin);
    - `count`: `[M]` int64 number of examples in each bin;
    - `edges`: `[M + 1]` bin edges, `np.linspace(0, 1, M + 1)`; bin `b` is
      `(edges[b], edges[b+1]]` (the first bin also holds 0).
  """
  probs, labels = _check_probs(probs, labels)
  _check_num_bins(num_bins)
  confidences = probs.max(axis=1)
  # Ties in argmax go to the lowest class index, as in np.argmax / torch.max.
  correct = (probs.argmax(axis=1) == labels).astype(np.float64)
  bins = bin_indices(confidences, num_bins)
  count = np.bincount(bins, minlength=num_bins).astype(np.int64)
  sum_correct = np.bincount(bins, weights=correct, minlength=num_bins)
  sum_confidence = np.bincount(bins, weights=confidences, minlength=num_bins)
  safe = np.maximum(count, 1)
  return dict(
      accuracy=np.where(count > 0, sum_correct / safe, 0.0),
      confidence=np.where(count > 0, sum_confidence / safe, 0.0),
      count=count,
      edges=np.linspace(0.0, 1.0, num_bins + 1),
  )


def expected_calibration_error(probs: Any, labels: Any, *, num_bins: int = 20,
                               bin_confidence: str = "mean") -> float:
  """Expected Calibration Error (Guo et al. 2017, eq. 3), a number in [0, 1].

  Args:
    probs: `[N, K]` predicted class probabilities (rows sum to 1).
    labels: `[N]` integer true classes.
    num_bins: `M` equal-width confidence bins; default 20 as in JEM and NG-EBM.
    bin_confidence: `"mean"` (default, Guo et al.): a bin's confidence is the mean max-probability
      of its examples. `"center"`: the bin centre `(b + 0.5) / M`, the variant computed by the
      NG-EBM code; offered only to compare with its published numbers.

  Returns:
    `sum_b |B_b| / N * |acc(B_b) - conf(B_b)|` as a Python float (multiply by 100 for percent).
  """
  if bin_confidence not in ("mean", "center"):
    raise ValueError(f'bin_confidence must be "mean" or "center"; got {bin_confidence!r}.')
  bins = calibration_bins(probs, labels, num_bins=num_bins)
  if bin_confidence == "mean":
    confidence = bins["confidence"]
  else:
    confidence = (np.arange(num_bins) + 0.5) / num_bins
  weights = bins["count"] / bins["count"].sum()
  gaps = np.abs(bins["accuracy"] - confidence)
  return float(np.sum(np.where(bins["count"] > 0, weights * gaps, 0.0)))


def _log_softmax(logits: np.ndarray) -> np.ndarray:
  shifted = logits - logits.max(axis=1, keepdims=True)
  return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def _check_logits(logits: Any) -> np.ndarray:
  logits = np.asarray(logits)
  if logits.ndim != 2 or logits.shape[0] == 0 or logits.shape[1] == 0:
    raise ValueError(f"logits must have shape [N, K] with N, K > 0; got shape {logits.shape}.")
  if not np.issubdtype(logits.dtype, np.floating):
    raise ValueError(f"logits must be floating point; got dtype {logits.dtype}.")
  logits = logits.astype(np.float64)
  if not np.all(np.isfinite(logits)):
    raise ValueError("logits contains NaN or infinite values.")
  return logits


def log_probabilities(probs_or_logits: Any, labels: Any, *, from_logits: bool) -> np.ndarray:
  """`[N, K]` float64 log-probabilities from probabilities or logits, both validated with labels."""
  if from_logits:
    logits = _check_logits(probs_or_logits)
    _as_labels(labels, logits.shape[0], logits.shape[1])
    return _log_softmax(logits)
  probs, _ = _check_probs(probs_or_logits, labels)
  with np.errstate(divide="ignore"):
    return np.log(probs)


def negative_log_likelihood(probs_or_logits: Any, labels: Any, *,
                            from_logits: bool = False) -> float:
  """Mean negative log-likelihood of the true classes, `-1/N sum_i log p(y_i | x_i)` (nats).

  Args:
    probs_or_logits: `[N, K]` class probabilities, or logits when `from_logits=True`
      (preferred: the log-softmax of logits is exact where a probability may round to 0).
    labels: `[N]` integer true classes.
    from_logits: whether the first argument holds logits.

  Returns:
    The mean over examples, a Python float; `inf` if a true class has probability exactly 0.
  """
  logp = log_probabilities(probs_or_logits, labels, from_logits=from_logits)
  labels = np.asarray(labels)
  return float(-np.mean(logp[np.arange(logp.shape[0]), labels]))


def brier_score(probs_or_logits: Any, labels: Any, *, from_logits: bool = False) -> float:
  """Multi-class Brier score (Brier 1950): `1/N sum_i sum_k (p_ik - [y_i = k])^2`, in [0, 2].

  Args:
    probs_or_logits: `[N, K]` class probabilities, or logits when `from_logits=True`.
    labels: `[N]` integer true classes.
    from_logits: whether the first argument holds logits.

  Returns:
    The mean over examples of the squared error summed over classes, a Python float.
  """
  logp = log_probabilities(probs_or_logits, labels, from_logits=from_logits)
  probs = np.exp(logp)
  labels = np.asarray(labels)
  onehot = np.zeros_like(probs)
  onehot[np.arange(probs.shape[0]), labels] = 1.0
  return float(np.mean(np.sum((probs - onehot) ** 2, axis=1)))


def accuracy(probs_or_logits: Any, labels: Any) -> float:
  """Top-1 accuracy, `1/N sum_i [argmax_k p_ik = y_i]` (ties to the lowest class index)."""
  scores = np.asarray(probs_or_logits)
  if scores.ndim != 2 or scores.shape[0] == 0:
    raise ValueError(f"probs_or_logits must have shape [N, K] with N > 0; got {scores.shape}.")
  labels = _as_labels(labels, scores.shape[0], scores.shape[1])
  return float(np.mean(scores.argmax(axis=1) == labels))


def confidence_gap(probs: Any, labels: Any) -> float:
  """Mean confidence minus accuracy, `1/N sum_i (max_k p_ik - [argmax_k p_ik = y_i])`.

  Positive: the model is over-confident on average; negative: under-confident. Unlike ECE it
  keeps the sign, so it says which way a model is off (ECE >= the absolute confidence gap).
  """
  probs, labels = _check_probs(probs, labels)
  correct = probs.argmax(axis=1) == labels
  return float(np.mean(probs.max(axis=1) - correct))


# The variant of ECE behind NG-EBM's published ratios (its code's `calibration()`): 20 bins,
# each bin's accuracy compared with the bin centre. The inputs are clean (no test-time noise):
# that part is the caller's (see `evaluators.calibration.evaluate`).
PAPER_NUM_BINS = 20


def calibration_figures(logits: Any, labels: Any, *, num_bins: int = 20) -> dict[str, Any]:
  """Every calibration figure of one set of logits: what the evaluators and studies report.

  Args:
    logits: `[N, K]` logits (float32 or float64); the softmax is taken in float64.
    labels: `[N]` integer true classes.
    num_bins: bins of the mean-confidence ECE and of the reliability diagram.

  Returns:
    dict of Python floats `accuracy`, `mean_confidence`, `confidence_gap`, `ece` (mean
    confidence, `num_bins` bins), `ece_center` (bin centres, `PAPER_NUM_BINS` bins), `nll`
    (nats), `brier`, and `bins` (`calibration_bins`, `num_bins` bins, as lists).
  """
  probs = np.exp(log_probabilities(logits, labels, from_logits=True))
  bins = calibration_bins(probs, labels, num_bins=num_bins)
  return dict(
      accuracy=accuracy(probs, labels),
      mean_confidence=float(np.mean(probs.max(axis=1))),
      confidence_gap=confidence_gap(probs, labels),
      ece=expected_calibration_error(probs, labels, num_bins=num_bins),
      ece_center=expected_calibration_error(probs, labels, num_bins=PAPER_NUM_BINS,
                                            bin_confidence="center"),
      nll=negative_log_likelihood(logits, labels, from_logits=True),
      brier=brier_score(logits, labels, from_logits=True),
      bins={k: np.asarray(v).tolist() for k, v in bins.items()},
  )
