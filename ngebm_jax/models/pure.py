"""The one place where a Flax NNX module becomes the pure functions of the model contract.

    fns, params = create_model("wide_resnet", num_classes=10, key=key, depth=28, width=10)
    fns.apply_fn(params, x, dropout_key=None) -> logits [B, K]
    fns.features_fn(params, x, dropout_key=None) -> A [B, h, w, C]   (after the final LeakyReLU)
    fns.head_fn(params, A) -> logits [B, K]                           (= mean_{h,w} A @ W + b)
    fns.head_kernel(params) -> W [C, K]

`params` is a plain nested dict of float32 arrays (`nnx.to_pure_dict` of the module's
parameters), so optax, orbax and `jax.tree` use it as they would any pytree, and nothing
downstream (energies, losses, SGLD, salience) imports Flax. Each function rebuilds the module from
the static graph definition and `params` with `nnx.merge`. That is Python bookkeeping, not array
work: under `jit`, `grad`, `jvp` or `vmap` it runs once, at trace time, and the compiled function
is the same as a hand-written one. (Called eagerly, each call pays the merge again, so jit
anything that runs often, as one would anyway.)

`apply_fn(params, x) = head_fn(params, features_fn(params, x))` exactly. The head is the
classic CAM head (Zhou et al. 2016): with `A` taken after the final LeakyReLU,
`logits_k = mean_{h,w} sum_c A[b, h, w, c] W[c, k] + b_k`, so `cam_k = sum_c W[c, k] A[..., c]`.
"""

from __future__ import annotations

import functools
import inspect
import math
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from ngebm_jax.models import layers
from ngebm_jax.models.small_cnn import SmallCNN
from ngebm_jax.models.wide_resnet import WideResNet

Params = dict[str, Any]

_MODELS = {"wide_resnet": WideResNet, "small_cnn": SmallCNN}
MODEL_NAMES = tuple(sorted(_MODELS))  # the names `create_model` (and config.model.name) takes


class ModelFns(NamedTuple):
  """The pure functions of a model; see the module docstring for their signatures."""
  apply_fn: Callable[..., jax.Array]
  features_fn: Callable[..., jax.Array]
  head_fn: Callable[[Params, jax.Array], jax.Array]
  head_kernel: Callable[[Params], jax.Array]


def model_arguments(name: str) -> tuple[str, ...]:
  """The architecture arguments model `name` takes (e.g. `("depth", "width", "dropout_rate")`)."""
  if name not in _MODELS:
    raise ValueError(f"Unknown model {name!r}; choose one of {sorted(_MODELS)}.")
  fixed = {"self", "num_classes", "input_channels", "dtype", "rngs"}
  return tuple(p for p in inspect.signature(_MODELS[name].__init__).parameters if p not in fixed)


def create_model(name: str, *, num_classes: int, key: jax.Array, dtype=jnp.float32,
                 **kwargs) -> tuple[ModelFns, Params]:
  """Builds model `name` and returns its pure functions and its initial parameters.

  Args:
    name: "wide_resnet" (kwargs: depth=28, width=10, dropout_rate=0.0, input_channels=3) or
      "small_cnn" (kwargs: width=16, dropout_rate=0.0, input_channels=3).
    num_classes: K, the number of logits.
    key: a `jax.random` key for the initialisation.
    dtype: computation dtype (`jnp.float32`, or `jnp.bfloat16` for fast GPU runs: activations and
      logits are then bfloat16). Parameters are float32 whatever the dtype.
    **kwargs: the model's own arguments (above).

  Returns:
    `(fns, params)`: a `ModelFns` and a nested dict of float32 arrays.

  Works under `jax.eval_shape` for free parameter shapes:
  `jax.eval_shape(lambda: create_model(...)[1])`.
  """
  if name not in _MODELS:
    raise ValueError(f"Unknown model {name!r}; choose one of {sorted(_MODELS)}.")
  if not jnp.issubdtype(dtype, jnp.floating):
    raise ValueError(f"dtype must be a floating dtype such as jnp.float32; got {dtype!r}.")
  init, fns = _initializer(name, num_classes, jnp.dtype(dtype), tuple(sorted(kwargs.items())))
  params = init(key)
  return fns[0], params


