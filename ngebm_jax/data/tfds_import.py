"""Preparing the real datasets as TFDS datasets: online through TFDS, offline from archives.

The NG-EBM recipe trains on CIFAR-10 / CIFAR-100 and evaluates out-of-distribution detection on
SVHN, CIFAR and CelebA (NGEBM.md, "Reference training recipe" and "Evaluation protocol"). They
are read with `tfds.data_source` (random access, array_record, no TensorFlow), so they must be
*prepared* in a TFDS data_dir first. Two ways:

- `prepare_with_tfds(name, data_dir)`: TFDS's own `download_and_prepare` (needs internet, and
  TensorFlow, which TFDS's CIFAR and SVHN builders use to extract and encode).
- `prepare_from_archives(name, data_dir, archives)`: offline, without TensorFlow, from the
  official files a user downloads by hand (`cifar-10-python.tar.gz`, `cifar-10-binary.tar.gz`,
  CIFAR-100's two, SVHN's `train_32x32.mat` / `test_32x32.mat` / `extra_32x32.mat`). The
  builders subclass TFDS's own (`cifar_import`, `svhn_import`), so the name, version, features,
  label names, example ids and example keys are TFDS's: the result is the dataset TFDS would
  write, readable by plain `tfds.data_source(name, data_dir=...)`, record for record in the same
  order (TFDS orders the records by a hash of the example key, which is the same here).

The archive is read and verified completely (members, array shapes, label ranges, label names)
before anything is written, so a corrupt or truncated file fails with an `ArchiveError` that says
what is wrong and leaves the data_dir untouched. `experiments/prepare_data.py` is the command line.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import os
import tempfile
from typing import Sequence

from absl import logging
import numpy as np

# Datasets this module can prepare offline from an archive; `celeb_a` only through TFDS.
ARCHIVE_DATASETS = ("cifar10", "cifar100", "svhn_cropped")
TFDS_DATASETS = ARCHIVE_DATASETS + ("celeb_a",)

# What to download by hand for the offline path (printed in error messages).
ARCHIVE_HINTS = {
    "cifar10": ("cifar-10-python.tar.gz or cifar-10-binary.tar.gz from "
                "https://www.cs.toronto.edu/~kriz/cifar.html"),
    "cifar100": ("cifar-100-python.tar.gz or cifar-100-binary.tar.gz from "
                 "https://www.cs.toronto.edu/~kriz/cifar.html"),
    "svhn_cropped": ("train_32x32.mat and test_32x32.mat (extra_32x32.mat optional) from "
                     "http://ufldl.stanford.edu/housenumbers/; pass --archive once per file"),
}

# Digests of the official files (TFDS's url_checksums for the binary CIFAR archives, the
# md5s torchvision verifies for the others). Only logged: the structural checks decide.
_OFFICIAL_DIGESTS = {
    "cifar-10-python.tar.gz": ("md5", "c58f30108f718f92721af3b95e74349a"),
    "cifar-100-python.tar.gz": ("md5", "eb9058c3a382ffc7106e4002c42a8d85"),
    "cifar-10-binary.tar.gz": (
        "sha256", "c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd"),
    "cifar-100-binary.tar.gz": (
        "sha256", "58a81ae192c23a4be8b1804d68e518ed807d710a4eb253b1f2a199162a40d8ec"),
    "train_32x32.mat": ("md5", "e26dedcc434d2e4c54c9b2d4a06d8373"),
    "test_32x32.mat": ("md5", "eb5a983be6a315427106f1b164d9cef3"),
    "extra_32x32.mat": ("md5", "a93ce644f1a588dc4d68dda5feec44a7"),
}


class ArchiveError(ValueError):
  """An archive is missing, corrupt, truncated, or not the expected official file."""


def prepare_command(name: str, data_dir: str | os.PathLike | None = None) -> str:
  """The command line that prepares dataset `name` (shown in error messages)."""
  cmd = f"python -m experiments.prepare_data --dataset={name} --data_dir={data_dir or 'DIR'}"
  if name in ARCHIVE_DATASETS:
    cmd += " [--archive=PATH]"
  return cmd


def encode_png(image: np.ndarray) -> bytes:
  """uint8 [H, W, 3] -> PNG bytes (lossless), with Pillow instead of TensorFlow."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  buffer = io.BytesIO()
  Image.fromarray(image).save(buffer, format="PNG")
  return buffer.getvalue()


def log_official_digest(path: str | os.PathLike) -> bool | None:
  """Logs whether `path` has the digest of the official file of the same name.

  Returns True / False, or None when the file name is not one of the official names.
  """
  known = _OFFICIAL_DIGESTS.get(os.path.basename(os.fspath(path)))
  if known is None:
    return None
  algorithm, expected = known
  digest = hashlib.new(algorithm)
  with open(path, "rb") as f:
    for chunk in iter(lambda: f.read(1 << 22), b""):
      digest.update(chunk)
  matches = digest.hexdigest() == expected
  if matches:
    logging.info("%s: %s matches the official file.", path, algorithm)
  else:
    logging.warning("%s: %s %s differs from the official file's %s; continuing, the structure "
                    "checks decide.", path, algorithm, digest.hexdigest(), expected)
  return matches


def check_labels_in_range(labels: np.ndarray, num_classes: int, *, what: str) -> None:
  """Raises ArchiveError unless `labels` are integers in [0, num_classes)."""
  if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
    raise ArchiveError(f"{what}: labels must be in [0, {num_classes}); found values from "
                       f"{labels.min()} to {labels.max()}.")


