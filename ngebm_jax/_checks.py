"""Argument checks shared by the pure functions.

They run at trace time (on shapes and dtypes), so a bad call fails with a sentence instead of a
NaN hours later. Value checks (labels in range) run only on concrete arrays: under `jit` the
values are unknown, and the trainer checks its data before the first step.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def check_images(x, name: str = "x") -> None:
  """`x` must be a floating batch of images `[B, H, W, C]`."""
  shape = jnp.shape(x)
  if len(shape) != 4:
    raise ValueError(
        f"{name} must be a batch of images with shape [B, H, W, C]; got shape {shape}.")
  if not jnp.issubdtype(jnp.result_type(x), jnp.floating):
    raise ValueError(
        f"{name} must be floating point, scaled to about [-1, 1]; got dtype "
        f"{jnp.result_type(x)}. Convert uint8 images with x / 127.5 - 1.")
  if shape[0] == 0:
    raise ValueError(f"{name} is an empty batch.")


def check_logits(logits, name: str = "logits") -> None:
  """`logits` must be floating `[B, K]`."""
  shape = jnp.shape(logits)
  if len(shape) != 2:
    raise ValueError(f"{name} must have shape [B, K]; got shape {shape}.")
  if not jnp.issubdtype(jnp.result_type(logits), jnp.floating):
    raise ValueError(f"{name} must be floating point; got dtype {jnp.result_type(logits)}.")


def check_labels(y, batch_size: int, num_classes: int | None = None, name: str = "y") -> None:
  """`y` must be integer class indices `[B]`, in `[0, num_classes)` when the values are known."""
  shape = jnp.shape(y)
  if shape != (batch_size,):
    raise ValueError(
        f"{name} must be integer labels with shape [{batch_size}] (one per example); got shape "
        f"{shape}. One-hot labels are not accepted: pass class indices.")
  if not jnp.issubdtype(jnp.result_type(y), jnp.integer):
    raise ValueError(f"{name} must be integer class indices; got dtype {jnp.result_type(y)}.")
  if num_classes is not None and not isinstance(y, jax.core.Tracer):
    y = np.asarray(y)
    if y.size and (y.min() < 0 or y.max() >= num_classes):
      raise ValueError(
          f"{name} has labels outside [0, {num_classes}): min {y.min()}, max {y.max()}.")


def check_positive_int(value, name: str) -> None:
  """Sizes and counts (widths, steps, examples): an integer >= 1; a bool is not one."""
  if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < 1:
    raise ValueError(f"{name} must be a positive integer; got {value!r}.")


def check_positive(value, name: str, allow_zero: bool = True) -> None:
  """Loss weights and step sizes: finite and >= 0 (or > 0)."""
  if isinstance(value, jax.core.Tracer):
    return
  v = float(value)
  if not np.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
    bound = ">= 0" if allow_zero else "> 0"
    raise ValueError(f"{name} must be a finite number {bound}; got {value}.")
