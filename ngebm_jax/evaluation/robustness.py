"""Adversarial robustness: projected gradient descent (PGD) attacks, L-infinity and L2.

PGD (Madry et al., "Towards Deep Learning Models Resistant to Adversarial Attacks", ICLR 2018):
from a random start in the epsilon-ball around the clean input `x0`, repeat `num_steps` times

  L-inf: x <- P(x + alpha * sign(g)),        L2: x <- P(x + alpha * g / ||g||_2),

with `g` the input gradient of the cross-entropy of the true label, and `P` the projection onto
the epsilon-ball around `x0` followed by clipping to the valid pixel range [-1, 1]. Clipping a
point of the ball toward the box only shrinks `|x - x0|` coordinate-wise (`x0` is in the box), so
every iterate lies in both sets. The final iterate is the adversarial example. JEM evaluates
40 iterations (the default here) for both norms, epsilons up to 30/255 (L-inf) and about 5 (L2).

Units. Epsilons and step sizes are given in [0, 1] pixel units, as papers report them. The model
sees `x_model = 2 * x01 - 1`, a linear map with gain 2, so a ball of radius `eps` in pixel units
is a ball of radius `2 * eps` in model space, for the L-inf and the L2 norm alike
(`input_scale=2.0`). Inputs `x` are in model space, [-1, 1].

The test-time Gaussian input noise of the NG-EBM recipe is not part of the attack: `pgd_attack`
attacks the deterministic model. `robust_accuracy(noise_std=...)` adds the noise to the
adversarial images before classifying them, as the test-time input pipeline would (the attack's
gradients see the noise-free model; no expectation over the noise is taken).
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np

from ngebm_jax import _checks
from ngebm_jax.energy import ApplyFn
from ngebm_jax.evaluation.inference import add_input_noise
from ngebm_jax.evaluation.inference import batched

NORMS = ("linf", "l2")

# Epsilon grids in [0, 1] pixel units: JEM plots L-inf up to 30/255 and L2 up to about 5; the
# grids are denser at small epsilons, where accuracies change fastest.
DEFAULT_EPSILONS = {
    "linf": tuple(e / 255.0 for e in (0, 1, 2, 4, 8, 12, 16, 22, 30)),
    "l2": (0.0, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 5.0),
}

# The epsilons of the report's table: the common CIFAR benchmarks (RobustBench) use 8/255 for
# L-inf and 0.5 for L2.
STANDARD_EPSILONS = {
    "linf": (8 / 255.0,),
    "l2": (0.5,),
}


def _check_norm(norm: str) -> None:
  if norm not in NORMS:
    raise ValueError(f'norm must be one of {NORMS}; got {norm!r}.')


def _check_num_steps(num_steps: int) -> None:
  if isinstance(num_steps, bool) or int(num_steps) != num_steps or num_steps < 1:
    raise ValueError(f"num_steps must be a positive integer; got {num_steps!r}.")


def default_step_size(epsilon, num_steps: int):
  """Madry et al.'s rule, `2.5 * epsilon / num_steps`: the walk can cross the ball and back."""
  return 2.5 * epsilon / num_steps


def _per_example_l2(v: jax.Array) -> jax.Array:
  """`[B, ...] -> [B, 1, ..., 1]` L2 norms, broadcastable against `v`."""
  axes = tuple(range(1, v.ndim))
  return jnp.sqrt(jnp.sum(jnp.square(v), axis=axes, keepdims=True))


def _project(x: jax.Array, x0: jax.Array, radius, norm: str) -> jax.Array:
  """Onto the `radius`-ball around `x0` (model units), then into the pixel box [-1, 1]."""
  delta = x - x0
  if norm == "linf":
    delta = jnp.clip(delta, -radius, radius)
  else:
    n = _per_example_l2(delta)
    delta = delta * jnp.minimum(1.0, radius / jnp.maximum(n, 1e-12))
  return jnp.clip(x0 + delta, -1.0, 1.0)


