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

Two protocols. "fixed_epsilon" (`robust_accuracy`, the default): accuracy under PGD at each of a
few epsilons. "paper" (`minimal_epsilons`): the protocol of the NG-EBM and JEM code
(its attack code, foolbox 1.8): for each correctly classified image among the first N, the
smallest epsilon at which PGD succeeds, found by foolbox's search (an exponential search up
from `initial_epsilon`, x1.5 per try, then `binary_search_steps` bisections; each try is a PGD
run that stops at its first adversarial iterate, with the step a fixed fraction of that try's
epsilon), against the model that averages the logits of 5 noisy copies of its input (sigma 0.03
for L-inf, 0 for L2, fresh noise at each call), each copy first refined by one SGLD step on
log p~(x) (`--n_steps_refine 1`, Langevin noise 0.01; `refine`), with the attack's gradients
passed straight through that step, as the reference's are. Accuracy at epsilon is then the
fraction of the N images whose smallest successful epsilon exceeds it (misclassified images
count as 0), the curve the reference plots.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np

from ngebm_jax import _checks
from ngebm_jax.energy import ApplyFn
from ngebm_jax.energy import log_density_input_grad
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


def _check_attack_inputs(x: Any, y: Any, norm: str, noise_std: float
                         ) -> tuple[np.ndarray, np.ndarray]:
  """Checks a set to attack (`x [N, H, W, C]`, `y [N]`, the norm, the noise); NumPy arrays."""
  _check_norm(norm)
  x = np.asarray(x)
  _checks.check_images(x)
  y = np.asarray(y)
  _checks.check_labels(y, x.shape[0])
  _checks.check_positive(noise_std, "noise_std")
  return x, y


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
  x, y = _check_attack_inputs(x, y, norm, noise_std)
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


# ------------------------------------------------------------------- the paper's protocol --

PROTOCOLS = ("fixed_epsilon", "paper")

# foolbox 1.8's defaults, as NG-EBM's attack code calls it: RandomStartProjected-
# GradientDescentAttack (L-inf) and L2BasicIterativeAttack start their search at epsilon 0.3 with
# steps of 0.01 and 0.05, i.e. 1/30 and 1/6 of the epsilon tried (foolbox keeps that ratio). Its
# L2 epsilon is a root-mean-square over the D pixel values; ours is the L2 norm, sqrt(D) times it.
PAPER_INITIAL_EPSILON = {"linf": 0.3, "l2": 0.3}   # in foolbox's units (L2: RMS per pixel)
PAPER_STEP_FRACTION = {"linf": 0.01 / 0.3, "l2": 0.05 / 0.3}
PAPER_NUM_COPIES = 5
PAPER_GROWTH = 1.5
# The reference's attack commands pass `--n_steps_refine 1` and leave `--sgld_sigma` at 0.01:
# each noisy copy takes one SGLD step, x <- x + d log p~(x) / dx + 0.01 n (a unit step, model
# units), before it is classified.
PAPER_REFINE_STEPS = 1
PAPER_REFINE_NOISE_STD = 0.01


def refine(apply_fn: ApplyFn, params: Any, x: jax.Array, key: jax.Array, *, num_steps: int,
           noise_std: float) -> jax.Array:
  """`num_steps` SGLD steps from `x` (the reference's `refine`): at step `i`,
  `x <- x + d log p~(x) / dx + noise_std * N(0, I)`, the noise drawn from `fold_in(key, i)`.

  Args:
    apply_fn: `apply_fn(params, x) -> logits [B, K]`; `log p~(x) = logsumexp(logits)`.
    params: parameters of `apply_fn`.
    x: `[B, H, W, C]` inputs in model space.
    key: PRNG key of the Langevin noise.
    num_steps: SGLD steps (0: `x` unchanged).
    noise_std: std of the Langevin noise, model units.
  """
  for i in range(num_steps):
    grad, _ = log_density_input_grad(apply_fn, params, x)
    x = x + grad.astype(x.dtype) + noise_std * jax.random.normal(
        jax.random.fold_in(key, i), x.shape, x.dtype)
  return x


