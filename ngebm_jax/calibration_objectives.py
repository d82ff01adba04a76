"""The calibration peers of NG-EBM: label smoothing and focal loss, at no extra cost per step.

Both are what a practitioner reaches for to calibrate a classifier during training, without
held-out data: cross-entropy against smoothed targets (Szegedy et al. 2016, "Rethinking the
Inception architecture", §7; for calibration, Muller et al. 2019, arXiv 1906.02629) and the focal
loss (Lin et al. 2017, arXiv 1708.02002; for calibration, Mukhoti et al. 2020, arXiv 2002.09437,
with its sample-dependent gamma "FLSD-53"). Each has the signature of
`ngebm_jax.objectives.cross_entropy_loss`: `(apply_fn, params, x, y, *, ..., axis_name) ->
(loss, aux)`, the mean over the global batch, computed in float32 whatever the logits' dtype.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax

from ngebm_jax import _checks
from ngebm_jax.energy import at_least_float32
from ngebm_jax.objectives import global_mean

FOCAL_SCHEDULES = ("fixed", "flsd53")
# FLSD-53 (Mukhoti et al. 2020, §5): gamma = 5 where the true-class probability is below 0.2,
# else 3.
FLSD53_THRESHOLD = 0.2
FLSD53_GAMMAS = (5.0, 3.0)


def _logits_and_checks(apply_fn, params, x, y):
  _checks.check_images(x)
  _checks.check_labels(y, jnp.shape(x)[0])
  logits = apply_fn(params, x)
  _checks.check_labels(y, logits.shape[0], logits.shape[-1])
  return logits


def smoothed_cross_entropy(logits: jax.Array, y: jax.Array, alpha: float) -> jax.Array:
  """`[B]` cross-entropy against `(1 - alpha) onehot(y) + alpha / K` (`optax.smooth_labels`)."""
  logits = at_least_float32(logits)
  targets = optax.smooth_labels(jax.nn.one_hot(y, logits.shape[-1], dtype=logits.dtype), alpha)
  return optax.softmax_cross_entropy(logits, targets)


def label_smoothing_loss(apply_fn, params: Any, x: jax.Array, y: jax.Array, *,
                         alpha: float = 0.1, axis_name: str | None = None):
  """Cross-entropy with label smoothing: `L = mean_i CE(f(x_i), (1 - alpha) e_{y_i} + alpha/K)`.

  Szegedy et al. 2016 (§7, epsilon = 0.1 on ImageNet); Muller et al. 2019 (arXiv 1906.02629)
  show it calibrates, with `alpha` (their name) 0.05 to 0.1 on CIFAR and ImageNet.

  Args:
    apply_fn: `apply_fn(params, x) -> logits [B, K]`.
    params: parameters of `apply_fn`.
    x: `[B, H, W, C]` float inputs in the model's input space.
    y: `[B]` integer labels in `[0, K)`.
    alpha: the smoothing, in `[0, 1)`; 0 is plain cross-entropy.
    axis_name: mapped device axis for global batch means, or None.

  Returns:
    `(loss, aux)`; `aux` holds `label_smoothing` (= loss), `ce` (the unsmoothed cross-entropy,
    for comparison with the other objectives) and `logits`.
  """
  _checks.check_positive(alpha, "alpha")
  if not isinstance(alpha, jax.core.Tracer) and not float(alpha) < 1:
    raise ValueError(f"alpha must be in [0, 1) (1 makes every target uniform); got {alpha}.")
  logits = _logits_and_checks(apply_fn, params, x, y)
  loss = global_mean(smoothed_cross_entropy(logits, y, alpha), axis_name)
  ce = global_mean(optax.softmax_cross_entropy_with_integer_labels(
      at_least_float32(logits), y), axis_name)
  return loss, {"label_smoothing": loss, "ce": ce, "logits": logits}


def flsd53_gamma(p_true: jax.Array) -> jax.Array:
  """FLSD-53's per-example gamma: 5 where `p_true < 0.2`, else 3 (Mukhoti et al. 2020, §5)."""
  low, high = FLSD53_GAMMAS
  return jnp.where(p_true < FLSD53_THRESHOLD, low, high)


def focal(logits: jax.Array, y: jax.Array, gamma) -> jax.Array:
  """`[B]` focal loss `-(1 - p_y)^gamma log p_y`; `gamma` a scalar or `[B]` (Lin et al., eq. 4).

  The weight is differentiated too, as in Lin et al. and Mukhoti et al. `1 - p_y` is formed from
  `log p_y` (`-expm1`) and floored at the smallest normal float, so that `gamma < 1` does not
  meet `0^(gamma - 1)` when `p_y` rounds to 1.
  """
  log_p = jnp.take_along_axis(jax.nn.log_softmax(at_least_float32(logits), axis=-1),
                              y[:, None], axis=-1)[:, 0]
  one_minus_p = jnp.maximum(-jnp.expm1(log_p), jnp.finfo(log_p.dtype).tiny)
  return -jnp.power(one_minus_p, gamma) * log_p


def focal_loss(apply_fn, params: Any, x: jax.Array, y: jax.Array, *, gamma: float = 3.0,
               schedule: str = "fixed", axis_name: str | None = None):
  """Focal loss `L = mean_i -(1 - p_i)^gamma_i log p_i`, `p_i = softmax(f(x_i))_{y_i}`.

  Lin et al. 2017 (arXiv 1708.02002, eq. 4, without its class weight alpha); Mukhoti et al. 2020
  (arXiv 2002.09437) train calibrated classifiers with it: a fixed gamma = 3 ("FL-3", the default
  here) or the sample-dependent schedule "FLSD-53" (gamma = 5 for `p_i < 0.2`, else 3). The
  schedule's gamma is piecewise constant in `p_i`, so no gradient flows through the choice.

  Args:
    apply_fn: `apply_fn(params, x) -> logits [B, K]`.
    params: parameters of `apply_fn`.
    x: `[B, H, W, C]` float inputs in the model's input space.
    y: `[B]` integer labels in `[0, K)`.
    gamma: the focusing parameter of the "fixed" schedule, >= 0 (0 is cross-entropy); unused by
      "flsd53".
    schedule: "fixed" (gamma for every example) or "flsd53".
    axis_name: mapped device axis for global batch means, or None.

  Returns:
    `(loss, aux)`; `aux` holds `focal` (= loss), `ce` (the plain cross-entropy), `gamma_mean`
    (the batch mean of the examples' gamma) and `logits`.
  """
  _checks.check_positive(gamma, "gamma")
  if schedule not in FOCAL_SCHEDULES:
    raise ValueError(f"schedule must be one of {FOCAL_SCHEDULES}; got {schedule!r}.")
  logits = _logits_and_checks(apply_fn, params, x, y)
  ce_i = optax.softmax_cross_entropy_with_integer_labels(at_least_float32(logits), y)
  if schedule == "flsd53":
    gammas = flsd53_gamma(jax.lax.stop_gradient(jnp.exp(-ce_i)))
  else:
    gammas = jnp.full(ce_i.shape, gamma, ce_i.dtype)
  loss = global_mean(focal(logits, y, gammas), axis_name)
  aux = {"focal": loss, "ce": global_mean(ce_i, axis_name),
         "gamma_mean": global_mean(gammas, axis_name), "logits": logits}
  return loss, aux