def _random_start(key: jax.Array, x0: jax.Array, radius, norm: str) -> jax.Array:
  """A point drawn uniformly from the `radius`-ball around `x0`, clipped to [-1, 1]."""
  if norm == "linf":
    delta = jax.random.uniform(key, x0.shape, x0.dtype, -1.0, 1.0) * radius
  else:
    k_dir, k_rad = jax.random.split(key)
    direction = jax.random.normal(k_dir, x0.shape, x0.dtype)
    direction = direction / jnp.maximum(_per_example_l2(direction), 1e-12)
    dim = np.prod(x0.shape[1:])
    u = jax.random.uniform(k_rad, (x0.shape[0],) + (1,) * (x0.ndim - 1), x0.dtype)
    delta = direction * radius * u ** (1.0 / dim)
  return _project(x0 + delta, x0, radius, norm)


def pgd_attack(apply_fn: ApplyFn, params: Any, x: jax.Array, y: jax.Array, *, key: jax.Array,
               epsilon, norm: str = "linf", num_steps: int = 40, step_size=None,
               random_start: bool = True, input_scale: float = 2.0) -> jax.Array:
  """PGD adversarial examples maximizing the cross-entropy of the true labels.

  Pure and jittable (`apply_fn`, `norm`, `num_steps`, `random_start` static; `epsilon` and
  `step_size` may be traced, so one compilation serves every epsilon).

  Args:
    apply_fn: `apply_fn(params, x) -> logits [B, K]`.
    params: parameters of `apply_fn`.
    x: `[B, H, W, C]` clean inputs in model space, in [-1, 1].
    y: `[B]` integer true labels.
    key: PRNG key for the random start.
    epsilon: radius of the ball in [0, 1] pixel units (e.g. 8/255 for L-inf, 0.5 for L2).
    norm: `"linf"` or `"l2"`.
    num_steps: PGD iterations (40 as in JEM).
    step_size: step `alpha` in [0, 1] pixel units; `None` for `2.5 * epsilon / num_steps`.
    random_start: start from a uniform point of the ball (else from `x`).
    input_scale: model units per pixel unit, 2 for `x_model = 2 * x01 - 1`.

  Returns:
    `[B, H, W, C]` adversarial inputs `x_adv` with `||x_adv - x|| <= input_scale * epsilon` in the
    chosen norm and `-1 <= x_adv <= 1`.
  """
  _check_norm(norm)
  _check_num_steps(num_steps)
  _checks.check_images(x)
  _checks.check_labels(y, x.shape[0])
  _checks.check_positive(epsilon, "epsilon")
  if step_size is None:
    step_size = default_step_size(epsilon, num_steps)
  _checks.check_positive(step_size, "step_size")
  _checks.check_positive(input_scale, "input_scale", allow_zero=False)
  radius = jnp.asarray(input_scale * epsilon, x.dtype)
  alpha = jnp.asarray(input_scale * step_size, x.dtype)

  def loss(x_adv):
    logits = apply_fn(params, x_adv).astype(jnp.float32)
    logp = jax.nn.log_softmax(logits, axis=-1)
    # Summed over the batch: examples do not interact, so this gives per-example gradients.
    return -jnp.sum(jnp.take_along_axis(logp, y[:, None], axis=-1))

  def step(_, x_adv):
    g = jax.grad(loss)(x_adv)
    if norm == "linf":
      direction = jnp.sign(g)
    else:
      direction = g / jnp.maximum(_per_example_l2(g), 1e-12)
    return _project(x_adv + alpha * direction.astype(x.dtype), x, radius, norm)

  x_adv = _random_start(key, x, radius, norm) if random_start else jnp.clip(x, -1.0, 1.0)
  return jax.lax.fori_loop(0, num_steps, step, x_adv)


