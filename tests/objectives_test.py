"""NG-EBM and the baseline: values against NumPy, gradients, both grad modes, devices."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import test_util as jtu
from jax.sharding import NamedSharding, PartitionSpec as P

import ngebm_jax as ng
from tests import reference_models as ref

B = 8


def _batch(seed=0):
  x = jax.random.uniform(jax.random.key(seed), (B, 2, 2, 2), minval=-1, maxval=1)
  y = jnp.arange(B, dtype=jnp.int32) % 3
  return x, y


def _numpy_ngebm(params, x, y, beta, gamma):
  logits = ref.mlp_apply_np(params, x)
  lse = ref.logsumexp_np(logits)
  ce = np.mean(lse - logits[np.arange(len(y)), np.asarray(y)])
  e = -lse
  var = np.mean((e - e.mean()) ** 2)
  g = ref.input_grad_fd_np(params, x).reshape(len(y), -1)
  grad_norm = np.mean(np.sqrt((g ** 2).sum(-1)))
  return ce + beta * var + gamma * grad_norm, ce, var, grad_norm


@pytest.mark.parametrize("grad_mode", ["forward_over_reverse", "reverse_over_reverse"])
def test_ngebm_loss_matches_numpy(grad_mode):
  params = ref.make_mlp(jax.random.key(0))
  x, y = _batch()
  loss_fn = jax.jit(lambda p, x, y: ng.ngebm_loss(ref.mlp_apply, p, x, y, beta=0.7, gamma=1.3,
                                                  grad_mode=grad_mode))
  loss, aux = loss_fn(params, x, y)
  expected, ce, var, grad_norm = _numpy_ngebm(params, x, y, 0.7, 1.3)
  np.testing.assert_allclose(aux["ce"], ce, rtol=1e-5)
  np.testing.assert_allclose(aux["energy_var"], var, rtol=1e-4, atol=1e-7)
  np.testing.assert_allclose(aux["grad_norm"], grad_norm, rtol=1e-4)
  np.testing.assert_allclose(loss, expected, rtol=1e-5)
  assert aux["logits"].shape == (B, 3)


def test_cross_entropy_loss_matches_numpy():
  params = ref.make_mlp(jax.random.key(0))
  x, y = _batch()
  loss, aux = jax.jit(lambda p: ng.cross_entropy_loss(ref.mlp_apply, p, x, y))(params)
  np.testing.assert_allclose(loss, _numpy_ngebm(params, x, y, 0, 0)[1], rtol=1e-5)
  assert set(aux) == {"ce", "logits"}


def test_grad_modes_agree():
  params = ref.make_mlp(jax.random.key(3), hidden=7)
  x, y = _batch(1)
  grads = {}
  for mode in ("forward_over_reverse", "reverse_over_reverse"):
    f = lambda p: ng.ngebm_loss(ref.mlp_apply, p, x, y, grad_mode=mode)[0]
    grads[mode] = jax.jit(jax.value_and_grad(f))(params)
  (l1, g1), (l2, g2) = grads.values()
  np.testing.assert_allclose(l1, l2, rtol=1e-6)
  for a, b in zip(jax.tree.leaves(g1), jax.tree.leaves(g2)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("grad_mode", ["forward_over_reverse", "reverse_over_reverse"])
def test_check_grads_through_the_double_backward(grad_mode):
  with jax.enable_x64(True):
    params = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), ref.make_mlp(jax.random.key(4)))
    x, y = _batch(2)
    x = jnp.asarray(x, jnp.float64)
    f = jax.jit(lambda p: ng.ngebm_loss(ref.mlp_apply, p, x, y, grad_mode=grad_mode)[0])
    jtu.check_grads(f, (params,), order=1, modes=["rev"], eps=1e-5, atol=1e-6,
                              rtol=1e-6)


def test_gradients_flow_through_the_energy_mean():
  # L_var with the mean held constant has a different gradient: check we differentiate both.
  params = ref.make_mlp(jax.random.key(5))
  x, y = _batch(3)

  def var_only(p, stop_mean):
    e = ng.energy(ref.mlp_apply(p, x))
    m = jax.lax.stop_gradient(e.mean()) if stop_mean else e.mean()
    return jnp.mean((e - m) ** 2)

  g = jax.jit(jax.grad(lambda p: ng.ngebm_loss(ref.mlp_apply, p, x, y, gamma=0.0)[0]
               - ng.cross_entropy_loss(ref.mlp_apply, p, x, y)[0]))(params)
  g_full = jax.jit(jax.grad(var_only), static_argnums=1)(params, False)
  for a, b in zip(jax.tree.leaves(g), jax.tree.leaves(g_full)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def _per_device(grad_mode):
  def f(p, x, y):
    loss_fn = lambda p: ng.ngebm_loss(ref.mlp_apply, p, x, y, axis_name="data",
                                      grad_mode=grad_mode)
    (loss, aux), g = jax.value_and_grad(loss_fn, has_aux=True)(p)
    return loss, aux["energy_var"], jax.lax.pmean(g, "data")
  return f


@pytest.mark.parametrize("grad_mode", ["forward_over_reverse", "reverse_over_reverse"])
def test_shard_map_and_pmap_equal_one_device(grad_mode):
  assert jax.device_count() == 8, "tests/conftest.py forces 8 CPU devices"
  params = ref.make_mlp(jax.random.key(6))
  x, y = _batch(4)
  single = jax.value_and_grad(
      lambda p: ng.ngebm_loss(ref.mlp_apply, p, x, y, grad_mode=grad_mode), has_aux=True)
  (loss, aux), grads = jax.jit(single)(params)

  mesh = jax.make_mesh((8,), ("data",))
  put = lambda a, spec: jax.device_put(a, NamedSharding(mesh, spec))
  sm = jax.jit(jax.shard_map(_per_device(grad_mode), mesh=mesh,
                             in_specs=(P(), P("data"), P("data")), out_specs=(P(), P(), P())))
  l_sm, var_sm, g_sm = sm(put(params, P()), put(x, P("data")), put(y, P("data")))

  pm = jax.pmap(_per_device(grad_mode), axis_name="data", in_axes=(None, 0, 0))
  l_pm, var_pm, g_pm = pm(params, x.reshape(8, 1, 2, 2, 2), y.reshape(8, 1))

  for l, v, g in ((l_sm, var_sm, g_sm), (l_pm[0], var_pm[0], jax.tree.map(lambda a: a[0], g_pm))):
    np.testing.assert_allclose(l, loss, rtol=1e-5)
    np.testing.assert_allclose(v, aux["energy_var"], rtol=1e-5)
    for a, b in zip(jax.tree.leaves(g), jax.tree.leaves(grads)):
      np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_bfloat16_inputs_give_float32_terms():
  params = ref.make_mlp(jax.random.key(0))
  x, y = _batch()
  apply_bf16 = lambda p, x: ref.mlp_apply(jax.tree.map(lambda a: a.astype(jnp.bfloat16), p), x)
  loss, aux = jax.jit(lambda p, x: ng.ngebm_loss(apply_bf16, p, x, y))(
      params, x.astype(jnp.bfloat16))
  assert loss.dtype == jnp.float32 and aux["grad_norm"].dtype == jnp.float32
  loss32, _ = jax.jit(lambda p: ng.ngebm_loss(ref.mlp_apply, p, x, y))(params)
  np.testing.assert_allclose(loss, loss32, rtol=5e-2)


@pytest.mark.parametrize("kwargs, match", [
    (dict(y=np.array([0, 1, 2, 3, 0, 1, 2, 0])), "outside"),
    (dict(y=np.zeros((B, 3), np.int32)), "one-hot|shape"),
    (dict(y=np.zeros((B,), np.float32)), "integer"),
    (dict(x=np.zeros((B, 2, 2, 2), np.uint8)), "floating"),
    (dict(x=np.zeros((B, 8), np.float32)), "shape"),
    (dict(beta=-1.0), "beta"),
    (dict(gamma=float("nan")), "gamma"),
    (dict(grad_mode="forward"), "grad_mode"),
])
def test_bad_arguments_raise(kwargs, match):
  params = ref.make_mlp(jax.random.key(0))
  x, y = _batch()
  args = dict(x=x, y=y)
  args.update({k: v for k, v in kwargs.items() if k in ("x", "y")})
  hyper = {k: v for k, v in kwargs.items() if k not in ("x", "y")}
  with pytest.raises(ValueError, match=match):
    ng.ngebm_loss(ref.mlp_apply, params, args["x"], args["y"], **hyper)


# --- penalty_fraction: the Approximate Mass penalty on a share of each batch (issue 26) ------


def _penalized_reference(batch_size, fraction):
  """Slow form: example i is penalized when ceil(f (i + 1)) > ceil(f i), f as an exact fraction
  (each step of the running count of penalized examples lands on one example)."""
  import fractions  # pylint: disable=g-import-not-at-top
  import math  # pylint: disable=g-import-not-at-top
  f = fractions.Fraction(float(fraction)).limit_denominator(1_000_000)
  return [i for i in range(batch_size) if math.ceil(f * (i + 1)) > math.ceil(f * i)]


@pytest.mark.parametrize("batch_size, fraction", [
    (8, 1.0), (8, 0.5), (8, 0.25), (10, 0.3), (7, 1 / 3), (5, 0.1), (16, 0.75),
    (8, np.float32(0.5))])
def test_penalized_examples_match_the_slow_rule(batch_size, fraction):
  got = ng.penalized_examples(batch_size, fraction)
  assert got.tolist() == _penalized_reference(batch_size, fraction)
  assert len(got) == int(np.ceil(fraction * batch_size - 1e-9)) and got[0] == 0


def test_penalty_fraction_one_is_the_paper_loss_exactly():
  params = ref.make_mlp(jax.random.key(0))
  x, y = _batch()
  paper = jax.jit(lambda p: ng.ngebm_loss(ref.mlp_apply, p, x, y))
  full = jax.jit(lambda p: ng.ngebm_loss(ref.mlp_apply, p, x, y, penalty_fraction=1.0))
  (l1, a1), (l2, a2) = paper(params), full(params)
  assert float(l1) == float(l2)
  np.testing.assert_array_equal(a1["logits"], a2["logits"])


@pytest.mark.parametrize("grad_mode", ["forward_over_reverse", "reverse_over_reverse"])
@pytest.mark.parametrize("fraction", [0.5, 0.3])
def test_penalty_fraction_matches_numpy(grad_mode, fraction):
  params = ref.make_mlp(jax.random.key(0))
  x, y = _batch()
  loss, aux = jax.jit(lambda p: ng.ngebm_loss(ref.mlp_apply, p, x, y, beta=0.7, gamma=1.3,
                                              grad_mode=grad_mode,
                                              penalty_fraction=fraction))(params)
  idx = _penalized_reference(B, fraction)
  _, ce, var, _ = _numpy_ngebm(params, x, y, 0.7, 1.3)  # CE and L_var: the whole batch
  g = ref.input_grad_fd_np(params, np.asarray(x)[idx]).reshape(len(idx), -1)
  grad_norm = np.mean(np.sqrt((g ** 2).sum(-1)))      # L_grad: the penalized examples only
  np.testing.assert_allclose(aux["ce"], ce, rtol=1e-5)
  np.testing.assert_allclose(aux["energy_var"], var, rtol=1e-4, atol=1e-7)
  np.testing.assert_allclose(aux["grad_norm"], grad_norm, rtol=1e-4)
  np.testing.assert_allclose(loss, ce + 0.7 * var + 1.3 * grad_norm, rtol=1e-5)
  np.testing.assert_allclose(aux["logits"], ref.mlp_apply_np(params, x), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("grad_mode", ["forward_over_reverse", "reverse_over_reverse"])
def test_penalty_fraction_gradients_equal_the_paper_terms_recombined(grad_mode):
  # Reference: CE and L_var of the whole batch plus the paper's L_grad of the penalized examples.
  params = ref.make_mlp(jax.random.key(7), hidden=7)
  x, y = _batch(5)
  idx = np.array(_penalized_reference(B, 0.25))

  def reference(p):
    full, _ = ng.ngebm_loss(ref.mlp_apply, p, x, y, beta=0.7, gamma=0.0, grad_mode=grad_mode)
    _, aux = ng.ngebm_loss(ref.mlp_apply, p, x[idx], y[idx], grad_mode=grad_mode)
    return full + 1.3 * aux["grad_norm"]

  cheap = lambda p: ng.ngebm_loss(ref.mlp_apply, p, x, y, beta=0.7, gamma=1.3,
                                  grad_mode=grad_mode, penalty_fraction=0.25)[0]
  (l1, g1), (l2, g2) = (jax.jit(jax.value_and_grad(f))(params) for f in (cheap, reference))
  np.testing.assert_allclose(l1, l2, rtol=1e-6)
  for a, b in zip(jax.tree.leaves(g1), jax.tree.leaves(g2)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_penalty_fraction_check_grads():
  with jax.enable_x64(True):
    params = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), ref.make_mlp(jax.random.key(4)))
    x, y = _batch(2)
    x = jnp.asarray(x, jnp.float64)
    f = jax.jit(lambda p: ng.ngebm_loss(ref.mlp_apply, p, x, y, penalty_fraction=0.5)[0])
    jtu.check_grads(f, (params,), order=1, modes=["rev"], eps=1e-5, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("grad_mode", ["forward_over_reverse", "reverse_over_reverse"])
def test_penalty_fraction_eight_devices_equal_one_device(grad_mode):
  # 16 examples, 2 per device: f = 0.5 penalizes one example per device, the global examples
  # 0, 2, ..., 14, the same as one device holding the whole batch.
  params = ref.make_mlp(jax.random.key(6))
  x = jax.random.uniform(jax.random.key(9), (16, 2, 2, 2), minval=-1, maxval=1)
  y = jnp.arange(16, dtype=jnp.int32) % 3
  loss_fn = lambda p, x, y, axis_name: ng.ngebm_loss(
      ref.mlp_apply, p, x, y, axis_name=axis_name, grad_mode=grad_mode, penalty_fraction=0.5)
  (loss, aux), grads = jax.jit(jax.value_and_grad(
      lambda p: loss_fn(p, x, y, None), has_aux=True))(params)

  def per_device(p, x, y):
    (l, a), g = jax.value_and_grad(lambda p: loss_fn(p, x, y, "data"), has_aux=True)(p)
    return l, a["grad_norm"], jax.lax.pmean(g, "data")

  mesh = jax.make_mesh((8,), ("data",))
  put = lambda a, spec: jax.device_put(a, NamedSharding(mesh, spec))
  sm = jax.jit(jax.shard_map(per_device, mesh=mesh, in_specs=(P(), P("data"), P("data")),
                             out_specs=(P(), P(), P())))
  l_sm, norm_sm, g_sm = sm(put(params, P()), put(x, P("data")), put(y, P("data")))
  np.testing.assert_allclose(l_sm, loss, rtol=1e-5)
  np.testing.assert_allclose(norm_sm, aux["grad_norm"], rtol=1e-5)
  for a, b in zip(jax.tree.leaves(g_sm), jax.tree.leaves(grads)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("fraction", [0.0, 1.5, -0.25, float("nan"), True, "half"])
def test_bad_penalty_fraction_raises(fraction):
  params = ref.make_mlp(jax.random.key(0))
  x, y = _batch()
  with pytest.raises(ValueError, match="penalty_fraction"):
    ng.ngebm_loss(ref.mlp_apply, params, x, y, penalty_fraction=fraction)