def averaged_noisy_logits(apply_fn: ApplyFn, params: Any, x: jax.Array, key: jax.Array, *,
                          num_copies: int, noise_std: float, refine_steps: int = 0,
                          refine_noise_std: float = 0.0) -> jax.Array:
  """`[B, K]` mean logits over `num_copies` copies of `x` with Gaussian noise of `noise_std`,
  each refined by `refine_steps` SGLD steps (`refine`) before it is classified: the reference's
  `refined_logits`. One copy when nothing is random (no noise, no noisy refinement).

  Gradients with respect to `x` pass straight through the refinement, as in the reference,
  whose SGLD step writes into the tensor's `.data` (invisible to autograd) and takes the
  gradient of `log p~` without `create_graph`: the attack differentiates the logits at the
  refined point as if the refined point were `x` itself (identity Jacobian), and never
  differentiates the SGLD step.

  Keys: the copies' noise is drawn from `key` without refinement, from the first half of
  `split(key)` with it (the second half keys `refine`).
  """
  noisy_refinement = refine_steps > 0 and refine_noise_std > 0
  if noise_std == 0 and not noisy_refinement:
    num_copies, noise_std = 1, 0.0
  k_copies, k_refine = (key, None) if refine_steps == 0 else jax.random.split(key)
  copies = jnp.broadcast_to(x[None], (num_copies,) + x.shape)
  if noise_std > 0:
    copies = copies + noise_std * jax.random.normal(k_copies, copies.shape, x.dtype)
  copies = copies.reshape((-1,) + x.shape[1:])
  if refine_steps > 0:
    refined = refine(apply_fn, params, copies, k_refine, num_steps=refine_steps,
                     noise_std=refine_noise_std)
    copies = copies + jax.lax.stop_gradient(refined - copies)  # straight through
  logits = apply_fn(params, copies).astype(jnp.float32)
  return logits.reshape(num_copies, x.shape[0], -1).mean(axis=0)


def _distance(delta: jax.Array, norm: str) -> jax.Array:
  """`[B]` norms of `delta` (model units)."""
  flat = delta.reshape(delta.shape[0], -1)
  if norm == "linf":
    return jnp.max(jnp.abs(flat), axis=1)
  return jnp.sqrt(jnp.sum(jnp.square(flat), axis=1))


def make_paper_attack(apply_fn: ApplyFn, *, norm: str, num_steps: int = 40,
                      num_copies: int = PAPER_NUM_COPIES, noise_std: float = 0.0,
                      random_start: bool = True, refine_steps: int = PAPER_REFINE_STEPS,
                      refine_noise_std: float = PAPER_REFINE_NOISE_STD) -> Callable:
  """A jitted `try_epsilon(params, x, y, key, radius, alpha) -> (success [B], distance [B])`.

  One foolbox PGD run per example with its own ball: `radius [B]` and step `alpha [B]` in model
  units. From a random start (foolbox's: uniform per coordinate in `[-r, r]` for L-inf, in
  `[-r / sqrt(D), r / sqrt(D)]` for L2, so inside the ball), `num_steps` steps of the
  cross-entropy gradient of the averaged noisy model (sign for L-inf, unit L2 norm for L2), each
  projected onto the ball and the pixel box; an example stops at its first iterate that the
  (noisy) model misclassifies. Returns whether it did and that iterate's distance to `x`.
  """
  _check_norm(norm)
  _check_num_steps(num_steps)

  def model(params, xb, key):
    return averaged_noisy_logits(apply_fn, params, xb, key, num_copies=num_copies,
                                 noise_std=noise_std, refine_steps=refine_steps,
                                 refine_noise_std=refine_noise_std)

  def try_epsilon(params, x, y, key, radius, alpha):
    radius = radius.reshape((-1,) + (1,) * (x.ndim - 1)).astype(x.dtype)
    alpha = alpha.reshape(radius.shape).astype(x.dtype)
    k_start, k_steps = jax.random.split(key)
    x_adv = x
    if random_start:
      dim = np.prod(x.shape[1:])
      scale = radius if norm == "linf" else radius / math.sqrt(dim)
      x_adv = _project(x + jax.random.uniform(k_start, x.shape, x.dtype, -1.0, 1.0) * scale,
                       x, radius, norm)

    def loss(xa, k):
      logp = jax.nn.log_softmax(model(params, xa, k), axis=-1)
      return -jnp.sum(jnp.take_along_axis(logp, y[:, None], axis=-1))

    def step(i, carry):
      xa, done, dist = carry
      k_grad, k_check = jax.random.split(jax.random.fold_in(k_steps, i))
      g = jax.grad(loss)(xa, k_grad)
      if norm == "linf":
        direction = jnp.sign(g)
      else:
        direction = g / jnp.maximum(_per_example_l2(g), 1e-12)
      x_new = _project(xa + alpha * direction.astype(x.dtype), x, radius, norm)
      fooled = jnp.argmax(model(params, x_new, k_check), axis=-1) != y
      first = fooled & ~done
      dist = jnp.where(first, _distance(x_new - x, norm), dist)
      keep = done.reshape(radius.shape)
      return jnp.where(keep, xa, x_new), done | fooled, dist

    b = x.shape[0]
    _, done, dist = jax.lax.fori_loop(
        0, num_steps, step, (x_adv, jnp.zeros((b,), bool), jnp.full((b,), jnp.inf, jnp.float32)))
    return done, dist

  return jax.jit(try_epsilon)


