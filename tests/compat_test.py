"""Using the losses in other JAX codebases: the compatibility matrix of issue 11.

Every case computes an objective's value and parameter gradients one way a user would (a Flax
Linen model, a Flax NNX model split/merged at the boundary, `jax.pmap`, `jax.shard_map`, `jax.jit`
over sharded inputs, bfloat16) and compares them with the plain single-device call
`ng.ngebm_loss(plain_apply, params, x, y)` of a hand-written function with the same weights.
8 CPU devices are forced by tests/conftest.py.
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec as P

import ngebm_jax as ng
from ngebm_jax import models
from ngebm_jax import sgld

B, H, W, C, K, FEATURES = 16, 4, 4, 3, 5, 4
LOSS_TERMS = ("ce", "energy_var", "grad_norm", "energy_mean")


# --- one small network, written three ways ----------------------------------------------------

def plain_apply(params, x):
  """3x3 conv (SAME) -> tanh -> flatten -> linear: `[B, H, W, C] -> [B, K]`, no Flax."""
  h = jax.lax.conv_general_dilated(
      x, params["conv"]["kernel"].astype(x.dtype), (1, 1), "SAME",
      dimension_numbers=("NHWC", "HWIO", "NHWC")) + params["conv"]["bias"].astype(x.dtype)
  h = jnp.tanh(h).reshape(x.shape[0], -1)
  return h @ params["dense"]["kernel"].astype(x.dtype) + params["dense"]["bias"].astype(x.dtype)


class LinenNet(nn.Module):
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    h = jnp.tanh(nn.Conv(FEATURES, (3, 3), dtype=self.dtype, name="conv")(x))
    return nn.Dense(K, dtype=self.dtype, name="dense")(h.reshape(h.shape[0], -1))


class NnxNet(nnx.Module):

  def __init__(self, rngs: nnx.Rngs):
    self.conv = nnx.Conv(C, FEATURES, (3, 3), rngs=rngs)
    self.dense = nnx.Linear(H * W * FEATURES, K, rngs=rngs)

  def __call__(self, x):
    h = jnp.tanh(self.conv(x))
    return self.dense(h.reshape(h.shape[0], -1))


def make_params(seed=0):
  """Weights in the layout of both Flax modules: `{"conv": {kernel, bias}, "dense": {...}}`."""
  k = jax.random.split(jax.random.key(seed), 4)
  return {"conv": {"kernel": 0.4 * jax.random.normal(k[0], (3, 3, C, FEATURES)),
                   "bias": 0.1 * jax.random.normal(k[1], (FEATURES,))},
          "dense": {"kernel": 0.4 * jax.random.normal(k[2], (H * W * FEATURES, K)),
                    "bias": 0.1 * jax.random.normal(k[3], (K,))}}


def make_batch(seed=1):
  x = jax.random.uniform(jax.random.key(seed), (B, H, W, C), minval=-1.0, maxval=1.0)
  y = jnp.arange(B, dtype=jnp.int32) % K
  return x, y


def value_and_grad(apply_fn, **kwargs):
  """`(params, x, y) -> ((loss, aux), grads)` of `ng.ngebm_loss`, as a user would write it."""
  return jax.value_and_grad(
      lambda p, x, y: ng.ngebm_loss(apply_fn, p, x, y, **kwargs), has_aux=True)


@functools.lru_cache(maxsize=None)
def reference():
  """The plain single-device call: loss, terms and gradients, as NumPy arrays."""
  params, (x, y) = make_params(), make_batch()
  (loss, aux), grads = jax.jit(value_and_grad(plain_apply))(params, x, y)
  return float(loss), {k: float(aux[k]) for k in LOSS_TERMS}, jax.tree.map(np.asarray, grads)


def assert_matches_reference(loss, aux, grads, *, rtol=1e-5, grad_rtol=1e-4, atol=1e-6):
  ref_loss, ref_aux, ref_grads = reference()
  np.testing.assert_allclose(float(loss), ref_loss, rtol=rtol)
  for k in LOSS_TERMS:
    np.testing.assert_allclose(float(aux[k]), ref_aux[k], rtol=rtol, atol=atol, err_msg=k)
  assert jax.tree.structure(grads) == jax.tree.structure(ref_grads)
  for path, g in jax.tree_util.tree_leaves_with_path(grads):
    r = functools.reduce(lambda t, key: t[key.key], path, ref_grads)
    np.testing.assert_allclose(np.asarray(g), r, rtol=grad_rtol, atol=atol,
                               err_msg=jax.tree_util.keystr(path))


def test_plain_function_reference_is_nontrivial():
  # The reference is the plain-function case itself; this guards the matrix below against
  # comparing zeros with zeros.
  loss, aux, grads = reference()
  assert np.isfinite(loss) and aux["ce"] > 0.1
  assert aux["grad_norm"] > 1e-2 and aux["energy_var"] > 1e-3
  assert all(np.abs(g).max() > 1e-3 for g in jax.tree.leaves(grads))


# --- models ------------------------------------------------------------------------------------

def test_flax_linen_model_apply():
  model = LinenNet()
  x, y = make_batch()
  shapes = jax.eval_shape(model.init, jax.random.key(0), x)["params"]
  assert jax.tree.map(lambda s: s.shape, shapes) == jax.tree.map(jnp.shape, make_params())
  variables = {"params": make_params()}
  (loss, aux), grads = jax.jit(value_and_grad(model.apply))(variables, x, y)
  assert_matches_reference(loss, aux, grads["params"])


def test_flax_nnx_model_split_merge_at_the_boundary():
  graphdef, state = nnx.split(nnx.eval_shape(lambda: NnxNet(nnx.Rngs(0))))  # no init compute
  nnx.replace_by_pure_dict(state, make_params())
  apply_fn = lambda state, x: nnx.merge(graphdef, state)(x)
  x, y = make_batch()
  (loss, aux), grads = jax.jit(value_and_grad(apply_fn))(state, x, y)
  assert isinstance(grads, nnx.State)
  assert_matches_reference(loss, aux, nnx.to_pure_dict(grads))


# --- devices -----------------------------------------------------------------------------------

def _per_device(params, x, y):
  """The per-device step of a data-parallel user: global batch statistics, averaged grads."""
  (loss, aux), grads = value_and_grad(plain_apply, axis_name="data")(params, x, y)
  return loss, {k: aux[k] for k in LOSS_TERMS}, jax.lax.pmean(grads, "data")


def test_pmap_with_axis_name_equals_one_device():
  assert jax.device_count() == 8, "tests/conftest.py forces 8 CPU devices"
  x, y = make_batch()
  loss, aux, grads = jax.pmap(_per_device, axis_name="data", in_axes=(None, 0, 0))(
      make_params(), x.reshape(8, B // 8, H, W, C), y.reshape(8, B // 8))
  first = lambda t: jax.tree.map(lambda a: a[0], t)
  np.testing.assert_allclose(loss, loss[0])  # every device holds the global value
  assert_matches_reference(loss[0], first(aux), first(grads))


def test_shard_map_with_axis_name_equals_one_device():
  mesh = jax.make_mesh((8,), ("data",))
  x, y = make_batch()
  put = lambda a, spec: jax.device_put(a, NamedSharding(mesh, spec))
  fn = jax.jit(jax.shard_map(_per_device, mesh=mesh, in_specs=(P(), P("data"), P("data")),
                             out_specs=P()))
  loss, aux, grads = fn(put(make_params(), P()), put(x, P("data")), put(y, P("data")))
  assert_matches_reference(loss, aux, grads)


def test_jit_with_sharded_inputs_auto_partitions():
  # No shard_map and no axis_name: jit partitions the global-batch means by itself.
  mesh = jax.make_mesh((8,), ("data",))
  x, y = make_batch()
  x_s = jax.device_put(x, NamedSharding(mesh, P("data")))
  y_s = jax.device_put(y, NamedSharding(mesh, P("data")))
  params = jax.device_put(make_params(), NamedSharding(mesh, P()))
  assert len(x_s.sharding.device_set) == 8
  (loss, aux), grads = jax.jit(value_and_grad(plain_apply))(params, x_s, y_s)
  assert aux["logits"].shape == (B, K)
  assert_matches_reference(loss, aux, grads)


# --- precision ---------------------------------------------------------------------------------

def test_bfloat16_inputs_and_model_keep_the_terms_in_float32():
  """A bfloat16 model on bfloat16 inputs: the loss terms are float32 and close to float32's.

  The penalty's norm, the energy variance and the cross-entropy are formed in float32 from the
  bfloat16 logits and input gradient (ngebm_jax/objectives.py, "Precision"), so only the
  network's own bfloat16 rounding (about 3 significant digits) separates them.
  """
  model = LinenNet(dtype=jnp.bfloat16)  # bfloat16 compute, float32 parameters
  x, y = make_batch()
  variables = {"params": make_params()}
  (loss, aux), grads = jax.jit(value_and_grad(model.apply))(variables, x.astype(jnp.bfloat16), y)
  assert aux["logits"].dtype == jnp.bfloat16
  assert loss.dtype == jnp.float32
  for k in LOSS_TERMS:
    assert aux[k].dtype == jnp.float32, (k, aux[k].dtype)
  assert all(g.dtype == jnp.float32 for g in jax.tree.leaves(grads))
  ref_loss, ref_aux, ref_grads = reference()
  np.testing.assert_allclose(float(loss), ref_loss, rtol=2e-2)
  np.testing.assert_allclose(float(aux["grad_norm"]), ref_aux["grad_norm"], rtol=5e-2)
  np.testing.assert_allclose(float(aux["energy_var"]), ref_aux["energy_var"], rtol=0.1,
                             atol=1e-3)
  for g, r in zip(jax.tree.leaves(grads["params"]), jax.tree.leaves(ref_grads)):
    rel = np.linalg.norm(np.asarray(g) - r) / np.linalg.norm(r)
    assert rel < 0.1, rel


# --- both forms of the Approximate Mass gradient, on a real model ------------------------------

def test_grad_modes_agree_on_the_conv_net():
  # The reference uses the default, forward_over_reverse.
  assert ng.objectives.GRAD_MODES[0] == "forward_over_reverse"
  x, y = make_batch()
  (loss, aux), grads = jax.jit(value_and_grad(plain_apply, grad_mode="reverse_over_reverse"))(
      make_params(), x, y)
  assert_matches_reference(loss, aux, grads, rtol=1e-5, grad_rtol=1e-4)


def test_grad_modes_agree_on_small_cnn():
  # A model of the package (LeakyReLU, strided convolutions), both modes in one program.
  fns, params = models.create_model("small_cnn", num_classes=K, key=jax.random.key(2), width=2)
  x = jax.random.uniform(jax.random.key(3), (8, 4, 4, 3), minval=-1.0, maxval=1.0)
  y = jnp.arange(8, dtype=jnp.int32) % K
  both = jax.jit(lambda p: [value_and_grad(fns.apply_fn, grad_mode=m)(p, x, y)
                            for m in ng.objectives.GRAD_MODES])
  ((l1, a1), g1), ((l2, a2), g2) = both(params)
  np.testing.assert_allclose(l1, l2, rtol=1e-5)
  np.testing.assert_allclose(a1["grad_norm"], a2["grad_norm"], rtol=1e-5)
  assert float(a1["grad_norm"]) > 1e-3
  for a, b in zip(jax.tree.leaves(g1), jax.tree.leaves(g2)):
    np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-6)


# --- SGLD-EBM (JEM) across devices -------------------------------------------------------------

def test_sgld_ebm_loss_pmap_and_shard_map_equal_one_device():
  """pmap and shard_map draw the same samples (the key is folded with the device index) and
  give the single-device loss and gradients for those samples."""
  params, (x, y) = make_params(), make_batch()
  slots = 4  # buffer slots per device
  buffer = sgld.init_replay_buffer(jax.random.key(5), 8 * slots, (H, W, C))
  key = jax.random.key(6)
  hp = dict(num_steps=2, step_size=0.5, noise_std=0.0, reinit_prob=0.0)

  def per_device(params, x, y, buffer, key):
    (loss, (aux, new_buffer)), grads = jax.value_and_grad(
        lambda p: sgld.sgld_ebm_loss(plain_apply, p, x, y, buffer, key, axis_name="data", **hp),
        has_aux=True)(params)
    return loss, jax.lax.pmean(grads, "data"), aux["buffer_indices"], new_buffer.samples

  pm_loss, pm_grads, pm_idx, pm_samples = jax.pmap(
      per_device, axis_name="data", in_axes=(None, 0, 0, 0, None))(
          params, x.reshape(8, -1, H, W, C), y.reshape(8, -1),
          jax.tree.map(lambda a: a.reshape((8, slots) + a.shape[1:]), buffer), key)

  mesh = jax.make_mesh((8,), ("data",))
  put = lambda a: jax.device_put(a, NamedSharding(mesh, P("data")))
  sm_loss, sm_grads, sm_idx, sm_samples = jax.jit(jax.shard_map(
      per_device, mesh=mesh, in_specs=(P(), P("data"), P("data"), P("data"), P()),
      out_specs=(P(), P(), P("data"), P("data"))))(params, put(x), put(y), put(buffer), key)

  np.testing.assert_array_equal(np.asarray(pm_idx).reshape(-1), np.asarray(sm_idx))
  np.testing.assert_allclose(np.asarray(pm_samples).reshape(sm_samples.shape), sm_samples,
                             rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(pm_loss[0], sm_loss, rtol=1e-5)
  for a, b in zip(jax.tree.leaves(pm_grads), jax.tree.leaves(sm_grads)):
    np.testing.assert_allclose(a[0], b, rtol=1e-4, atol=1e-6)

  # Single device, for the same starting points: device d drew local slots of slice d.
  per_dev = B // 8
  idx = np.asarray(sm_idx) + slots * np.repeat(np.arange(8), per_dev)
  x_init = jnp.asarray(np.asarray(buffer.samples)[idx])

  @jax.jit
  def single_device(params, x_init):
    samples = sgld.sgld_sample(plain_apply, params, x_init, key, num_steps=2, step_size=0.5,
                               noise_std=0.0)
    return jax.value_and_grad(
        lambda p: sgld.sgld_ebm_loss_from_samples(plain_apply, p, x, y, samples)[0])(params)

  ref_loss, ref_grads = single_device(params, x_init)
  np.testing.assert_allclose(sm_loss, ref_loss, rtol=1e-5)
  for a, b in zip(jax.tree.leaves(sm_grads), jax.tree.leaves(ref_grads)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
