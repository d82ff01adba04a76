"""The loop's metrics buffer: one fetch per log interval, divergence found at its step."""

import jax.numpy as jnp
import pytest

from configs import smoke
from ngebm_jax.training import step_log
from ngebm_jax.training.divergence import NonFiniteLossError


def _metrics(loss, finite=1.0):
  return {"loss": jnp.asarray(loss), "finite": jnp.asarray(finite)}


def test_fetch_means_the_pending_steps_and_counts_skipped_ones():
  config = smoke.get_config()
  config.skip_nonfinite = True
  buffer = step_log.MetricsBuffer(config, "workdir", step=10)
  assert buffer.fetch() == {}
  buffer.add(10, _metrics(1.0))
  buffer.add(11, _metrics(3.0, finite=0.0))
  mean = buffer.fetch()
  assert mean["loss"] == 2.0 and mean["finite"] == 0.5
  assert mean["skipped_nonfinite_steps"] == 1 and mean["step_time_s"] >= 0
  assert buffer.fetch() == {}  # fetched once
  buffer.add(12, _metrics(5.0, finite=0.0))
  assert buffer.fetch()["skipped_nonfinite_steps"] == 2  # counted over the run


def test_fetch_raises_at_the_diverged_step():
  config = smoke.get_config()
  buffer = step_log.MetricsBuffer(config, "workdir", step=0)
  buffer.add(5, _metrics(1.0))
  buffer.add(6, _metrics(float("nan"), finite=0.0))
  with pytest.raises(NonFiniteLossError, match="at step 6 .*loss=nan") as raised:
    buffer.fetch()
  assert raised.value.step == 6
