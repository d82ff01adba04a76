"""The one path from a set of images to model outputs at evaluation time.

Validation during training, the test evaluation at the end of training, `experiments.evaluate`,
OOD scores, PGD and the salience measures all run a model over a whole set the same way:

- `batched`: fixed-size batches (the last one padded with copies of its last example, dropped
  from the output), so a jitted function compiles once per set size;
- `add_input_noise`: the recipe's test-time Gaussian noise (std 0.03 in NGEBM's recipe), the
  noise of example `i` drawn from `fold_in(key, i)`, so it depends neither on the batch size nor
  on the number of devices;
- `purpose_key`: one key per purpose (`"noise/validation"`, `"noise/test"`, `"pgd/linf"`), so the
  validation split evaluated during training and the same split evaluated afterwards see the
  same noise;
- `predict_logits`: the three together, optionally with the batches split over a device mesh.

Nothing here reads a config or a checkpoint.
"""

from __future__ import annotations

import zlib
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from ngebm_jax.energy import ApplyFn


def purpose_key(key: jax.Array, purpose: str) -> jax.Array:
  """A key for one purpose (e.g. `"noise/test"`), stable across runs and Python versions."""
  return jax.random.fold_in(key, zlib.crc32(purpose.encode()) & 0x7FFFFFFF)


def noise_key(seed: int, split: str) -> jax.Array:
  """The key of a split's test-time noise for evaluation seed `seed` (`config.eval.seed`)."""
  return purpose_key(jax.random.key(seed), "noise/" + split)


def add_input_noise(x: jax.Array, indices: jax.Array, key: jax.Array,
                    noise_std: float) -> jax.Array:
  """`x + noise_std * N(0, I)`, the noise of example `i` drawn from `fold_in(key, i)`.

  With the default (threefry) keys the noise of an example does not depend on the batch it is
  in; "rbg" keys make no such promise under `vmap`.

  Args:
    x: `[B, H, W, C]` inputs.
    indices: `[B]` int positions of the examples in their set.
    key: the set's noise key.
    noise_std: the standard deviation (model units).
  """
  def one(i, xi):
    return xi + noise_std * jax.random.normal(jax.random.fold_in(key, i), xi.shape, xi.dtype)
  return jax.vmap(one)(indices, x)


def batched(fn: Callable[..., Any], *arrays: Any, batch_size: int, multiple_of: int = 1) -> Any:
  """Applies `fn` to aligned batches of exactly `batch_size` examples and concatenates.

  The last batch is padded with copies of its last example (dropped from the output), so a
  jitted `fn` sees one shape and compiles once. `fn` must treat examples independently (no batch
  statistics), which holds for every model here.

  Args:
    fn: `fn(*batches) -> pytree of [batch_size, ...] arrays`, one batch per array.
    *arrays: `[N, ...]` inputs (NumPy or JAX) with the same leading size, sliced together.
    batch_size: examples per call (fewer when the set is smaller, rounded up to a multiple of
      `multiple_of`, the number of devices a batch is split over).

  Returns:
    The pytree of `fn`'s outputs, each leaf a NumPy array `[N, ...]`.
  """
  if not arrays:
    raise ValueError("batched needs at least one array.")
  n = int(np.shape(arrays[0])[0])
  if n == 0:
    raise ValueError("cannot evaluate an empty set of examples.")
  if any(int(np.shape(a)[0]) != n for a in arrays):
    raise ValueError(f"arrays must share their leading size; got "
                     f"{[np.shape(a)[0] for a in arrays]}.")
  if isinstance(batch_size, bool) or int(batch_size) != batch_size or batch_size < 1:
    raise ValueError(f"batch_size must be a positive integer; got {batch_size!r}.")
  batch_size = int(min(batch_size, -(-n // multiple_of) * multiple_of))
  outputs = []
  for start in range(0, n, batch_size):
    chunks = [np.asarray(a[start:start + batch_size]) for a in arrays]
    m = chunks[0].shape[0]
    if m < batch_size:
      chunks = [np.concatenate([c, np.repeat(c[-1:], batch_size - m, axis=0)]) for c in chunks]
    out = fn(*chunks)
    outputs.append(jax.tree.map(lambda a, m=m: np.asarray(a)[:m], out))
  return jax.tree.map(lambda *leaves: np.concatenate(leaves, axis=0), *outputs)


def make_noisy_fn(fn: Callable, noise_std: float, mesh=None) -> Callable:
  """Jitted `step(params, x, indices, key) = fn(params, add_input_noise(x, indices, key, std))`.

  Build it once per `fn` and reuse it over sets (each with its own key): one compilation. With
  a `mesh` (one `"data"` axis), the batch is split over its devices and the outputs come back
  replicated, so every process of a multi-host run gets all of them.
  """
  def step(params, xb, idx, key):
    if noise_std > 0:
      xb = add_input_noise(xb, idx, key, noise_std)
    return fn(params, xb)

  if mesh is None:
    return jax.jit(step)
  split, replicated = NamedSharding(mesh, P(mesh.axis_names[0])), NamedSharding(mesh, P())
  jitted = jax.jit(step, out_shardings=replicated)

  def sharded(params, xb, idx, key):
    xb, idx = (jax.make_array_from_callback(np.shape(a), split, lambda i, a=a: a[i])
               for a in (xb, idx))
    return jitted(params, xb, idx, key)
  sharded.num_devices = mesh.size
  return sharded


def predict(step: Callable, params: Any, images: Any, key: jax.Array, *,
            batch_size: int) -> Any:
  """`step` (from `make_noisy_fn`) over every image of a set, in order, with the set's key."""
  images = np.asarray(images)
  return batched(lambda xb, idx: step(params, xb, idx, key), images,
                 np.arange(images.shape[0], dtype=np.int32), batch_size=batch_size,
                 multiple_of=getattr(step, "num_devices", 1))


def logits_fn(apply_fn: ApplyFn) -> Callable:
  """`(params, x) -> float32 logits` of `apply_fn`."""
  return lambda params, x: apply_fn(params, x).astype(jnp.float32)


def predict_logits(apply_fn: ApplyFn, params: Any, images: Any, *, key: jax.Array,
                   noise_std: float, batch_size: int, mesh=None) -> np.ndarray:
  """`[N, K]` float32 logits of `images` (`[N, H, W, C]` in model space) with test-time noise.

  For repeated calls (validation every few thousand steps), build the step once with
  `make_noisy_fn(logits_fn(apply_fn), noise_std, mesh)` and call `predict`.
  """
  step = make_noisy_fn(logits_fn(apply_fn), noise_std, mesh)
  return predict(step, params, images, key, batch_size=batch_size)
