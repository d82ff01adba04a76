"""Preparing the real datasets as TFDS datasets: online through TFDS, offline from archives.

The NG-EBM recipe trains on CIFAR-10 / CIFAR-100 and evaluates out-of-distribution detection on
SVHN, CIFAR and CelebA (docs/method.rst: the training recipe, the evaluation protocol). They
are read with `tfds.data_source` (random access, array_record, no TensorFlow), so they must be
*prepared* in a TFDS data_dir first. Two ways:

- `prepare_with_tfds(name, data_dir)`: TFDS's own `download_and_prepare` (needs internet, and
  TensorFlow, which TFDS's CIFAR and SVHN builders use to extract and encode).
- `prepare_from_archives(name, data_dir, archives)`: offline, without TensorFlow, from the
  official files a user downloads by hand (`cifar-10-python.tar.gz`, `cifar-10-binary.tar.gz`,
  CIFAR-100's two, SVHN's `train_32x32.mat` / `test_32x32.mat` / `extra_32x32.mat`, CelebA's
  `img_align_celeba.zip` and four lists). The builders subclass TFDS's own (`cifar.py`,
  `svhn.py`, `celeb_a.py`; shared helpers in `common.py`), so the name, version, features,
  label names, example ids and example keys are TFDS's: the result is the dataset TFDS would
  write, readable by plain `tfds.data_source(name, data_dir=...)`, record for record in the same
  order (TFDS orders the records by a hash of the example key, which is the same here).

The archive is read and verified completely (members, array shapes, label ranges, label names)
before anything is written, so a corrupt or truncated file fails with an `ArchiveError` that says
what is wrong and leaves the data_dir untouched. `experiments/prepare_data.py` is the command line.
"""

from __future__ import annotations

import importlib.util
import os
from typing import Sequence

from absl import logging

from ngebm_jax.data.prepare.common import ARCHIVE_DATASETS
from ngebm_jax.data.prepare.common import ARCHIVE_HINTS
from ngebm_jax.data.prepare.common import ArchiveError
from ngebm_jax.data.prepare.common import TFDS_DATASETS
from ngebm_jax.data.prepare.common import encode_png
from ngebm_jax.data.prepare.common import prepare_command
from ngebm_jax.data.prepare.common import split_counts


def prepare_from_archives(name: str, data_dir: str | os.PathLike,
                          archives: Sequence[str | os.PathLike], *, strict: bool = False):
  """Prepares TFDS dataset `name` in `data_dir` from official archive files, offline.

  Args:
    name: "cifar10", "cifar100", "svhn_cropped" or "celeb_a".
    data_dir: TFDS data directory; the dataset lands in `data_dir/name/version/`.
    archives: CIFAR: one path, the python or the binary archive. SVHN: paths of
      `train_32x32.mat`, `test_32x32.mat` and optionally `extra_32x32.mat` (the split is taken from
      the file name's prefix); each given file becomes a split. CelebA: the five official
      files (`celeb_a.FILES`).
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
    from ngebm_jax.data.prepare import cifar
    if len(archives) != 1:
      raise ArchiveError(f"{name}: give exactly one archive (the python or the binary version); "
                         f"got {len(archives)}: {archives}.")
    builder = cifar.prepare(name, archives[0], data_dir, strict=strict)
  elif name == "celeb_a":
    from ngebm_jax.data.prepare import celeb_a
    builder = celeb_a.prepare(archives, data_dir, strict=strict)
  else:
    from ngebm_jax.data.prepare import svhn
    builder = svhn.prepare(archives, data_dir, strict=strict)
  # pylint: enable=g-import-not-at-top
  logging.info("Prepared %s %s in %s: %s", name, builder.version, builder.data_dir,
               split_counts(builder))
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
               split_counts(builder))
  return builder


def prepare(name: str, data_dir: str | os.PathLike, archives: Sequence[str | os.PathLike] = (),
            *, strict: bool = True, manual_dir: str | os.PathLike | None = None):
  """Prepares `name` in `data_dir`: offline from `archives` when given, else through TFDS.

  What `python -m experiments.prepare_data` runs. Returns TFDS's builder of the result.

  Raises:
    ValueError: `manual_dir` (TFDS's path) together with `archives` (the offline path).
    ArchiveError, RuntimeError: see `prepare_from_archives`, `prepare_with_tfds`.
  """
  if archives:
    if manual_dir is not None:
      raise ValueError("--manual_dir is for the TFDS path; it cannot be combined with "
                       "--archive.")
    return prepare_from_archives(name, data_dir, archives, strict=strict)
  return prepare_with_tfds(name, data_dir, manual_dir=manual_dir)


__all__ = ["ARCHIVE_DATASETS", "TFDS_DATASETS", "ARCHIVE_HINTS", "ArchiveError",
           "prepare", "prepare_command", "prepare_from_archives", "prepare_with_tfds", "encode_png"]
