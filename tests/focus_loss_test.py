"""Tests of ngebm_jax/focus.py against slow NumPy references."""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from ngebm_jax import focus

B, H, W, C, K = 4, 4, 4, 5, 2


def _inputs(seed=0, b=B):
  rng = np.random.default_rng(seed)
  features = rng.normal(size=(b, H, W, C)).astype(np.float32)
  head = rng.normal(size=(C, K)).astype(np.float32)
  logits = rng.normal(size=(b, K)).astype(np.float32)
  labels = rng.integers(0, K, b).astype(np.int32)
  human = rng.uniform(size=(b, H, W)).astype(np.float32)
  return features, head, logits, labels, human


# ------------------------------------------------------------------ slow NumPy references --

def _np_cam(features, head, labels, normalize=True, eps=focus.DEFAULT_EPSILON):
  b, h, w, c = features.shape
  out = np.zeros((b, h, w))
  for n in range(b):
    for i in range(h):
      for j in range(w):
        for k in range(c):
          out[n, i, j] += head[k, labels[n]] * features[n, i, j, k]
  if normalize:
    for n in range(b):
      out[n] = (out[n] - out[n].min()) / (out[n].max() - out[n].min() + eps)
  return out


def _np_entropy(cam):
  out = []
  for m in cam:
    m = m.ravel().astype(np.float64)
    if m.sum() == 0:
      out.append(math.log(m.size))
      continue
    p = m / m.sum()
    out.append(-sum(pi * math.log(pi) for pi in p if pi > 0))
  return np.array(out)


def _np_ce(logits, labels):
  out = []
  for z, y in zip(logits.astype(np.float64), labels):
    out.append(math.log(np.sum(np.exp(z))) - z[y])
  return np.array(out)


def _np_normalize(maps, eps=focus.DEFAULT_EPSILON):
  return np.stack([(m - m.min()) / (m.max() - m.min() + eps) for m in maps])


# ---------------------------------------------------------------------------- CAM, entropy --

def test_spatial_entropy_uniform_one_hot_and_zero_maps():
  uniform = jnp.full((2, 8, 8), 0.7)
  one_hot = jnp.zeros((2, 8, 8)).at[:, 3, 5].set(1.0)
  zero = jnp.zeros((1, 8, 8))
  entropy = jax.jit(focus.spatial_entropy)
  np.testing.assert_allclose(entropy(uniform), math.log(64), rtol=1e-6)
  np.testing.assert_allclose(entropy(one_hot), 0.0, atol=1e-7)
  np.testing.assert_allclose(entropy(zero), math.log(64), rtol=1e-6)


def test_spatial_entropy_matches_numpy_and_numerical_gradient():
  rng = np.random.default_rng(1)
  cam = rng.uniform(size=(3, 5, 6)).astype(np.float32)
  cam[0, :2] = 0.0  # exact zeros: 0 ln 0 = 0
  np.testing.assert_allclose(jax.jit(focus.spatial_entropy)(cam), _np_entropy(cam), rtol=1e-5)
  positive = jnp.asarray(rng.uniform(0.1, 1.0, size=(2, 3, 3)), jnp.float64 if
                         jax.config.jax_enable_x64 else jnp.float32)
  check_grads(lambda c: focus.spatial_entropy(c).sum(), (positive,), order=1, modes=("rev",),
              atol=1e-2, rtol=1e-2)


@pytest.mark.parametrize("normalize", [False, True])
def test_cam_equals_weighted_sum_of_feature_maps(normalize):
  features, head, _, labels, _ = _inputs()
  cam = jax.jit(functools.partial(focus.class_activation_map, normalize=normalize))(
      features, head, labels)
  np.testing.assert_allclose(cam, _np_cam(features, head, labels, normalize), rtol=1e-4,
                             atol=1e-5)
  if normalize:
    assert float(cam.min()) >= 0.0 and float(cam.max()) < 1.0


