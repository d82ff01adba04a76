"""Energies of a classifier read as an energy-based model (JEM, Grathwohl et al. 2020).

A classifier `f(x) -> logits [B, K]` defines `p(x, y) ∝ exp(f(x)[y])`, hence (JEM eq. 3-4)

  log p~(x) = logsumexp_y f(x)[y],      E(x) = -log p~(x),      E(x, y) = -f(x)[y].

`apply_fn(params, x) -> logits` is any pure function: a Flax model's apply, a plain function.
Nothing here imports Flax or reads a config.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

from ngebm_jax import _checks

ApplyFn = Callable[[Any, jax.Array], jax.Array]


def log_density(logits: jax.Array) -> jax.Array:
  """Unnormalized log density `log p~(x) = logsumexp_y f(x)[y]` (JEM eq. 3).

  Args:
    logits: `[B, K]` classifier outputs.

  Returns:
    `[B]` log densities, in the dtype of `logits` (computed stably by `logsumexp`).
  """
  _checks.check_logits(logits)
  return jax.nn.logsumexp(logits, axis=-1)


def energy(logits: jax.Array) -> jax.Array:
  """Energy `E(x) = -logsumexp_y f(x)[y]`, `[B]`; low energy means high density."""
  return -log_density(logits)


def class_energy(logits: jax.Array, y: jax.Array) -> jax.Array:
  """Class energy `E(x, y) = -f(x)[y]`, `[B]`, for integer labels `y: [B]`."""
  _checks.check_logits(logits)
  _checks.check_labels(y, logits.shape[0], logits.shape[1])
  return -jnp.take_along_axis(logits, y[:, None], axis=-1)[:, 0]


def log_density_input_grad(apply_fn: ApplyFn, params: Any, x: jax.Array):
  """Input gradient `d log p~(x_i) / dx_i` of every example, and the logits.

  One reverse pass of `sum_i log p~(x_i)`: examples do not interact in `apply_fn` (no batch
  statistics), so the gradient of the sum is the stack of per-example gradients.

  Args:
    apply_fn: `apply_fn(params, x) -> logits [B, K]`.
    params: the parameters passed to `apply_fn`.
    x: `[B, H, W, C]` floating inputs, in the model's input space (normalized pixels).

  Returns:
    `(grad, logits)`: `grad` of the shape and dtype of `x`; `logits [B, K]`.
  """
  _checks.check_images(x)

  def summed_log_density(x):
    logits = apply_fn(params, x)
    return jnp.sum(log_density(logits)), logits

  grad, logits = jax.grad(summed_log_density, has_aux=True)(x)
  return grad, logits


def at_least_float32(x: jax.Array) -> jax.Array:
  """`x` in float32, or in its own dtype if wider (float64 under x64)."""
  return x.astype(jnp.promote_types(x.dtype, jnp.float32))


def per_example_norm(g: jax.Array) -> jax.Array:
  """L2 norm over all axes but the first, in at least float32: `[B, ...] -> [B]`."""
  g = at_least_float32(g).reshape(g.shape[0], -1)
  return jnp.sqrt(jnp.sum(g * g, axis=-1))


def approximate_mass(apply_fn: ApplyFn, params: Any, x: jax.Array) -> jax.Array:
  """Approximate Mass score `-||d log p~(x)/dx||_2` per example (JEM §5.2).

  A point of high probability mass sits where the density is flat, so its input gradient is
  small and its score close to 0. Used as an out-of-distribution score; its positive counterpart
  is NG-EBM's penalty `L_grad`.

  Args:
    apply_fn: `apply_fn(params, x) -> logits [B, K]`.
    params: parameters of `apply_fn`.
    x: `[B, H, W, C]` floating inputs in the model's input space.

  Returns:
    `[B]` scores `<= 0`, float32 (float64 for float64 inputs).
  """
  grad, _ = log_density_input_grad(apply_fn, params, x)
  return -per_example_norm(grad)
