"""Temperature scaling (Guo et al., "On Calibration of Modern Neural Networks", ICML 2017, §4.2).

The calibration method a practitioner picks first: one scalar `T > 0`, fitted on held-out
(validation) data by minimizing the negative log-likelihood of `softmax(logits / T)`, then
applied to every later prediction. Dividing all logits by the same `T` keeps the arg-max, so
accuracy is unchanged; `T > 1` softens an over-confident model, `T < 1` sharpens an
under-confident one.

Fitting. As a function of the inverse temperature `s = 1 / T`, the NLL
`mean_i [logsumexp_k s z_ik - s z_iy_i]` is convex (a log-sum-exp of functions linear in `s`,
minus a linear function), so it has one minimum and the NLL is unimodal in `log T` as well. We
minimize it over `log T` within `[log T_min, log T_max]` with SciPy's bounded Brent search
(to a tolerance of 1e-7 in `log T`), in float64 on the host. Guo et al. use L-BFGS on `T`; for
one unimodal parameter the two find the same minimum. When the NLL keeps falling toward a
bound (validation predictions all correct and separable: `T -> 0`; or no information at all:
`T -> inf`), the bound is returned.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ngebm_jax.evaluation import calibration

# Bounds of the search: a model would have to be off by a factor of 100 in its logit scale to
# hit them; a fitted value on a bound says "the NLL keeps falling this way" (see above).
T_MIN = 1e-2
T_MAX = 1e2


def temperature_nll(logits: Any, labels: Any, temperature: float) -> float:
  """Mean NLL (nats) of `softmax(logits / temperature)`; `logits [N, K]`, `labels [N]`."""
  return calibration.negative_log_likelihood(
      scale_logits(logits, temperature), labels, from_logits=True)


def scale_logits(logits: Any, temperature: float) -> np.ndarray:
  """`logits / temperature` as float64 (the temperature-scaled model's logits)."""
  if not (np.isfinite(temperature) and temperature > 0):
    raise ValueError(f"temperature must be a finite number > 0; got {temperature!r}.")
  return np.asarray(logits, dtype=np.float64) / float(temperature)


def fit_temperature(logits: Any, labels: Any, *, t_min: float = T_MIN,
                    t_max: float = T_MAX) -> float:
  """The temperature `T` that minimizes the NLL of `softmax(logits / T)` on `(logits, labels)`.

  Args:
    logits: `[N, K]` logits of the held-out (validation) set.
    labels: `[N]` integer true classes.
    t_min: smallest temperature considered, > 0.
    t_max: largest temperature considered, > t_min.

  Returns:
    `T` as a Python float in `[t_min, t_max]`.
  """
  if not (0 < t_min < t_max and np.isfinite(t_max)):
    raise ValueError(f"need 0 < t_min < t_max < inf; got t_min={t_min}, t_max={t_max}.")
  calibration.log_probabilities(logits, labels, from_logits=True)  # validates both
  z = np.asarray(logits, dtype=np.float64)
  z = z - z.max(axis=1, keepdims=True)  # shift-invariant; keeps exp() in range
  labels = np.asarray(labels)
  z_true = z[np.arange(z.shape[0]), labels]

  def nll(log_t):
    s = np.exp(-log_t)
    zs = s * z
    m = zs.max(axis=1)
    return float(np.mean(m + np.log(np.exp(zs - m[:, None]).sum(axis=1)) - s * z_true))

  lo, hi = np.log(t_min), np.log(t_max)
  # Imported here: scipy.optimize takes about a second to import, and programs that import the
  # evaluation without fitting a temperature (the benchmark) need not pay it.
  from scipy import optimize  # pylint: disable=g-import-not-at-top
  result = optimize.minimize_scalar(nll, bounds=(lo, hi), method="bounded",
                                    options=dict(xatol=1e-7))
  # Brent's bounded search never evaluates the bounds themselves: compare with them, so that
  # a minimum on a bound is returned exactly.
  candidates = [(nll(x), x) for x in (lo, float(result.x), hi)]
  return float(np.exp(min(candidates)[1]))
