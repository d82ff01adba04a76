"""Offline import of SVHN (cropped digits) from the official .mat files into TFDS, no TensorFlow.

SVHN is an out-of-distribution set of the NG-EBM / JEM evaluation (docs/method.rst, "The evaluation
protocol"; JEM Table 3). The builder subclasses TFDS's own `svhn_cropped` builder (3.1.0,
`skip_registration=True`) and replaces only where the examples come from: the official
`train_32x32.mat` / `test_32x32.mat` / `extra_32x32.mat` read with `scipy.io.loadmat`, images
PNG-encoded with Pillow. As in TFDS: `X` is uint8 [32, 32, 3, N] (images on the last axis), `y`
holds the digits 1..10 with 10 meaning the digit 0, stored as label `y % 10`; ids are
`train_000000`, ...; keys are the index within the file. Each file given becomes one split (its
name's prefix says which), so a copy prepared from `test_32x32.mat` alone is enough for the OOD
evaluation; the extra split (531,131 images, 1.3 GB) is optional.

Verification, before anything is written: the file is a readable MATLAB file with `X` uint8
[32, 32, 3, N] and `y` with N integer labels in 1..10. `strict=True` also requires the official
counts (train 73,257, test 26,032, extra 531,131) and both train and test.
"""

from __future__ import annotations

import os
from typing import Sequence

from absl import logging
import numpy as np
import tensorflow_datasets as tfds

from ngebm_jax.data.prepare import common
from ngebm_jax.data.prepare.common import ArchiveError

OFFICIAL_COUNTS = {"train": 73_257, "test": 26_032, "extra": 531_131}


def split_of(path: str | os.PathLike) -> str:
  """'train', 'test' or 'extra' from an official SVHN file name (`train_32x32.mat`, ...)."""
  base = os.path.basename(os.fspath(path)).lower()
  for split in OFFICIAL_COUNTS:
    if base.startswith(split):
      return split
  raise ArchiveError(f"{path}: cannot tell the SVHN split from the file name; expected "
                     "train_32x32.mat, test_32x32.mat or extra_32x32.mat.")


def read_mat(path: str | os.PathLike, *, strict: bool = False) -> dict[str, np.ndarray]:
  """Reads and verifies one official SVHN .mat file.

  Returns:
    {"image": uint8 [N, 32, 32, 3], "label": int64 [N] digits 0..9} in file order.

  Raises:
    ArchiveError: with a sentence saying what is wrong.
  """
  import scipy.io  # pylint: disable=g-import-not-at-top
  path = os.fspath(path)
  logging.info("Reading %s", path)
  try:
    data = scipy.io.loadmat(path)
  except Exception as e:  # pylint: disable=broad-except
    raise ArchiveError(f"{path}: not a readable MATLAB file ({type(e).__name__}: {e}); it is "
                       "corrupt or truncated, download it again.") from e
  for key in ("X", "y"):
    if key not in data:
      raise ArchiveError(f"{path} has no {key!r} array; found "
                         f"{sorted(k for k in data if not k.startswith('__'))}.")
  x, y = data["X"], data["y"]
  if x.dtype != np.uint8 or x.ndim != 4 or x.shape[:3] != (32, 32, 3):
    raise ArchiveError(f"{path}: 'X' must be uint8 [32, 32, 3, N]; found {x.dtype} {x.shape}.")
  n = x.shape[3]
  y = np.asarray(y).reshape(-1)
  if y.size != n:
    raise ArchiveError(f"{path}: 'y' has {y.size} labels for {n} images; the file is truncated "
                       "or corrupt.")
  if n == 0:
    raise ArchiveError(f"{path} holds no images.")
  if not np.issubdtype(y.dtype, np.number) or np.any(y != np.round(y)):
    raise ArchiveError(f"{path}: 'y' must hold integer digits 1..10; found dtype {y.dtype}.")
  y = y.astype(np.int64)
  if y.min() < 1 or y.max() > 10:
    raise ArchiveError(f"{path}: 'y' must hold digits 1..10 (10 = digit 0); found values from "
                       f"{y.min()} to {y.max()}.")
  split = split_of(path)
  if strict and n != OFFICIAL_COUNTS[split]:
    raise ArchiveError(f"{path}: {n} images, the official file has {OFFICIAL_COUNTS[split]} "
                       "(strict check; pass strict=False / --nostrict for small files).")
  # TFDS: np.rollaxis(X, -1) and label % 10 (the digit 0 is stored as 10).
  return {"image": np.ascontiguousarray(np.rollaxis(x, -1)), "label": y % 10}


_SvhnBase = tfds.builder_cls("svhn_cropped")


class SvhnCroppedFromMat(_SvhnBase, skip_registration=True):
  """TFDS's `svhn_cropped` builder (3.1.0), fed from the official .mat files without TF."""
  name = "svhn_cropped"
  # TFDS reads the description and citation from the builder's package folder; use TFDS's.
  pkg_dir_path = _SvhnBase._get_pkg_dir_path()  # pylint: disable=protected-access

  def __init__(self, *, splits: dict[str, dict[str, np.ndarray]], **kwargs):
    self._arrays = splits
    super().__init__(**kwargs)

  def _split_generators(self, dl_manager):
    del dl_manager  # nothing to download
    return {split: self._generate_mat_examples(split) for split in self._arrays}

  def _generate_mat_examples(self, split: str):
    arrays = self._arrays[split]
    for i in range(len(arrays["image"])):
      # Same keys and ids as TFDS's `_generate_examples`.
      yield i, {"image": common.encode_png(arrays["image"][i]),
                "label": int(arrays["label"][i]),
                "id": f"{split}_{i:06d}"}


def prepare(paths: Sequence[str | os.PathLike], data_dir: str | os.PathLike, *,
            strict: bool = False):
  """Prepares `svhn_cropped` in `data_dir` from official .mat files (no TensorFlow).

  Args:
    paths: any of `train_32x32.mat`, `test_32x32.mat`, `extra_32x32.mat`; each is one split.
    data_dir: TFDS data directory.
    strict: official counts, and both train and test required.

  Returns:
    TFDS's plain builder for the prepared dataset. A dataset already prepared there is left as it
    is (delete its folder to import again).
  """
  data_dir = os.fspath(data_dir)
  existing = common.prepared_builder("svhn_cropped", data_dir)
  if existing is not None:
    return existing
  by_split = {}
  for path in paths:
    split = split_of(path)
    if split in by_split:
      raise ArchiveError(f"two files for the SVHN {split} split: {by_split[split]} and {path}.")
    by_split[split] = os.fspath(path)
  if strict and not {"train", "test"} <= set(by_split):
    raise ArchiveError(f"strict: both train_32x32.mat and test_32x32.mat are required; got "
                       f"{sorted(by_split.values())}.")
  arrays = {}
  for split, path in by_split.items():
    common.log_official_digest(path)
    arrays[split] = read_mat(path, strict=strict)
  builder = SvhnCroppedFromMat(splits=arrays, data_dir=data_dir, file_format="array_record")
  return common.write_dataset(builder)


__all__ = ["SvhnCroppedFromMat", "read_mat", "split_of", "prepare"]