# The computation dtypes `config.model.dtype` names.
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def from_config(config, num_classes: int) -> tuple[ModelFns, Params]:
  """`create_model` of `config.model`, parameters initialized from `config.seed`.

  Each architecture reads its own fields of `config.model` (a small CNN has no depth).
  """
  m = config.model
  if m.dtype not in DTYPES:
    raise ValueError(f"config.model.dtype must be one of {sorted(DTYPES)}; got {m.dtype!r}.")
  kwargs = {k: m[k] for k in model_arguments(m.name)}
  return create_model(m.name, num_classes=num_classes, key=jax.random.key(config.seed),
                      dtype=DTYPES[m.dtype], **kwargs)


@functools.lru_cache(maxsize=16)
def _initializer(name, num_classes, dtype, kwargs):
  """A jitted `key -> params` for one model configuration, and (once traced) its `ModelFns`.

  The module is built abstractly (no arrays) and its parameters drawn in one random call with the
  layers' own distribution: XLA:CPU spends seconds compiling each per-layer draw. Cached, so
  building the same model twice compiles once.
  """
  fns = []

  def init(key):
    model = nnx.eval_shape(lambda: _MODELS[name](
        num_classes=num_classes, dtype=dtype, rngs=nnx.Rngs(params=0), **dict(kwargs)))
    model_fns, shapes = pure_functions(model)
    fns.append(model_fns)
    return layers.torch_default_params(shapes, key)

  return jax.jit(init), fns


def pure_functions(model: nnx.Module) -> tuple[ModelFns, Params]:
  """`(ModelFns, params)` of an NNX module like `WideResNet` or `SmallCNN`.

  The module provides `__call__(x, dropout_key)`, `features(x, dropout_key)`, `classify(a)` and
  `head`, the final `nnx.Linear`.

  The module must hold nothing but `nnx.Param`s (no RNG streams, no batch statistics): a pure
  function of `(params, x)` has no other state to carry.
  """
  graphdef, state, rest = nnx.split(model, nnx.Param, ...)
  if jax.tree.leaves(rest):
    raise ValueError(
        f"{type(model).__name__} holds state other than parameters "
        f"({sorted(map(str, nnx.to_flat_state(rest).paths))[:3]}...); pure functions need a module "
        "whose only state is nnx.Param.")
  params = nnx.to_pure_dict(state)
  treedef = jax.tree.structure(params)
  del model, state  # the functions close over the graph definition only, never over arrays

  def bind(params: Params) -> nnx.Module:
    if jax.tree.structure(params) != treedef:
      raise ValueError(
          "params do not have the structure of this model's parameters: expected "
          f"{treedef}, got {jax.tree.structure(params)}.")
    return nnx.merge(graphdef, params)

  def apply_fn(params: Params, x: jax.Array, dropout_key: jax.Array | None = None) -> jax.Array:
    """Logits `[B, K]` of images `x: [B, H, W, C]` in about [-1, 1]; dropout only with a key."""
    return bind(params)(x, dropout_key)

  def features_fn(params: Params, x: jax.Array,
                  dropout_key: jax.Array | None = None) -> jax.Array:
    """Last feature map `A: [B, h, w, C]`, after the final LeakyReLU (the input of `head_fn`)."""
    return bind(params).features(x, dropout_key)

  def head_fn(params: Params, a: jax.Array) -> jax.Array:
    """Logits `[B, K] = mean_{h,w} A @ W + b` of a feature map `A: [B, h, w, C]`."""
    model = bind(params)
    channels = model.head.in_features
    if jnp.ndim(a) != 4 or jnp.shape(a)[-1] != channels:
      raise ValueError(
          f"A must be a feature map [B, h, w, {channels}]; got shape {jnp.shape(a)}.")
    return model.classify(a)

  def head_kernel(params: Params) -> jax.Array:
    """Final linear kernel `W: [C, K]` (float32), for class activation maps."""
    return bind(params).head.kernel[...]

  return ModelFns(apply_fn, features_fn, head_fn, head_kernel), params


def count_params(params: Any) -> int:
  """Number of scalars in a pytree of arrays or `jax.ShapeDtypeStruct`s (or an NNX module)."""
  if isinstance(params, nnx.Module):
    params = nnx.to_pure_dict(nnx.state(params, nnx.Param))
  return sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(params))
