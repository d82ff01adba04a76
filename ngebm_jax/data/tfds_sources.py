"""Random-access sources over the real datasets (TFDS, array_record), for the NG-EBM recipe.

What the recipe needs (docs/method.rst, "The training recipe"):

- `recipe_splits(name, data_dir)`: CIFAR-10 / CIFAR-100 as train 45,000 / validation 5,000 (both
  from TFDS's `train`) / test 10,000; `num_train=N` keeps the first N training examples.
- `load_source`, `require_prepared`: a prepared split, or an error that says how to prepare it.
- `ImageLabelSource`: the view every source is exposed through; the OOD sets built on it are in
  `ngebm_jax.data.ood_data`.

Every source returned here is random access (`len(s)`, `s[i]`) and yields exactly
`{"image": uint8 [32, 32, 3], "label": int}`, the form the grain pipeline takes; OOD sets carry
`label = NO_LABEL` (-1). Sources pickle, so grain worker processes can use them.

Data must be prepared first (`experiments/prepare_data.py`). Nothing here downloads:
`require_prepared` checks `data_dir/name/version/dataset_info.json` through TFDS's builder
(no network, milliseconds) and raises `DatasetNotPreparedError` with the command that prepares
the data, instead of TFDS's download attempt, which hangs for minutes offline.

The 45,000 / 5,000 split is JEM's: its training script shuffles the training indices with
`np.random.seed(1234); np.random.shuffle(all_inds)` (a fixed seed) and takes the first
`n_valid = 5000` as validation. NG-EBM's training scripts, a fork of JEM's, seed numpy with the
run's seed instead (`np.random.seed(args.seed)`, `--seed` defaulting to 1234): their published
commands pass no `--seed`, so they split as JEM does, and a run with another seed validates on
other images. Here the split's seed is `config.dataset.split_seed` (default 1234, JEM's split
for every run seed; set it to the run's seed to split as NG-EBM's code would), and its size
`config.dataset.split_num_validation` (default 5,000, the recipe's). The indices are
positions in the official archive
order (torchvision's CIFAR reads `data_batch_1..5` in order). TFDS stores records in a different
(key-hashed) order but keeps the archive position in the `id` feature (`train_01234`), so the
validation set here is exactly JEM's: the examples whose archive index is among the first 5,000
of `np.random.RandomState(1234).permutation(50000)` (the same permutation as JEM's list shuffle).
It does not depend on TFDS's storage order, and is the same for a TFDS-prepared and an
archive-imported copy. Train and validation positions are returned in increasing storage order.
Reading the 50,000 ids takes about a second (only the `id` is parsed) and is cached per process.
"""

from __future__ import annotations

import functools
import os
import re
from typing import Any, Mapping, Sequence

from absl import logging
from etils import epath
import numpy as np

from ngebm_jax.data import prepare

NO_LABEL = -1  # label of OOD examples: they belong to no in-distribution class
IMAGE_SHAPE = (32, 32, 3)

# Recipe split (JEM's training code: np.random.seed(1234), n_valid=5000; NG-EBM's: the run's
# seed, 1234 by default). config.dataset.split_seed sets the seed.
RECIPE_NUM_VALIDATION = 5000
RECIPE_SPLIT_SEED = 1234


class DatasetNotPreparedError(FileNotFoundError):
  """A TFDS dataset is not prepared in the data_dir; the message says how to prepare it."""


def _versions_on_disk(dataset_dir: str) -> list[str]:
  directory = epath.Path(dataset_dir)  # a gs:// data_dir too
  if not directory.is_dir():
    return []
  return sorted(v.name for v in directory.iterdir()
                if re.fullmatch(r"\d+\.\d+\.\d+", v.name)
                and (v / "dataset_info.json").is_file())


