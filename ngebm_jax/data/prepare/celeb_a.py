"""Offline import of CelebA (aligned and cropped faces) from the official files, no TensorFlow.

CelebA is one of the OOD sets of the JEM / NG-EBM evaluation (docs/method.rst, "The evaluation
protocol"; JEM Table 3). TFDS's `celeb_a` builder (2.1.0) downloads five files from Google
Drive, the step users most often report failing; this import reads the same five files,
downloaded by hand from the CelebA page (its Google Drive / Baidu folders):

  img_align_celeba.zip                 202,599 JPEGs, 218x178, `img_align_celeba/000001.jpg`
  list_eval_partition.txt              `000001.jpg 0` per image: 0 train, 1 validation, 2 test
  list_attr_celeba.txt                 count, 40 attribute names, then `000001.jpg -1 1 ...`
  list_landmarks_align_celeba.txt      count, 10 landmark names, then `000001.jpg 69 109 ...`
  identity_CelebA.txt                  `000001.jpg 2880` per image (no header)

The builder subclasses TFDS's own (`skip_registration=True`) and replaces only where the files
come from: TFDS's `_generate_examples` writes the records (the JPEG bytes as they are, the 40
attributes as booleans, the 10 landmarks, the identity; key = file name), so the result is the
dataset TFDS would write. The evaluation reads only the test split's images, center-cropped to
178x178 and resized to 32x32 (`ngebm_jax.data.tfds_sources.center_crop_resize`).

Verification, before anything is written: every file is there and parses (the zip's members,
the headers of the attribute and landmark lists, one value per heading), every image of the
partition list is in the zip and in the three other lists, and every image is a 218x178 RGB
JPEG. `strict=True` also requires the official counts (162,770 / 19,867 / 19,962).
"""

from __future__ import annotations

from collections.abc import Mapping
import io
import os
import zipfile
from typing import Sequence

from absl import logging
import tensorflow_datasets as tfds

from ngebm_jax.data.prepare import common
from ngebm_jax.data.prepare.common import ArchiveError

# The official file names; `prepare` finds each among the paths it is given by its name.
FILES = {"img_align_celeba": "img_align_celeba.zip",
         "list_eval_partition": "list_eval_partition.txt",
         "list_attr_celeba": "list_attr_celeba.txt",
         "landmarks_celeba": "list_landmarks_align_celeba.txt",
         "identity_celeba": "identity_CelebA.txt"}
SPLITS = ("train", "validation", "test")  # partition 0, 1, 2
OFFICIAL_COUNTS = {"train": 162_770, "validation": 19_867, "test": 19_962}
IMAGE_SIZE = (178, 218)  # PIL's (width, height)

_CelebABase = tfds.builder_cls("celeb_a")


def _module():
  import importlib  # pylint: disable=g-import-not-at-top
  return importlib.import_module(_CelebABase.__module__)


def find_files(paths: Sequence[str | os.PathLike]) -> dict[str, str]:
  """TFDS's download key -> path, each official file recognised by its name."""
  by_name = {os.path.basename(os.fspath(p)): os.fspath(p) for p in paths}
  unknown = sorted(set(by_name) - set(FILES.values()))
  if unknown:
    raise ArchiveError(f"celeb_a: {unknown} is not one of the official CelebA files "
                       f"{sorted(FILES.values())}.")
  missing = [name for name in FILES.values() if name not in by_name]
  if missing:
    raise ArchiveError(f"celeb_a needs the five official files; missing {missing}. Download "
                       "them from the CelebA page (Align&Cropped images, Anno and Eval "
                       "folders) and pass --archive once per file.")
  return {key: by_name[name] for key, name in FILES.items()}


def _read_lines(path: str) -> list[str]:
  try:
    with open(path) as f:
      return [line for line in f.read().split("\n") if line.strip()]
  except (OSError, UnicodeDecodeError) as e:
    raise ArchiveError(f"{path}: not a readable text file ({e}).") from e


def _check_table(path: str, headings: Sequence[str] | None, names: Sequence[str]) -> None:
  """A list file has a row of ints for every image, one per heading (checked against TFDS's)."""
  with open(path, "rb") as f:
    f.seek(0, os.SEEK_END)
    f.seek(max(f.tell() - 1, 0))
    if f.read(1) != b"\n":  # TFDS's parser drops the last line, taking it for the empty one
      raise ArchiveError(f"{path} does not end with a newline, as the official file does; it "
                         "is truncated.")
  lines = _read_lines(path)
  if headings is not None:
    if len(lines) < 2 or lines[1].split() != list(headings):
      raise ArchiveError(f"{path}: the second line must name the {len(headings)} columns TFDS "
                         f"expects ({' '.join(headings[:3])} ...); the file is not the official "
                         "one or is damaged.")
    lines = lines[2:]
  width = 1 if headings is None else len(headings)
  rows = {}
  for number, line in enumerate(lines, start=3 if headings is not None else 1):
    parts = line.split()
    try:
      values = [int(v) for v in parts[1:]]
    except ValueError:
      values = None
    if values is None or len(values) != width:
      raise ArchiveError(f"{path}, line {number}: expected an image name and {width} integers; "
                         f"got {line.strip()[:80]!r}.")
    rows[parts[0]] = values
  absent = [n for n in names if n not in rows]
  if absent:
    raise ArchiveError(f"{path} has no row for {len(absent)} image(s) of the partition list, "
                       f"e.g. {absent[0]}; the file is truncated or from another release.")


