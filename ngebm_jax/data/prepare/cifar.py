"""Offline import of CIFAR-10 / CIFAR-100 from the official archives into TFDS, without TensorFlow.

The NG-EBM recipe trains on CIFAR-10 and CIFAR-100 (docs/method.rst, "The training recipe"; the
data is Krizhevsky 2009). TFDS's own builders need TensorFlow to prepare them; the builders here
subclass them (`tfds.image_classification.Cifar10` / `Cifar100`, `skip_registration=True`) and
only replace where the examples come from: the official archive read with `tarfile`, images
PNG-encoded with Pillow. Name, version, features (`id`, `image`, `label`, and CIFAR-100's
`coarse_label`), label names, example ids (`train_00000`, ...) and example keys are TFDS's, so
the prepared dataset is the one TFDS writes, read by plain `tfds.data_source("cifar10", ...)`.

Both official versions are accepted, recognized by their top folder:

  cifar-10-python.tar.gz    cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}
                            pickled dicts: b"data" uint8 [n, 3072], b"labels" list of n ints
  cifar-10-binary.tar.gz    cifar-10-batches-bin/{data_batch_1..5.bin, test_batch.bin,
                            batches.meta.txt}; records of 1 label byte + 3072 pixel bytes
  cifar-100-python.tar.gz   cifar-100-python/{train, test, meta}; b"data", b"fine_labels",
                            b"coarse_labels"
  cifar-100-binary.tar.gz   cifar-100-binary/{train.bin, test.bin, coarse_label_names.txt,
                            fine_label_names.txt}; records of 2 label bytes (coarse, fine) + 3072

Pixels are stored channel-major (1024 red, 1024 green, 1024 blue, rows top to bottom) in both.
The python and binary versions hold the same images in the same order, so either gives the same
example ids. Pickles are read with an unpickler that only admits the numpy array and builtin
types a CIFAR batch contains (an archive from the internet is untrusted input).

Verification, before anything is written: every expected member is present; every batch has
3072 pixel columns and one label per row (binary: the file size is a whole number of records);
labels are in range (10 / 100 classes, 20 coarse); label-name lists have the class count.
`strict=True` also requires the official counts (10,000 per CIFAR-10 batch file; 50,000 train
and 10,000 test). Without it, small archives in the official format are accepted (tests), and
the split sizes TFDS records are the actual ones.
"""

from __future__ import annotations

import dataclasses
import io
import os
import pickle
import tarfile
import zlib

from absl import logging
import numpy as np
from tensorflow_datasets.image_classification import cifar as _tfds_cifar

from ngebm_jax.data.prepare import common
from ngebm_jax.data.prepare.common import ArchiveError

PIXELS = 3072  # 32 * 32 * 3
IMAGE_SHAPE = (32, 32, 3)


@dataclasses.dataclass(frozen=True)
class _Layout:
  folder: str                          # top folder inside the archive
  train: tuple[str, ...]               # member files of the train split, in order
  test: tuple[str, ...]
  meta: tuple[str, ...]                # label-name files
  per_file: int | None                 # official examples per train file (strict)


# label feature key -> (python batch key, number of classes); binary label bytes come in this
# order (CIFAR-100: coarse first, then fine, as TFDS's `label_keys`).
_LABELS = {
    "cifar10": {"label": (b"labels", 10)},
    "cifar100": {"coarse_label": (b"coarse_labels", 20), "label": (b"fine_labels", 100)},
}
_OFFICIAL_COUNTS = {"train": 50_000, "test": 10_000}
_LAYOUTS = {
    ("cifar10", "python"): _Layout(
        "cifar-10-batches-py", tuple(f"data_batch_{i}" for i in range(1, 6)), ("test_batch",),
        ("batches.meta",), 10_000),
    ("cifar10", "binary"): _Layout(
        "cifar-10-batches-bin", tuple(f"data_batch_{i}.bin" for i in range(1, 6)),
        ("test_batch.bin",), ("batches.meta.txt",), 10_000),
    ("cifar100", "python"): _Layout(
        "cifar-100-python", ("train",), ("test",), ("meta",), 50_000),
    ("cifar100", "binary"): _Layout(
        "cifar-100-binary", ("train.bin",), ("test.bin",),
        ("coarse_label_names.txt", "fine_label_names.txt"), 50_000),
}
# python meta key -> label feature key
_PY_META_KEYS = {
    "cifar10": {b"label_names": "label"},
    "cifar100": {b"coarse_label_names": "coarse_label", b"fine_label_names": "label"},
}
_BIN_META_FILES = {"batches.meta.txt": "label", "coarse_label_names.txt": "coarse_label",
                   "fine_label_names.txt": "label"}


