"""CelebA offline: the five official files -> the dataset TFDS writes -> an OOD set of 32x32."""

from __future__ import annotations

import importlib
import io
import os
import tempfile
import zipfile

import numpy as np
from PIL import Image
import pytest
import tensorflow_datasets as tfds

from ngebm_jax.data import ood_data
from ngebm_jax.data import prepare
from ngebm_jax.data import tfds_sources
from ngebm_jax.data.prepare import ArchiveError
from ngebm_jax.data.prepare import celeb_a
from tests.official_archives import celeba_face
from tests.official_archives import jpeg_bytes
from tests.official_archives import make_cifar
from tests.official_archives import write_celeba
from tests.official_archives import write_cifar10_binary

PARTITION = [0, 0, 1, 2, 0, 2, 1, 2, 0]  # 4 train, 2 validation, 3 test, interleaved


@pytest.fixture(scope="module")
def files(tmp_path_factory):
  return write_celeba(tmp_path_factory.mktemp("celeba_files"), PARTITION, seed=3)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory, files):
  """A data_dir with celeb_a imported offline, beside a tiny cifar10."""
  root = tmp_path_factory.mktemp("celeba_tfds")
  data, names = make_cifar("cifar10", 0, per_batch=4, num_test=6)
  prepare.prepare_from_archives(
      "cifar10", root, [write_cifar10_binary(root / "c10.tar.gz", data, names)])
  builder = prepare.prepare_from_archives("celeb_a", root, list(reversed(files["paths"])),
                                          strict=False)
  assert builder.name == "celeb_a" and str(builder.version) == "2.1.0"
  return os.fspath(root)


def _tfds_own(files, data_dir) -> None:
  """TFDS's own celeb_a builder, its `_split_generators` included, with a download manager that
  hands it the local files instead of Google Drive's: the dataset TFDS itself writes."""
  module = importlib.import_module(celeb_a._CelebABase.__module__)
  by_key = celeb_a.find_files(files["paths"])

  class LocalFiles:
    def download(self, urls):
      return {key: by_key[key] for key in urls}

    def iter_archive(self, path):
      with zipfile.ZipFile(path) as z:
        for name in z.namelist():
          if not name.endswith("/"):
            yield name, io.BytesIO(z.read(name))

  class Own(module.Builder, skip_registration=True):
    name = "celeb_a"
    pkg_dir_path = module.Builder._get_pkg_dir_path()

    def _split_generators(self, dl_manager):
      return super()._split_generators(LocalFiles())

  with tempfile.TemporaryDirectory() as download_dir:
    Own(data_dir=os.fspath(data_dir), file_format="array_record").download_and_prepare(
        download_dir=download_dir)


def test_the_import_writes_what_tfds_writes(prepared, files, tmp_path):
  _tfds_own(files, tmp_path)
  for split, n in (("train", 4), ("validation", 2), ("test", 3)):
    ours = tfds_sources.load_source("celeb_a", split, prepared,
                                    deserialize_method=tfds.decode.DeserializeMethod.RAW_BYTES)
    theirs = tfds_sources.load_source("celeb_a", split, tmp_path,
                                      deserialize_method=tfds.decode.DeserializeMethod.RAW_BYTES)
    assert len(ours) == len(theirs) == n
    assert [ours[i] for i in range(n)] == [theirs[i] for i in range(n)], split


def test_records_hold_the_official_files_contents(prepared, files):
  test = tfds.data_source("celeb_a", split="test", data_dir=prepared)
  names = [n for n, p in zip(sorted(files["images"]), PARTITION) if p == 2]
  by_identity = {files["identity"][n]: n for n in names}
  assert sorted(test[i]["identity"]["Identity_No"] for i in range(3)) == sorted(by_identity)
  for i in range(3):
    record = test[i]
    name = by_identity[int(record["identity"]["Identity_No"])]
    expected = np.asarray(Image.open(io.BytesIO(files["images"][name])).convert("RGB"))
    np.testing.assert_array_equal(record["image"], expected)  # the JPEG as published
    assert {k: bool(v) for k, v in record["attributes"].items()} == {
        k: v > 0 for k, v in zip(celeb_a._module().ATTR_HEADINGS, files["attributes"][name])}
    assert {k: int(v) for k, v in record["landmarks"].items()} == dict(
        zip(celeb_a._module().LANDMARK_HEADINGS, files["landmarks"][name]))


def test_evaluation_reads_it_as_a_32x32_ood_set(prepared, files):
  source = ood_data.ood_source("celeba", prepared)
  raw = tfds.data_source("celeb_a", split="test", data_dir=prepared)
  assert len(source) == 3
  for i in range(3):
    item = source[i]
    assert item["image"].shape == (32, 32, 3) and item["label"] == tfds_sources.NO_LABEL
    np.testing.assert_array_equal(item["image"], tfds_sources.center_crop_resize(raw[i]["image"]))
  # As experiments.evaluate loads it (strict: a missing set would raise).
  loaded = ood_data.read_test_and_ood("cifar10", prepared, ood_names=("celeba",), strict=True)
  assert list(loaded["ood"]) == ["celeba"] and loaded["ood"]["celeba"].shape == (3, 32, 32, 3)
  assert not loaded["ood_missing"]


def test_bad_files_are_refused_before_anything_is_written(files, tmp_path):
  paths = files["paths"]
  with pytest.raises(ArchiveError, match=r"missing \['identity_CelebA.txt'\]"):
    prepare.prepare_from_archives("celeb_a", tmp_path / "a", paths[:4])
  other = tmp_path / "img_celeba.7z"
  other.write_bytes(b"7z")
  with pytest.raises(ArchiveError, match="not one of the official CelebA files"):
    prepare.prepare_from_archives("celeb_a", tmp_path / "a", [*paths, other])
  with pytest.raises(ArchiveError, match=r"split sizes .*official"):  # strict: official counts
    prepare.prepare_from_archives("celeb_a", tmp_path / "a", paths, strict=True)
  # An image that is not an aligned 218x178 face.
  wrong = write_celeba(tmp_path / "wrong", [0, 2], images={
      "000001.jpg": jpeg_bytes(celeba_face((1, 2, 3), 0)),
      "000002.jpg": jpeg_bytes(np.zeros((32, 32, 3), np.uint8))})
  with pytest.raises(ArchiveError, match="000002.jpg must be an RGB JPEG of 178x218"):
    prepare.prepare_from_archives("celeb_a", tmp_path / "b", wrong["paths"], strict=False)
  # A list file cut short.
  short = write_celeba(tmp_path / "short", [0, 2, 2])
  attr = short["paths"][2]
  with open(attr, "rb") as f:
    content = f.read()
  with open(attr, "wb") as f:
    f.write(content[:content.rindex(b"\r\n")])
  with pytest.raises(ArchiveError, match="list_attr_celeba.txt does not end with a newline"):
    prepare.prepare_from_archives("celeb_a", tmp_path / "c", short["paths"], strict=False)
  for folder in ("a", "b", "c"):
    assert not (tmp_path / folder / "celeb_a").exists()
