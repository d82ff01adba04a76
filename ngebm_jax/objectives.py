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

from typing import Any

import jax
import jax.numpy as jnp
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


def _grad_norms_forward_over_reverse(apply_fn, params, x):
  """Per-example `||d log p~/dx||`, differentiated through a forward-mode directional derivative.

  With `g = d log p~(x)/dx` and `u = g / ||g||` held constant, `d||g|| = u . dg`, so the
  parameter gradient of `||g||` is that of the directional derivative `g . u`, which one `jvp` of
  the network along `u` gives (docs/method.rst). Its primal output is the logits, so
  the cross-entropy and variance terms need no extra forward pass. `u` comes from one input-only
  reverse pass with the parameters held constant.
  """
  grad, _ = log_density_input_grad(apply_fn, jax.lax.stop_gradient(params), x)
  norm = per_example_norm(grad)
  safe = jnp.where(norm > 0, norm, 1.0).reshape((-1,) + (1,) * (x.ndim - 1))
  u = jax.lax.stop_gradient(grad / safe.astype(grad.dtype))
  logits, logits_tangent = jax.jvp(lambda x_: apply_fn(params, x_), (x,), (u,))
  # d/dt logsumexp(f(x + t u)) = softmax(f(x)) . (J_f u): equals ||g|| in value.
  p = jax.nn.softmax(at_least_float32(logits), axis=-1)
  directional = jnp.sum(p * at_least_float32(logits_tangent), axis=-1)
  return directional, logits


def ngebm_loss(apply_fn, params: Any, x: jax.Array, y: jax.Array, *, beta: float = 1.0,
               gamma: float = 1.0, axis_name: str | None = None,
               grad_mode: str = "forward_over_reverse"):
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
      along the normalized input gradient, about 2x a baseline step) or "reverse_over_reverse"
      (`jax.grad` of `jax.grad`). Both give the same loss and gradients.

  Returns:
    `(loss, aux)`; `aux` holds the batch means `ce`, `energy_var`, `grad_norm`, and
    `energy_mean` and the `logits [B, K]`.
  """
  _check_batch(x, y)
  _checks.check_positive(beta, "beta")
  _checks.check_positive(gamma, "gamma")
  if grad_mode == "forward_over_reverse":
    norms, logits = _grad_norms_forward_over_reverse(apply_fn, params, x)
  elif grad_mode == "reverse_over_reverse":
    norms, logits = _grad_norms_reverse_over_reverse(apply_fn, params, x)
  else:
    raise ValueError(f"grad_mode must be one of {GRAD_MODES}; got {grad_mode!r}.")

  ce = global_mean(_cross_entropy(logits, y), axis_name)
  e = -jax.nn.logsumexp(at_least_float32(logits), axis=-1)
  e_mean = global_mean(e, axis_name)
  energy_var = global_mean(jnp.square(e - e_mean), axis_name)
  grad_norm = global_mean(norms, axis_name)
  loss = ce + beta * energy_var + gamma * grad_norm
  aux = {"ce": ce, "energy_var": energy_var, "grad_norm": grad_norm, "energy_mean": e_mean,
         "logits": logits}
  return loss, aux