@dataclasses.dataclass(frozen=True)
class CifarArchive:
  """The verified contents of an official CIFAR archive.

  Attributes:
    name: "cifar10" or "cifar100".
    version: "python" or "binary".
    splits: split -> {"image": uint8 [N, 32, 32, 3], "label": int64 [N] (and CIFAR-100's
      "coarse_label")}, in archive order.
    label_names: label feature key -> class names.
  """
  name: str
  version: str
  splits: dict[str, dict[str, np.ndarray]]
  label_names: dict[str, list[str]]


class _CifarUnpickler(pickle.Unpickler):
  """Unpickles CIFAR batches only: dicts, lists, bytes, ints and numpy arrays."""

  _ALLOWED = {
      ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
      ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
      ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
  }

  def find_class(self, module, name):
    if (module, name) not in self._ALLOWED:
      raise pickle.UnpicklingError(
          f"it refers to {module}.{name}, which a CIFAR batch never contains; refusing to "
          "unpickle it")
    if module.startswith("numpy.core.") and hasattr(np, "_core"):
      module = "numpy._core." + module[len("numpy.core."):]  # numpy 2 (no deprecation warning)
    return super().find_class(module, name)


def _unpickle(data: bytes, what: str) -> dict:
  try:
    obj = _CifarUnpickler(io.BytesIO(data), encoding="bytes").load()
  except Exception as e:  # pylint: disable=broad-except
    raise ArchiveError(f"{what} is not a readable CIFAR pickle ({type(e).__name__}: {e}); the "
                       "archive is corrupt or truncated, download it again.") from e
  if not isinstance(obj, dict):
    raise ArchiveError(f"{what} should hold a dict; found {type(obj).__name__}.")
  return obj


def _member_name(name: str) -> str:
  while name.startswith("./"):
    name = name[2:]
  return name


def _read_members(path: str, wanted: set[str]) -> tuple[set[str], dict[str, bytes]]:
  """One pass over the tar: returns its top folders and the bytes of the `wanted` members."""
  found, folders = {}, set()
  try:
    with tarfile.open(path, "r:*") as tar:
      for member in tar:
        member_name = _member_name(member.name)
        folders.add(member_name.split("/", 1)[0])
        if member_name in wanted and member.isfile():
          logging.info("Reading %s from %s", member_name, path)
          data = tar.extractfile(member).read()
          if len(data) != member.size:
            raise EOFError(f"member {member_name} ends early")
          found[member_name] = data
  except (tarfile.TarError, EOFError, OSError, zlib.error) as e:
    raise ArchiveError(f"{path}: cannot read the archive ({type(e).__name__}: {e}); it is corrupt "
                       "or truncated (or not a tar archive), download it again.") from e
  return folders, found


def _detect_version(path: str, name: str, folders: set[str]) -> str:
  """'python' or 'binary' from the archive's top folder."""
  for (other, version), layout in _LAYOUTS.items():
    if other == name and layout.folder in folders:
      return version
  for (other, _), layout in _LAYOUTS.items():
    if layout.folder in folders:
      raise ArchiveError(f"{path} is the {other} archive ({layout.folder}/), not {name}'s; use "
                         f"--dataset={other}, or pass {common.ARCHIVE_HINTS[name]}.")
  expected = [l.folder for (n, _), l in _LAYOUTS.items() if n == name]
  raise ArchiveError(f"{path}: not an official {name} archive: its top-level entries are "
                     f"{sorted(folders)[:5]}, expected one of the folders {expected} "
                     f"({common.ARCHIVE_HINTS[name]}).")


def _images_from_rows(rows: np.ndarray) -> np.ndarray:
  """uint8 [n, 3072] channel-major rows -> uint8 [n, 32, 32, 3]."""
  return np.ascontiguousarray(rows.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))


