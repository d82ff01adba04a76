"""The registry binds the config's NG-EBM fields to the pure loss."""

import jax
import numpy as np

from configs import benchmark_tiny
from ngebm_jax import models
from ngebm_jax import objectives
from ngebm_jax.training import objective_registry


def test_ngebm_penalty_fraction_reaches_the_loss():
  config = benchmark_tiny.get_config()
  config.objective = "ngebm"
  config.ngebm.penalty_fraction = 0.25
  fns, params = models.from_config(config, 10)
  rng = np.random.default_rng(0)
  batch = {"image": rng.uniform(-1, 1, (8, 32, 32, 3)).astype(np.float32),
           "label": rng.integers(0, 10, 8).astype(np.int32)}
  loss_fn = objective_registry.make_objective(config, fns).loss_fn
  loss, (metrics, _) = jax.jit(lambda p: loss_fn(p, batch, jax.random.key(0), {}, None))(params)
  direct = lambda f: objectives.ngebm_loss(fns.apply_fn, params, batch["image"], batch["label"],
                                           penalty_fraction=f)
  expected, aux = jax.jit(lambda: direct(0.25))()
  _, aux_full = jax.jit(lambda: direct(1.0))()
  np.testing.assert_allclose(loss, expected, rtol=1e-6)
  np.testing.assert_allclose(metrics["grad_norm"], aux["grad_norm"], rtol=1e-6)
  assert abs(float(aux["grad_norm"]) - float(aux_full["grad_norm"])) > 1e-6  # 2 of 8 examples
