"""Tests of ngebm_jax.models: architecture, the pure-function contract, transforms, errors.

XLA:CPU compilations dominate the run time, so the tests share two small models and jit one
function per check.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from ngebm_jax import models

NUM_CLASSES = 5


def _abstract(name, **kwargs):
  """`(fns, params as ShapeDtypeStructs)` without allocating or drawing the parameters."""
  box = []

  def init():
    fns, params = models.create_model(name, key=jax.random.key(0), **kwargs)
    box.append(fns)
    return params

  params = jax.eval_shape(init)
  return box[0], params


def _numpy_params(shapes, seed=0, scale=0.3):
  """Parameters of the given shapes drawn with NumPy: no XLA compilation."""
  rng = np.random.default_rng(seed)
  return jax.tree.map(
      lambda s: jnp.asarray(rng.uniform(-scale, scale, s.shape), jnp.float32), shapes)


def _paths(tree):
  return [tuple(k.key for k in path) for path, _ in jax.tree_util.tree_leaves_with_path(tree)]


@pytest.fixture(scope="module")
def wrn():
  """WRN-10-1 from `create_model` (PyTorch-default initialisation)."""
  return models.create_model("wide_resnet", num_classes=NUM_CLASSES, key=jax.random.key(0),
                             depth=10, width=1)


@pytest.fixture(scope="module")
def cnn():
  """A small CNN with dropout 0.5 (parameters are those of the same model without dropout)."""
  fns, shapes = _abstract("small_cnn", num_classes=NUM_CLASSES, width=4, dropout_rate=0.5)
  return fns, _numpy_params(shapes)


@pytest.fixture(scope="module")
def x():
  return jnp.asarray(np.random.default_rng(1).uniform(-1, 1, (2, 16, 16, 3)), jnp.float32)


# A slow, obvious re-implementation of the reference architecture straight from the parameter
# dict, with PyTorch's symmetric padding.

def _lrelu(x):
  return jnp.where(x > 0, x, 0.2 * x)


def _conv(p, x, stride=1):
  pad = (p["kernel"].shape[0] - 1) // 2
  y = jax.lax.conv_general_dilated(
      x, p["kernel"], (stride, stride), [(pad, pad), (pad, pad)],
      dimension_numbers=("NHWC", "HWIO", "NHWC"), precision="highest")
  return y + p["bias"]


def _reference_wrn_features(params, x, blocks_per_stage):
  out = _conv(params["stem"], x)
  for stage, stride in [(1, 1), (2, 2), (3, 2)]:
    for i in range(1, blocks_per_stage + 1):
      p = params["blocks"][f"stage{stage}_block{i}"]
      s = stride if i == 1 else 1
      h = _conv(p["conv2"], _lrelu(_conv(p["conv1"], _lrelu(out))), s)
      out = h + (_conv(p["shortcut"], out, s) if "shortcut" in p else out)
  return _lrelu(out)


def _reference_cnn_features(params, x):
  out = _conv(params["stem"], x)
  out = _conv(params["conv1"], _lrelu(out), 2)
  return _lrelu(_conv(params["conv2"], _lrelu(out), 2))


def _reference_head(params, a):
  w, b = np.asarray(params["head"]["kernel"], np.float64), np.asarray(params["head"]["bias"])
  return np.asarray(a, np.float64).mean((1, 2)) @ w + b


def _wrn_param_count(depth, width, k):
  """Counts the reference architecture's parameters by hand (every conv biased)."""
  conv = lambda i, o, s: i * o * s * s + o
  n, total, c = (depth - 4) // 6, conv(3, 16, 3), 16
  for w, stride in [(16 * width, 1), (32 * width, 2), (64 * width, 2)]:
    for i in range(n):
      total += conv(c, w, 3) + conv(w, w, 3)
      total += conv(c, w, 1) if (i == 0 and stride != 1) or c != w else 0
      c = w
  return total + c * k + k


