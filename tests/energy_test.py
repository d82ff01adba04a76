"""Energies and the Approximate Mass against NumPy and finite differences."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ngebm_jax as ng
from tests import reference_models as ref


def test_log_density_and_energy_match_numpy():
  logits = np.random.default_rng(0).normal(size=(7, 4)).astype(np.float32) * 5
  np.testing.assert_allclose(jax.jit(ng.log_density)(logits), ref.logsumexp_np(logits),
                             rtol=1e-6, atol=1e-5)
  np.testing.assert_allclose(ng.energy(logits), -ref.logsumexp_np(logits), rtol=1e-6, atol=1e-5)


def test_class_energy_is_minus_the_logit():
  logits = np.arange(12, dtype=np.float32).reshape(3, 4)
  y = np.array([0, 3, 1])
  np.testing.assert_array_equal(ng.class_energy(logits, y), -logits[np.arange(3), y])


def test_approximate_mass_matches_finite_differences():
  params = ref.make_mlp(jax.random.key(0))
  x = jax.random.uniform(jax.random.key(1), (4, 2, 2, 2), minval=-1, maxval=1)
  with jax.enable_x64(True):
    params64 = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), params)
    mass = jax.jit(ng.approximate_mass, static_argnums=0)(
        ref.mlp_apply, params64, jnp.asarray(x, jnp.float64))
  fd = ref.input_grad_fd_np(params, x)
  expected = -np.sqrt((fd.reshape(4, -1) ** 2).sum(-1))
  np.testing.assert_allclose(mass, expected, rtol=1e-6)
  assert np.all(np.asarray(mass) <= 0)


def test_per_example_gradients_do_not_mix():
  # The gradient of the summed log density is per example: changing one example's input must
  # not change another's gradient.
  params = ref.make_mlp(jax.random.key(0))
  x = jax.random.normal(jax.random.key(1), (3, 2, 2, 2))
  g1, _ = ng.log_density_input_grad(ref.mlp_apply, params, x)
  g2, _ = ng.log_density_input_grad(ref.mlp_apply, params, x.at[0].set(5.0))
  np.testing.assert_allclose(g1[1:], g2[1:], rtol=1e-6)
  assert not np.allclose(g1[0], g2[0])


@pytest.mark.parametrize("bad, match", [
    (np.zeros((4, 8), np.float32), "shape"),
    (np.zeros((2, 2, 2, 2), np.uint8), "floating"),
])
def test_bad_inputs_raise(bad, match):
  params = ref.make_mlp(jax.random.key(0))
  with pytest.raises(ValueError, match=match):
    ng.approximate_mass(ref.mlp_apply, params, bad)


def test_bad_logits_raise():
  with pytest.raises(ValueError, match="shape"):
    ng.log_density(np.zeros((3,), np.float32))
  with pytest.raises(ValueError, match="floating"):
    ng.log_density(np.zeros((3, 2), np.int32))
