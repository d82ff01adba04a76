"""Focus losses: human-guided salience (CYBORG) and low-entropy class activation maps.

Implements the losses of docs/method.rst, "Focus losses":

- `class_activation_map`: classic CAM (Zhou et al., CVPR 2016, sec. 2): for a network that ends in
  global average pooling and a linear layer, `cam_c(i, j) = sum_k W[k, c] A_k(i, j)` over the
  last feature map `A`, min-max normalized per image to [0, 1].
- `spatial_entropy`: Shannon entropy (nats) of a map read as a distribution over its cells.
- `human_salience_mse`: the CYBORG term `MSE(cam, h)` against a human annotation map
  (Boyd et al., WACV 2023).
- `cyborg_loss`: `L = alpha * CE + (1 - alpha) * MSE(cam, h)` (CYBORG, alpha = 0.5).
- `focus_loss`: `L = a_ce * CE + a_h * MSE(cam, h) + a_ent * entropy_term` with the entropy
  components of "Improving Model's Focus Improves Performance of Deep Learning-Based Synthetic
  Face Detectors" (arXiv 2303.00818): `mean H`, `mean ln(1 + H)`, `(mean H - H_ref)^2`.

All functions are pure and jittable; the losses take the model's outputs (logits, last feature
map, final linear kernel), not the model, so they work with any network that ends in
pooling + linear (`fns.features_fn`, `fns.head_kernel` of `ngebm_jax.models`).

Conventions and choices where the papers leave one:
- The CAM is taken for the true class of each example (as in both papers' training code).
- Normalization is per image, `(cam - min) / (max - min + epsilon)`. The CYBORG
  reference code normalizes by the min and max of the whole batch and resizes annotations with
  nearest-neighbour interpolation; here annotations are resized with antialiased bilinear
  interpolation (`jax.image.resize`), i.e. averaged over the pixels of a CAM cell, then min-max
  normalized per image. A constant map (no spatial preference) normalizes to all zeros. The
  gradient of the normalization grows like `1 / (max - min + epsilon)`: finite for a flat CAM
  (all-zero features included), but large, as the formula implies.
- `features` are used as given: pass the map the head pools over. `ngebm_jax.models`' `features_fn`
  returns it after the final LeakyReLU, so the raw CAM's mean over the cells is exactly the class
  logit minus its bias (CYBORG's reference code hooks the last convolutional block instead).
- Entropy of an all-zero map: `p = cam / sum(cam)` is undefined there; it is defined as the
  entropy of the uniform distribution, `ln(h * w)` (a flat map has no focus), with zero gradient.
  This keeps the minimum of the entropy term away from the degenerate "all-zero CAM" that
  min-max normalization produces for a constant CAM; defining it as 0 would reward collapse.
  `0 ln 0 = 0` is implemented with a double `where`, so gradients are finite everywhere (the
  derivative of `-p ln p` at `p = 0`, which is infinite, is taken as 0).
- Reductions: the per-example functions return `[B]`; the losses reduce to the mean over the
  (global, with `axis_name`) batch. `mean ln(1 + H)` is the batch mean of `ln(1 + H_i)`;
  `(mean H - H_ref)^2` squares the deviation of the global batch mean.
- Precision: everything is computed in float32 whatever the dtype of the inputs.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import optax

from ngebm_jax import _checks
from ngebm_jax.objectives import global_mean

ENTROPY_FORMS = ("mean", "log1p", "match_reference")
DEFAULT_EPSILON = 1e-6


def _check_features(features, head_weights) -> None:
  fshape, wshape = jnp.shape(features), jnp.shape(head_weights)
  if len(fshape) != 4:
    raise ValueError(f"features must be the last feature map with shape [B, h, w, C]; got shape "
                     f"{fshape}.")
  if len(wshape) != 2:
    raise ValueError(f"head_weights must be the final linear kernel with shape [C, K]; got shape "
                     f"{wshape}.")
  if wshape[0] != fshape[-1]:
    raise ValueError(f"head_weights has {wshape[0]} input channels but features have "
                     f"{fshape[-1]} channels (head_weights must be [C, K], features [B, h, w, C]).")
  for name, a in (("features", features), ("head_weights", head_weights)):
    if not jnp.issubdtype(jnp.result_type(a), jnp.floating):
      raise ValueError(f"{name} must be floating point; got dtype {jnp.result_type(a)}.")


def _check_maps(maps, name: str, batch_size: int | None = None) -> None:
  shape = jnp.shape(maps)
  if len(shape) != 3:
    raise ValueError(f"{name} must be a batch of maps with shape [B, h, w]; got shape {shape}.")
  if batch_size is not None and shape[0] != batch_size:
    raise ValueError(f"{name} has {shape[0]} maps for a batch of {batch_size}.")
  if not jnp.issubdtype(jnp.result_type(maps), jnp.floating):
    raise ValueError(f"{name} must be floating point; got dtype {jnp.result_type(maps)}.")


def _min_max_normalize(maps: jax.Array, epsilon: float) -> jax.Array:
  """`(m - min) / (max - min + epsilon)` per map, over all axes but the first."""
  axes = tuple(range(1, maps.ndim))
  lo = jnp.min(maps, axis=axes, keepdims=True)
  hi = jnp.max(maps, axis=axes, keepdims=True)
  return (maps - lo) / (hi - lo + epsilon)


def class_activation_map(features: jax.Array, head_weights: jax.Array, class_index: jax.Array, *,
                         normalize: bool = True, epsilon: float = DEFAULT_EPSILON) -> jax.Array:
  """Classic CAM of one class per example, min-max normalized per image (Zhou et al. 2016).

  `cam[b, i, j] = sum_k features[b, i, j, k] * head_weights[k, class_index[b]]`, then
  `(cam - min) / (max - min + epsilon)` over the map of each image. Differentiable in `features`
  and `head_weights` (min and max have subgradients; a constant map gives all zeros).

  Args:
    features: `[B, h, w, C]` float, the feature map the head average-pools.
    head_weights: `[C, K]` float, the final linear kernel (`fns.head_kernel(params)`).
    class_index: `[B]` integer class per example, in `[0, K)` (the true class in training).
    normalize: min-max normalize each map (default); False returns the raw weighted sum, whose
      mean over the cells is the class logit minus the bias when the head is pool + linear.
    epsilon: added to the denominator of the normalization (> 0).

  Returns:
    `[B, h, w]` float32 maps, in [0, 1) when normalized.
  """
  _check_features(features, head_weights)
  _checks.check_labels(class_index, jnp.shape(features)[0], jnp.shape(head_weights)[1],
                       name="class_index")
  _checks.check_positive(epsilon, "epsilon", allow_zero=False)
  w = jnp.take(head_weights.astype(jnp.float32), class_index, axis=1).T  # [B, C]
  cam = jnp.einsum("bhwc,bc->bhw", features.astype(jnp.float32), w)
  return _min_max_normalize(cam, epsilon) if normalize else cam


def spatial_entropy(cam: jax.Array) -> jax.Array:
  """Shannon entropy in nats of each map read as a distribution over its cells.

  `p = cam / sum(cam)`, `H = -sum_ij p ln p` with `0 ln 0 = 0`. A uniform map has `ln(h * w)`, a
  one-hot map 0. An all-zero map is given the uniform value `ln(h * w)` (module docstring).
  Gradients are finite everywhere, all-zero maps included.

  Args:
    cam: `[B, h, w]` float, non-negative (e.g. min-max normalized CAMs).

  Returns:
    `[B]` float32 entropies in `[0, ln(h * w)]`.
  """
  _check_maps(cam, "cam")
  if not isinstance(cam, jax.core.Tracer) and jnp.size(cam) and float(jnp.min(cam)) < 0:
    raise ValueError(f"cam must be non-negative to be read as a distribution; got a minimum of "
                     f"{float(jnp.min(cam))}.")
  b, h, w = cam.shape
  flat = cam.astype(jnp.float32).reshape(b, h * w)
  total = jnp.sum(flat, axis=-1, keepdims=True)
  has_mass = total > 0
  p = flat / jnp.where(has_mass, total, 1.0)
  positive = p > 0
  p_log_p = jnp.where(positive, p * jnp.log(jnp.where(positive, p, 1.0)), 0.0)
  entropy = -jnp.sum(p_log_p, axis=-1)
  return jnp.where(has_mass[:, 0], entropy, jnp.float32(math.log(h * w)))


def resize_human_maps(human_maps: jax.Array, size: tuple[int, int], *,
                      epsilon: float = DEFAULT_EPSILON) -> jax.Array:
  """Human annotation maps at the CAM resolution, min-max normalized per image.

  Args:
    human_maps: `[B, H, W]` float maps (any range; larger = more salient).
    size: `(h, w)`, the CAM resolution.
    epsilon: added to the denominator of the normalization.

  Returns:
    `[B, h, w]` float32 maps in [0, 1), constant with respect to gradients.
  """
  _check_maps(human_maps, "human_maps")
  b = human_maps.shape[0]
  maps = jax.lax.stop_gradient(human_maps.astype(jnp.float32))
  if tuple(maps.shape[1:]) != tuple(size):
    # Antialiased linear resizing averages the pixels that fall in a cell when downsampling.
    maps = jax.image.resize(maps, (b, *size), method="linear", antialias=True)
  return _min_max_normalize(maps, epsilon)


def human_salience_mse(cam: jax.Array, human_maps: jax.Array, *,
                       epsilon: float = DEFAULT_EPSILON) -> jax.Array:
  """CYBORG's salience term `MSE(cam, h)` per example.

  Args:
    cam: `[B, h, w]` float CAMs in [0, 1] (`class_activation_map`).
    human_maps: `[B, H, W]` float human annotation maps; resized to `(h, w)` and min-max normalized
      (`resize_human_maps`).
    epsilon: normalization epsilon of the human maps.

  Returns:
    `[B]` float32 mean squared errors over the `h * w` cells.
  """
  _check_maps(cam, "cam")
  _check_maps(human_maps, "human_maps", cam.shape[0])
  target = resize_human_maps(human_maps, cam.shape[1:], epsilon=epsilon)
  return jnp.mean(jnp.square(cam.astype(jnp.float32) - target), axis=(1, 2))


def human_map_entropy(human_maps: jax.Array, size: tuple[int, int], *,
                      epsilon: float = DEFAULT_EPSILON) -> jax.Array:
  """Spatial entropy `[B]` of human maps at the CAM resolution, normalized as the CAMs are.

  Its mean over the training set is the natural `reference_entropy` of
  `focus_loss(..., entropy_form="match_reference")` ("match human focus").
  """
  return spatial_entropy(resize_human_maps(human_maps, size, epsilon=epsilon))


def focus_loss(logits: jax.Array, features: jax.Array, head_weights: jax.Array, labels: jax.Array,
               human_maps: jax.Array | None = None, *, ce_weight: float = 1.0,
               human_weight: float = 0.0, entropy_weight: float = 0.0,
               entropy_form: str = "mean", reference_entropy: float | jax.Array | None = None,
               epsilon: float = DEFAULT_EPSILON, axis_name: str | None = None):
  """Blended focus objective `L = a_ce * CE + a_h * MSE(cam, h) + a_ent * entropy_term`.

  The CAM is that of the true class (`class_activation_map(features, head_weights, labels)`),
  `H_i = spatial_entropy(cam_i)`, and the entropy term is one of (arXiv 2303.00818):
    - "mean": `mean_i H_i` (direct minimization);
    - "log1p": `mean_i ln(1 + H_i)` (softer);
    - "match_reference": `(mean_i H_i - H_ref)^2` (pull the batch's mean entropy toward a
      reference, e.g. the mean `human_map_entropy` of the training set).
  A weight of 0 disables a term (its value is still reported). Means are over the global batch
  when `axis_name` is set (inside `shard_map`/`pmap`; equal shards per device).

  Args:
    logits: `[B, K]` float classifier outputs (`head_fn(params, features)`).
    features: `[B, h, w, C]` float last feature map (`features_fn(params, x)`).
    head_weights: `[C, K]` float final linear kernel (`head_kernel(params)`).
    labels: `[B]` integer labels in `[0, K)`.
    human_maps: `[B, H, W]` float human annotation maps, or None (then `human_weight` must be 0).
    ce_weight: `a_ce >= 0`.
    human_weight: `a_h >= 0`.
    entropy_weight: `a_ent >= 0`.
    entropy_form: "mean", "log1p" or "match_reference".
    reference_entropy: `H_ref` in nats (scalar); required by, and only accepted with,
      "match_reference".
    epsilon: normalization epsilon of CAMs and human maps.
    axis_name: mapped device axis for global batch means, or None.

  Returns:
    `(loss, aux)`: scalar float32 loss; `aux` holds the batch means `ce`, `cam_entropy`
    (`mean H`), `entropy_term`, `human_mse` (when `human_maps` is given), the `loss`, and the
    `logits [B, K]`.
  """
  _checks.check_logits(logits)
  _check_features(features, head_weights)
  batch_size, num_classes = jnp.shape(logits)
  if jnp.shape(features)[0] != batch_size:
    raise ValueError(f"features has batch size {jnp.shape(features)[0]} but logits {batch_size}.")
  if jnp.shape(head_weights)[1] != num_classes:
    raise ValueError(f"head_weights has {jnp.shape(head_weights)[1]} classes but logits "
                     f"{num_classes}.")
  _checks.check_labels(labels, batch_size, num_classes, name="labels")
  _checks.check_positive(ce_weight, "ce_weight")
  _checks.check_positive(human_weight, "human_weight")
  _checks.check_positive(entropy_weight, "entropy_weight")
  _checks.check_positive(epsilon, "epsilon", allow_zero=False)
  if entropy_form not in ENTROPY_FORMS:
    raise ValueError(f"entropy_form must be one of {ENTROPY_FORMS}; got {entropy_form!r}.")
  if entropy_form == "match_reference":
    if reference_entropy is None:
      raise ValueError("entropy_form='match_reference' needs reference_entropy (the target mean "
                       "entropy in nats, e.g. the mean human_map_entropy of the training set).")
    if jnp.ndim(reference_entropy) != 0:
      raise ValueError(f"reference_entropy must be a scalar; got shape "
                       f"{jnp.shape(reference_entropy)}.")
  elif reference_entropy is not None:
    raise ValueError(f"reference_entropy is only used with entropy_form='match_reference'; got "
                     f"entropy_form={entropy_form!r}.")
  if human_maps is None:
    if not isinstance(human_weight, jax.core.Tracer) and float(human_weight) > 0:
      raise ValueError(f"human_weight={human_weight} > 0 needs human_maps.")
  else:
    _check_maps(human_maps, "human_maps", batch_size)

  ce = global_mean(
      optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), labels),
      axis_name)
  cam = class_activation_map(features, head_weights, labels, epsilon=epsilon)
  entropies = spatial_entropy(cam)
  cam_entropy = global_mean(entropies, axis_name)
  if entropy_form == "mean":
    entropy_term = cam_entropy
  elif entropy_form == "log1p":
    entropy_term = global_mean(jnp.log1p(entropies), axis_name)
  else:
    entropy_term = jnp.square(cam_entropy - jnp.asarray(reference_entropy, jnp.float32))

  loss = ce_weight * ce + entropy_weight * entropy_term
  aux = {"ce": ce, "cam_entropy": cam_entropy, "entropy_term": entropy_term}
  if human_maps is not None:
    human_mse = global_mean(human_salience_mse(cam, human_maps, epsilon=epsilon), axis_name)
    loss = loss + human_weight * human_mse
    aux["human_mse"] = human_mse
  loss = loss.astype(jnp.float32)
  aux["loss"] = loss
  aux["logits"] = logits
  return loss, aux


def cyborg_loss(logits: jax.Array, features: jax.Array, head_weights: jax.Array,
                labels: jax.Array, human_maps: jax.Array, *, alpha: float = 0.5,
                epsilon: float = DEFAULT_EPSILON, axis_name: str | None = None):
  """CYBORG objective `L = alpha * CE + (1 - alpha) * MSE(cam_y, h)` (Boyd et al., WACV 2023).

  `focus_loss` with `ce_weight=alpha`, `human_weight=1 - alpha`, `entropy_weight=0`.

  Args:
    logits: `[B, K]`; features: `[B, h, w, C]`; head_weights: `[C, K]`; labels: `[B]` int;
      human_maps: `[B, H, W]` float (see `focus_loss`).
    alpha: weight of cross-entropy, in [0, 1] (paper: 0.5).
    epsilon: normalization epsilon of CAMs and human maps.
    axis_name: mapped device axis for global batch means, or None.

  Returns:
    `(loss, aux)` as `focus_loss` (`ce`, `human_mse`, `cam_entropy`, `entropy_term`, `loss`,
    `logits`).
  """
  if human_maps is None:
    raise ValueError("cyborg_loss needs human_maps.")
  if not isinstance(alpha, jax.core.Tracer) and not 0.0 <= float(alpha) <= 1.0:
    raise ValueError(f"alpha must be in [0, 1]; got {alpha}.")
  return focus_loss(logits, features, head_weights, labels, human_maps, ce_weight=alpha,
                    human_weight=1.0 - alpha, entropy_weight=0.0, epsilon=epsilon,
                    axis_name=axis_name)