def require_prepared(name: str, data_dir: str | os.PathLike | None = None):
  """Returns TFDS's builder for `name` if it is prepared in `data_dir`, else raises.

  Fast and offline: TFDS's builder only looks at `data_dir/name/version/dataset_info.json`.

  Args:
    name: TFDS name, e.g. "cifar10", "cifar100", "svhn_cropped", "celeb_a".
    data_dir: TFDS data directory; None means TFDS's default (`~/tensorflow_datasets` or
      `$TFDS_DATA_DIR`).

  Returns:
    The `tfds.core.DatasetBuilder` (its `info` has the splits, sizes and label names).

  Raises:
    DatasetNotPreparedError: not prepared there (or prepared as tfrecord, which random access
      cannot read); the message names the dataset, the folder and the command that prepares it.
  """
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  builder = tfds.builder(name, data_dir=None if data_dir is None else os.fspath(data_dir))
  version_dir = os.fspath(builder.data_dir)
  dataset_dir = os.path.dirname(version_dir)
  root = os.path.dirname(dataset_dir)
  if name in prepare.TFDS_DATASETS:
    how = f"Prepare it with:\n  {prepare.prepare_command(name, root)}"
    if name in prepare.ARCHIVE_DATASETS:
      how += (f"\nwith --archive=PATH to import it offline, without TensorFlow, from "
              f"{prepare.ARCHIVE_HINTS[name]}; without --archive TFDS downloads it (needs "
              "internet and TensorFlow).")
    else:
      how += ("\n(TFDS downloads it; needs internet and TensorFlow. Files downloaded by hand can "
              "be given with --manual_dir=FOLDER.)")
  else:
    how = (f"Prepare it with TFDS: tfds.builder({name!r}, data_dir={root!r}, "
           "file_format='array_record').download_and_prepare()")
  if not builder.is_prepared():
    others = _versions_on_disk(dataset_dir)
    found = (f" Versions found there: {others}; this TFDS expects {builder.version}."
             if others else "")
    raise DatasetNotPreparedError(
        f"Dataset {name!r} is not prepared in data_dir {root!r} (no "
        f"{os.path.join(version_dir, 'dataset_info.json')}).{found} {how}")
  file_format = getattr(builder.info.file_format, "value", builder.info.file_format)
  if file_format != "array_record":
    raise DatasetNotPreparedError(
        f"Dataset {name!r} in {version_dir} is stored as {file_format}; random access "
        f"(tfds.data_source) needs array_record. Prepare it again in another data_dir "
        f"(TFDS's `tfds convert_format` tool can also convert it). {how}")
  return builder


def load_source(name: str, split: str, data_dir: str | os.PathLike | None = None, *,
                decoders: Mapping[str, Any] | None = None, deserialize_method=None):
  """`tfds.data_source(name, split=split, data_dir=data_dir)`, never downloading.

  Returns TFDS's own random-access source: items are the full feature dicts (e.g. CIFAR-10:
  `{"id": bytes, "image": uint8 [32, 32, 3], "label": int64}`). Wrap it in `ImageLabelSource`
  for the pipeline. `decoders` and `deserialize_method` are passed to `tfds.data_source`.

  Raises:
    DatasetNotPreparedError: see `require_prepared`.
  """
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  require_prepared(name, data_dir)
  kwargs = {} if deserialize_method is None else {"deserialize_method": deserialize_method}
  return tfds.data_source(name, split=split,
                          data_dir=None if data_dir is None else os.fspath(data_dir),
                          download=False, decoders=decoders, **kwargs)


def center_crop_resize(image: np.ndarray, size: int = 32) -> np.ndarray:
  """uint8 [H, W, 3] -> uint8 [size, size, 3]: central square crop, antialiased bilinear resize."""
  h, w = image.shape[:2]
  if (h, w) == (size, size):
    return image
  from PIL import Image  # pylint: disable=g-import-not-at-top
  s = min(h, w)
  top, left = (h - s) // 2, (w - s) // 2
  square = Image.fromarray(np.asarray(image[top:top + s, left:left + s]))
  return np.asarray(square.resize((size, size), Image.BILINEAR), dtype=np.uint8)