def make_pgd_attack(apply_fn: ApplyFn, *, norm: str = "linf", num_steps: int = 40,
                    random_start: bool = True, input_scale: float = 2.0) -> Callable:
  """A jitted `attack(params, x, y, key, epsilon, step_size) -> x_adv` (see `pgd_attack`).

  `epsilon` and `step_size` are traced: one compilation per input shape serves all epsilons.
  """
  _check_norm(norm)
  _check_num_steps(num_steps)

  def attack(params, x, y, key, epsilon, step_size):
    return pgd_attack(apply_fn, params, x, y, key=key, epsilon=epsilon, norm=norm,
                      num_steps=num_steps, step_size=step_size, random_start=random_start,
                      input_scale=input_scale)

  return jax.jit(attack)


def robust_accuracy(apply_fn: ApplyFn, params: Any, x: Any, y: Any, *, key: jax.Array,
                    norm: str = "linf", epsilons: Sequence[float] | None = None,
                    num_steps: int = 40, step_size: float | None = None,
                    batch_size: int = 100, noise_std: float = 0.0,
                    random_start: bool = True, input_scale: float = 2.0) -> dict[float, float]:
  """Accuracy under PGD at each epsilon.

  Args:
    apply_fn: `apply_fn(params, x) -> logits [B, K]`.
    params: parameters of `apply_fn`.
    x: `[N, H, W, C]` clean inputs in model space, [-1, 1].
    y: `[N]` integer labels.
    key: PRNG key (random starts and input noise; split per epsilon and batch).
    norm: `"linf"` or `"l2"`.
    epsilons: radii in [0, 1] pixel units; `None` for `DEFAULT_EPSILONS[norm]`. Epsilon 0 is
      the clean accuracy (no attack is run).
    num_steps: PGD iterations.
    step_size: in pixel units, the same for every epsilon; `None` for `2.5 * eps / num_steps`.
    batch_size: examples per attack call (the last batch is padded, so one compilation).
    noise_std: std of Gaussian noise (model units) added to the adversarial inputs before they
      are classified, the test-time noise of the NG-EBM recipe (0.03), drawn per example as
      `inference.add_input_noise` does; not seen by the attack.
    random_start: PGD's random start.
    input_scale: model units per pixel unit (2 for [-1, 1] inputs).

  Returns:
    dict epsilon -> accuracy (Python floats), in the order of `epsilons`.
  """
  _check_norm(norm)
  x = np.asarray(x)
  _checks.check_images(x)
  y = np.asarray(y)
  _checks.check_labels(y, x.shape[0])
  _checks.check_positive(noise_std, "noise_std")
  epsilons = DEFAULT_EPSILONS[norm] if epsilons is None else tuple(float(e) for e in epsilons)
  for e in epsilons:
    _checks.check_positive(e, "epsilon")
  if isinstance(batch_size, bool) or int(batch_size) != batch_size or batch_size < 1:
    raise ValueError(f"batch_size must be a positive integer; got {batch_size!r}.")
  attack = make_pgd_attack(apply_fn, norm=norm, num_steps=num_steps,
                           random_start=random_start, input_scale=input_scale)

  @jax.jit
  def correct_fn(params, x_adv, y, idx, key):
    if noise_std > 0:  # the evaluation's test-time noise, per example
      x_adv = add_input_noise(x_adv, idx, key, noise_std)
    return jnp.argmax(apply_fn(params, x_adv), axis=-1) == y

  results = {}
  for i, eps in enumerate(epsilons):
    k_attack, k_noise = jax.random.split(jax.random.fold_in(key, i))
    step = default_step_size(eps, num_steps) if step_size is None else step_size

    def correct_in_batch(xb, yb, idx, eps=eps, step=step, k_attack=k_attack, k_noise=k_noise):
      if eps > 0:  # batches have a fixed size, so a batch's first index names its random start
        xb = attack(params, xb, yb, jax.random.fold_in(k_attack, int(idx[0])), eps, step)
      return correct_fn(params, xb, yb, idx, k_noise)

    correct = batched(correct_in_batch, x, y, np.arange(x.shape[0]), batch_size=batch_size)
    results[eps] = float(np.mean(correct))
    logging.info("PGD %s eps=%.4f (%d steps): accuracy %.4f", norm, eps, num_steps,
                 results[eps])
  return results
