"""Training objectives: the cross-entropy baseline and NG-EBM (arXiv 2304.01297).

Each objective is a pure function `(apply_fn, params, x, y, ...) -> (loss, aux)` that reduces to a
scalar (the mean over the global batch) and returns its terms, as batch means, in `aux`.

Global batch statistics: with `axis_name` set, the function is meant to run inside
`jax.shard_map` / `jax.pmap` with the batch split over that axis; every mean (and the energy mean
inside the variance term) is then a cross-device mean, so the loss and its gradients equal the
single-device values for the same global batch. Every device must hold the same number of
examples (as `shard_map` and `pmap` guarantee).

Precision: the loss terms are computed in float32 whatever the dtype of the logits or inputs
(bfloat16 models), because the energy variance and the gradient norm lose most of their digits
in bfloat16.
"""

from __future__ import annotations

import fractions
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ngebm_jax import _checks
from ngebm_jax.energy import at_least_float32
from ngebm_jax.energy import log_density_input_grad
from ngebm_jax.energy import per_example_norm

GRAD_MODES = ("forward_over_reverse", "reverse_over_reverse")


def global_mean(values: jax.Array, axis_name: str | None = None) -> jax.Array:
  """Mean over the local batch, then over devices when `axis_name` is set."""
  m = jnp.mean(values)
  return jax.lax.pmean(m, axis_name) if axis_name is not None else m


def _check_batch(x, y):
  _checks.check_images(x)
  _checks.check_labels(y, jnp.shape(x)[0])


def _cross_entropy(logits: jax.Array, y: jax.Array) -> jax.Array:
  num_classes = logits.shape[-1]
  _checks.check_labels(y, logits.shape[0], num_classes)
  return optax.softmax_cross_entropy_with_integer_labels(at_least_float32(logits), y)


def cross_entropy_loss(apply_fn, params: Any, x: jax.Array, y: jax.Array, *,
                       axis_name: str | None = None):
  """Baseline objective `L = mean_i CE(f(x_i), y_i)`.

  Args:
    apply_fn: `apply_fn(params, x) -> logits [B, K]`.
    params: parameters of `apply_fn`.
    x: `[B, H, W, C]` float inputs in the model's input space (pixels in about [-1, 1]).
    y: `[B]` integer labels in `[0, K)`.
    axis_name: name of the mapped device axis for global means, or None.

  Returns:
    `(loss, aux)`; `aux` holds `ce` (= loss) and `logits`.
  """
  _check_batch(x, y)
  logits = apply_fn(params, x)
  ce = global_mean(_cross_entropy(logits, y), axis_name)
  return ce, {"ce": ce, "logits": logits}


def _grad_norms_reverse_over_reverse(apply_fn, params, x):
  """Per-example `||d log p~/dx||` with the training gradient by double backward."""
  grad, logits = log_density_input_grad(apply_fn, params, x)
  return per_example_norm(grad), logits


