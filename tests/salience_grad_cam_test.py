"""Grad-CAM of ngebm_jax.salience on tiny hand-written models with explicit parameters."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ngebm_jax import salience


def _pool4(x):
  b, h, w, c = x.shape
  return x.reshape(b, h // 4, 4, w // 4, 4, c).mean(axis=(2, 4))


# A per-pixel network, 4x4 average pooling (32 px -> 8x8 map), leaky-ReLU head: the contract's
# features_fn/head_fn split of a small CNN.
def _features(params, x):
  return _pool4(jnp.tanh(x @ params["w1"] + params["b1"]))


def _head(params, a):
  return jnp.mean(jax.nn.leaky_relu(a, 0.2), axis=(1, 2)) @ params["w2"] + params["b2"]


class _Fns(NamedTuple):
  apply_fn: object
  features_fn: object
  head_fn: object


FNS = _Fns(lambda p, x: _head(p, _features(p, x)), _features, _head)


def _params(seed=0, channels=6, classes=3):
  rng = np.random.default_rng(seed)
  return {
      "w1": jnp.asarray(rng.normal(size=(3, channels)), jnp.float32),
      "b1": jnp.asarray(rng.normal(size=(channels,)), jnp.float32),
      "w2": jnp.asarray(rng.normal(size=(channels, classes)), jnp.float32),
      "b2": jnp.zeros((classes,), jnp.float32),
  }


def _images(seed, n=4, side=32):
  return np.random.default_rng(seed).uniform(-1, 1, size=(n, side, side, 3)).astype(np.float32)


def _reference_grad_cam(params, x, classes):
  """NumPy loops: the analytic gradient of the leaky-ReLU mean-pool head."""
  params = {k: np.asarray(v, np.float64) for k, v in params.items()}
  a = np.asarray(_features(params, x.astype(np.float64)))
  b, h, w, c = a.shape
  out = np.zeros((b, h, w))
  for n in range(b):
    weights = np.zeros(c)
    for k in range(c):
      for i in range(h):
        for j in range(w):
          slope = 1.0 if a[n, i, j, k] > 0 else 0.2
          weights[k] += slope * params["w2"][k, classes[n]] / (h * w) / (h * w)
    cam = np.maximum(0.0, np.einsum("ijk,k->ij", a[n], weights))
    if cam.max() > cam.min():
      cam = (cam - cam.min()) / (cam.max() - cam.min())
    else:
      cam = np.zeros_like(cam)
    out[n] = cam
  return out


def test_grad_cam_matches_numpy_reference():
  params, x = _params(), _images(0)
  maps, logits = salience.grad_cam_and_logits(FNS, params, jnp.asarray(x))
  predicted = np.argmax(np.asarray(logits), axis=-1)
  assert maps.shape == (4, 8, 8) and maps.dtype == jnp.float32
  np.testing.assert_allclose(np.asarray(maps), _reference_grad_cam(params, x, predicted),
                             atol=1e-5)
  np.testing.assert_allclose(np.asarray(logits), np.asarray(FNS.apply_fn(params, x)), rtol=1e-6)
  # An explicit class, one for all or one per image.
  classes = np.array([2, 0, 1, 2], np.int32)
  np.testing.assert_allclose(
      np.asarray(salience.grad_cam(FNS, params, jnp.asarray(x), class_index=classes)),
      _reference_grad_cam(params, x, classes), atol=1e-5)
  np.testing.assert_allclose(
      np.asarray(salience.grad_cam((_features, _head), params, jnp.asarray(x), class_index=1)),
      _reference_grad_cam(params, x, [1] * 4), atol=1e-5)


def test_grad_cam_batched_equals_one_batch_and_works_under_jit():
  params, x = _params(1), _images(1, n=5)
  whole = np.asarray(salience.grad_cam(FNS, params, jnp.asarray(x)))
  maps, logits = salience.grad_cam_batched(FNS, params, x, batch_size=2, return_logits=True)
  np.testing.assert_allclose(maps, whole, atol=1e-6)
  assert logits.shape == (5, 3)
  jitted = jax.jit(lambda p, x: salience.grad_cam(FNS, p, x))(params, jnp.asarray(x))
  np.testing.assert_allclose(np.asarray(jitted), whole, atol=1e-6)


# A model built to look at one quadrant: channel 0 fires only in the top-left quadrant of the
# 8x8 map, channel 1 only elsewhere; class 0 reads channel 0, class 1 channel 1.
def _quadrant_features(params, x):
  energy = jax.nn.softplus(jnp.sum(_pool4(x), axis=-1))  # [B, 8, 8]
  mask = params["mask"]
  return jnp.stack([energy * mask, energy * (1.0 - mask)], axis=-1)


def _quadrant_head(params, a):
  return jnp.mean(a, axis=(1, 2)) @ params["w"]


def test_grad_cam_of_a_quadrant_model_peaks_in_the_quadrant():
  mask = np.zeros((8, 8), np.float32)
  mask[:4, :4] = 1.0
  params = {"mask": jnp.asarray(mask), "w": jnp.asarray([[5.0, 0.0], [0.0, 1.0]])}
  fns = (_quadrant_features, _quadrant_head)
  x = jnp.asarray(_images(2))
  maps = np.asarray(salience.grad_cam(fns, params, x))  # predicted class: 0
  for m in maps:
    i, j = np.unravel_index(np.argmax(m), m.shape)
    assert i < 4 and j < 4
    assert m.max() == pytest.approx(1.0)
    np.testing.assert_array_equal(m[mask == 0], 0.0)
  other = np.asarray(salience.grad_cam(fns, params, x, class_index=1))
  np.testing.assert_array_equal(other[:, :4, :4], 0.0)
  assert np.all(other.max(axis=(1, 2)) == pytest.approx(1.0))


def test_constant_maps_become_zeros():
  # Features constant over space: the map has no salient place.
  fns = (lambda p, x: jnp.ones((x.shape[0], 8, 8, 2)) * p, lambda p, a: jnp.mean(a, (1, 2)))
  maps = salience.grad_cam(fns, jnp.asarray([1.0, 2.0]), jnp.asarray(_images(3, n=2)))
  np.testing.assert_array_equal(np.asarray(maps), 0.0)


def test_upsample_and_to_uint8():
  maps = jnp.asarray(np.random.default_rng(4).uniform(size=(2, 8, 8)), jnp.float32)
  up = salience.upsample(maps, (32, 32))
  assert up.shape == (2, 32, 32)
  assert float(up.min()) >= 0.0 and float(up.max()) <= 1.0
  np.testing.assert_allclose(np.asarray(salience.upsample(jnp.full((1, 8, 8), 0.3), (32, 32))),
                             0.3, atol=1e-6)
  np.testing.assert_allclose(np.asarray(salience.upsample(maps[:, ::-1], (32, 32))),
                             np.asarray(up)[:, ::-1], atol=1e-6)
  q = salience.to_uint8(jnp.asarray([[[0.0, 0.5, 1.0, 0.999]]]), rounding="nearest")
  assert q.dtype == jnp.uint8
  np.testing.assert_array_equal(np.asarray(q), [[[0, 128, 255, 255]]])
  # The default truncates, as torchvision's to_pil_image (mul(255).byte()) in the authors' code.
  q = salience.to_uint8(jnp.asarray([[[0.0, 0.5, 1.0, 0.999]]]))
  np.testing.assert_array_equal(np.asarray(q), [[[0, 127, 255, 254]]])
  with pytest.raises(ValueError, match="rounding"):
    salience.to_uint8(maps, rounding="ceil")


@pytest.mark.parametrize("size", [(32, 32), (224, 224)])
def test_bicubic_upsample_is_pils_bicubic_resize_clipped(size):
  # Explain2Me's code resizes its maps with PIL's BICUBIC filter; PIL's float mode ("F") gives the
  # same filter without the 8-bit rounding.
  from PIL import Image  # pylint: disable=g-import-not-at-top
  h = 7 if size[0] == 224 else 8
  maps = np.random.default_rng(5).uniform(size=(2, h, h)).astype(np.float32) ** 2
  got = np.asarray(salience.upsample(jnp.asarray(maps), size, method="bicubic"))
  want = np.stack([np.asarray(Image.fromarray(m, mode="F").resize(size[::-1], Image.BICUBIC))
                   for m in maps])
  assert want.min() < 0 or want.max() > 1  # the cubic overshoots; upsample clips like PIL's uint8
  np.testing.assert_allclose(got, np.clip(want, 0.0, 1.0), atol=1e-6)
  with pytest.raises(ValueError, match="method"):
    salience.upsample(jnp.asarray(maps), size, method="lanczos")


def test_grad_cam_rejects_bad_arguments():
  params, x = _params(), jnp.asarray(_images(0, n=2))
  with pytest.raises(ValueError, match="features_fn"):
    salience.grad_cam(FNS.apply_fn, params, x)
  with pytest.raises(ValueError, match="shape"):
    salience.grad_cam(FNS, params, x, class_index=np.array([0, 1, 2]))
  with pytest.raises(ValueError, match="class_index"):
    salience.grad_cam(FNS, params, x, class_index=7)
  with pytest.raises(ValueError, match="floating"):
    salience.grad_cam(FNS, params, np.zeros((2, 32, 32, 3), np.uint8))