def _python_batch(data: bytes, name: str, what: str) -> dict[str, np.ndarray]:
  batch = _unpickle(data, what)
  if b"data" not in batch:
    raise ArchiveError(f"{what} has no b'data' entry; keys: {sorted(batch)}.")
  pixels = batch[b"data"]
  if not isinstance(pixels, np.ndarray) or pixels.dtype != np.uint8 or pixels.ndim != 2:
    raise ArchiveError(f"{what}: b'data' must be a uint8 array [n, {PIXELS}]; found "
                       f"{type(pixels).__name__} {getattr(pixels, 'dtype', '')} "
                       f"{getattr(pixels, 'shape', '')}.")
  if pixels.shape[1] != PIXELS:
    raise ArchiveError(f"{what}: b'data' has {pixels.shape[1]} columns per image, expected "
                       f"{PIXELS} (32x32x3).")
  out = {"image": _images_from_rows(pixels)}
  for key, (py_key, num_classes) in _LABELS[name].items():
    if py_key not in batch:
      raise ArchiveError(f"{what} has no {py_key!r} entry; keys: {sorted(batch)}.")
    try:
      labels = np.asarray(batch[py_key], dtype=np.int64)
    except (TypeError, ValueError) as e:
      raise ArchiveError(f"{what}: {py_key!r} is not a list of integers.") from e
    if labels.shape != (pixels.shape[0],):
      raise ArchiveError(f"{what}: {py_key!r} has {labels.size} labels for {pixels.shape[0]} "
                         "images; the batch is truncated or corrupt.")
    common.check_labels_in_range(labels, num_classes, what=f"{what} {py_key!r}")
    out[key] = labels
  return out


def _binary_batch(data: bytes, name: str, what: str) -> dict[str, np.ndarray]:
  label_keys = list(_LABELS[name])
  record = len(label_keys) + PIXELS
  if not data or len(data) % record:
    raise ArchiveError(f"{what}: size {len(data)} bytes is not a whole number of "
                       f"{record}-byte records ({len(label_keys)} label byte(s) + {PIXELS} "
                       "pixels); the file is truncated or corrupt.")
  records = np.frombuffer(data, dtype=np.uint8).reshape(-1, record)
  out = {"image": _images_from_rows(records[:, len(label_keys):])}
  for column, key in enumerate(label_keys):
    labels = records[:, column].astype(np.int64)
    common.check_labels_in_range(labels, _LABELS[name][key][1], what=f"{what} {key}")
    out[key] = labels
  return out


def _label_names(version: str, name: str, members: dict[str, bytes], layout: _Layout,
                 path: str) -> dict[str, list[str]]:
  names = {}
  if version == "python":
    what = f"{path}:{layout.folder}/{layout.meta[0]}"
    meta = _unpickle(members[f"{layout.folder}/{layout.meta[0]}"], what)
    for py_key, key in _PY_META_KEYS[name].items():
      if py_key not in meta:
        raise ArchiveError(f"{what} has no {py_key!r} entry; keys: {sorted(meta)}.")
      names[key] = [n.decode("utf-8") if isinstance(n, bytes) else str(n) for n in meta[py_key]]
  else:
    for file_name in layout.meta:
      text = members[f"{layout.folder}/{file_name}"].decode("utf-8", errors="replace")
      # TFDS's own parsing of these files (image_classification/cifar.py).
      names[_BIN_META_FILES[file_name]] = [n for n in text.split("\n") if n]
  for key, class_names in names.items():
    expected = _LABELS[name][key][1]
    if len(class_names) != expected:
      raise ArchiveError(f"{path}: {expected} {key} names expected in the label-name file, found "
                         f"{len(class_names)}.")
  return names


