"""What the offline imports share: the dataset names, archive hints, checks and the writer.

`cifar.py` and `svhn.py` build TFDS datasets from the official files with these helpers;
`ngebm_jax.data.prepare` (the package) chooses between them and TFDS's own download.
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile

from absl import logging
import numpy as np

# Datasets this module can prepare offline from the official files (and through TFDS).
ARCHIVE_DATASETS = ("cifar10", "cifar100", "svhn_cropped", "celeb_a")
TFDS_DATASETS = ARCHIVE_DATASETS

# What to download by hand for the offline path (printed in error messages).
ARCHIVE_HINTS = {
    "cifar10": ("cifar-10-python.tar.gz or cifar-10-binary.tar.gz from "
                "https://www.cs.toronto.edu/~kriz/cifar.html"),
    "cifar100": ("cifar-100-python.tar.gz or cifar-100-binary.tar.gz from "
                 "https://www.cs.toronto.edu/~kriz/cifar.html"),
    "svhn_cropped": ("train_32x32.mat and test_32x32.mat (extra_32x32.mat optional) from "
                     "http://ufldl.stanford.edu/housenumbers/; pass --archive once per file"),
    "celeb_a": ("img_align_celeba.zip, list_eval_partition.txt, list_attr_celeba.txt, "
                "list_landmarks_align_celeba.txt and identity_CelebA.txt from "
                "https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html; pass --archive once per file"),
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
  """TFDS's own builder for `name` in `data_dir` if the dataset is prepared there, else None.

  A prepared dataset is left as it is (the importers return this builder), which is logged.
  """
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  builder = tfds.builder(name, data_dir=os.fspath(data_dir))
  if not builder.is_prepared():
    return None
  logging.warning("%s is already prepared in %s; leaving it. Delete that folder to import "
                  "again.", name, builder.data_dir)
  return builder


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


def split_counts(builder) -> dict[str, int]:
  return {name: split.num_examples for name, split in builder.info.splits.items()}


