"""Tiny models with a NumPy float64 twin: the slow, obvious references of the math tests."""

import jax
import jax.numpy as jnp
import numpy as np


def make_mlp(key, *, image_shape=(2, 2, 2), hidden=5, num_classes=3):
  k1, k2 = jax.random.split(key)
  d = int(np.prod(image_shape))
  return {"w1": jax.random.normal(k1, (d, hidden)) / np.sqrt(d),
          "w2": jax.random.normal(k2, (hidden, num_classes))}


def mlp_apply(params, x):
  """A smooth, example-wise model: logits = tanh(x W1) W2."""
  h = jnp.tanh(x.reshape(x.shape[0], -1) @ params["w1"])
  return h @ params["w2"]


def mlp_apply_np(params, x):
  params = {k: np.asarray(v, np.float64) for k, v in params.items()}
  h = np.tanh(np.asarray(x, np.float64).reshape(x.shape[0], -1) @ params["w1"])
  return h @ params["w2"]


def logsumexp_np(logits):
  m = logits.max(-1, keepdims=True)
  return (m + np.log(np.exp(logits - m).sum(-1, keepdims=True)))[..., 0]


def input_grad_fd_np(params, x, eps=1e-6):
  """Central finite differences of log p~(x_i) w.r.t. x_i, per example, float64."""
  x = np.asarray(x, np.float64)
  flat = x.reshape(x.shape[0], -1)
  grad = np.zeros_like(flat)
  for j in range(flat.shape[1]):
    up, down = flat.copy(), flat.copy()
    up[:, j] += eps
    down[:, j] -= eps
    f_up = logsumexp_np(mlp_apply_np(params, up.reshape(x.shape)))
    f_down = logsumexp_np(mlp_apply_np(params, down.reshape(x.shape)))
    grad[:, j] = (f_up - f_down) / (2 * eps)
  return grad.reshape(x.shape)