def test_raw_cam_mean_is_logit_of_pool_linear_head():
  features, head, _, labels, _ = _inputs()
  logits = features.mean(axis=(1, 2)) @ head  # global average pool + linear, no bias
  cam = focus.class_activation_map(features, head, labels, normalize=False)
  np.testing.assert_allclose(cam.mean(axis=(1, 2)), logits[np.arange(B), labels], rtol=1e-5,
                             atol=1e-6)


def test_human_maps_are_resized_and_normalized():
  human = np.zeros((1, 32, 32), np.float32)
  human[0, :8, :8] = 3.0  # the top-left 8x8 pixels, i.e. the top-left 2x2 cells of an 8x8 map
  resized = np.asarray(jax.jit(focus.resize_human_maps, static_argnums=1)(human, (8, 8)))
  assert resized.shape == (1, 8, 8)
  # Antialiased linear resizing: a triangle kernel two cells wide, so edges blend a little.
  np.testing.assert_allclose(resized[0, 0, 0], 1.0, atol=1e-5)
  assert np.all(resized[0, :2, :2] > 0.7) and np.all(resized[0, 2, :3] < 0.3)
  np.testing.assert_allclose(resized[0, 3:, :], 0.0, atol=1e-6)
  np.testing.assert_allclose(resized[0, :, 3:], 0.0, atol=1e-6)
  same = np.random.default_rng(0).uniform(size=(2, 8, 8)).astype(np.float32)
  np.testing.assert_allclose(focus.resize_human_maps(same, (8, 8)), _np_normalize(same),
                             rtol=1e-5)


# ----------------------------------------------------------------------------------- losses --

def test_cyborg_loss_hand_example():
  # B = 2, K = 2, C = 1, 2x2 feature maps: the CAM of class y is features * W[0, y].
  features = np.array([[[1.0], [2.0]], [[3.0], [4.0]]], np.float32)[None].repeat(2, 0)
  head = np.array([[1.0, -1.0]], np.float32)
  labels = np.array([0, 1], np.int32)
  logits = np.array([[2.0, 0.0], [0.0, 1.0]], np.float32)
  human = np.array([[[0.0, 0.0], [0.0, 1.0]], [[1.0, 0.0], [0.0, 0.0]]], np.float32)
  eps = focus.DEFAULT_EPSILON
  cam0 = np.array([[0, 1], [2, 3]]) / (3 + eps)  # class 0: 1..4 -> (x - 1) / 3
  cam1 = np.array([[3, 2], [1, 0]]) / (3 + eps)  # class 1: -1..-4 -> (x + 4) / 3
  h = human / (1 + eps)
  mse = np.mean([np.mean((cam0 - h[0]) ** 2), np.mean((cam1 - h[1]) ** 2)])
  ce = np.mean([math.log(1 + math.exp(-2)), math.log(1 + math.exp(-1))])
  loss, aux = jax.jit(focus.cyborg_loss)(logits, features, head, labels, human)
  np.testing.assert_allclose(aux["ce"], ce, rtol=1e-6)
  np.testing.assert_allclose(aux["human_mse"], mse, rtol=1e-5)
  np.testing.assert_allclose(loss, 0.5 * ce + 0.5 * mse, rtol=1e-5)
  loss, _ = focus.cyborg_loss(logits, features, head, labels, human, alpha=0.2)
  np.testing.assert_allclose(loss, 0.2 * ce + 0.8 * mse, rtol=1e-5)