class ImageLabelSource:
  """A view of a random-access source that yields `{"image": uint8 [32, 32, 3], "label": int}`.

  Args:
    source: random access, items are dicts with an "image" (and a label).
    indices: positions of `source` to expose, in order; None for all of them.
    label_key: the item key of the label; None gives every example `NO_LABEL`.
    resize_to: center-crop and resize images to this square size (CelebA); None keeps them.
  """

  def __init__(self, source, indices: Sequence[int] | np.ndarray | None = None, *,
               label_key: str | None = "label", resize_to: int | None = None):
    self._source = source
    self._indices = None if indices is None else np.asarray(indices, dtype=np.int64)
    if self._indices is not None and self._indices.ndim != 1:
      raise ValueError(f"indices must be one-dimensional; got shape {self._indices.shape}.")
    self._label_key = label_key
    self._resize_to = resize_to

  def __len__(self) -> int:
    return len(self._source) if self._indices is None else len(self._indices)

  @property
  def indices(self) -> np.ndarray:
    """int64 [len(self)]: the positions of the underlying source this view exposes."""
    return np.arange(len(self._source)) if self._indices is None else self._indices

  def _convert(self, item: Mapping[str, Any]) -> dict[str, Any]:
    image = np.asarray(item["image"])
    if self._resize_to is not None:
      image = center_crop_resize(image, self._resize_to)
    label = NO_LABEL if self._label_key is None else int(item[self._label_key])
    return {"image": image, "label": label}

  def _position(self, index: int) -> int:
    n = len(self)
    if not -n <= index < n:
      raise IndexError(f"index {index} out of range for a source of {n} examples.")
    index = int(index) % n
    return index if self._indices is None else int(self._indices[index])

  def __getitem__(self, index: int) -> dict[str, Any]:
    return self._convert(self._source[self._position(index)])

  def __getitems__(self, indices: Sequence[int]) -> list[dict[str, Any]]:
    positions = [self._position(i) for i in indices]
    if hasattr(self._source, "__getitems__"):
      items = self._source.__getitems__(positions)
    else:
      items = [self._source[p] for p in positions]
    return [self._convert(item) for item in items]

  def __repr__(self) -> str:
    return (f"ImageLabelSource({self._source!r}, {len(self)} examples, "
            f"label_key={self._label_key!r}, resize_to={self._resize_to})")


# --- the recipe's train / validation split ----------------------------------------------------


def recipe_split_indices(archive_index: np.ndarray, *,
                         num_validation: int = RECIPE_NUM_VALIDATION,
                         seed: int = RECIPE_SPLIT_SEED) -> dict[str, np.ndarray]:
  """JEM's train / validation split, in storage positions.

  Args:
    archive_index: int [N]: for each storage position, the example's index in the official
      archive order (a permutation of 0..N-1; TFDS's `id` feature `train_01234` -> 1234).
    num_validation: validation size (the recipe: 5,000).
    seed: the seed of numpy's shuffle (JEM's code: 1234; NG-EBM's: the run's `--seed`, 1234 by
      default; `config.dataset.split_seed`).

  Returns:
    {"train": int64 [N - num_validation], "validation": int64 [num_validation]}: storage
    positions, increasing. Validation holds the examples whose archive index is among the first
    `num_validation` entries of `np.random.RandomState(seed).permutation(N)`, which equals JEM's
    `np.random.seed(seed); np.random.shuffle(list(range(N)))`.
  """
  archive_index = np.asarray(archive_index)
  n = archive_index.shape[0] if archive_index.ndim == 1 else -1
  if n < 0 or not np.array_equal(np.sort(archive_index), np.arange(n)):
    raise ValueError("archive_index must be a permutation of 0..N-1 (one archive index per "
                     "stored example).")
  if isinstance(num_validation, bool) or not 0 < int(num_validation) < n:
    raise ValueError(f"num_validation must be in [1, {n - 1}] for a training set of {n} "
                     f"examples (config.dataset.split_num_validation); got {num_validation}.")
  permutation = np.random.RandomState(seed).permutation(n)
  in_validation = np.zeros(n, dtype=bool)
  in_validation[permutation[:int(num_validation)]] = True  # indexed by archive index
  stored_in_validation = in_validation[archive_index]       # indexed by storage position
  return {"train": np.flatnonzero(~stored_in_validation),
          "validation": np.flatnonzero(stored_in_validation)}


def _archive_index_from_ids(ids: Sequence[bytes | str], split: str) -> np.ndarray:
  out = np.empty(len(ids), dtype=np.int64)
  pattern = re.compile(rf"{split}_(\d+)")
  for position, example_id in enumerate(ids):
    text = example_id.decode() if isinstance(example_id, bytes) else str(example_id)
    match = pattern.fullmatch(text)
    if match is None:
      raise ValueError(f"unexpected example id {text!r} at position {position}; expected "
                       f"'{split}_<archive index>' as TFDS writes it.")
    out[position] = int(match.group(1))
  return out


