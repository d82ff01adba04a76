"""Tests for the embedded procedural dataset and its OOD sets (ngebm_jax/data/procedural/embedded.py)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from ngebm_jax.data.procedural import embedded

SMALL = dict(num_train=300, num_validation=100, num_test=200)


@pytest.fixture(scope="module")
def small():
  return embedded.load(seed=0, **SMALL)


def test_constants():
  assert embedded.NUM_CLASSES == 10
  assert len(embedded.CLASS_NAMES) == embedded.NUM_CLASSES
  assert len(set(embedded.ALL_KINDS)) == len(embedded.ALL_KINDS)
  assert not set(embedded.NOVEL_KINDS) & set(embedded.CLASS_NAMES)
  assert embedded.IMAGE_SHAPE == (32, 32, 3)


def test_shapes_dtypes_and_ranges(small):
  assert set(small) == {"train", "validation", "test"}
  for split, n in zip(embedded.SPLITS, SMALL.values()):
    data = small[split]
    assert set(data) == {"image", "label", "mask"}
    assert data["image"].shape == (n, 32, 32, 3) and data["image"].dtype == np.uint8
    assert data["label"].shape == (n,) and data["label"].dtype == np.int32
    assert data["mask"].shape == (n, 32, 32) and data["mask"].dtype == np.uint8
    assert data["label"].min() >= 0 and data["label"].max() < embedded.NUM_CLASSES
    assert set(np.unique(data["mask"])) <= {0, 1}
    # Real images, not blank or saturated: a spread of values in every channel.
    assert data["image"].std(axis=(0, 1, 2)).min() > 20


def test_deterministic_for_a_seed(small):
  # Bypass the in-memory cache so the arrays really are generated twice.
  test_seed = np.random.SeedSequence(0).spawn(3)[2]  # the documented seed of the test split
  again = embedded.generate(SMALL["num_test"], seed=test_seed)
  for key in ("image", "label", "mask"):
    np.testing.assert_array_equal(again[key], small["test"][key])
  # The same SeedSequence object twice: the same images (its children are derived by index).
  np.testing.assert_array_equal(embedded.generate(50, seed=test_seed)["image"],
                                small["test"]["image"][:50])
  embedded._load_cached.cache_clear()  # pylint: disable=protected-access
  np.testing.assert_array_equal(embedded.load(seed=0, **SMALL)["train"]["image"],
                                small["train"]["image"])


def test_different_seeds_and_splits_differ(small):
  other = embedded.load(seed=1, **SMALL)
  assert np.mean(other["test"]["image"] != small["test"]["image"]) > 0.9
  assert np.mean(small["validation"]["image"] != small["test"]["image"][:100]) > 0.9


def test_split_independence():
  """Changing one split's size changes neither the other splits nor the split's prefix."""
  base = embedded.load(seed=3, num_train=120, num_validation=50, num_test=80)
  more = embedded.load(seed=3, num_train=330, num_validation=50, num_test=60)
  for key in ("image", "label", "mask"):
    np.testing.assert_array_equal(base["validation"][key], more["validation"][key])
    np.testing.assert_array_equal(base["train"][key], more["train"][key][:120])
    np.testing.assert_array_equal(base["test"][key][:60], more["test"][key])


def test_labels_balanced():
  data = embedded.generate(1000, seed=5)
  np.testing.assert_array_equal(np.bincount(data["label"], minlength=10), np.full(10, 100))
  # Blocks of 100 hold each class 10 times: two full blocks and half of a third give 20-30.
  part = embedded.generate(250, seed=5)
  counts = np.bincount(part["label"], minlength=10)
  assert counts.sum() == 250 and counts.min() >= 20 and counts.max() <= 30, counts


def test_masks_nonempty_and_on_the_object(small):
  data = small["train"]
  mask, image = data["mask"].astype(bool), data["image"].astype(np.float32)
  area = mask.sum(axis=(1, 2))
  assert area.min() >= 5, area.min()
  assert area.max() < 32 * 32 * 0.8
  # The object has its own colour: inside the mask the pixels are closer to the object's mean
  # colour than the pixels just outside, in almost every image.
  grown = mask.copy()
  for axis, shift in itertools.product((1, 2), (-2, -1, 1, 2)):
    grown |= np.roll(mask, shift, axis=axis)
  ring = grown & ~mask
  inside_mean = (image * mask[..., None]).sum((1, 2)) / area[:, None]
  dist = np.linalg.norm(image - inside_mean[:, None, None], axis=-1)
  inside = (dist * mask).sum((1, 2)) / area
  outside = (dist * ring).sum((1, 2)) / np.maximum(ring.sum((1, 2)), 1)
  assert np.mean(inside < outside) > 0.85, np.mean(inside < outside)
  # Textured classes aside, the mask is a single colour up to noise and shading.
  assert np.median(outside - inside) > 20


def test_masks_follow_the_shape():
  """Class-specific mask geometry: rings have holes, discs don't (before occlusion)."""
  data = embedded.generate(400, seed=11)
  fill = []
  for c in (embedded.CLASS_NAMES.index("disc"), embedded.CLASS_NAMES.index("ring")):
    m = data["mask"][data["label"] == c].astype(bool)
    rows, cols = m.any(2), m.any(1)
    # Fraction of the bounding box's central pixel that is object: 1 for discs, 0 for rings.
    centres = []
    for mi, r, col in zip(m, rows, cols):
      ys, xs = np.flatnonzero(r), np.flatnonzero(col)
      centres.append(mi[(ys[0] + ys[-1]) // 2, (xs[0] + xs[-1]) // 2])
    fill.append(np.mean(centres))
  assert fill[0] > 0.9 and fill[1] < 0.35, fill


def test_nuisances_change_only_the_nuisances():
  """Same seed, easy nuisances: same labels, same object geometry, cleaner images."""
  hard = embedded.generate(100, seed=2)
  easy = embedded.generate(100, seed=2, nuisances=embedded.Nuisances.easy())
  np.testing.assert_array_equal(hard["label"], easy["label"])
  # Without occluders, front distractors or noise, a plain object is one shaded colour: the
  # spread of the pixels inside its mask is small.
  image = easy["image"].astype(np.float32)
  mask = easy["mask"].astype(bool)
  plain = ~np.isin(easy["label"], [embedded.CLASS_NAMES.index("stripes"),
                                   embedded.CLASS_NAMES.index("checker")])
  spread = [image[i][mask[i]].std(axis=0).max() for i in np.flatnonzero(plain)]
  assert np.median(spread) < 25, np.median(spread)
  assert not np.array_equal(hard["image"], easy["image"])


def test_generate_validates_arguments():
  with pytest.raises(ValueError, match="num_examples"):
    embedded.generate(-1, seed=0)
  with pytest.raises(ValueError, match="kinds"):
    embedded.generate(3, seed=0, kinds=("disc", "blob"))
  with pytest.raises(ValueError, match="seed"):
    embedded.load(seed=-2, **SMALL)
  with pytest.raises(ValueError, match="num_train"):
    embedded.load(seed=0, num_train=2.5)
  assert embedded.generate(0, seed=0)["image"].shape == (0, 32, 32, 3)


def test_ood_sets(small):
  images = small["test"]["image"][:40]
  sets = embedded.ood_sets(images, seed=0)
  assert set(sets) == set(embedded.OOD_SET_NAMES)
  assert {"interp", "uniform", "constant", "digits", "shifted"} <= set(sets)
  for name, x in sets.items():
    assert x.shape == (40, 32, 32, 3) and x.dtype == np.uint8, name
  assert embedded.ood_sets(images, seed=0, num_examples=7)["digits"].shape == (7, 32, 32, 3)
  # Deterministic for a seed, different for another.
  again = embedded.ood_sets(images, seed=0)
  other = embedded.ood_sets(images, seed=1)
  for name in sets:
    np.testing.assert_array_equal(again[name], sets[name])
    assert np.any(other[name] != sets[name]), name
  # A subset is the same sets: each has its own seed, whatever else is generated.
  subset = embedded.ood_sets(images, seed=0, names=("shifted", "uniform"))
  assert list(subset) == ["shifted", "uniform"]
  for name, x in subset.items():
    np.testing.assert_array_equal(x, sets[name])
  assert embedded.ood_sets(images, seed=0, names=()) == {}
  # Constant images are constant; uniform noise covers the range.
  c = sets["constant"].reshape(40, -1, 3)
  assert np.all(c == c[:, :1])
  assert sets["uniform"].min() == 0 and sets["uniform"].max() == 255
  assert abs(sets["uniform"].mean() - 127.5) < 3
  # Digits: two colours (ink, paper) plus light noise, so far from uniform.
  assert sets["digits"].std(axis=(1, 2)).mean() > 10
  # Shifted: rendered like the training data but with novel kinds, so not a training image.
  assert not np.any(np.all(sets["shifted"][:, None] == images[None], axis=(2, 3, 4)))


def test_interp_is_the_average_of_two_distinct_images(small):
  images = small["test"]["image"][:30]
  interp = embedded.ood_sets(images, seed=4, num_examples=25)["interp"]
  wide = images.astype(np.int32)
  for x in interp:
    found = False
    for i, j in itertools.combinations(range(len(images)), 2):
      mean = np.rint((wide[i] + wide[j]) / 2)  # halves to even
      if np.array_equal(mean, x):
        found = True
        break
    assert found, "an interp image is not the average of two in-distribution images"


def test_ood_sets_validates_arguments(small):
  with pytest.raises(ValueError, match="uint8"):
    embedded.ood_sets(small["test"]["image"][:4].astype(np.float32), seed=0)
  with pytest.raises(ValueError, match="at least 2"):
    embedded.ood_sets(small["test"]["image"][:1], seed=0)
  with pytest.raises(ValueError, match="num_examples"):
    embedded.ood_sets(small["test"]["image"][:4], seed=0, num_examples=0)
  with pytest.raises(ValueError, match=r"\['svhn'\] do not exist"):
    embedded.ood_sets(small["test"]["image"][:4], seed=0, names=("digits", "svhn"))


def test_load_arrays_are_read_only(small):
  with pytest.raises(ValueError):
    small["train"]["image"][0, 0, 0, 0] = 1


def _inside_reference(kind: str, u: float, v: float, q0: float, q1: float) -> bool:
  """Point-in-shape by plain geometry, one point at a time (the slow, obvious definition)."""
  r = np.hypot(u, v)
  if kind == "disc":
    return r < 1
  if kind == "ring":
    return 1 - (0.3 + 0.45 * q0) < r < 1
  if kind == "square":
    return abs(u) < 0.85 and abs(v) < 0.85
  if kind == "triangle":  # side 2, centroid at the origin, apex up (towards -v)
    corners = [(0.0, -2 / np.sqrt(3)), (1.0, 1 / np.sqrt(3)), (-1.0, 1 / np.sqrt(3))]
    signs = []
    for (x0, y0), (x1, y1) in zip(corners, corners[1:] + corners[:1]):
      signs.append((x1 - x0) * (v - y0) - (y1 - y0) * (u - x0) > 0)
    return all(signs) or not any(signs)
  if kind == "cross":
    t = 0.2 + 0.18 * q0
    return (abs(u) < 1 and abs(v) < t) or (abs(u) < t and abs(v) < 1)
  if kind == "crescent":
    depth, bite = 0.08 + 0.62 * q0, 0.6 + 0.25 * q1
    return r < 1 and np.hypot(u - (1 + bite - depth), v) > bite
  if kind == "bars":
    half, gap = 0.2 + 0.12 * q0, 0.12 + 0.45 * q1
    return abs(u) < 1 and gap / 2 < abs(v) < gap / 2 + 2 * half
  raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["disc", "ring", "square", "triangle", "cross", "crescent",
                                  "bars"])
def test_shape_distances_match_plain_geometry(kind):
  rng = np.random.default_rng(0)
  n = 8
  params = rng.random((n, 4))
  u = rng.uniform(-1.3, 1.3, (n, 1, 60)).astype(np.float32)
  v = rng.uniform(-1.3, 1.3, (n, 1, 60)).astype(np.float32)
  px = np.full((n, 1, 1), 8.0, np.float32)
  distance, mix = embedded._kind_shape(kind, u, v, px, params)  # pylint: disable=protected-access
  assert mix is None
  for i in range(n):
    for j in range(60):
      d = distance[i, 0, j]
      if abs(d) < 1e-4:
        continue
      expected = _inside_reference(kind, float(u[i, 0, j]), float(v[i, 0, j]), *params[i, :2])
      assert (d < 0) == expected, (kind, i, j, d)