def test_parameter_counts():
  _, p = _abstract("wide_resnet", num_classes=10, depth=28, width=10)
  assert models.count_params(p) == 36_471_338 == _wrn_param_count(28, 10, 10)
  assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(p))
  _, p = _abstract("wide_resnet", num_classes=10, depth=10, width=1)
  assert models.count_params(p) == 77_706 == _wrn_param_count(10, 1, 10)
  _, p = _abstract("wide_resnet", num_classes=100, depth=16, width=2)
  assert models.count_params(p) == _wrn_param_count(16, 2, 100)
  _, p = _abstract("small_cnn", num_classes=10)
  assert models.count_params(p) == 24_234


def test_output_shapes_for_32x32_inputs():
  x = jax.ShapeDtypeStruct((3, 32, 32, 3), jnp.float32)
  fns, p = _abstract("wide_resnet", num_classes=10, depth=28, width=10)
  assert jax.eval_shape(fns.features_fn, p, x).shape == (3, 8, 8, 640)
  assert jax.eval_shape(fns.apply_fn, p, x).shape == (3, 10)
  assert jax.eval_shape(fns.head_kernel, p).shape == (640, 10)
  fns, p = _abstract("small_cnn", num_classes=7, width=8)
  assert jax.eval_shape(fns.features_fn, p, x).shape == (3, 8, 8, 32)
  assert jax.eval_shape(fns.apply_fn, p, x).shape == (3, 7)
  assert jax.eval_shape(fns.head_kernel, p).shape == (32, 7)


def test_params_are_a_plain_dict_with_string_keys(wrn):
  _, params = wrn
  paths = _paths(params)
  assert type(params) is dict and ("head", "kernel") in paths
  assert all(isinstance(k, str) for path in paths for k in path)  # orbax keeps int keys as str


def test_initialisation_is_pytorch_default(wrn):
  _, params = wrn
  for path in _paths(params):
    layer = params
    for k in path[:-1]:
      layer = layer[k]
    bound = 1 / math.sqrt(math.prod(layer["kernel"].shape[:-1]))  # fan-in, kernel and bias
    assert np.abs(np.asarray(layer[path[-1]])).max() <= bound, path
  big = params["blocks"]["stage3_block1"]["conv2"]["kernel"]  # 36,864 draws of U(-b, b)
  np.testing.assert_allclose(np.asarray(big).std(), 1 / math.sqrt(3 * 3 * 3 * 64),  # b / sqrt(3)
                             rtol=0.03)
  # Same key, same parameters; another key, others.
  _, again = models.create_model("wide_resnet", num_classes=NUM_CLASSES, key=jax.random.key(0),
                                 depth=10, width=1)
  _, other = models.create_model("wide_resnet", num_classes=NUM_CLASSES, key=jax.random.key(1),
                                 depth=10, width=1)
  np.testing.assert_array_equal(again["stem"]["kernel"], params["stem"]["kernel"])
  assert not np.allclose(other["stem"]["kernel"], params["stem"]["kernel"])


