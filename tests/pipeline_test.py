"""The grain input pipeline: augmentation, determinism, resumption, process sharding."""

import numpy as np
import pytest

from ngebm_jax.data import pipeline


def _source(n=64, with_map=False):
  rng = np.random.default_rng(0)
  arrays = {"image": rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8),
            "label": np.arange(n, dtype=np.int32) % 10}
  if with_map:
    arrays["human_map"] = rng.random((n, 32, 32)).astype(np.float32)
  return pipeline.ArraySource(arrays)


def _loop_reference(image, dy, dx, flip, pad=4):
  padded = np.pad(image, ((pad, pad), (pad, pad), (0, 0)), mode="reflect")
  crop = padded[dy:dy + 32, dx:dx + 32]
  return crop[:, ::-1] if flip else crop


def test_augmentation_matches_a_per_example_loop():
  images = _source(8).arrays["image"]
  out = pipeline.augment_batch(images, np.random.default_rng(3))
  rng = np.random.default_rng(3)
  dy, dx = rng.integers(0, 9, 8), rng.integers(0, 9, 8)
  flips = rng.random(8) < 0.5
  for i in range(8):
    np.testing.assert_array_equal(out[i], _loop_reference(images[i], dy[i], dx[i], flips[i]))


def test_human_maps_move_with_their_images():
  source = _source(16, with_map=True)
  images = source.arrays["image"].copy()
  images[..., 0] = (source.arrays["human_map"] * 255).astype(np.uint8)
  maps = (images[..., 0].astype(np.float32),)
  out, (out_map,) = pipeline.augment_batch(images, np.random.default_rng(1), maps=maps)
  np.testing.assert_array_equal(out[..., 0].astype(np.float32), out_map)


def test_train_stream_is_deterministic_and_resumes():
  options = pipeline.PipelineOptions(batch_size=8, seed=5)
  a = iter(pipeline.train_dataset(_source(), options))
  first = [next(a) for _ in range(3)]
  state = a.get_state()
  fourth = next(a)
  b = iter(pipeline.train_dataset(_source(), options))
  b.set_state(state)
  np.testing.assert_array_equal(next(b)["image"], fourth["image"])
  again = iter(pipeline.train_dataset(_source(), options))
  np.testing.assert_array_equal(next(again)["image"], first[0]["image"])
  assert first[0]["image"].dtype == np.float32 and first[0]["image"].shape == (8, 32, 32, 3)
  assert np.abs(first[0]["image"]).max() < 1.5  # [-1, 1] plus 0.03 noise


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
