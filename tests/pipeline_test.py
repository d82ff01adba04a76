"""The input pipeline: uint8 host batches, device augmentation, determinism, resumption."""

import dataclasses

import jax
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from ngebm_jax.data import augment
from ngebm_jax.data import device_input
from ngebm_jax.data import pipeline


def _source(n=64, with_map=False):
  rng = np.random.default_rng(0)
  arrays = {"image": rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8),
            "label": np.arange(n, dtype=np.int32) % 10}
  if with_map:
    arrays["human_map"] = rng.random((n, 32, 32)).astype(np.float32)
  return pipeline.ArraySource(arrays)


def _device_stream(options, source=None, prefetch=2, num_devices=None):
  mesh = jax.sharding.Mesh(np.asarray(jax.devices()[:num_devices]), ("data",))
  host = iter(pipeline.train_dataset(source or _source(), options))
  return device_input.DeviceIterator(host, options, NamedSharding(mesh, P("data")),
                                     prefetch=prefetch)


def test_host_batches_are_uint8_with_their_position():
  options = pipeline.PipelineOptions(batch_size=8, seed=5)
  it = iter(pipeline.train_dataset(_source(with_map=True), options))
  for index in range(2):
    batch = next(it)
    assert batch["image"].dtype == np.uint8 and batch["image"].shape == (8, 32, 32, 3)
    assert batch["label"].dtype == np.int32 and batch["human_map"].shape == (8, 32, 32)
    assert int(batch["batch_index"]) == index


def test_read_threads_read_the_batches_none_read():
  # Grain's threads read batches ahead; the stream and its resumable state stay the same.
  none, threads = (iter(pipeline.train_dataset(_source(), pipeline.PipelineOptions(
      batch_size=8, seed=3, read_threads=n))) for n in (0, 3))
  for _ in range(12):  # past an epoch of 8 batches
    a, b = next(none), next(threads)
    assert all(np.array_equal(a[k], b[k]) for k in a)
  assert none.get_state() == threads.get_state()


def test_device_stream_is_deterministic_and_resumes_past_its_prefetch():
  options = pipeline.PipelineOptions(batch_size=8, seed=5)
  a = _device_stream(options)
  first = [np.asarray(next(a)["image"]) for _ in range(3)]
  state = a.get_state()  # after 3 batches handed out, though 5 were read
  fourth = np.asarray(next(a)["image"])
  b = _device_stream(options, prefetch=1)
  b.set_state(state)
  np.testing.assert_array_equal(np.asarray(next(b)["image"]), fourth)
  again = _device_stream(options)
  np.testing.assert_array_equal(np.asarray(next(again)["image"]), first[0])
  assert first[0].dtype == np.float32 and first[0].shape == (8, 32, 32, 3)
  assert np.abs(first[0]).max() < 1.5  # [-1, 1] plus 0.03 noise
  assert not np.array_equal(first[0], first[1])
  other_seed = _device_stream(dataclasses.replace(options, seed=6))
  assert not np.array_equal(np.asarray(next(other_seed)["image"]), first[0])


def test_device_batch_is_the_augmentation_of_the_host_batch():
  options = pipeline.PipelineOptions(batch_size=8, seed=2)
  host = next(iter(pipeline.train_dataset(_source(with_map=True), options)))
  batch = next(_device_stream(options, _source(with_map=True)))
  x, maps = augment.augment(jax.random.fold_in(jax.random.fold_in(device_input.data_key(2), 0),
                                               0), host["image"], {"human_map": host["human_map"]})
  # Eager and jitted scaling may round differently in the last bit.
  np.testing.assert_allclose(np.asarray(batch["image"]), np.asarray(x), rtol=0, atol=1e-6)
  np.testing.assert_array_equal(np.asarray(batch["human_map"]), np.asarray(maps["human_map"]))
  np.testing.assert_array_equal(np.asarray(batch["label"]), host["label"])
  assert "batch_index" not in batch


def test_eight_devices_see_the_batches_one_device_sees():
  options = pipeline.PipelineOptions(batch_size=16, seed=3, unlabelled_batch=True)
  many, one = _device_stream(options), _device_stream(options, num_devices=1)
  assert jax.device_count() == 8
  for _ in range(2):
    a, b = next(many), next(one)
    assert len(a["image"].sharding.device_set) == 8
    for k in ("image", "image_unlabelled", "label"):
      np.testing.assert_array_equal(np.asarray(a[k]), np.asarray(b[k]))


def test_poison_batch_is_nan_and_only_it():
  options = pipeline.PipelineOptions(batch_size=8, poison_batch=1)
  it = _device_stream(options)
  assert np.isfinite(np.asarray(next(it)["image"])).all()
  assert np.isnan(np.asarray(next(it)["image"])).all()
  assert np.isfinite(np.asarray(next(it)["image"])).all()


def test_processes_read_disjoint_halves_of_each_epoch():
  source = pipeline.ArraySource({"image": np.zeros((32, 32, 32, 3), np.uint8),
                                 "label": np.arange(32, dtype=np.int32)})  # label = identity
  options = pipeline.PipelineOptions(batch_size=4, augment=False, noise_std=0.0)
  seen = []
  for process_index in range(2):
    it = iter(pipeline.train_dataset(source, options, process_index=process_index,
                                     process_count=2))
    seen.append(np.concatenate([next(it)["label"] for _ in range(4)]))  # half an epoch each
  assert sorted(np.concatenate(seen)) == list(range(32))


def test_unlabelled_batch_is_a_second_order_of_the_same_data():
  options = pipeline.PipelineOptions(batch_size=8, unlabelled_batch=True, augment=False,
                                     noise_std=0.0)
  batch = next(iter(pipeline.train_dataset(_source(), options)))
  assert batch["image_unlabelled"].shape == batch["image"].shape
  assert not np.array_equal(batch["image_unlabelled"], batch["image"])
  # On the device each gets its own augmentation (a stream of its own of the batch's key).
  options = dataclasses.replace(options, augment=True, noise_std=0.03)
  same = _source(8)  # one batch: both orders hold the same 8 images
  device = next(_device_stream(options, same))
  assert device["image_unlabelled"].dtype == np.float32
  assert not np.allclose(np.sort(np.asarray(device["image_unlabelled"]).ravel()),
                         np.sort(np.asarray(device["image"]).ravel()))


def test_read_split_reads_every_example_in_order():
  source = _source(20)
  images, labels = pipeline.read_split(source)
  np.testing.assert_array_equal(images, source.arrays["image"])
  np.testing.assert_array_equal(labels, source.arrays["label"])
  assert labels.dtype == np.int32
  # A source that is not an ArraySource is read item by item, to the same arrays.
  items = [source[i] for i in range(len(source))]

  class ListSource:
    __len__ = lambda self: len(items)
    __getitem__ = lambda self, i: items[i]

  images2, labels2 = pipeline.read_split(ListSource())
  np.testing.assert_array_equal(images2, images)
  np.testing.assert_array_equal(labels2, labels)


def test_sources_must_give_uint8_images():
  with pytest.raises(ValueError, match="same length"):
    pipeline.ArraySource({"image": np.zeros((3, 32, 32, 3), np.uint8),
                          "label": np.zeros(2, np.int32)})