def test_wide_resnet_matches_reference_implementation(x):
  fns, shapes = _abstract("wide_resnet", num_classes=NUM_CLASSES, depth=16, width=1)
  params = _numpy_params(shapes)  # two blocks per stage: identity and 1x1 shortcuts
  a, logits = jax.jit(lambda p, x: (fns.features_fn(p, x), fns.apply_fn(p, x)))(params, x)
  reference = jax.jit(_reference_wrn_features, static_argnums=2)(params, x, 2)
  np.testing.assert_allclose(a, reference, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(logits, _reference_head(params, a), rtol=1e-5, atol=1e-5)


def test_small_cnn_matches_reference_implementation(cnn, x):
  fns, params = cnn
  a = fns.features_fn(params, x)
  np.testing.assert_allclose(a, _reference_cnn_features(params, x), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(fns.apply_fn(params, x), _reference_head(params, a),
                             rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("model", ["wrn", "cnn"])
def test_apply_is_head_of_features_and_cam_relation(model, x, request):
  fns, params = request.getfixturevalue(model)
  logits = fns.apply_fn(params, x)
  a = fns.features_fn(params, x)
  assert logits.shape == (2, NUM_CLASSES) and a.shape[:3] == (2, 4, 4)
  np.testing.assert_array_equal(fns.head_fn(params, a), logits)  # same ops: bit for bit
  w = fns.head_kernel(params)
  assert w.shape == (a.shape[-1], NUM_CLASSES)
  np.testing.assert_array_equal(w, params["head"]["kernel"])
  # Classic CAM: logits_k = mean over space of cam_k + b_k, cam_k = sum_c W[c, k] A[..., c].
  cam = np.einsum("bhwc,ck->bhwk", np.asarray(a, np.float64), np.asarray(w, np.float64))
  np.testing.assert_allclose(logits, cam.mean((1, 2)) + np.asarray(params["head"]["bias"]),
                             rtol=1e-5, atol=1e-6)


def test_dropout_only_with_a_key(cnn, x):
  fns, params = cnn
  fns0, _ = _abstract("small_cnn", num_classes=NUM_CLASSES, width=4)  # dropout_rate=0
  apply = jax.jit(fns.apply_fn)
  deterministic = fns.apply_fn(params, x)
  np.testing.assert_array_equal(deterministic, fns.apply_fn(params, x))
  np.testing.assert_array_equal(deterministic, fns0.apply_fn(params, x))
  # Any key works; these compile much faster on CPU than the default threefry keys.
  k1, k2 = jax.random.key(1, impl="unsafe_rbg"), jax.random.key(2, impl="unsafe_rbg")
  dropped = apply(params, x, k1)
  np.testing.assert_array_equal(dropped, apply(params, x, k1))
  assert not np.allclose(dropped, deterministic, atol=1e-3)
  assert not np.allclose(dropped, apply(params, x, k2), atol=1e-3)
  np.testing.assert_array_equal(fns0.apply_fn(params, x, k1), deterministic)  # rate 0: no-op


def _approximate_mass_penalty(apply_fn, params, x):
  """mean_i ||d log p~(x_i) / dx_i||, the NG-EBM gradient term."""
  g = jax.grad(lambda x: jnp.sum(jax.nn.logsumexp(apply_fn(params, x), -1)))(x)
  return jnp.mean(jnp.sqrt(jnp.sum(g * g, axis=(1, 2, 3))))


def test_jit_grad_jvp_double_grad(wrn, x):
  fns, params = wrn  # the small CNN goes through the same pure functions
  y = jnp.arange(2) % NUM_CLASSES
  v = jnp.asarray(np.random.default_rng(4).normal(size=x.shape), jnp.float32)
  w = jnp.asarray(np.random.default_rng(5).normal(size=(2, NUM_CLASSES)), jnp.float32)

  def loss(params):  # cross-entropy plus a term that needs double backpropagation
    logits = fns.apply_fn(params, x)
    ce = -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), y[:, None], 1))
    return ce + _approximate_mass_penalty(fns.apply_fn, params, x)

  @jax.jit
  def everything(params):
    f = lambda x: fns.apply_fn(params, x)
    _, jv = jax.jvp(f, (x,), (v,))
    jtw = jax.grad(lambda x: jnp.sum(w * f(x)))(x)
    return jax.grad(loss)(params), jnp.sum(w * jv), jnp.sum(jtw * v)

  grads, w_jv, jtw_v = everything(params)
  assert jax.tree.structure(grads) == jax.tree.structure(params)
  leaves = [np.asarray(leaf) for leaf in jax.tree.leaves(grads)]
  assert all(np.isfinite(leaf).all() and np.abs(leaf).max() > 0 for leaf in leaves)
  np.testing.assert_allclose(w_jv, jtw_v, rtol=1e-4)  # <w, J v> == <J^T w, v>