@pytest.mark.parametrize("cam_class", focus.CAM_CLASSES)
@pytest.mark.parametrize("entropy_form", focus.ENTROPY_FORMS)
def test_focus_loss_terms_match_formulas(entropy_form, cam_class):
  features, head, logits, labels, human = _inputs(seed=3)
  weights = dict(ce_weight=0.7, human_weight=0.4, entropy_weight=0.3)
  reference = 1.5 if entropy_form == "match_reference" else None
  loss_fn = jax.jit(functools.partial(focus.focus_loss, entropy_form=entropy_form,
                                      reference_entropy=reference, cam_class=cam_class,
                                      **weights))
  loss, aux = loss_fn(logits, features, head, labels, human)

  classes = np.argmax(logits, -1) if cam_class == "predicted" else labels
  assert np.any(np.argmax(logits, -1) != labels)  # the two choices differ on these inputs
  cam = _np_cam(features, head, classes)
  entropies = _np_entropy(cam)
  ce = _np_ce(logits, labels).mean()
  mse = np.mean((cam - _np_normalize(human)) ** 2)
  term = {"mean": entropies.mean(), "log1p": np.log1p(entropies).mean(),
          "match_reference": (entropies.mean() - 1.5) ** 2}[entropy_form]
  np.testing.assert_allclose(aux["ce"], ce, rtol=1e-5)
  np.testing.assert_allclose(aux["human_mse"], mse, rtol=1e-4)
  np.testing.assert_allclose(aux["cam_entropy"], entropies.mean(), rtol=1e-5)
  np.testing.assert_allclose(aux["entropy_term"], term, rtol=1e-4)
  np.testing.assert_allclose(loss, 0.7 * ce + 0.4 * mse + 0.3 * term, rtol=1e-5)
  np.testing.assert_allclose(aux["loss"], loss)
  np.testing.assert_array_equal(aux["logits"], logits)


def test_cyborg_cam_and_loss_are_the_training_codes():
  # CYBORG's training_code/train_cam.py, written again in NumPy: features [B, C, h, w] (PyTorch
  # layout), the final layer's weight [K, C], the CAM of the predicted class pred = argmax
  # outputs, cam - min, / max, per image; the loader min-max normalizes the human map;
  # loss = alpha CE + (1 - alpha) MSELoss(cams, hmaps).
  features, head, logits, labels, human = _inputs(seed=7, b=6)
  weight = head.T.astype(np.float64)  # nn.Linear's weight
  pred = np.argmax(logits, -1)
  assert np.any(pred != labels)
  cams = []
  for n, bd in enumerate(features.transpose(0, 3, 1, 2).reshape(6, C, H * W).astype(np.float64)):
    cam = (weight[pred[n]] @ bd).reshape(H, W)
    cam = cam - cam.min()
    cams.append(cam / cam.max())
  cams = np.stack(cams)
  hmaps = np.stack([(m - m.min()) / (m - m.min()).max() for m in human.astype(np.float64)])
  want = 0.3 * _np_ce(logits, labels).mean() + 0.7 * np.mean((cams - hmaps) ** 2)
  got_cam = focus.class_activation_map(
      features, head, focus.cam_class_index(logits, labels, "predicted"))
  np.testing.assert_allclose(got_cam, cams, atol=1e-5)
  loss, _ = jax.jit(functools.partial(focus.cyborg_loss, alpha=0.3))(logits, features, head,
                                                                      labels, human)
  np.testing.assert_allclose(loss, want, rtol=1e-5)
  # The true class is the other choice; on these inputs it gives another loss.
  loss_true, _ = focus.cyborg_loss(logits, features, head, labels, human, alpha=0.3,
                                   cam_class="true")
  assert abs(float(loss_true) - float(loss)) > 1e-3
  np.testing.assert_array_equal(focus.cam_class_index(logits, labels, "true"), labels)


@pytest.mark.parametrize("side,cam_side", [(224, 7), (32, 8)])
def test_human_maps_are_resized_as_cyborgs_loader_does(side, cam_side):
  # dataset_Loader_cam.py: torchvision Resize([map_size, map_size]) on the PIL map (bilinear,
  # which averages when it shrinks), then (m - min) / max(m - min). PIL's float mode ("F") gives
  # the same filter without 8-bit rounding.
  from PIL import Image  # pylint: disable=g-import-not-at-top
  maps = np.random.default_rng(8).uniform(size=(2, side, side)).astype(np.float32)
  want = []
  for m in maps:
    r = np.asarray(Image.fromarray(m, mode="F").resize((cam_side, cam_side), Image.BILINEAR))
    r = r.astype(np.float64) - r.min()
    want.append(r / r.max())
  got = focus.resize_human_maps(jnp.asarray(maps), (cam_side, cam_side), epsilon=1e-12)
  np.testing.assert_allclose(got, np.stack(want), atol=2e-5)


