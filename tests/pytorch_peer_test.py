"""The PyTorch peer computes our steps: same losses from the same parameters, batch and Adam.

The peer runs in a child process. Its tests run when torch can be imported by this Python (the
`[torch]` extra), or by the Python named in NGEBM_JAX_TORCH_PYTHON; otherwise they are skipped,
except the one that checks what happens without torch.
"""

import os
import sys

import jax
import numpy as np
import optax
import pytest

import ngebm_jax as ng
from configs import benchmark_tiny
from ngebm_jax.benchmarking import pytorch_peer
from ngebm_jax.benchmarking import step_programs
from ngebm_jax import models

TORCH_PYTHON = os.environ.get("NGEBM_JAX_TORCH_PYTHON") or sys.executable
needs_torch = pytest.mark.skipif(
    pytorch_peer.torch_version(TORCH_PYTHON)[0] is None,
    reason=f"torch is not installed for {TORCH_PYTHON} (pip install -e '.[torch]')")


def _setup(model: str, batch_size: int = 8):
  config = benchmark_tiny.get_config()
  if model == "wide_resnet":
    config.model.name, config.model.depth, config.model.width = "wide_resnet", 10, 1
  config.batch_size = batch_size
  config.sgld.buffer_size = 32
  config.sgld.num_steps = 2
  variants, _ = step_programs.make_variants(config, ["baseline", "ngebm", "sgld"],
                                            sgld_steps=[2])
  fns, params = models.from_config(config, 10)
  rng = np.random.default_rng(0)
  batch = {"image": rng.uniform(-1, 1, (batch_size, 32, 32, 3)).astype(np.float32),
           "image_unlabelled": rng.uniform(-1, 1, (batch_size, 32, 32, 3)).astype(np.float32),
           "label": rng.integers(0, 10, batch_size).astype(np.int32)}
  return config, variants, fns, params, batch


def _our_losses(loss_fn, params, learning_rate: float, steps: int) -> list[float]:
  """Losses of `steps` plain Adam steps (the peer's optimizer: constant learning rate)."""
  optimizer = optax.adam(learning_rate)
  state, losses = optimizer.init(params), []
  step = jax.jit(jax.value_and_grad(lambda p: loss_fn(p)[0]))
  for _ in range(steps):
    loss, grads = step(params)
    losses.append(float(loss))
    updates, state = optimizer.update(grads, state, params)
    params = optax.apply_updates(params, updates)
  return losses


@needs_torch
@pytest.mark.parametrize("model", ["small_cnn", "wide_resnet"])
def test_peer_steps_give_our_losses_step_after_step(model):
  config, variants, fns, params, batch = _setup(model)
  x, y = batch["image"], batch["label"]
  peer, info = pytorch_peer.start_peer(variants, params, batch, num_classes=10,
                                       python=TORCH_PYTHON)
  try:
    assert info["available"] and info["steps"] == ["baseline", "ngebm", "sgld_k2"]
    lr = config.optimizer.learning_rate
    # Three Adam steps from the same parameters: equal losses mean equal gradients, so NG-EBM's
    # double backward (PyTorch) and our forward-mode form agree.
    for name, loss_fn in [("baseline", lambda p: ng.cross_entropy_loss(fns.apply_fn, p, x, y)),
                          ("ngebm", lambda p: ng.ngebm_loss(fns.apply_fn, p, x, y))]:
      theirs = [peer.step(name)[1] for _ in range(3)]
      np.testing.assert_allclose(theirs, _our_losses(loss_fn, params, lr, 3), rtol=2e-5,
                                 err_msg=name)
    seconds, loss = peer.step("sgld_k2")
    assert seconds > 0 and np.isfinite(loss)
    seconds, loss = peer.step("component:ngebm_grad")
    assert seconds > 0 and loss is None
    with pytest.raises(pytorch_peer.PeerError, match="no_such_step"):
      peer.step("no_such_step")
    assert peer.peak_rss_bytes() > 0
  finally:
    peer.close()


def test_without_torch_the_peer_says_why_and_starts_nothing(tmp_path):
  no_torch = tmp_path / "python_without_torch"
  no_torch.write_text("#!/bin/sh\nexit 1\n")
  no_torch.chmod(0o755)
  _, variants, _, params, batch = _setup("small_cnn")
  peer, info = pytorch_peer.start_peer(variants, params, batch, num_classes=10,
                                       python=str(no_torch))
  assert peer is None and not info["available"]
  assert "torch is not installed" in info["reason"]


def test_steps_the_peer_cannot_run_are_listed_with_a_reason():
  config, variants, _, _, _ = _setup("small_cnn")
  config.model.dtype = "bfloat16"
  assert pytorch_peer.model_spec(config, 10, 3)[0] is None
  others, _ = step_programs.make_variants(config, ["ngebm", "cyborg"],
                                          ngebm_grad_modes=["reverse_over_reverse"])
  reasons = {v.name: pytorch_peer.step_spec(v)[1] for v in others}
  assert reasons["ngebm"] is None
  assert "another form" in reasons["ngebm_reverse_over_reverse"]
  assert "cyborg" in reasons["cyborg"]
  assert pytorch_peer.step_spec(variants[2])[0]["num_steps"] == 2