def test_vmap_over_inputs_and_over_parameters(cnn, x):
  fns, params = cnn
  params2 = jax.tree.map(lambda p: -p, params)
  stacked = jax.tree.map(lambda a, b: jnp.stack([a, b]), params, params2)

  @jax.jit
  def batched(stacked, params, x):
    ensemble = jax.vmap(fns.apply_fn, in_axes=(0, None))(stacked, x)  # two models at once
    per_example = jax.vmap(lambda xi: fns.apply_fn(params, xi[None])[0])(x)
    return ensemble, per_example

  ensemble, per_example = batched(stacked, params, x)
  np.testing.assert_allclose(ensemble[1], fns.apply_fn(params2, x), rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(per_example, fns.apply_fn(params, x), rtol=1e-5, atol=1e-5)


def test_module_is_rebuilt_at_trace_time_only(cnn, x, monkeypatch):
  fns, params = cnn
  merges = []
  merge = nnx.merge
  monkeypatch.setattr(nnx, "merge", lambda *a, **k: merges.append(1) or merge(*a, **k))
  apply = jax.jit(lambda params, x: fns.apply_fn(params, x))
  apply(params, x)
  apply(jax.tree.map(lambda p: 2 * p, params), x + 1)
  assert len(merges) == 1


def test_compiled_function_is_just_the_network(wrn, x):
  fns, params = wrn
  jaxpr = jax.make_jaxpr(fns.apply_fn)(params, x)
  convs = [e for e in jaxpr.eqns if e.primitive.name == "conv_general_dilated"]
  assert len(convs) == 1 + 3 * 2 + 2  # stem, two per block, two 1x1 shortcuts


def test_bfloat16_computation_float32_params(cnn, x):
  fns32, params = cnn
  fns, shapes = _abstract("small_cnn", num_classes=NUM_CLASSES, width=4, dropout_rate=0.5,
                          dtype=jnp.bfloat16)
  assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(shapes))
  logits = jax.jit(fns.apply_fn)(params, x)
  assert logits.dtype == jnp.bfloat16
  assert jax.eval_shape(fns.features_fn, params, x).dtype == jnp.bfloat16
  assert fns.head_kernel(params).dtype == jnp.float32
  reference = fns32.apply_fn(params, x)
  np.testing.assert_allclose(logits.astype(jnp.float32), reference,
                             atol=0.05 * np.abs(np.asarray(reference)).max())


def test_bad_arguments_raise_value_error(cnn, x):
  fns, params = cnn
  make = lambda name, **kw: _abstract(name, num_classes=NUM_CLASSES, **kw)
  with pytest.raises(ValueError, match="Unknown model"):
    make("resnet50")
  with pytest.raises(ValueError, match="6n \\+ 4"):
    make("wide_resnet", depth=12, width=1)
  with pytest.raises(ValueError, match="width"):
    make("wide_resnet", depth=10, width=0)
  with pytest.raises(ValueError, match="dropout_rate"):
    make("small_cnn", dropout_rate=1.0)
  with pytest.raises(ValueError, match="dtype"):
    make("small_cnn", dtype=jnp.int32)
  with pytest.raises(ValueError, match="num_classes"):
    _abstract("small_cnn", num_classes=0)
  with pytest.raises(ValueError, match="shape"):
    fns.apply_fn(params, x[0])
  with pytest.raises(ValueError, match="shape"):
    jax.jit(fns.apply_fn)(params, x[0])  # at trace time too
  with pytest.raises(ValueError, match="floating"):
    fns.apply_fn(params, jnp.zeros((2, 16, 16, 3), jnp.uint8))
  with pytest.raises(ValueError, match="channels"):
    fns.features_fn(params, jnp.zeros((2, 16, 16, 1)))
  with pytest.raises(ValueError, match="feature map"):
    fns.head_fn(params, jnp.zeros((2, 4, 4, 3)))
  with pytest.raises(ValueError, match="structure"):
    fns.apply_fn({"head": params["head"]}, x)