def read_partition(path: str, *, strict: bool = False) -> dict[str, list[str]]:
  """split -> sorted image names, from `list_eval_partition.txt`."""
  splits = {s: [] for s in SPLITS}
  for number, line in enumerate(_read_lines(path), start=1):
    parts = line.split()
    if len(parts) != 2 or parts[1] not in ("0", "1", "2"):
      raise ArchiveError(f"{path}, line {number}: expected '<image>.jpg <0|1|2>'; got "
                         f"{line.strip()[:80]!r}.")
    splits[SPLITS[int(parts[1])]].append(parts[0])
  if not any(splits.values()):
    raise ArchiveError(f"{path} lists no images.")
  if strict:
    counts = {s: len(v) for s, v in splits.items()}
    if counts != OFFICIAL_COUNTS:
      raise ArchiveError(f"{path}: split sizes {counts}, the official file has "
                         f"{OFFICIAL_COUNTS} (strict check; --nostrict for small files).")
  return {s: sorted(v) for s, v in splits.items()}


class _ZipImages(Mapping[str, bytes]):
  """Image file name (`000001.jpg`) -> its JPEG bytes, read from the zip when asked for (TFDS's
  builder holds them all in memory, about 1.4 GB)."""

  def __init__(self, path: str):
    self._zip = zipfile.ZipFile(path)
    self._members = {os.path.basename(n): n for n in self._zip.namelist()
                     if n.lower().endswith(".jpg")}

  def __getitem__(self, name: str) -> bytes:
    return self._zip.read(self._members[name])

  def __iter__(self):
    return iter(self._members)

  def __len__(self) -> int:
    return len(self._members)


def _check_images(path: str, names: Sequence[str]) -> _ZipImages:
  from PIL import Image  # pylint: disable=g-import-not-at-top
  if not zipfile.is_zipfile(path):
    raise ArchiveError(f"{path}: not a zip file; it is corrupt or truncated, download it again.")
  images = _ZipImages(path)
  absent = [n for n in names if n not in images]
  if absent:
    raise ArchiveError(f"{path} has no image {absent[0]} (and {len(absent) - 1} more of the "
                       "partition list); the zip is truncated or from another release.")
  for name in names:
    try:
      with Image.open(io.BytesIO(images[name])) as image:
        ok = (image.format, image.mode, image.size) == ("JPEG", "RGB", IMAGE_SIZE)
        found = f"{image.format} {image.mode} {image.size[0]}x{image.size[1]}"
    except Exception as e:  # pylint: disable=broad-except  (zlib, PIL: damaged data)
      raise ArchiveError(f"{path}: {name} cannot be read ({type(e).__name__}: {e}).") from e
    if not ok:
      raise ArchiveError(f"{path}: {name} must be an RGB JPEG of 178x218 (width x height), the "
                         f"aligned and cropped images; found {found}.")
  return images


class CelebAFromFiles(_CelebABase, skip_registration=True):
  """TFDS's `celeb_a` builder (2.1.0), fed from the official files without TensorFlow."""
  name = "celeb_a"
  pkg_dir_path = _CelebABase._get_pkg_dir_path()  # pylint: disable=protected-access

  def __init__(self, *, files: dict[str, str], images: _ZipImages, **kwargs):
    self._files = files
    self._images = images
    super().__init__(**kwargs)

  def _split_generators(self, dl_manager):
    del dl_manager  # nothing to download
    # TFDS's own _generate_examples, with the local files where its downloads would be.
    return {split: self._generate_examples(file_id=i, downloaded_dirs=self._files,
                                           downloaded_images=self._images)
            for i, split in enumerate(SPLITS)}


def prepare(paths: Sequence[str | os.PathLike], data_dir: str | os.PathLike, *,
            strict: bool = False):
  """Prepares `celeb_a` in `data_dir` from the five official files (no TensorFlow).

  Args:
    paths: the five files of the module docstring, in any order.
    data_dir: TFDS data directory.
    strict: the official split sizes.

  Returns:
    TFDS's plain builder for the prepared dataset. A dataset already prepared there is left as it
    is (delete its folder to import again).
  """
  data_dir = os.fspath(data_dir)
  existing = common.prepared_builder("celeb_a", data_dir)
  if existing is not None:
    return existing
  files = find_files(paths)
  for path in files.values():
    if not os.path.isfile(path):
      raise ArchiveError(f"celeb_a: {path} does not exist or is not a file.")
  splits = read_partition(files["list_eval_partition"], strict=strict)
  names = [n for split in SPLITS for n in splits[split]]
  module = _module()
  _check_table(files["list_attr_celeba"], module.ATTR_HEADINGS, names)
  _check_table(files["landmarks_celeba"], module.LANDMARK_HEADINGS, names)
  _check_table(files["identity_celeba"], None, names)
  logging.info("Checking the %d images of %s", len(names), files["img_align_celeba"])
  images = _check_images(files["img_align_celeba"], names)
  builder = CelebAFromFiles(files=files, images=images, data_dir=data_dir,
                            file_format="array_record")
  return common.write_dataset(builder)


__all__ = ["CelebAFromFiles", "FILES", "find_files", "prepare", "read_partition"]
