"""Tests of the procedural authentic-vs-generated task, ngebm_jax/data/procedural/focus_task.py."""

from __future__ import annotations

import numpy as np
import pytest

from ngebm_jax.data.procedural import focus_task as ft


@pytest.fixture(scope="module")
def every_kind():
  # 7 kinds x 8 generated images each, with the clean renderings.
  return ft.generate(112, kinds=ft.KINDS, seed=3, include_clean=True)


def test_generator_is_deterministic_for_a_seed():
  a = ft.generate(20, kinds=ft.DEFAULT_TRAIN_KINDS, seed=7)
  b = ft.generate(20, kinds=ft.DEFAULT_TRAIN_KINDS, seed=7)
  c = ft.generate(20, kinds=ft.DEFAULT_TRAIN_KINDS, seed=8)
  assert a.keys() == b.keys()
  for key in a:
    np.testing.assert_array_equal(a[key], b[key])
  assert not np.array_equal(a["image"], c["image"])


def test_fields_shapes_and_ranges(every_kind):
  d = every_kind
  n = 112
  assert d["image"].shape == (n, 32, 32, 3) and d["image"].dtype == np.uint8
  assert d["label"].shape == (n,) and d["label"].dtype == np.int32
  assert d["kind"].dtype == np.int32
  for key in ("artifact_mask", "object_mask"):
    assert d[key].shape == (n, 32, 32) and d[key].dtype == np.uint8
    assert set(np.unique(d[key])) <= {0, 1}
  h = d["human_map"]
  assert h.shape == (n, 32, 32) and h.dtype == np.float32
  assert h.min() >= 0.0 and np.allclose(h.max(axis=(1, 2)), 1.0)


def test_labels_and_kinds_are_balanced(every_kind):
  d = every_kind
  assert d["label"].sum() == 56
  np.testing.assert_array_equal(d["kind"] == ft.AUTHENTIC_KIND, d["label"] == 0)
  np.testing.assert_array_equal(np.bincount(d["kind"][d["label"] == 1]), [8] * len(ft.KINDS))
  odd = ft.generate(9, kinds=("noise", "blur"), seed=0)
  assert odd["label"].sum() == 4


def test_artifact_masks_cover_the_artifacts(every_kind):
  d = every_kind
  image, clean = d["image"].astype(int), d["clean_image"].astype(int)
  outside = d["artifact_mask"] == 0
  # Outside the mask every pixel is the authentic rendering, bit for bit.
  np.testing.assert_array_equal(np.where(outside[..., None], image, 0),
                                np.where(outside[..., None], clean, 0))
  authentic = d["label"] == 0
  assert not d["artifact_mask"][authentic].any()
  np.testing.assert_array_equal(image[authentic], clean[authentic])
  # Inside it, every generated image is changed, by every kind.
  changed = np.abs(image - clean).max(axis=-1) > 0
  for i in np.flatnonzero(~authentic):
    assert d["artifact_mask"][i].sum() >= 64
    assert changed[i][d["artifact_mask"][i] == 1].any(), ft.KINDS[d["kind"][i]]


def test_human_maps_mark_the_artifact_or_the_object(every_kind):
  d = every_kind
  for i in range(len(d["label"])):
    region = d["artifact_mask"][i] if d["label"][i] == 1 else d["object_mask"][i]
    h = d["human_map"][i]
    assert h[region == 1].mean() > 2 * h[region == 0].mean() + 0.1


def test_open_set_kinds_never_appear_in_training_splits():
  ds = ft.load(seed=1, num_train=40, num_validation=10, num_test=20, num_open_set_test=30)
  assert set(ds) == set(ft.SPLITS)
  train_ids = {ft.KINDS.index(k) for k in ft.DEFAULT_TRAIN_KINDS}
  open_ids = {ft.KINDS.index(k) for k in ft.DEFAULT_OPEN_SET_KINDS}
  for split in ("train", "validation", "test"):
    kinds = set(ds[split]["kind"][ds[split]["label"] == 1])
    assert kinds <= train_ids and not kinds & open_ids
  assert set(ds["open_set_test"]["kind"][ds["open_set_test"]["label"] == 1]) == open_ids
  # Each split has its own stream: the size of one does not change another.
  other = ft.load(seed=1, num_train=60, num_validation=10, num_test=20, num_open_set_test=30)
  np.testing.assert_array_equal(ds["test"]["image"], other["test"]["image"])
  # Cached: the same call returns the same (read-only) arrays in a fresh dict.
  again = ft.load(seed=1, num_train=40, num_validation=10, num_test=20, num_open_set_test=30)
  assert again["train"]["image"] is ds["train"]["image"] and again["train"] is not ds["train"]
  assert not again["train"]["image"].flags.writeable


def test_bad_arguments_raise():
  with pytest.raises(ValueError, match="unseen"):
    ft.load(train_kinds=("noise", "blur"), open_set_kinds=("blur",), num_train=2)
  with pytest.raises(ValueError, match="unknown"):
    ft.generate(4, kinds=("moire",), seed=0)
  with pytest.raises(ValueError, match="string"):
    ft.generate(4, kinds="noise", seed=0)
  with pytest.raises(ValueError, match="empty"):
    ft.generate(4, kinds=(), seed=0)
  with pytest.raises(ValueError, match="num_examples"):
    ft.generate(-1, kinds=("noise",), seed=0)
  with pytest.raises(ValueError, match="strength"):
    ft.generate(4, kinds=("noise",), seed=0, strength=0.0)
