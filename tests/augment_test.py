"""The device augmentation: a per-example reference, its distribution, and device independence."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from ngebm_jax.data import augment


def _images(n, seed=0):
  return np.random.default_rng(seed).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)


def _reference(image, dy, dx, flipped, pad=4):
  """The slow, obvious augmentation of one example: numpy pad, slice, mirror."""
  padded = np.pad(image, ((pad, pad), (pad, pad), (0, 0)), mode="reflect")
  crop = padded[dy:dy + image.shape[0], dx:dx + image.shape[1]]
  return crop[:, ::-1] if flipped else crop


def test_crop_and_flip_match_a_per_example_numpy_loop_with_the_drawn_offsets():
  images = _images(16)
  maps = np.random.default_rng(1).random((16, 32, 32)).astype(np.float32)
  key = jax.random.key(3)
  x, out_maps = jax.jit(lambda k, i, m: augment.augment(k, i, {"human_map": m}, noise_std=0.0))(
      key, images, maps)
  dy, dx, flipped, _ = augment.draw(key, 16)
  assert flipped.any() and not flipped.all()  # both branches are exercised
  for i in range(16):
    want = _reference(images[i], int(dy[i]), int(dx[i]), bool(flipped[i]))
    np.testing.assert_array_equal(np.rint((np.asarray(x[i]) + 1) * 127.5), want)
    np.testing.assert_allclose(np.asarray(x[i]), want / 127.5 - 1.0, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(out_maps["human_map"][i]),
                                  _reference(maps[i][..., None], int(dy[i]), int(dx[i]),
                                             bool(flipped[i]))[..., 0])


def test_noise_is_the_only_difference_and_has_the_recipe_std():
  images = _images(64)
  key = jax.random.key(0)
  noisy, _ = augment.augment(key, images, noise_std=0.03)
  clean, _ = augment.augment(key, images, noise_std=0.0)
  noise = np.asarray(noisy - clean, np.float64)
  assert abs(noise.mean()) < 3 * 0.03 / np.sqrt(noise.size)
  assert abs(noise.std() / 0.03 - 1) < 0.01  # 196,608 draws: the std's error is ~0.2%
  # Independent across examples: correlation of two examples' noise near 0.
  assert abs(np.corrcoef(noise[0].ravel(), noise[1].ravel())[0, 1]) < 0.1


def test_offsets_are_uniform_and_flips_fair():
  dy, dx, flipped, _ = augment.draw(jax.random.key(7), 9_000)
  for offsets in (np.asarray(dy), np.asarray(dx)):
    counts = np.bincount(offsets, minlength=9)
    assert len(counts) == 9  # only 0..8 (pad 4 on each side)
    chi2 = ((counts - 1_000) ** 2 / 1_000).sum()
    assert chi2 < 26.1  # chi-square, 8 degrees of freedom, p = 0.001
  assert abs(np.asarray(flipped).mean() - 0.5) < 4 * 0.5 / np.sqrt(9_000)
  assert not np.asarray(augment.draw(jax.random.key(7), 100, flip=False)[2]).any()
  np.testing.assert_array_equal(augment.draw(jax.random.key(7), 100, pad=0)[0], 0)


def test_an_example_is_augmented_the_same_in_any_batch_size():
  images = _images(8)
  key = jax.random.key(5)
  whole, _ = augment.augment(key, images)
  first, _ = augment.augment(key, images[:3])
  np.testing.assert_array_equal(np.asarray(whole[:3]), np.asarray(first))


def test_eight_devices_give_the_one_device_batch():
  assert jax.device_count() >= 8
  images = _images(16)
  maps = {"mask": np.random.default_rng(2).random((16, 32, 32)).astype(np.float32)}
  fn = lambda k, i, m: augment.augment(k, i, m)
  one, one_maps = jax.jit(fn)(jax.random.key(1), images, maps)
  mesh = jax.sharding.Mesh(np.asarray(jax.devices()[:8]), ("data",))
  split = NamedSharding(mesh, P("data"))
  many, many_maps = jax.jit(fn, out_shardings=split)(
      jax.random.key(1), jax.device_put(images, split), jax.device_put(maps, split))
  assert len(many.sharding.device_set) == 8
  np.testing.assert_array_equal(np.asarray(many), np.asarray(one))
  np.testing.assert_array_equal(np.asarray(many_maps["mask"]), np.asarray(one_maps["mask"]))


def test_bad_inputs_are_refused():
  with pytest.raises(ValueError, match="uint8"):
    augment.augment(jax.random.key(0), jnp.zeros((2, 32, 32, 3), jnp.float32))
  with pytest.raises(ValueError, match="noise_std"):
    augment.augment(jax.random.key(0), jnp.zeros((2, 32, 32, 3), jnp.uint8), noise_std=-1.0)
