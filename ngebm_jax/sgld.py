"""SGLD sampling, a persistent replay buffer, and the SGLD-EBM (JEM) objective.

JEM (Grathwohl et al., "Your Classifier is Secretly an Energy Based Model and You Should Treat it
Like One", ICLR 2020, arXiv 1912.03263, §3 and Algorithm 1) trains a classifier `f` as the energy
model `log p~(x) = logsumexp_y f(x)[y]` with

  L = CE(f(x), y) + ( -mean_i log p~(x_i) + mean_i log p~(x~_i) ),

where `x~` are samples of the model drawn by Stochastic Gradient Langevin Dynamics,

  x <- x + step_size * d log p~(x)/dx + noise_std * N(0, I)        (K = 20 steps),

started from a persistent replay buffer (Persistent Contrastive Divergence) and treated as
constants. This module holds the three pieces as pure functions of explicit state:

- `sgld_sample`: the Langevin chain, straight-line code or a `lax.scan` (the `unroll` setting);
- `ReplayBuffer` (a pytree dataclass), `init_replay_buffer`, `draw`, `update`: the buffer of
  JEM's `sample_p_0` / `sample_q`, with every key passed in;
- `sgld_ebm_loss`: draw -> sample -> write back -> loss, returning the new buffer; and
  `sgld_ebm_loss_from_samples`, the loss for samples the caller already has.

Choices that follow JEM's public training code:

- Samples are not clipped during SGLD: JEM updates `x_k.data += sgld_lr * f' + sgld_std * randn`
  with no clamp, and clamps to [-1, 1] only when it saves images for plotting. `clip=(lo, hi)`
  offers projected SGLD (clip after every step) for those who want it; the default is None.
- The buffer draw picks indices uniformly *with replacement* (`torch.randint`), and replaces each
  drawn sample by fresh uniform noise in [-1, 1] with probability `reinit_prob` (`reinit_freq`,
  0.05). The final samples are written back to the drawn slots; when an index was drawn twice
  in one batch, one of its two samples is kept and which one is unspecified (as in PyTorch's
  `replay_buffer[inds] = samples`).
- JEM draws a second, unlabelled data batch for the `log p~(x_data)` half. `sgld_ebm_loss` uses
  it when given as `x_unlabelled`; with `x_unlabelled=None` it reuses the labelled batch, which
  has the same expectation and saves a forward pass (docs/method.rst).

Multi-device use (`axis_name`): the loss runs inside `jax.shard_map` over a data axis, each
device holding its slice of the data batch *and its own slice of the buffer*. Batch means are
cross-device means (`lax.pmean`), so the loss and its gradients equal the single-device values
for the same global data batch and the same samples. The key may be the same on every device:
it is folded with the device index, so every device draws its own indices, re-initializations
and Langevin noise.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ngebm_jax import _checks
# Imported by name: the package re-exports a function `energy` that shadows the module.
from ngebm_jax.energy import ApplyFn
from ngebm_jax.energy import at_least_float32
from ngebm_jax.energy import log_density_input_grad
from ngebm_jax.objectives import global_mean

# Backends where `unroll=None` unrolls the SGLD chain fully (see `resolve_unroll`).
_FULL_UNROLL_BACKENDS = ("cpu",)


def resolve_unroll(unroll: int | bool | None, num_steps: int) -> int:
  """The `lax.scan` unroll factor for `num_steps` SGLD steps (`num_steps` means no loop at all).

  `None` picks per backend (`jax.default_backend()` at trace time): a full unroll on CPU, 1
  (a rolled loop) elsewhere. XLA:CPU runs convolutions inside while loops (a rolled `lax.scan`
  or `lax.fori_loop`) slower than the same convolutions at top level (a known, open XLA:CPU
  problem: jax-ml/jax#12868). Measured on a 3-layer conv net (3->32->64->64 channels, 32x32x3
  inputs, batch 64, K = 20, float32, 2 CPU cores shared with other jobs; median wall time per
  call; the benchmark's `--sgld_unrolls=1` times the same comparison on the real train step):

    load ~2   sgld_sample  unroll=1:  compile 0.96 s, run 1.25 s
                           unroll=20: compile 3.47 s, run 0.78 s
              train step   unroll=1:  compile 4.60 s, run 1.64 s
                           unroll=20: compile 5.24 s, run 1.00 s
    load ~10  sgld_sample  unroll=1:  compile 3.6 s,  run 3.5 s
                           unroll=20: compile 5.3 s,  run 1.4 s
              train step   unroll=1:  compile 5.7 s,  run 4.2 s
                           unroll=20: compile 11.5 s, run 1.8 s

  ("train step": value and gradient of `sgld_ebm_loss` with an unlabelled batch, buffer
  update included.) The unrolled chain runs 1.6-2.5x faster and costs 0.6-6 s more to compile,
  which a training run earns back within a few steps. On GPU/TPU the default is 1 (the usual
  choice there: a rolled loop compiles K times less code and loop overhead is small next to a
  network's convolutions); no accelerator was available to measure it, so pass `unroll` to
  override after measuring with the same program.

  Args:
    unroll: None (per backend), True (full), False (1), or an int >= 1.
    num_steps: the number of SGLD steps K.

  Returns:
    An int in `[1, num_steps]`.
  """
  if unroll is None:
    return num_steps if jax.default_backend() in _FULL_UNROLL_BACKENDS else 1
  if isinstance(unroll, (bool, np.bool_)):
    return num_steps if unroll else 1
  if not isinstance(unroll, (int, np.integer)) or unroll < 1:
    raise ValueError(f"unroll must be None, a bool or an int >= 1; got {unroll!r}.")
  return int(min(unroll, num_steps))


def _check_probability(value, name: str) -> None:
  _checks.check_positive(value, name)
  if not isinstance(value, jax.core.Tracer) and float(value) > 1:
    raise ValueError(f"{name} must be a probability in [0, 1]; got {value}.")


def _check_clip(clip) -> None:
  if clip is None:
    return
  if not isinstance(clip, (tuple, list)) or len(clip) != 2:
    raise ValueError(f"clip must be None or a pair (lo, hi); got {clip!r}.")
  lo, hi = clip
  if not any(isinstance(v, jax.core.Tracer) for v in clip) and not float(lo) < float(hi):
    raise ValueError(f"clip must be a pair (lo, hi) with lo < hi; got {clip!r}.")


def _check_same_image_shape(a, b, name_a: str, name_b: str) -> None:
  if tuple(jnp.shape(a)[1:]) != tuple(jnp.shape(b)[1:]):
    raise ValueError(f"{name_a} and {name_b} must hold images of the same shape [H, W, C]; got "
                     f"{tuple(jnp.shape(a)[1:])} and {tuple(jnp.shape(b)[1:])}.")


def sgld_sample(apply_fn: ApplyFn, params: Any, x_init: jax.Array, key: jax.Array, *,
                num_steps: int = 20, step_size: float = 1.0, noise_std: float = 0.01,
                clip: Sequence[float] | None = None,
                unroll: int | bool | None = None) -> jax.Array:
  """Runs `num_steps` steps of SGLD on `log p~(x) = logsumexp_y f(x)[y]` (JEM §3).

  Each step is `x <- x + step_size * d log p~(x)/dx + noise_std * N(0, I)`, with JEM's
  decoupled step size and noise (alpha = 1, sigma = 0.01 rather than the textbook
  sigma = sqrt(2 alpha)). The chain is a constant for the caller: the parameters and the
  initial point are wrapped in `stop_gradient`, so differentiating a loss of the samples
  never back-propagates through the chain (and does not linearize it).

  Args:
    apply_fn: `apply_fn(params, x) -> logits [B, K]`; must not mix examples (no batch norm).
    params: parameters of `apply_fn`.
    x_init: `[B, H, W, C]` float starting points in the model's input space (about [-1, 1]).
    key: a `jax.random` key for the Langevin noise.
    num_steps: K, the number of steps (a Python int >= 1).
    step_size: alpha >= 0, the step on the input gradient.
    noise_std: sigma >= 0, the standard deviation of the Gaussian noise added per step.
    clip: None (default, as JEM: no clipping), or `(lo, hi)` to clip the samples after every
      step (projected SGLD).
    unroll: `lax.scan` unroll factor; None picks it per backend (see `resolve_unroll`). A full
      unroll (always the case for K = 1) is traced as straight-line code, without a loop.

  Returns:
    `[B, H, W, C]` samples, same dtype as `x_init`, with gradients stopped.
  """
  _checks.check_images(x_init, "x_init")
  _checks.check_positive_int(num_steps, "num_steps (the loop length)")
  _checks.check_positive(step_size, "step_size")
  _checks.check_positive(noise_std, "noise_std")
  _check_clip(clip)
  unroll = resolve_unroll(unroll, num_steps)

  params = jax.lax.stop_gradient(params)
  x0 = jax.lax.stop_gradient(jnp.asarray(x_init))
  dtype = x0.dtype
  # A concrete zero noise draws no random numbers (exact, deterministic chains in tests).
  no_noise = not isinstance(noise_std, jax.core.Tracer) and float(noise_std) == 0.0

  def step(x, step_key):
    grad, _ = log_density_input_grad(apply_fn, params, x)
    x = x + step_size * grad
    if not no_noise:
      x = x + noise_std * jax.random.normal(step_key, x.shape, dtype)
    if clip is not None:
      x = jnp.clip(x, clip[0], clip[1])
    return x.astype(dtype), None

  keys = jax.random.split(key, num_steps)
  if unroll >= num_steps:
    # Straight-line code: even a one-trip loop costs XLA:CPU its slower in-loop convolutions
    # (K = 1 ran slower than a fully unrolled K = 5). Same keys, same numbers as the scan.
    x = x0
    for i in range(num_steps):
      x, _ = step(x, keys[i])
  else:
    x, _ = jax.lax.scan(step, x0, keys, unroll=unroll)
  return jax.lax.stop_gradient(x)


@functools.partial(jax.tree_util.register_dataclass, data_fields=["samples"], meta_fields=[])
@dataclasses.dataclass(frozen=True)
class ReplayBuffer:
  """JEM's persistent replay buffer of SGLD samples, as a pytree of arrays.

  Attributes:
    samples: `[N, H, W, C]` float images in about [-1, 1]. Inside `jax.shard_map` a device sees
      its own slice `[N / num_devices, H, W, C]` and draws only from it.

  The buffer is a plain pytree (its one leaf is `samples`): it goes into a train state, through
  `jit` (donate it to update in place), `shard_map` (shard `samples` over the data axis) and
  checkpoints like any array.
  """

  samples: jax.Array

  @property
  def size(self) -> int:
    return self.samples.shape[0]

  @staticmethod
  def init(key: jax.Array, size: int, shape: Sequence[int], dtype=jnp.float32) -> ReplayBuffer:
    """Same as `init_replay_buffer`."""
    return init_replay_buffer(key, size, shape, dtype)

  def draw(self, key: jax.Array, batch_size: int, *, reinit_prob: float = 0.05):
    """Same as `draw(self, ...)`."""
    return draw(self, key, batch_size, reinit_prob=reinit_prob)

  def update(self, indices: jax.Array, x: jax.Array) -> ReplayBuffer:
    """Same as `update(self, ...)`."""
    return update(self, indices, x)


def _uniform_images(key, shape, dtype):
  return jax.random.uniform(key, shape, dtype, minval=-1.0, maxval=1.0)


def init_replay_buffer(key: jax.Array, size: int, shape: Sequence[int],
                       dtype=jnp.float32) -> ReplayBuffer:
  """A buffer of `size` images of shape `shape = (H, W, C)`, uniform in [-1, 1] (JEM).

  Args:
    key: a `jax.random` key.
    size: N >= 1 (JEM: 10,000). For a buffer sharded over D devices, N must be a multiple of D.
    shape: the image shape `(H, W, C)`.
    dtype: a floating dtype.

  Returns:
    A `ReplayBuffer` with `samples [N, H, W, C]`.
  """
  _checks.check_positive_int(size, "size")
  shape = tuple(shape)
  if len(shape) != 3 or any(int(d) < 1 for d in shape):
    raise ValueError(f"shape must be the image shape (H, W, C) with positive sizes; got {shape}.")
  if not jnp.issubdtype(dtype, jnp.floating):
    raise ValueError(f"dtype must be floating point; got {dtype}.")
  return ReplayBuffer(samples=_uniform_images(key, (int(size),) + shape, dtype))


def _check_buffer(buffer) -> None:
  if not isinstance(buffer, ReplayBuffer):
    raise ValueError(f"buffer must be a ReplayBuffer; got {type(buffer).__name__}.")
  _checks.check_images(buffer.samples, "buffer.samples")


def draw(buffer: ReplayBuffer, key: jax.Array, batch_size: int, *,
         reinit_prob: float = 0.05) -> tuple[jax.Array, jax.Array]:
  """Draws SGLD starting points from the buffer (JEM's `sample_p_0`).

  Indices are uniform over the buffer, with replacement; each drawn sample is independently
  replaced by fresh uniform noise in [-1, 1] with probability `reinit_prob`.

  Args:
    buffer: the `ReplayBuffer` (inside `shard_map`, this device's slice).
    key: a `jax.random` key; the same key gives the same draw.
    batch_size: B, the number of starting points (a Python int >= 1).
    reinit_prob: probability in [0, 1] of re-initializing a drawn sample (JEM: 0.05).

  Returns:
    `(x, indices)`: `x [B, H, W, C]` in the buffer's dtype, and the drawn slots `indices [B]`
    int32 (local to the buffer slice), to pass to `update` with the final samples.
  """
  _check_buffer(buffer)
  _checks.check_positive_int(batch_size, "batch_size")
  _check_probability(reinit_prob, "reinit_prob")
  index_key, coin_key, noise_key = jax.random.split(key, 3)
  samples = buffer.samples
  indices = jax.random.randint(index_key, (batch_size,), 0, samples.shape[0], dtype=jnp.int32)
  x = jnp.take(samples, indices, axis=0)
  reinit = jax.random.uniform(coin_key, (batch_size,)) < reinit_prob
  fresh = _uniform_images(noise_key, x.shape, x.dtype)
  x = jnp.where(reinit.reshape((-1,) + (1,) * (x.ndim - 1)), fresh, x)
  return x, indices


def update(buffer: ReplayBuffer, indices: jax.Array, x: jax.Array) -> ReplayBuffer:
  """Writes `x` into the slots `indices` of the buffer, and nothing else.

  Args:
    buffer: the `ReplayBuffer`.
    indices: `[B]` integer slots, as returned by `draw`.
    x: `[B, H, W, C]` samples; cast to the buffer's dtype.

  Returns:
    The new `ReplayBuffer`. A slot listed twice keeps one of its two samples (unspecified which).
  """
  _check_buffer(buffer)
  _checks.check_images(x)
  ishape = jnp.shape(indices)
  if len(ishape) != 1 or not jnp.issubdtype(jnp.result_type(indices), jnp.integer):
    raise ValueError(f"indices must be integer slots with shape [B]; got shape {ishape}, dtype "
                     f"{jnp.result_type(indices)}.")
  if tuple(jnp.shape(x)) != ishape + tuple(buffer.samples.shape[1:]):
    raise ValueError(f"x must have shape {ishape + tuple(buffer.samples.shape[1:])} (one sample "
                     f"per index, images of the buffer's shape); got {tuple(jnp.shape(x))}.")
  samples = buffer.samples.at[indices].set(x.astype(buffer.samples.dtype))
  return ReplayBuffer(samples=samples)


def sgld_ebm_loss_from_samples(apply_fn: ApplyFn, params: Any, x: jax.Array, y: jax.Array,
                               x_samples: jax.Array, *, x_unlabelled: jax.Array | None = None,
                               energy_l2: float = 0.0, axis_name: str | None = None):
  """JEM's loss for given model samples: `CE(f(x), y) - mean log p~(x_data) + mean log p~(x~)`.

  `x_samples` is a constant (`stop_gradient`): the gradient is JEM's (Persistent) Contrastive
  Divergence estimate of the gradient of `-log p(x)`, plus the cross-entropy gradient. All
  batches go through `apply_fn` in one concatenated forward pass (examples do not interact).
  The loss terms are computed in at least float32 (bfloat16 models).

  With `energy_l2 > 0` the loss adds `energy_l2 * (mean_i E(x_data_i)^2 + mean_j E(x~_j)^2)`,
  `E = -log p~`: the L2 penalty on the energies of data and samples (Du & Mordatch, arXiv
  1903.08689, `alpha (E(x+)^2 + E(x-)^2)`), which JEM's authors advise (weight about 0.1, in
  their public issue tracker) against divergence: it keeps the energies near zero, where the
  contrastive term cannot run away. JEM's paper trains without it (0, the default).

  Args:
    apply_fn: `apply_fn(params, x) -> logits [B, K]`; must not mix examples (no batch norm).
    params: parameters of `apply_fn`.
    x: `[B, H, W, C]` labelled inputs in the model's input space.
    y: `[B]` integer labels in `[0, K)`.
    x_samples: `[S, H, W, C]` model samples (e.g. from `sgld_sample`).
    x_unlabelled: `[U, H, W, C]` inputs for the `log p~(x_data)` term (JEM draws a second,
      unlabelled batch), or None to reuse the labelled batch `x`.
    energy_l2: weight >= 0 of the L2 penalty on the energies of the data (`x_unlabelled`, or
      `x`) and of the samples; 0 (JEM) leaves it out.
    axis_name: the mapped device axis for cross-device batch means, or None.

  Returns:
    `(loss, aux)`; `aux` holds the (global) batch means `ce`, `log_p_data`, `log_p_samples`,
    `energy_sq` (`mean E(x_data)^2 + mean E(x~)^2`, unweighted, whatever `energy_l2` is), the
    `logits [B, K]` of the labelled batch and the per-example `energy_samples [S]`
    (`-log p~(x~)`, for logging the sample energies; local to the device).
  """
  _checks.check_images(x)
  _checks.check_labels(y, jnp.shape(x)[0])
  _checks.check_images(x_samples, "x_samples")
  _check_same_image_shape(x, x_samples, "x", "x_samples")
  _checks.check_positive(energy_l2, "energy_l2")
  parts = [x]
  if x_unlabelled is not None:
    _checks.check_images(x_unlabelled, "x_unlabelled")
    _check_same_image_shape(x, x_unlabelled, "x", "x_unlabelled")
    parts.append(x_unlabelled)
  parts.append(jax.lax.stop_gradient(x_samples))
  sizes = np.cumsum([p.shape[0] for p in parts])[:-1]
  dtype = jnp.result_type(*parts)
  logits_all = apply_fn(params, jnp.concatenate([p.astype(dtype) for p in parts], axis=0))
  _checks.check_logits(logits_all, "apply_fn(params, x)")
  logits, *rest = jnp.split(logits_all, sizes, axis=0)
  logits_samples = rest[-1]
  logits_data = rest[0] if x_unlabelled is not None else logits

  _checks.check_labels(y, logits.shape[0], logits.shape[1])
  ce = global_mean(
      optax.softmax_cross_entropy_with_integer_labels(at_least_float32(logits), y), axis_name)
  log_p_per_data = jax.nn.logsumexp(at_least_float32(logits_data), axis=-1)
  log_p_data = global_mean(log_p_per_data, axis_name)
  log_p_per_sample = jax.nn.logsumexp(at_least_float32(logits_samples), axis=-1)
  log_p_samples = global_mean(log_p_per_sample, axis_name)
  # E^2 = (log p~)^2: the sign of the energy does not matter to the penalty.
  energy_sq = (global_mean(jnp.square(log_p_per_data), axis_name)
               + global_mean(jnp.square(log_p_per_sample), axis_name))
  loss = ce - log_p_data + log_p_samples + energy_l2 * energy_sq
  aux = {"ce": ce, "log_p_data": log_p_data, "log_p_samples": log_p_samples,
         "energy_sq": energy_sq, "logits": logits, "energy_samples": -log_p_per_sample}
  return loss, aux


def sgld_ebm_loss(apply_fn: ApplyFn, params: Any, x: jax.Array, y: jax.Array,
                  buffer: ReplayBuffer, key: jax.Array, *, num_steps: int = 20,
                  step_size: float = 1.0, noise_std: float = 0.01, reinit_prob: float = 0.05,
                  x_unlabelled: jax.Array | None = None, clip: Sequence[float] | None = None,
                  unroll: int | bool | None = None, energy_l2: float = 0.0,
                  axis_name: str | None = None):
  """The SGLD-EBM (JEM) objective, one training step's worth, with its buffer update.

  `L = CE(f(x), y) + (-mean_i log p~(x_i) + mean_i log p~(x~_i))` (JEM §3, arXiv 1912.03263), where
  the `x~` are drawn from the replay buffer (`draw`), moved by `num_steps` SGLD steps
  (`sgld_sample`), treated as constants, and written back to the slots they came from
  (`update`). As in JEM, the sample batch has the size of the labelled batch `x`.

  Meant to be differentiated with `jax.value_and_grad(..., has_aux=True)` with respect to
  `params`: the chain is not differentiated.

  Args:
    apply_fn: `apply_fn(params, x) -> logits [B, K]`; must not mix examples (no batch norm).
      It is used for both the chain and the loss.
    params: parameters of `apply_fn`.
    x: `[B, H, W, C]` labelled inputs in the model's input space (pixels in about [-1, 1]).
    y: `[B]` integer labels in `[0, K)`.
    buffer: the `ReplayBuffer`; inside `shard_map`, this device's slice.
    key: a `jax.random` key for the draw and the chain; with `axis_name` set it is folded with
      the device index, so it may be the same on every device.
    num_steps: K SGLD steps (JEM: 20).
    step_size: SGLD step alpha (JEM: 1.0).
    noise_std: SGLD noise sigma (JEM: 0.01).
    reinit_prob: probability of restarting a drawn sample from uniform noise (JEM: 0.05).
    x_unlabelled: `[U, H, W, C]` second data batch for the `log p~(x_data)` term, as JEM draws
      it; None reuses `x` (same expectation, one forward pass less).
    clip: None (JEM: no clipping) or `(lo, hi)` to clip the chain after every step.
    unroll: `lax.scan` unroll factor of the chain; None picks it per backend.
    energy_l2: weight of the L2 penalty on the energies of data and samples (see
      `sgld_ebm_loss_from_samples`); 0 (JEM) leaves it out.
    axis_name: the mapped device axis for cross-device batch means, or None.

  Returns:
    `(loss, (aux, new_buffer))`; `aux` holds the batch means `ce`, `log_p_data`,
    `log_p_samples`, `energy_sq`, the `logits [B, K]` of `x`, the per-example
    `energy_samples [B]`, the `buffer_indices [B]` the samples were drawn from and written to
    (local to the device), and the `buffer_samples [B, H, W, C]` written there (so a caller can
    commit only those rows).
  """
  _checks.check_images(x)
  _checks.check_labels(y, jnp.shape(x)[0])
  _check_buffer(buffer)
  _check_same_image_shape(x, buffer.samples, "x", "buffer.samples")
  if x_unlabelled is not None:
    _checks.check_images(x_unlabelled, "x_unlabelled")
    _check_same_image_shape(x, x_unlabelled, "x", "x_unlabelled")
  _checks.check_positive_int(num_steps, "num_steps (the loop length)")
  _checks.check_positive(step_size, "step_size")
  _checks.check_positive(noise_std, "noise_std")
  _check_probability(reinit_prob, "reinit_prob")
  _check_clip(clip)
  _checks.check_positive(energy_l2, "energy_l2")
  resolve_unroll(unroll, num_steps)

  if axis_name is not None:
    key = jax.random.fold_in(key, jax.lax.axis_index(axis_name))
  draw_key, chain_key = jax.random.split(key)
  x_init, indices = draw(buffer, draw_key, int(jnp.shape(x)[0]), reinit_prob=reinit_prob)
  x_samples = sgld_sample(apply_fn, params, x_init, chain_key, num_steps=num_steps,
                          step_size=step_size, noise_std=noise_std, clip=clip, unroll=unroll)
  new_buffer = update(buffer, indices, x_samples)
  loss, aux = sgld_ebm_loss_from_samples(apply_fn, params, x, y, x_samples,
                                         x_unlabelled=x_unlabelled, energy_l2=energy_l2,
                                         axis_name=axis_name)
  aux["buffer_indices"] = indices
  aux["buffer_samples"] = x_samples
  return loss, (aux, new_buffer)