def _read_ids(name: str, split: str, data_dir: str | None) -> list[bytes]:
  """The `id` feature of every stored example, in storage order.

  Parses only the `id` out of the serialized records (about 1 s for 50,000 examples, against
  8 s for TFDS's full per-example deserialization, which this falls back to).
  """
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  try:
    from tensorflow_datasets.proto import tf_example_pb2  # pylint: disable=g-import-not-at-top
  except ImportError:
    tf_example_pb2 = None
  chunk = 5000
  if tf_example_pb2 is not None:
    raw = load_source(name, split, data_dir,
                      deserialize_method=tfds.decode.DeserializeMethod.RAW_BYTES)
    ids = []
    for start in range(0, len(raw), chunk):
      for record in raw.__getitems__(list(range(start, min(start + chunk, len(raw))))):
        feature = tf_example_pb2.Example.FromString(record).features.feature["id"]
        ids.append(feature.bytes_list.value[0])
    return ids
  source = load_source(name, split, data_dir, decoders={"image": tfds.decode.SkipDecoding()})
  return [item["id"] for start in range(0, len(source), chunk)
          for item in source.__getitems__(list(range(start, min(start + chunk, len(source)))))]


@functools.lru_cache(maxsize=8)
def _cached_archive_index(name: str, data_dir: str | None, split: str, stamp: int) -> np.ndarray:
  del stamp  # part of the cache key only: a re-prepared dataset is read again
  archive_index = _archive_index_from_ids(_read_ids(name, split, data_dir), split)
  archive_index.setflags(write=False)
  return archive_index


def archive_index(name: str, split: str, data_dir: str | os.PathLike | None = None
                  ) -> np.ndarray:
  """int64 [N]: the official-archive index of each stored example of `split` (from its `id`)."""
  builder = require_prepared(name, data_dir)
  if "id" not in builder.info.features:
    raise ValueError(f"{name} {builder.version} has no 'id' feature; the recipe split needs it.")
  info = epath.Path(builder.data_dir) / "dataset_info.json"
  # Nanoseconds where the storage has them (a dataset prepared again within a second).
  stamp = info.stat().mtime if "://" in os.fspath(info) else os.stat(info).st_mtime_ns
  return _cached_archive_index(name, None if data_dir is None else os.fspath(data_dir), split,
                               stamp)


def recipe_splits(name: str, data_dir: str | os.PathLike | None = None, *,
                  num_validation: int = RECIPE_NUM_VALIDATION, seed: int = RECIPE_SPLIT_SEED,
                  num_train: int | None = None) -> dict[str, ImageLabelSource]:
  """The recipe's splits: {"train", "validation"} from TFDS's train split, and "test".

  CIFAR-10 / CIFAR-100: 45,000 / 5,000 / 10,000 (the split is JEM's; see the module docstring).
  Works for any dataset with TFDS-style ids (e.g. svhn_cropped, as JEM did for SVHN).
  `num_train` keeps the first that many training examples (in storage order, which TFDS has
  shuffled by key hash, so classes are mixed), for CPU-sized studies and data-efficiency
  experiments; validation and test are unchanged.

  Raises:
    DatasetNotPreparedError: see `require_prepared`.
  """
  index = archive_index(name, "train", data_dir)
  positions = recipe_split_indices(index, num_validation=num_validation, seed=seed)
  train = load_source(name, "train", data_dir)
  test = load_source(name, "test", data_dir)
  train_positions = positions["train"]
  if num_train is not None:
    if isinstance(num_train, bool) or not 1 <= int(num_train) <= len(train_positions):
      raise ValueError(f"num_train must be in [1, {len(train_positions)}] for {name}; got "
                       f"{num_train} (-1 in config.dataset.num_train means all).")
    if int(num_train) < len(train_positions):
      logging.warning("Training on the first %d of the %d training examples of %s "
                      "(config.dataset.num_train).", num_train, len(train_positions), name)
    train_positions = train_positions[:int(num_train)]
  return {"train": ImageLabelSource(train, train_positions),
          "validation": ImageLabelSource(train, positions["validation"]),
          "test": ImageLabelSource(test)}


def num_classes(name: str, data_dir: str | os.PathLike | None = None) -> int:
  """Number of classes of the prepared dataset's "label" feature."""
  return int(require_prepared(name, data_dir).info.features["label"].num_classes)


__all__ = ["NO_LABEL", "RECIPE_NUM_VALIDATION", "RECIPE_SPLIT_SEED", "DatasetNotPreparedError",
           "ImageLabelSource", "require_prepared", "load_source", "recipe_split_indices",
           "archive_index", "recipe_splits", "num_classes", "center_crop_resize"]