def prepared_builder(name: str, data_dir: str | os.PathLike):
  """TFDS's own builder for `name` in `data_dir` if the dataset is prepared there, else None."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  builder = tfds.builder(name, data_dir=os.fspath(data_dir))
  return builder if builder.is_prepared() else None


def write_dataset(builder):
  """Runs an archive builder's download_and_prepare; returns TFDS's plain builder for the result.

  The download directory is a temporary one (nothing is downloaded), so the data_dir holds only
  the dataset afterwards. TFDS writes into a temporary folder and renames it at the end, so an
  interrupted run leaves no half-written dataset behind.
  """
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  with tempfile.TemporaryDirectory(prefix="ngebm_tfds_download_") as download_dir:
    builder.download_and_prepare(download_dir=download_dir)
  root = os.path.dirname(os.path.dirname(os.fspath(builder.data_dir)))
  plain = tfds.builder(builder.name, data_dir=root)
  if not plain.is_prepared():
    raise RuntimeError(f"{builder.name} was written to {builder.data_dir} but TFDS does not see "
                       "it as prepared there.")
  return plain


def _split_counts(builder) -> dict[str, int]:
  return {name: split.num_examples for name, split in builder.info.splits.items()}


def prepare_from_archives(name: str, data_dir: str | os.PathLike,
                          archives: Sequence[str | os.PathLike], *, strict: bool = False):
  """Prepares TFDS dataset `name` in `data_dir` from official archive files, offline.

  Args:
    name: "cifar10", "cifar100" or "svhn_cropped".
    data_dir: TFDS data directory; the dataset lands in `data_dir/name/version/`.
    archives: CIFAR: one path, the python or the binary archive. SVHN: paths of
      `train_32x32.mat`, `test_32x32.mat` and optionally `extra_32x32.mat` (the split is taken from
      the file name's prefix); each given file becomes a split.
    strict: also require the official example counts (CIFAR: 10,000 per batch file, 50,000 /
      10,000; SVHN: 73,257 / 26,032 / 531,131, and both train and test). Off, the checks are
      consistency checks only (rows match labels, 3,072 pixels, labels in range), so small
      archives in the official format (tests) are accepted.

  Returns:
    The prepared `tfds.core.DatasetBuilder` (TFDS's name, version and features).

  Raises:
    ArchiveError: a file is missing, corrupt, truncated, or not the expected dataset.
    ValueError: `name` has no offline import.
  """
  if name not in ARCHIVE_DATASETS:
    raise ValueError(f"no offline import for dataset {name!r}; supported: {ARCHIVE_DATASETS}. "
                     f"Prepare it with TFDS instead: {prepare_command(name, data_dir)} "
                     "(without --archive).")
  archives = [os.fspath(a) for a in archives]
  if not archives:
    raise ArchiveError(f"{name}: no archive given; expected {ARCHIVE_HINTS[name]}.")
  for path in archives:
    if not os.path.isfile(path):
      raise ArchiveError(f"{name}: archive {path!r} does not exist or is not a file; expected "
                         f"{ARCHIVE_HINTS[name]}.")
  # pylint: disable=g-import-not-at-top
  if name in ("cifar10", "cifar100"):
    from ngebm_jax.data import cifar_import
    if len(archives) != 1:
      raise ArchiveError(f"{name}: give exactly one archive (the python or the binary version); "
                         f"got {len(archives)}: {archives}.")
    builder = cifar_import.prepare(name, archives[0], data_dir, strict=strict)
  else:
    from ngebm_jax.data import svhn_import
    builder = svhn_import.prepare(archives, data_dir, strict=strict)
  # pylint: enable=g-import-not-at-top
  logging.info("Prepared %s %s in %s: %s", name, builder.version, builder.data_dir,
               _split_counts(builder))
  return builder


def tensorflow_available() -> bool:
  return importlib.util.find_spec("tensorflow") is not None


def prepare_with_tfds(name: str, data_dir: str | os.PathLike, *,
                      manual_dir: str | os.PathLike | None = None):
  """TFDS's own download_and_prepare, written as array_record (what `tfds.data_source` reads).

  Needs internet (or `manual_dir` for datasets that take a manual download) and TensorFlow.

  Raises:
    RuntimeError: TensorFlow is not installed (with the offline alternative in the message).
  """
  if not tensorflow_available():
    offline = ""
    if name in ARCHIVE_DATASETS:
      offline = (f" Or prepare it offline without TensorFlow from the official archive "
                 f"({ARCHIVE_HINTS[name]}): python -m experiments.prepare_data --dataset={name} "
                 f"--data_dir={data_dir} --archive=PATH")
    raise RuntimeError(
        f"TFDS's own builder for {name!r} needs TensorFlow to download and prepare, and it is "
        f"not installed. Install it (pip install tensorflow-cpu) and rerun.{offline}")
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  builder = tfds.builder(name, data_dir=os.fspath(data_dir), file_format="array_record")
  config = tfds.download.DownloadConfig(
      manual_dir=os.fspath(manual_dir) if manual_dir is not None else None)
  builder.download_and_prepare(download_config=config)
  logging.info("Prepared %s %s in %s: %s", name, builder.version, builder.data_dir,
               _split_counts(builder))
  return builder


__all__ = ["ARCHIVE_DATASETS", "TFDS_DATASETS", "ARCHIVE_HINTS", "ArchiveError",
           "prepare_command", "prepare_from_archives", "prepare_with_tfds", "encode_png"]