def test_focus_loss_without_human_maps_and_global_batch_means():
  features, head, logits, labels, human = _inputs(seed=4, b=8)
  kwargs = dict(human_weight=0.5, entropy_weight=0.2, entropy_form="match_reference",
                reference_entropy=2.0)
  full, full_aux = focus.focus_loss(logits, features, head, labels, human, **kwargs)

  def split(a):
    return a.reshape((2, a.shape[0] // 2) + a.shape[1:])

  sharded = jax.vmap(functools.partial(focus.focus_loss, axis_name="data", **kwargs),
                     in_axes=(0, 0, None, 0, 0), axis_name="data")
  loss, aux = sharded(split(logits), split(features), head, split(labels), split(human))
  np.testing.assert_allclose(loss, [full, full], rtol=1e-5)
  for name in ("ce", "human_mse", "cam_entropy", "entropy_term"):
    np.testing.assert_allclose(aux[name], [full_aux[name]] * 2, rtol=1e-5)

  loss, aux = focus.focus_loss(logits, features, head, labels, entropy_weight=0.5)
  assert "human_mse" not in aux
  np.testing.assert_allclose(loss, aux["ce"] + 0.5 * aux["cam_entropy"], rtol=1e-6)


@pytest.mark.parametrize("entropy_form", focus.ENTROPY_FORMS)
def test_gradients_are_finite_on_all_zero_maps_and_features(entropy_form):
  g = jax.grad(lambda c: focus.spatial_entropy(c).sum())(jnp.zeros((2, 4, 4)))
  assert np.all(np.isfinite(g))
  _, head, logits, labels, human = _inputs(seed=5)
  reference = 1.0 if entropy_form == "match_reference" else None

  def loss(features, head):
    return focus.focus_loss(logits, features, head, labels, human, human_weight=1.0,
                            entropy_weight=1.0, entropy_form=entropy_form,
                            reference_entropy=reference)[0]

  grads = jax.jit(jax.grad(loss, argnums=(0, 1)))(jnp.zeros((B, H, W, C)), head)
  for g in grads:
    assert np.all(np.isfinite(np.asarray(g)))


def test_focus_loss_gradient_matches_finite_differences():
  features, head, logits, labels, human = _inputs(seed=6)

  def loss(features, head):
    return focus.focus_loss(logits, features, head, labels, human, human_weight=1.0,
                            entropy_weight=0.5, entropy_form="log1p")[0]

  check_grads(jax.jit(loss), (features, head), order=1, modes=("rev",), atol=2e-2, rtol=2e-2,
              eps=1e-3)


def test_bad_arguments_raise():
  features, head, logits, labels, human = _inputs()
  with pytest.raises(ValueError, match="entropy_form"):
    focus.focus_loss(logits, features, head, labels, entropy_form="max")
  with pytest.raises(ValueError, match="reference_entropy"):
    focus.focus_loss(logits, features, head, labels, entropy_form="match_reference")
  with pytest.raises(ValueError, match="reference_entropy"):
    focus.focus_loss(logits, features, head, labels, reference_entropy=1.0)
  with pytest.raises(ValueError, match="human_maps"):
    focus.focus_loss(logits, features, head, labels, human_weight=1.0)
  with pytest.raises(ValueError, match="entropy_weight"):
    focus.focus_loss(logits, features, head, labels, entropy_weight=-1.0)
  with pytest.raises(ValueError, match="channels"):
    focus.focus_loss(logits, features, head[:-1], labels)
  with pytest.raises(ValueError, match="classes"):
    focus.focus_loss(logits[:, :1], features, head, labels)
  with pytest.raises(ValueError, match="human_maps"):
    focus.focus_loss(logits, features, head, labels, human[:-1], human_weight=1.0)
  with pytest.raises(ValueError, match="features"):
    focus.class_activation_map(features[0], head, labels)
  with pytest.raises(ValueError, match="alpha"):
    focus.cyborg_loss(logits, features, head, labels, human, alpha=1.5)
  with pytest.raises(ValueError, match="cam_class"):
    focus.focus_loss(logits, features, head, labels, cam_class="label")
  with pytest.raises(ValueError, match="non-negative"):
    focus.spatial_entropy(-jnp.ones((1, 2, 2)))