def _tree_vdot(a, b) -> jax.Array:
  return sum(jnp.vdot(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def _grad_norms_forward_over_reverse(apply_fn, params, x):
  """Per-example `||d log p~/dx||` and the parameter gradient of their mean, by forward mode.

  With `g = d log p~(x)/dx = J^T p` (`J` the Jacobian of the logits in `x`, `p` the softmax)
  and `u = g / ||g||` held constant, `d||g|| = u . dg`, so the parameter gradient of `||g||` is
  that of the directional derivative `D = p . (J u)`. By the product rule it has two parts:

  - through `p` (the softmax of the logits), with `J u` held constant: ordinary reverse mode
    through the logits, in the same backward pass as the cross-entropy and variance terms;
  - through `J u`, with `p` held constant: `d/dt grad_params <p, f(x + t u)>`, the forward-mode
    derivative along `u` of the parameter gradient at cotangent `p`. Its primal is the forward
    and backward pass that also gives `g` (XLA computes them once), so this part costs a tangent
    forward pass and one weight-gradient pass; reverse mode through a `jvp` would run the whole
    backward pass a second time to recover the layer cotangents that the `g` pass already has.

  Returns `(norms [B], logits [B, K], surrogate)`: `surrogate` is 0 in value and carries the
  second part as its parameter gradient (of `mean_i ||g_i||` over the local batch). Gradients are
  exact with respect to `params`; the inputs `x` are treated as data (for gradients with respect
  to `x`, use "reverse_over_reverse").
  """
  # The parameters as constants, plus a zero that varies over the mesh axes `x` varies over
  # (inside `shard_map`): the reverse pass below must give this device's parameter gradient,
  # where one with respect to a replicated value would be summed over the devices. Elsewhere the
  # zero is a plain zero.
  zero = jnp.sum(x[:0])
  fixed = jax.tree.map(lambda a: a + zero.astype(a.dtype), jax.lax.stop_gradient(params))
  logits_c, input_vjp = jax.vjp(lambda x_: apply_fn(fixed, x_), x)
  p_c = jax.nn.softmax(at_least_float32(logits_c), axis=-1).astype(logits_c.dtype)
  grad = input_vjp(p_c)[0]  # d log p~(x)/dx: the cotangent of logsumexp is the softmax
  norm = per_example_norm(grad)
  safe = jnp.where(norm > 0, norm, 1.0).reshape((-1,) + (1,) * (x.ndim - 1))
  u = jax.lax.stop_gradient(grad / safe.astype(grad.dtype))

  def param_grad_at(x_):
    logits_, param_vjp = jax.vjp(lambda p_: apply_fn(p_, x_), fixed)
    return param_vjp(p_c)[0], logits_

  _, (param_grad_tangent, logits_tangent) = jax.jvp(param_grad_at, (x,), (u,))
  logits = apply_fn(params, x)  # the same forward pass; differentiable for the loss terms
  # d/dt logsumexp(f(x + t u)) = softmax(f(x)) . (J_f u): equals ||g|| in value.
  p = jax.nn.softmax(at_least_float32(logits), axis=-1)
  directional = jnp.sum(p * jax.lax.stop_gradient(at_least_float32(logits_tangent)), axis=-1)
  surrogate = _tree_vdot(jax.lax.stop_gradient(param_grad_tangent),
                         jax.tree.map(lambda a: a - jax.lax.stop_gradient(a), params))
  return directional, logits, surrogate / x.shape[0]


def penalized_examples(batch_size: int, penalty_fraction: float) -> np.ndarray:
  """Indices of the examples that carry the Approximate Mass penalty, `ceil(f * B)` of them.

  With `f = p / q` (as a fraction), the `n`-th penalized example is `floor(n q / p)`: spread
  evenly over the batch (every 4th for 0.25), the first always included, all for 1.0. Spread
  rather than the first `ceil(f * B)`, so that when `f * B` is a whole number of examples per
  device, the devices of a data-parallel run together penalize the same examples as one device
  holding the whole batch: device `d`'s indices are those of one device shifted by `d * B`.
  """
  _check_fraction(penalty_fraction)
  f = fractions.Fraction(float(penalty_fraction)).limit_denominator(1_000_000)
  count = math.ceil(f * batch_size)
  return np.array([n * f.denominator // f.numerator for n in range(count)], np.int32)


def _check_fraction(penalty_fraction) -> None:
  ok = (isinstance(penalty_fraction, (int, float, np.integer, np.floating))
        and not isinstance(penalty_fraction, (bool, np.bool_)))
  if not (ok and 0 < penalty_fraction <= 1):
    raise ValueError("penalty_fraction must be a number in (0, 1], the share of each batch that "
                     f"carries the Approximate Mass penalty; got {penalty_fraction!r}.")


def ngebm_loss(apply_fn, params: Any, x: jax.Array, y: jax.Array, *, beta: float = 1.0,
               gamma: float = 1.0, axis_name: str | None = None,
               grad_mode: str = "forward_over_reverse", penalty_fraction: float = 1.0):
  """NG-EBM objective `L = CE + beta * L_var + gamma * L_grad` (NG-EBM, arXiv 2304.01297).

  - `L_var = mean_i (E(x_i) - mean_j E(x_j))^2`: biased batch variance of the energy
    `E(x) = -logsumexp f(x)`, gradients flowing through the mean too.
  - `L_grad = mean_i ||d log p~(x_i)/dx_i||_2`: the Approximate Mass penalty (the norm is not
    squared), on the data inputs, with the training gradient flowing through it.

  No sampling: one input-gradient pass plus (by default) a forward-mode pass.

  The terms are computed in float32 whatever the dtype of the logits and inputs, so a bfloat16
  model keeps the digits of the energy variance and of the gradient norm. With `axis_name`,
  inside `jax.shard_map` or `jax.pmap` over the batch, every mean (and the energy mean inside
  `L_var`) is over the global batch: the loss and its gradients equal the single-device values.
  Under plain `jax.jit` with a sharded batch, no `axis_name` is needed.

  Args:
    apply_fn: `apply_fn(params, x) -> logits [B, K]`; must not mix examples (no batch norm).
    params: parameters of `apply_fn`.
    x: `[B, H, W, C]` float inputs in the model's input space (after augmentation and noise).
    y: `[B]` integer labels in `[0, K)`.
    beta: weight of the energy-variance term `L_var`.
    gamma: weight of the Approximate Mass term `L_grad`.
    axis_name: mapped device axis for global batch statistics, or None.
    grad_mode: how the gradient of `L_grad` is formed: "forward_over_reverse" (default; a `jvp`
      along the normalized input gradient, under 2x a baseline step) or "reverse_over_reverse"
      (`jax.grad` of `jax.grad`, as the paper's code). Both give the same loss and gradients
      with respect to `params`; only "reverse_over_reverse" also differentiates the penalty
      with respect to `x`.
    penalty_fraction: share `f` in (0, 1] of each (per-device) batch on which `L_grad` is
      computed: the mean is over the `ceil(f * B)` examples of `penalized_examples`, spread
      evenly over the batch. 1.0 (default) is the paper. The input-gradient pass and its
      double backward, the cost of NG-EBM over the baseline, then run on those examples only;
      the cross-entropy and `L_var` (which need only the logits) stay on the whole batch.
      With `axis_name`, the global `L_grad` is over the same examples as on one device
      whenever `f * B` is a whole number on each device.

  Returns:
    `(loss, aux)`; `aux` holds the batch means `ce`, `energy_var`, `grad_norm`, and
    `energy_mean` and the `logits [B, K]`.
  """
  _check_batch(x, y)
  _checks.check_positive(beta, "beta")
  _checks.check_positive(gamma, "gamma")
  if grad_mode not in GRAD_MODES:
    raise ValueError(f"grad_mode must be one of {GRAD_MODES}; got {grad_mode!r}.")
  batch_size = jnp.shape(x)[0]
  penalized = penalized_examples(batch_size, penalty_fraction)
  subset = len(penalized) < batch_size
  x_penalized = x[penalized] if subset else x
  surrogate = 0.0
  if grad_mode == "forward_over_reverse":
    norms, logits, surrogate = _grad_norms_forward_over_reverse(apply_fn, params, x_penalized)
  else:
    norms, logits = _grad_norms_reverse_over_reverse(apply_fn, params, x_penalized)
  if subset:
    # The other examples need only a forward pass; put the logits back in batch order.
    rest = np.setdiff1d(np.arange(batch_size), penalized)
    order = np.argsort(np.concatenate([penalized, rest]))
    logits = jnp.concatenate([logits, apply_fn(params, x[rest])])[order]

  ce = global_mean(_cross_entropy(logits, y), axis_name)
  e = -jax.nn.logsumexp(at_least_float32(logits), axis=-1)
  e_mean = global_mean(e, axis_name)
  energy_var = global_mean(jnp.square(e - e_mean), axis_name)
  grad_norm = global_mean(norms, axis_name) + global_mean(surrogate, axis_name)
  loss = ce + beta * energy_var + gamma * grad_norm
  aux = {"ce": ce, "energy_var": energy_var, "grad_norm": grad_norm, "energy_mean": e_mean,
         "logits": logits}
  return loss, aux