def read_archive(path: str | os.PathLike, name: str, *, strict: bool = False) -> CifarArchive:
  """Reads and verifies an official CIFAR archive (python or binary version).

  Args:
    path: the `.tar.gz` (or `.tar`) archive as downloaded.
    name: "cifar10" or "cifar100".
    strict: also require the official example counts.

  Returns:
    The verified contents, images uint8 [N, 32, 32, 3] in archive order.

  Raises:
    ArchiveError: with a sentence saying what is wrong.
  """
  path = os.fspath(path)
  if name not in _LABELS:
    raise ValueError(f"name must be 'cifar10' or 'cifar100'; got {name!r}.")
  wanted_by_version = {
      version: {f"{layout.folder}/{m}" for m in layout.train + layout.test + layout.meta}
      for (n, version), layout in _LAYOUTS.items() if n == name}
  folders, members = _read_members(path, set().union(*wanted_by_version.values()))
  version = _detect_version(path, name, folders)
  layout = _LAYOUTS[(name, version)]
  wanted = wanted_by_version[version]
  missing = sorted(wanted - set(members))
  if missing:
    raise ArchiveError(f"{path}: the {name} {version} archive lacks {missing}; it is truncated "
                       "or not the official file, download it again.")
  read_batch = _python_batch if version == "python" else _binary_batch
  splits = {}
  for split, files in (("train", layout.train), ("test", layout.test)):
    parts = []
    for file_name in files:
      what = f"{path}:{layout.folder}/{file_name}"
      part = read_batch(members.pop(f"{layout.folder}/{file_name}"), name, what)
      n = len(part["image"])
      if strict and split == "train" and n != layout.per_file:
        raise ArchiveError(f"{what}: {n} images, the official file has {layout.per_file} "
                           "(strict check; pass strict=False / --nostrict for small archives).")
      if n == 0:
        raise ArchiveError(f"{what} holds no images.")
      parts.append(part)
    splits[split] = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    n = len(splits[split]["image"])
    if strict and n != _OFFICIAL_COUNTS[split]:
      raise ArchiveError(f"{path}: {split} has {n} images, the official archive "
                         f"{_OFFICIAL_COUNTS[split]} (strict check; pass strict=False / "
                         "--nostrict for small archives).")
  label_names = _label_names(version, name, members, layout, path)
  logging.info("%s (%s version) verified: %s images.", path, version,
               {s: len(v["image"]) for s, v in splits.items()})
  return CifarArchive(name=name, version=version, splits=splits, label_names=label_names)


class _FromArchive:
  """Mixin: a TFDS CIFAR builder whose examples come from a verified `CifarArchive`."""

  def __init__(self, *, archive: CifarArchive, **kwargs):
    self._archive = archive
    super().__init__(**kwargs)

  def _split_generators(self, dl_manager):
    del dl_manager  # nothing to download
    for key, names in self._archive.label_names.items():
      self.info.features[key].names = names  # as TFDS does from the label-name files
    return {split: self._generate_archive_examples(split) for split in self._archive.splits}

  def _generate_archive_examples(self, split: str):
    arrays = self._archive.splits[split]
    label_keys = list(_LABELS[self._archive.name])
    for index in range(len(arrays["image"])):
      # Same keys and ids as TFDS's `Cifar10._generate_examples` (index within the split),
      # so TFDS's key-hash shuffling puts the records in the same order.
      record = {key: int(arrays[key][index]) for key in label_keys}
      record["id"] = f"{split}_{index:05d}"
      record["image"] = common.encode_png(arrays["image"][index])
      yield index, record


class Cifar10FromArchive(_FromArchive, _tfds_cifar.Cifar10, skip_registration=True):
  """TFDS's `cifar10` builder (3.0.2), fed from an official archive without TensorFlow."""
  name = "cifar10"


class Cifar100FromArchive(_FromArchive, _tfds_cifar.Cifar100, skip_registration=True):
  """TFDS's `cifar100` builder (3.0.2), fed from an official archive without TensorFlow."""
  name = "cifar100"


_BUILDERS = {"cifar10": Cifar10FromArchive, "cifar100": Cifar100FromArchive}


def prepare(name: str, archive: str | os.PathLike, data_dir: str | os.PathLike, *,
            strict: bool = False):
  """Prepares `cifar10` / `cifar100` in `data_dir` from an official archive (no TensorFlow).

  A dataset already prepared there is left as it is (delete its folder to import again).

  Returns:
    TFDS's plain builder for the prepared dataset.

  Raises:
    ArchiveError: the archive is missing, corrupt, truncated or not `name`'s.
  """
  if name not in _BUILDERS:
    raise ValueError(f"name must be 'cifar10' or 'cifar100'; got {name!r}.")
  data_dir = os.fspath(data_dir)
  existing = common.prepared_builder(name, data_dir)
  if existing is not None:
    return existing
  archive = os.fspath(archive)
  common.log_official_digest(archive)
  contents = read_archive(archive, name, strict=strict)
  builder = _BUILDERS[name](archive=contents, data_dir=data_dir, file_format="array_record")
  return common.write_dataset(builder)


__all__ = ["CifarArchive", "Cifar10FromArchive", "Cifar100FromArchive", "read_archive",
           "prepare"]
