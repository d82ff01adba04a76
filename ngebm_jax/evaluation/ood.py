"""Out-of-distribution detection: scores of a classifier read as an EBM, and detection metrics.

Scores (JEM §5, Table 3; higher means "more in-distribution"):
  - `log_density`: `log p~(x) = logsumexp_y f(x)[y]` (JEM eq. 3);
  - `max_softmax`: `max_y p(y|x)`, the classifier baseline (Hendrycks & Gimpel 2017);
  - `approximate_mass`: `-||d log p~(x)/dx||_2` (JEM §5.2), one input-gradient pass.

Metrics, with the in-distribution set as the positive class:
  - `auroc`: area under the ROC curve (the papers' metric; 0.5 is chance);
  - `aupr_in`: average precision with in-distribution positive and the score as is;
  - `aupr_out`: average precision with OOD positive and the score negated;
  - `fpr_at_95_tpr`: the fraction of OOD examples accepted at the threshold that accepts 95% of
    the in-distribution examples. Precisely, with `n` in-distribution scores sorted in decreasing
    order, the threshold `t` is the `ceil(0.95 n)`-th of them, an example is accepted when its
    score is `>= t` (so ties with `t` count as false positives), and the value is
    `mean(scores_out >= t)`. This is the smallest false-positive rate on the ROC curve at which
    the true-positive rate is at least 95%.
Scores are computed on device in fixed-size batches by one jitted function; the metrics use
scikit-learn on the host.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ngebm_jax import _checks
from ngebm_jax.evaluation.inference import batched
# Not `from ngebm_jax import energy`: the package re-exports the function `energy` under that name.
from ngebm_jax.energy import ApplyFn
from ngebm_jax.energy import log_density
from ngebm_jax.energy import log_density_input_grad
from ngebm_jax.energy import per_example_norm

ScoreFn = Callable[[Any, jax.Array], dict]

SCORE_NAMES = ("log_density", "max_softmax", "approximate_mass")

# Names as the report prints them.
SCORE_TITLES = {
    "log_density": "log p~(x)",
    "max_softmax": "max p(y|x)",
    "approximate_mass": "approx. mass",
}


def _check_score_names(score_names: Sequence[str]) -> tuple[str, ...]:
  score_names = tuple(score_names)
  unknown = [s for s in score_names if s not in SCORE_NAMES]
  if unknown or not score_names:
    raise ValueError(f"score names must be a non-empty subset of {SCORE_NAMES}; got "
                     f"{score_names}.")
  return score_names


def make_score_fn(apply_fn: ApplyFn, score_names: Sequence[str] = SCORE_NAMES) -> ScoreFn:
  """A jitted `score_fn(params, x) -> {name: [B] float32}` for the named OOD scores.

  Build it once and reuse it for the in-distribution set and every OOD set: with batches of one
  size it compiles once.

  Args:
    apply_fn: `apply_fn(params, x) -> logits [B, K]`.
    score_names: a subset of `SCORE_NAMES`.
  """
  score_names = _check_score_names(score_names)

  def score_fn(params, x):
    _checks.check_images(x)
    if "approximate_mass" in score_names:
      grad, logits = log_density_input_grad(apply_fn, params, x)
    else:
      logits = apply_fn(params, x)
    logits = logits.astype(jnp.float32)
    out = {}
    if "log_density" in score_names:
      out["log_density"] = log_density(logits)
    if "max_softmax" in score_names:
      out["max_softmax"] = jnp.max(jax.nn.softmax(logits, axis=-1), axis=-1)
    if "approximate_mass" in score_names:
      out["approximate_mass"] = -per_example_norm(grad)
    return out

  return jax.jit(score_fn)


def ood_scores(apply_fn: ApplyFn, params: Any, x: Any, *,
               score_names: Sequence[str] = SCORE_NAMES, batch_size: int = 100,
               score_fn: ScoreFn | None = None) -> dict[str, np.ndarray]:
  """The named OOD scores of every example of `x`, computed in jitted batches.

  Args:
    apply_fn: `apply_fn(params, x) -> logits [B, K]`.
    params: parameters of `apply_fn`.
    x: `[N, H, W, C]` float inputs in the model's input space (about [-1, 1]); add the test-time
      input noise before calling, if the protocol asks for it.
    score_names: a subset of `SCORE_NAMES`.
    batch_size: examples per device call.
    score_fn: a function from `make_score_fn(apply_fn, score_names)`, to reuse its compilation
      across sets.

  Returns:
    dict name -> `[N]` float32 NumPy scores, higher meaning more in-distribution.
  """
  _checks.check_images(x)
  if score_fn is None:
    score_fn = make_score_fn(apply_fn, score_names)
  scores = batched(lambda xb: score_fn(params, xb), x, batch_size=batch_size)
  return {name: scores[name] for name in _check_score_names(score_names)}


def _sk_metrics():
  # Imported on first use: scikit-learn (and SciPy under it) takes seconds to import, and most
  # users of this package never compute an OOD metric.
  from sklearn import metrics  # pylint: disable=g-import-not-at-top
  return metrics


def _check_scores(scores: Any, name: str) -> np.ndarray:
  scores = np.asarray(scores, dtype=np.float64)
  if scores.ndim != 1 or scores.size == 0:
    raise ValueError(f"{name} must be a non-empty vector of scores [N]; got shape "
                     f"{scores.shape}.")
  if not np.all(np.isfinite(scores)):
    raise ValueError(f"{name} contains NaN or infinite scores.")
  return scores


def fpr_at_tpr(scores_in: Any, scores_out: Any, *, tpr: float = 0.95) -> float:
  """False-positive rate at the threshold that accepts a fraction `tpr` of in-distribution.

  The threshold `t` is the `ceil(tpr * n_in)`-th largest in-distribution score; the result is
  `mean(scores_out >= t)` (ties count as accepted). See the module docstring.
  """
  scores_in = _check_scores(scores_in, "scores_in")
  scores_out = _check_scores(scores_out, "scores_out")
  if not 0.0 < tpr <= 1.0:
    raise ValueError(f"tpr must be in (0, 1]; got {tpr}.")
  n = scores_in.size
  # Round before ceil so that 0.95 * 20 (18.999999999999996 in floats) counts as 19.
  k = int(np.ceil(round(tpr * n, 9)))
  threshold = np.sort(scores_in)[::-1][k - 1]
  return float(np.mean(scores_out >= threshold))


def ood_metrics(scores_in: Any, scores_out: Any) -> dict[str, float]:
  """AUROC, AUPR (in and out) and FPR at 95% TPR; in-distribution is the positive class.

  Args:
    scores_in: `[N_in]` scores of in-distribution examples (higher = more in-distribution).
    scores_out: `[N_out]` scores of out-of-distribution examples.

  Returns:
    dict with `auroc`, `aupr_in`, `aupr_out`, `fpr_at_95_tpr`, Python floats in [0, 1].
  """
  scores_in = _check_scores(scores_in, "scores_in")
  scores_out = _check_scores(scores_out, "scores_out")
  labels = np.concatenate([np.ones(scores_in.size), np.zeros(scores_out.size)])
  scores = np.concatenate([scores_in, scores_out])
  sk_metrics = _sk_metrics()
  return dict(
      auroc=float(sk_metrics.roc_auc_score(labels, scores)),
      aupr_in=float(sk_metrics.average_precision_score(labels, scores)),
      aupr_out=float(sk_metrics.average_precision_score(1.0 - labels, -scores)),
      fpr_at_95_tpr=fpr_at_tpr(scores_in, scores_out, tpr=0.95),
  )


def roc_curve(scores_in: Any, scores_out: Any) -> tuple[np.ndarray, np.ndarray]:
  """`(fpr, tpr)` points of the ROC curve, in-distribution positive (scikit-learn's roc_curve)."""
  scores_in = _check_scores(scores_in, "scores_in")
  scores_out = _check_scores(scores_out, "scores_out")
  labels = np.concatenate([np.ones(scores_in.size), np.zeros(scores_out.size)])
  fpr, tpr, _ = _sk_metrics().roc_curve(labels, np.concatenate([scores_in, scores_out]))
  return fpr, tpr
