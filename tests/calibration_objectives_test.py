"""Label smoothing and focal loss: values against NumPy loops, gradients, edge cases, devices."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import test_util as jtu
from jax.sharding import NamedSharding, PartitionSpec as P

import ngebm_jax as ng
from tests import reference_models as ref

B, K = 8, 3


def _batch(seed=0):
  x = jax.random.uniform(jax.random.key(seed), (B, 2, 2, 2), minval=-1, maxval=1)
  y = jnp.arange(B, dtype=jnp.int32) % K
  return x, y


def _params(seed=0):
  # Scaled up so that some true-class probabilities fall below FLSD-53's 0.2 and some above.
  return jax.tree.map(lambda a: 3.0 * a, ref.make_mlp(jax.random.key(seed)))


def _probabilities_np(logits):
  out = np.zeros_like(logits)
  for i, row in enumerate(logits):
    e = [math.exp(v - max(row)) for v in row]
    out[i] = [v / sum(e) for v in e]
  return out


def _label_smoothing_np(params, x, y, alpha):
  p = _probabilities_np(ref.mlp_apply_np(params, x))
  total = 0.0
  for i, label in enumerate(np.asarray(y)):
    for k in range(K):
      target = (1 - alpha) * (k == label) + alpha / K
      total -= target * math.log(p[i, k])
  return total / len(y)


def _focal_np(params, x, y, gamma=None):
  """gamma None: FLSD-53 (5 if p_y < 0.2, else 3)."""
  p = _probabilities_np(ref.mlp_apply_np(params, x))
  total = 0.0
  for i, label in enumerate(np.asarray(y)):
    p_y = p[i, label]
    g = (5.0 if p_y < 0.2 else 3.0) if gamma is None else gamma
    total -= (1 - p_y) ** g * math.log(p_y)
  return total / len(y)


def _ce_np(params, x, y):
  return _focal_np(params, x, y, gamma=0.0)


@pytest.mark.parametrize("alpha", [0.0, 0.1, 0.3])
def test_label_smoothing_matches_numpy(alpha):
  params, (x, y) = _params(), _batch()
  loss, aux = jax.jit(lambda p: ng.label_smoothing_loss(ref.mlp_apply, p, x, y,
                                                        alpha=alpha))(params)
  np.testing.assert_allclose(loss, _label_smoothing_np(params, x, y, alpha), rtol=1e-5)
  np.testing.assert_allclose(aux["ce"], _ce_np(params, x, y), rtol=1e-5)
  assert set(aux) == {"label_smoothing", "ce", "logits"}


@pytest.mark.parametrize("gamma", [0.5, 1.0, 3.0])
def test_focal_fixed_matches_numpy(gamma):
  params, (x, y) = _params(), _batch()
  loss, aux = jax.jit(lambda p: ng.focal_loss(ref.mlp_apply, p, x, y, gamma=gamma))(params)
  np.testing.assert_allclose(loss, _focal_np(params, x, y, gamma), rtol=1e-5)
  np.testing.assert_allclose(aux["gamma_mean"], gamma)


def test_focal_flsd53_matches_numpy_on_both_sides_of_the_threshold():
  params, (x, y) = _params(), _batch()
  p_y = _probabilities_np(ref.mlp_apply_np(params, x))[np.arange(B), np.asarray(y)]
  assert (p_y < 0.2).any() and (p_y >= 0.2).any(), p_y  # both branches of the schedule
  loss, aux = jax.jit(lambda p: ng.focal_loss(ref.mlp_apply, p, x, y, schedule="flsd53"))(params)
  np.testing.assert_allclose(loss, _focal_np(params, x, y), rtol=1e-5)
  np.testing.assert_allclose(aux["gamma_mean"], np.mean(np.where(p_y < 0.2, 5.0, 3.0)))


def test_zero_smoothing_and_zero_gamma_are_cross_entropy():
  params, (x, y) = _params(1), _batch(1)
  ce = ng.cross_entropy_loss(ref.mlp_apply, params, x, y)[0]
  grad_ce = jax.grad(lambda p: ng.cross_entropy_loss(ref.mlp_apply, p, x, y)[0])(params)
  for loss_fn in (lambda p: ng.label_smoothing_loss(ref.mlp_apply, p, x, y, alpha=0.0)[0],
                  lambda p: ng.focal_loss(ref.mlp_apply, p, x, y, gamma=0.0)[0]):
    value, grad = jax.jit(jax.value_and_grad(loss_fn))(params)
    np.testing.assert_allclose(value, ce, rtol=1e-6)
    for a, b in zip(jax.tree.leaves(grad), jax.tree.leaves(grad_ce)):
      np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("loss_fn", [
    lambda p, x, y: ng.label_smoothing_loss(ref.mlp_apply, p, x, y, alpha=0.2)[0],
    lambda p, x, y: ng.focal_loss(ref.mlp_apply, p, x, y, gamma=2.0)[0],
    lambda p, x, y: ng.focal_loss(ref.mlp_apply, p, x, y, gamma=0.5)[0],
    lambda p, x, y: ng.focal_loss(ref.mlp_apply, p, x, y, schedule="flsd53")[0],
], ids=["label_smoothing", "focal_2", "focal_0.5", "flsd53"])
def test_check_grads(loss_fn):
  with jax.enable_x64(True):
    params = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), _params(2))
    x, y = _batch(2)
    x = jnp.asarray(x, jnp.float64)
    f = jax.jit(lambda p: loss_fn(p, x, y))
    jtu.check_grads(f, (params,), order=2, modes=["rev"], eps=1e-5, atol=1e-6, rtol=1e-6)


def test_focal_gradient_is_finite_at_certainty():
  # p_y rounds to 1 in float32: gamma < 1 must not meet 0^(gamma - 1).
  logits = jnp.array([[60.0, 0.0, 0.0]])
  y = jnp.array([0])
  for gamma in (0.0, 0.5, 3.0):
    g = jax.grad(lambda l: ng.focal_loss(lambda p, x: p, l, jnp.zeros((1, 1, 1, 1)), y,
                                         gamma=gamma)[0])(logits)
    assert np.all(np.isfinite(g)), (gamma, g)


def test_bad_hyperparameters_raise():
  params, (x, y) = _params(), _batch()
  with pytest.raises(ValueError, match="alpha must be in"):
    ng.label_smoothing_loss(ref.mlp_apply, params, x, y, alpha=1.0)
  with pytest.raises(ValueError, match="alpha must be a finite number"):
    ng.label_smoothing_loss(ref.mlp_apply, params, x, y, alpha=-0.1)
  with pytest.raises(ValueError, match="gamma must be a finite number"):
    ng.focal_loss(ref.mlp_apply, params, x, y, gamma=-1.0)
  with pytest.raises(ValueError, match="schedule must be one of"):
    ng.focal_loss(ref.mlp_apply, params, x, y, schedule="flsd")
  with pytest.raises(ValueError, match="labels outside"):
    ng.focal_loss(ref.mlp_apply, params, x, y + K)


def test_shard_map_equals_one_device():
  """With axis_name, under shard_map over the 8 CPU devices of tests/conftest.py: the global
  batch's loss and gradients, as the other objectives (tests/objectives_test.py)."""
  assert jax.device_count() == 8, "tests/conftest.py forces 8 CPU devices"
  mesh = jax.make_mesh((8,), ("data",))
  put = lambda a, spec: jax.device_put(a, NamedSharding(mesh, spec))
  params, (x, y) = _params(), _batch()
  for loss_fn in (
      lambda p, x, y, a: ng.label_smoothing_loss(ref.mlp_apply, p, x, y, alpha=0.1,
                                                 axis_name=a)[0],
      lambda p, x, y, a: ng.focal_loss(ref.mlp_apply, p, x, y, schedule="flsd53",
                                       axis_name=a)[0]):
    loss, grads = jax.jit(jax.value_and_grad(lambda p: loss_fn(p, x, y, None)))(params)

    def per_device(p, x, y, loss_fn=loss_fn):
      value, g = jax.value_and_grad(lambda q: loss_fn(q, x, y, "data"))(p)
      return value, jax.lax.pmean(g, "data")

    l_sm, g_sm = jax.jit(jax.shard_map(per_device, mesh=mesh, in_specs=(P(), P("data"), P("data")),
                                       out_specs=(P(), P())))(
        put(params, P()), put(x, P("data")), put(y, P("data")))
    np.testing.assert_allclose(l_sm, loss, rtol=1e-5)
    for a, b in zip(jax.tree.leaves(g_sm), jax.tree.leaves(grads)):
      np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("objective,fields,pure", [
    ("label_smoothing", {"label_smoothing.alpha": 0.2},
     lambda f, p, x, y: ng.label_smoothing_loss(f, p, x, y, alpha=0.2)),
    ("focal", {"focal.gamma": 2.0, "focal.schedule": "fixed"},
     lambda f, p, x, y: ng.focal_loss(f, p, x, y, gamma=2.0)),
    ("focal", {"focal.schedule": "flsd53"},
     lambda f, p, x, y: ng.focal_loss(f, p, x, y, schedule="flsd53")),
])
def test_registry_binds_the_config_fields(objective, fields, pure):
  from configs import smoke  # pylint: disable=g-import-not-at-top
  from ngebm_jax import models  # pylint: disable=g-import-not-at-top
  from ngebm_jax.training import objective_registry  # pylint: disable=g-import-not-at-top

  config = smoke.get_config()
  config.objective = objective
  for name, value in fields.items():
    block, field = name.split(".")
    config[block][field] = value
  assert objective in objective_registry.names()
  fns, params = models.from_config(config, 10)
  loss_fn = objective_registry.make_objective(config, fns).loss_fn
  rng = np.random.default_rng(0)
  batch = {"image": rng.uniform(-1, 1, (4, 32, 32, 3)).astype(np.float32),
           "label": np.array([0, 3, 7, 9], np.int32)}
  loss, (metrics, _) = jax.jit(lambda p: loss_fn(p, batch, jax.random.key(0), {}, None))(params)
  expected, aux = pure(fns.apply_fn, params, batch["image"], batch["label"])
  np.testing.assert_allclose(loss, expected, rtol=1e-5)
  np.testing.assert_allclose(metrics["ce"], aux["ce"], rtol=1e-5)
  assert 0 <= metrics["accuracy"] <= 1