def minimal_epsilons(apply_fn: ApplyFn, params: Any, x: Any, y: Any, *, key: jax.Array,
                     norm: str = "linf", num_steps: int = 40, binary_search_steps: int = 20,
                     num_copies: int = PAPER_NUM_COPIES, noise_std: float = 0.0,
                     initial_epsilon: float | None = None, step_fraction: float | None = None,
                     random_start: bool = True, batch_size: int = 100,
                     input_scale: float = 2.0, refine_steps: int = PAPER_REFINE_STEPS,
                     refine_noise_std: float = PAPER_REFINE_NOISE_STD) -> dict[str, Any]:
  """The smallest epsilon at which PGD fools the model, per image (the "paper" protocol).

  foolbox 1.8's search, batched: every example tries its own epsilon; starting at
  `initial_epsilon`, those not yet fooled multiply theirs by 1.5 (at most `binary_search_steps`
  times), then each fooled example bisects `binary_search_steps` times between 0 and the
  smallest epsilon known to work. As foolbox's `Adversarial` object does, the result is the
  distance of the closest adversarial image found in all tries (at most the last epsilon that
  worked). Images the noisy model already misclassifies get 0, images never fooled `inf`.

  Args:
    apply_fn: `apply_fn(params, x) -> logits [B, K]`.
    params: parameters of `apply_fn`.
    x: `[N, H, W, C]` clean inputs in model space, [-1, 1].
    y: `[N]` integer labels.
    key: PRNG key (noise of the copies, random starts); split per try and batch.
    norm: `"linf"` or `"l2"`.
    num_steps: PGD iterations per try (40 in the reference).
    binary_search_steps: foolbox's `k` (20): the most growth steps, and the bisections.
    num_copies: noisy copies the model averages (5 in the reference).
    noise_std: std of their noise in model units (0.03 for L-inf in the reference, 0 for L2).
    initial_epsilon: first epsilon tried, in [0, 1] pixel units (L2: the norm); `None` for
      foolbox's 0.3 (L2: 0.3 RMS per pixel, `0.3 * sqrt(D)`).
    step_fraction: PGD step as a fraction of the epsilon tried; `None` for foolbox's (1/30
      for L-inf, 1/6 for L2).
    random_start: foolbox's random start (the reference uses it).
    batch_size: examples per call (the last batch padded).
    input_scale: model units per pixel unit (2 for [-1, 1] inputs).
    refine_steps: SGLD steps refining each noisy copy before it is classified (the reference's
      `--n_steps_refine 1`; see `averaged_noisy_logits`), in the attack and in the clean check.
    refine_noise_std: std of their Langevin noise (the reference's `sgld_sigma`, 0.01).

  Returns:
    dict with `epsilons` (`[N]` float64, pixel units; 0 for misclassified, inf if never
    fooled) and `clean_correct` (`[N]` bool, as the noisy model classified the clean image).
  """
  x, y = _check_attack_inputs(x, y, norm, noise_std)
  _check_num_steps(num_steps)
  _check_num_steps(binary_search_steps)
  if isinstance(num_copies, bool) or int(num_copies) != num_copies or num_copies < 1:
    raise ValueError(f"num_copies must be a positive integer; got {num_copies!r}.")
  if isinstance(refine_steps, bool) or int(refine_steps) != refine_steps or refine_steps < 0:
    raise ValueError(f"refine_steps must be an integer >= 0; got {refine_steps!r}.")
  _checks.check_positive(refine_noise_std, "refine_noise_std")
  dim = int(np.prod(x.shape[1:]))
  if initial_epsilon is None:
    initial_epsilon = PAPER_INITIAL_EPSILON[norm] * (math.sqrt(dim) if norm == "l2" else 1.0)
  if step_fraction is None:
    step_fraction = PAPER_STEP_FRACTION[norm]
  _checks.check_positive(initial_epsilon, "initial_epsilon", allow_zero=False)
  _checks.check_positive(step_fraction, "step_fraction", allow_zero=False)
  refinement = dict(refine_steps=int(refine_steps), refine_noise_std=float(refine_noise_std))
  attack = make_paper_attack(apply_fn, norm=norm, num_steps=num_steps, num_copies=num_copies,
                             noise_std=noise_std, random_start=random_start, **refinement)
  clean_fn = jax.jit(lambda p, xb, k: jnp.argmax(averaged_noisy_logits(
      apply_fn, p, xb, k, num_copies=num_copies, noise_std=noise_std, **refinement), axis=-1))
  k_clean, k_search = jax.random.split(key)

  def search(xb, yb, idx):
    batch_key = jax.random.fold_in(k_search, int(idx[0]))
    correct = np.asarray(clean_fn(params, xb, jax.random.fold_in(k_clean, int(idx[0])))) == yb
    n = xb.shape[0]
    tries = [0]

    def attempt(eps):  # eps [n] pixel units -> (fooled [n], distance [n] pixel units)
      tries[0] += 1
      radius = input_scale * eps
      fooled, dist = attack(params, xb, yb, jax.random.fold_in(batch_key, tries[0]),
                            jnp.asarray(radius, jnp.float32),
                            jnp.asarray(step_fraction * radius, jnp.float32))
      return np.asarray(fooled), np.asarray(dist, np.float64) / input_scale

    best = np.full(n, np.inf)
    eps = np.full(n, float(initial_epsilon))
    found = np.zeros(n, bool)
    for _ in range(binary_search_steps):  # grow until fooled
      searching = correct & ~found
      if not searching.any():
        break
      fooled, dist = attempt(eps)
      hit = searching & fooled
      best = np.where(hit, np.minimum(best, dist), best)
      found |= hit
      eps = np.where(searching & ~fooled, eps * PAPER_GROWTH, eps)
    good, bad = eps.copy(), np.zeros(n)
    for _ in range(binary_search_steps if found.any() else 0):  # then bisect
      mid = (good + bad) / 2
      fooled, dist = attempt(mid)
      hit = found & fooled
      best = np.where(hit, np.minimum(best, dist), best)
      good = np.where(hit, mid, good)
      bad = np.where(found & ~fooled, mid, bad)
    return dict(epsilons=np.where(correct, best, 0.0), clean_correct=correct)

  return batched(search, x, y, np.arange(x.shape[0]), batch_size=batch_size)


def accuracy_at(min_epsilons: Any, epsilons: Sequence[float]) -> list[float]:
  """Fraction of images whose smallest successful epsilon exceeds each epsilon (the accuracy
  under an attack that finds every adversarial image the search found)."""
  e = np.asarray(min_epsilons, dtype=np.float64)
  return [float(np.mean(e > eps)) for eps in epsilons]
