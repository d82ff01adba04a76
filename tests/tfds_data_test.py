"""Tests of the real-dataset path: offline archive import into TFDS, sources, splits, OOD sets.

Small archives are written in the exact official formats (CIFAR python pickles and binary
records in .tar.gz, SVHN MATLAB files; `tests/official_archives.py`), imported, and read back
through plain `tfds.data_source`. No network, no TensorFlow.
"""

from __future__ import annotations

import importlib
import io
import json
import os
import pickle
import shutil
import socket
import subprocess
import sys
import tempfile

import numpy as np
import pytest
import tensorflow_datasets as tfds

from configs import default
from ngebm_jax import data as data_lib
from ngebm_jax.data.prepare import cifar
from ngebm_jax.data.prepare import svhn
from ngebm_jax.data import prepare
from ngebm_jax.data import ood_data
from ngebm_jax.data import pipeline
from ngebm_jax.data import tfds_sources
from ngebm_jax.data.prepare import ArchiveError
from ngebm_jax.data.tfds_sources import DatasetNotPreparedError
from tests.official_archives import NUM_TEST
from tests.official_archives import PER_BATCH
from tests.official_archives import WRITERS
from tests.official_archives import dump_pickle
from tests.official_archives import make_cifar
from tests.official_archives import make_svhn
from tests.official_archives import rows_of
from tests.official_archives import write_cifar100_binary
from tests.official_archives import write_cifar100_python
from tests.official_archives import write_cifar10_binary
from tests.official_archives import write_cifar10_python
from tests.official_archives import write_svhn_mat

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _prepare_data(args: list[str]) -> subprocess.CompletedProcess:
  """`python -m experiments.prepare_data ARGS`, as a user runs it."""
  return subprocess.run([sys.executable, "-m", "experiments.prepare_data", *args], cwd=ROOT,
                        capture_output=True, text=True, timeout=300)


# --- prepared datasets, shared by the tests -------------------------------------------------


@pytest.fixture(scope="module")
def cifar_data():
  return {name: make_cifar(name, seed) for seed, name in enumerate(("cifar10", "cifar100"))}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory, cifar_data):
  """(name, version) -> data_dir holding that dataset imported from that archive version."""
  out = {}
  for (name, version), writer in WRITERS.items():
    root = tmp_path_factory.mktemp(f"{name}_{version}")
    data, names = cifar_data[name]
    archive = writer(root / f"{name}-{version}.tar.gz", data, names)
    builder = prepare.prepare_from_archives(name, root / "tfds", [archive])
    assert builder.is_prepared()
    out[(name, version)] = os.fspath(root / "tfds")
  return out


@pytest.fixture(scope="module")
def svhn_dir(tmp_path_factory):
  """A data_dir with svhn_cropped (train 40, test 30), prepared through prepare_data's main."""
  root = tmp_path_factory.mktemp("svhn")
  train = write_svhn_mat(root / "train_32x32.mat", *make_svhn(10, 40))
  test = write_svhn_mat(root / "test_32x32.mat", *make_svhn(11, 30))
  proc = _prepare_data(["--dataset=svhn_cropped", f"--data_dir={root / 'tfds'}",
                        f"--archive={train}", f"--archive={test}", "--nostrict"])
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "svhn_cropped 3.1.0 is prepared" in proc.stdout
  return os.fspath(root / "tfds")


def _archive_index(item) -> int:
  return int(item["id"].decode().rsplit("_", 1)[1])


# --- the import -----------------------------------------------------------------------------


@pytest.mark.parametrize("name,version", sorted(WRITERS))
def test_cifar_import_reads_back_bit_exactly(prepared, cifar_data, name, version):
  data, names = cifar_data[name]
  data_dir = prepared[(name, version)]
  sources = tfds.data_source(name, data_dir=data_dir)  # plain TFDS, as any user would read it
  assert set(sources) == {"train", "test"}
  builder = tfds.builder(name, data_dir=data_dir)
  assert builder.info.features["label"].names == names["label"]
  if name == "cifar100":
    assert builder.info.features["coarse_label"].names == names["coarse_label"]
  # TFDS's own feature spec (what its builder would write).
  reference = tfds.builder(name, data_dir=os.path.join(data_dir, "unused"))
  assert (builder.info.features.get_serialized_info()
          == reference.info.features.get_serialized_info())
  assert builder.version == reference.version
  for split in ("train", "test"):
    expected = data[split]
    source = sources[split]
    n = len(expected["image"])
    assert len(source) == n == builder.info.splits[split].num_examples
    seen = set()
    for position in range(n):
      item = source[position]
      i = _archive_index(item)
      assert item["id"].decode() == f"{split}_{i:05d}"
      seen.add(i)
      assert item["image"].dtype == np.uint8 and item["image"].shape == (32, 32, 3)
      np.testing.assert_array_equal(item["image"], expected["image"][i])
      assert item["label"] == expected["label"][i]
      if name == "cifar100":
        assert item["coarse_label"] == expected["coarse_label"][i]
    assert seen == set(range(n))


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_python_and_binary_archives_give_the_same_dataset(prepared, name):
  python = tfds.data_source(name, split="train", data_dir=prepared[(name, "python")])
  binary = tfds.data_source(name, split="train", data_dir=prepared[(name, "binary")])
  for position in range(len(python)):  # same records in the same (key-hashed) order
    a, b = python[position], binary[position]
    assert a["id"] == b["id"] and a["label"] == b["label"]
    np.testing.assert_array_equal(a["image"], b["image"])


def test_svhn_import_through_main(svhn_dir):
  for split, seed, n in (("train", 10, 40), ("test", 11, 30)):
    images, digits = make_svhn(seed, n)
    source = tfds.data_source("svhn_cropped", split=split, data_dir=svhn_dir)
    assert len(source) == n
    seen = set()
    for position in range(n):
      item = source[position]
      i = int(item["id"].decode().split("_")[1])
      assert item["id"].decode() == f"{split}_{i:06d}"
      seen.add(i)
      np.testing.assert_array_equal(item["image"], images[i])
      assert item["label"] == digits[i]  # the file's 10 is the digit 0
    assert seen == set(range(n))
  builder = tfds.builder("svhn_cropped", data_dir=svhn_dir)
  reference = tfds.builder("svhn_cropped", data_dir=os.path.join(svhn_dir, "unused"))
  assert builder.version == reference.version == "3.1.0"
  assert builder.info.description == reference.info.description
  assert builder.info.citation == reference.info.citation
  assert (builder.info.features.get_serialized_info()
          == reference.info.features.get_serialized_info())


def test_strict_mode_refuses_small_archives(tmp_path, cifar_data):
  data, names = cifar_data["cifar10"]
  archive = write_cifar10_python(tmp_path / "c.tar.gz", data, names)
  contents = cifar.read_archive(archive, "cifar10")  # strict=False: consistency only
  assert contents.version == "python"
  assert contents.splits["train"]["image"].shape == (5 * PER_BATCH, 32, 32, 3)
  proc = _prepare_data(["--dataset=cifar10", f"--data_dir={tmp_path / 'tfds'}",
                        f"--archive={archive}"])  # --strict is the command line's default
  assert proc.returncode != 0 and "official file has 10000" in proc.stderr
  assert not os.path.exists(tmp_path / "tfds" / "cifar10")


def test_already_prepared_dataset_is_left_alone(prepared, tmp_path):
  data, names = make_cifar("cifar10", seed=99, per_batch=2, num_test=3)
  archive = write_cifar10_python(tmp_path / "other.tar.gz", data, names)
  data_dir = prepared[("cifar10", "python")]
  builder = prepare.prepare_from_archives("cifar10", data_dir, [archive])
  assert builder.info.splits["train"].num_examples == 5 * PER_BATCH


# --- refused archives -----------------------------------------------------------------------


def _evil_pickle() -> bytes:
  class Evil:
    def __reduce__(self):
      return (os.system, ("echo owned",))
  return pickle.dumps({b"data": Evil()}, protocol=2)


def _cifar10_python_cases(data, names):
  train = data["train"]
  per = len(train["image"]) // 5
  wide = {b"labels": [0] * per, b"data": np.zeros((per, 3000), np.uint8)}
  out_of_range = {b"labels": [10] * per, b"data": rows_of(train["image"][:per])}
  short_labels = {b"labels": [0] * (per - 1), b"data": rows_of(train["image"][:per])}
  return {
      "columns": ({"data_batch_2": dump_pickle(wide)}, "3000 columns"),
      "label range": ({"data_batch_3": dump_pickle(out_of_range)}, r"labels must be in \[0, 10\)"),
      "rows vs labels": ({"data_batch_1": dump_pickle(short_labels)}, "truncated or corrupt"),
      "missing member": ({"test_batch": b""}, "lacks"),
      "not a pickle": ({"data_batch_4": b"\x80\x02garbage"}, "not a readable CIFAR pickle"),
      "code in pickle": ({"data_batch_5": _evil_pickle()}, "refusing to unpickle"),
      "label names": ({"batches.meta": dump_pickle({b"label_names": [b"a", b"b"]})},
                      "10 label names expected"),
  }


def test_corrupt_cifar_archives_are_refused(tmp_path, cifar_data):
  data, names = cifar_data["cifar10"]
  data_dir = tmp_path / "tfds"
  for case, (overrides, message) in _cifar10_python_cases(data, names).items():
    archive = write_cifar10_python(tmp_path / "c.tar.gz", data, names, **overrides)
    with pytest.raises(ArchiveError, match=message):
      prepare.prepare_from_archives("cifar10", data_dir, [archive])
    assert not os.path.exists(data_dir / "cifar10"), case  # nothing written

  good = write_cifar10_binary(tmp_path / "b.tar.gz", data, names)
  raw = open(good, "rb").read()
  truncated = tmp_path / "truncated.tar.gz"
  truncated.write_bytes(raw[:len(raw) // 2])
  with pytest.raises(ArchiveError, match="corrupt or truncated"):
    prepare.prepare_from_archives("cifar10", data_dir, [truncated])

  short_record = write_cifar10_binary(
      tmp_path / "short.tar.gz", data, names,
      **{"data_batch_2.bin": b"\x01" * (3073 * 3 - 100)})
  with pytest.raises(ArchiveError, match="whole number of 3073-byte records"):
    prepare.prepare_from_archives("cifar10", data_dir, [short_record])

  bad_label = write_cifar10_binary(
      tmp_path / "label.tar.gz", data, names,
      **{"test_batch.bin": bytes([12]) + bytes(3072)})
  with pytest.raises(ArchiveError, match=r"labels must be in \[0, 10\)"):
    prepare.prepare_from_archives("cifar10", data_dir, [bad_label])

  data100, names100 = cifar_data["cifar100"]
  other = write_cifar100_python(tmp_path / "c100.tar.gz", data100, names100)
  with pytest.raises(ArchiveError, match="--dataset=cifar100"):
    prepare.prepare_from_archives("cifar10", data_dir, [other])

  bad_coarse = write_cifar100_binary(
      tmp_path / "coarse.tar.gz", data100, names100,
      **{"test.bin": bytes([20, 3]) + bytes(3072)})
  with pytest.raises(ArchiveError, match=r"coarse_label: labels must be in \[0, 20\)"):
    prepare.prepare_from_archives("cifar100", data_dir, [bad_coarse])

  not_tar = tmp_path / "cifar-10-python.tar.gz"
  not_tar.write_bytes(b"this is not an archive" * 10)
  with pytest.raises(ArchiveError, match="corrupt or truncated"):
    prepare.prepare_from_archives("cifar10", data_dir, [not_tar])
  with pytest.raises(ArchiveError, match="does not exist"):
    prepare.prepare_from_archives("cifar10", data_dir, [tmp_path / "missing.tar.gz"])
  assert not os.path.exists(data_dir / "cifar10")


def test_corrupt_svhn_files_are_refused(tmp_path):
  images, digits = make_svhn(0, 12)
  data_dir = tmp_path / "tfds"
  good = write_svhn_mat(tmp_path / "test_32x32.mat", images, digits)
  raw = open(good, "rb").read()
  (tmp_path / "cut").mkdir()
  truncated = tmp_path / "cut" / "test_32x32.mat"
  truncated.write_bytes(raw[:len(raw) // 2])
  cases = {
      truncated: "not a readable MATLAB file",
      write_svhn_mat(tmp_path / "train_32x32.mat", images, digits,
                     y=np.zeros((12, 1), np.uint8)): r"digits 1\.\.10",
      write_svhn_mat(tmp_path / "extra_32x32.mat", images, digits,
                     X=np.zeros((32, 32, 12), np.uint8)): r"uint8 \[32, 32, 3, N\]",
      write_svhn_mat(tmp_path / "test_short.mat", images, digits,
                     y=np.ones((11, 1), np.uint8)): "11 labels for 12 images",
      write_svhn_mat(tmp_path / "svhn.mat", images, digits): "cannot tell the SVHN split",
  }
  for path, message in cases.items():
    with pytest.raises(ArchiveError, match=message):
      prepare.prepare_from_archives("svhn_cropped", data_dir, [path])
  with pytest.raises(ArchiveError, match="both train_32x32.mat and test_32x32.mat"):
    svhn.prepare([good], data_dir, strict=True)
  assert not os.path.exists(data_dir / "svhn_cropped")


def test_tfds_path_without_tensorflow_says_what_to_do(tmp_path):
  if prepare.tensorflow_available():
    pytest.skip("TensorFlow is installed here.")
  with pytest.raises(RuntimeError, match="--archive=PATH"):
    prepare.prepare_with_tfds("cifar10", tmp_path)


# --- missing data ---------------------------------------------------------------------------


def test_missing_dataset_raises_with_the_command(tmp_path, monkeypatch):
  data_dir = os.fspath(tmp_path / "empty")
  attempts = []

  def no_network(*args, **kwargs):
    attempts.append(args)
    raise OSError("network disabled in this test")

  monkeypatch.setattr(socket.socket, "connect", no_network)
  monkeypatch.setattr(socket, "create_connection", no_network)
  for call in (lambda: tfds_sources.require_prepared("cifar100", data_dir),
               lambda: tfds_sources.load_source("cifar100", "train", data_dir),
               lambda: tfds_sources.recipe_splits("cifar100", data_dir)):
    with pytest.raises(DatasetNotPreparedError) as info:
      call()
    message = str(info.value)
    assert "'cifar100'" in message and data_dir in message
    assert (f"python -m experiments.prepare_data --dataset=cifar100 --data_dir={data_dir} "
            "[--archive=PATH]") in message
  assert isinstance(info.value, FileNotFoundError)
  assert not os.path.exists(data_dir)  # no download attempt, nothing created
  assert not attempts


def test_tfrecord_copy_is_refused(prepared, tmp_path):
  source_dir = os.path.join(prepared[("cifar10", "python")], "cifar10")
  shutil.copytree(source_dir, tmp_path / "cifar10")
  info_path = tmp_path / "cifar10" / "3.0.2" / "dataset_info.json"
  info = json.loads(info_path.read_text())
  info["fileFormat"] = "tfrecord"
  info_path.write_text(json.dumps(info))
  with pytest.raises(DatasetNotPreparedError, match="stored as tfrecord"):
    tfds_sources.require_prepared("cifar10", tmp_path)


def test_other_version_on_disk_is_named(tmp_path):
  (tmp_path / "cifar10" / "1.0.0").mkdir(parents=True)
  (tmp_path / "cifar10" / "1.0.0" / "dataset_info.json").write_text("{}")
  with pytest.raises(DatasetNotPreparedError, match=r"Versions found there: \['1.0.0'\]"):
    tfds_sources.require_prepared("cifar10", tmp_path)


# --- sources and the recipe split ----------------------------------------------------------


def _jem_validation(n: int, num_validation: int, seed: int = 1234) -> set[int]:
  """JEM's training code, verbatim in spirit: a seeded shuffle of a Python list."""
  np.random.seed(seed)  # the legacy global generator, as JEM used it
  all_inds = list(range(n))
  np.random.shuffle(all_inds)
  return set(all_inds[:num_validation])


def test_recipe_split_indices_match_jem_and_ignore_storage_order():
  n, nv = 1000, 100
  storage_order = np.random.default_rng(0).permutation(n)  # archive index at each position
  split = tfds_sources.recipe_split_indices(storage_order, num_validation=nv)
  train, valid = split["train"], split["validation"]
  assert len(train) == n - nv and len(valid) == nv
  assert not set(train) & set(valid) and set(train) | set(valid) == set(range(n))
  assert np.all(np.diff(train) > 0) and np.all(np.diff(valid) > 0)
  assert set(storage_order[valid]) == _jem_validation(n, nv)
  # Any other storage order selects the same archive examples.
  other = np.random.default_rng(1).permutation(n)
  again = tfds_sources.recipe_split_indices(other, num_validation=nv)
  assert set(other[again["validation"]]) == set(storage_order[valid])
  # The recipe's size: 5,000 of CIFAR's 50,000, exactly JEM's validation set.
  full = tfds_sources.recipe_split_indices(np.arange(50_000))
  assert len(full["train"]) == 45_000
  assert set(full["validation"]) == _jem_validation(50_000, 5_000)
  with pytest.raises(ValueError, match="num_validation"):
    tfds_sources.recipe_split_indices(storage_order, num_validation=n)
  with pytest.raises(ValueError, match="permutation"):
    tfds_sources.recipe_split_indices(np.zeros(n, np.int64))


def test_recipe_splits_on_prepared_cifar10(prepared, cifar_data):
  data_dir = prepared[("cifar10", "binary")]
  data = cifar_data["cifar10"][0]
  splits = tfds_sources.recipe_splits("cifar10", data_dir, num_validation=20)
  assert {k: len(v) for k, v in splits.items()} == {"train": 100, "validation": 20, "test": 20}
  raw = tfds.data_source("cifar10", split="train", data_dir=data_dir)
  archive_index = tfds_sources.archive_index("cifar10", "train", data_dir)
  valid_ids = {int(archive_index[p]) for p in splits["validation"].indices}
  train_ids = {int(archive_index[p]) for p in splits["train"].indices}
  assert valid_ids == _jem_validation(120, 20)
  assert not valid_ids & train_ids and len(valid_ids | train_ids) == 120
  for source, name in ((splits["validation"], "validation"), (splits["train"], "train")):
    items = source.__getitems__([0, 3, len(source) - 1])
    for k, item in zip([0, 3, len(source) - 1], items):
      assert set(item) == {"image", "label"} and isinstance(item["label"], int)
      stored = raw[int(source.indices[k])]
      i = _archive_index(stored)
      np.testing.assert_array_equal(item["image"], data["train"]["image"][i])
      assert item["label"] == data["train"]["label"][i]
      assert source[k]["label"] == item["label"], name
  # Deterministic, and the same from a copy imported from the other archive version.
  other = tfds_sources.recipe_splits("cifar10", prepared[("cifar10", "python")],
                                     num_validation=20)
  np.testing.assert_array_equal(other["validation"].indices, splits["validation"].indices)
  # Pickles (grain worker processes).
  clone = pickle.loads(pickle.dumps(splits["validation"]))
  np.testing.assert_array_equal(clone[5]["image"], splits["validation"][5]["image"])
  assert tfds_sources.num_classes("cifar10", data_dir) == 10


def test_num_train_takes_the_first_examples_of_the_recipe_split(prepared):
  data_dir = prepared[("cifar10", "python")]
  full = tfds_sources.recipe_splits("cifar10", data_dir, num_validation=20)
  part = tfds_sources.recipe_splits("cifar10", data_dir, num_validation=20, num_train=30)
  np.testing.assert_array_equal(part["train"].indices, full["train"].indices[:30])
  np.testing.assert_array_equal(part["validation"].indices, full["validation"].indices)
  assert len(part["test"]) == len(full["test"]) == NUM_TEST
  for bad in (0, 101, True):
    with pytest.raises(ValueError, match="num_train must be in"):
      tfds_sources.recipe_splits("cifar10", data_dir, num_validation=20, num_train=bad)
  # As training reads it, from config.dataset (-1: all of the recipe's training split); this
  # tiny archive has 120 training images, so it holds out 20 (split_num_validation), not 5,000.
  config = default.get_config()
  config.dataset.name, config.dataset.data_dir = "cifar10", data_dir
  config.dataset.split_num_validation = 20
  for num_train, expected in ((-1, 100), (30, 30)):
    config.dataset.num_train = num_train
    sources = data_lib.get_sources(config)
    assert len(sources["train"]) == expected and len(sources["validation"]) == 20
    np.testing.assert_array_equal(sources["train"].indices, full["train"].indices[:expected])
  # config.dataset.split_seed seeds the split (NG-EBM's code: the run's seed; JEM's: 1234).
  archive_index = tfds_sources.archive_index("cifar10", "train", data_dir)
  for split_seed in (1234, 7):
    config.dataset.split_seed = split_seed
    validation = data_lib.get_sources(config)["validation"]
    assert ({int(archive_index[p]) for p in validation.indices}
            == _jem_validation(120, 20, seed=split_seed))
  config.dataset.split_num_validation = 120  # leaves no training image
  with pytest.raises(ValueError,
                     match=r"num_validation must be in \[1, 119\].*split_num_validation"):
    data_lib.get_sources(config)


def test_ids_read_fast_and_slow_agree(prepared, monkeypatch):
  data_dir = prepared[("cifar100", "python")]
  ids = [item["id"] for item in tfds.data_source("cifar100", split="train", data_dir=data_dir)]
  assert tfds_sources._read_ids("cifar100", "train", data_dir) == ids
  # Without TFDS's Example proto module: TFDS's full per-example deserialization.
  import tensorflow_datasets.proto  # pylint: disable=g-import-not-at-top
  monkeypatch.delattr(tensorflow_datasets.proto, "tf_example_pb2", raising=False)
  monkeypatch.setitem(sys.modules, "tensorflow_datasets.proto.tf_example_pb2", None)
  calls = []
  load_source = tfds_sources.load_source
  monkeypatch.setattr(tfds_sources, "load_source",
                      lambda *a, **k: calls.append(k) or load_source(*a, **k))
  assert tfds_sources._read_ids("cifar100", "train", data_dir) == ids
  assert [sorted(k) for k in calls] == [["decoders"]]


def test_image_label_source_indexing():
  base = [{"image": np.full((32, 32, 3), i, np.uint8), "label": i % 3, "id": b"x"}
          for i in range(10)]
  view = tfds_sources.ImageLabelSource(base, [7, 2, 5])
  assert len(view) == 3 and view[0]["image"][0, 0, 0] == 7 and view[-1]["label"] == 5 % 3
  assert [x["image"][0, 0, 0] for x in view] == [7, 2, 5]  # iteration stops at IndexError
  with pytest.raises(IndexError):
    view[3]
  unlabelled = tfds_sources.ImageLabelSource(base, label_key=None)
  assert unlabelled[4]["label"] == tfds_sources.NO_LABEL and len(unlabelled) == 10
  arrays = pipeline.read_arrays(view)
  assert arrays["image"].shape == (3, 32, 32, 3) and list(arrays["label"]) == [1, 2, 2]


# --- OOD sets -------------------------------------------------------------------------------


@pytest.fixture
def eval_dir(tmp_path, svhn_dir, cifar_data):
  """A data_dir with svhn_cropped (copied) and cifar100, but no cifar10 and no celeb_a."""
  shutil.copytree(os.path.join(svhn_dir, "svhn_cropped"), tmp_path / "tfds" / "svhn_cropped")
  data100, names100 = cifar_data["cifar100"]
  archive = write_cifar100_binary(tmp_path / "c100.tar.gz", data100, names100)
  prepare.prepare_from_archives("cifar100", tmp_path / "tfds", [archive])
  return tmp_path / "tfds"


def test_ood_sources_keep_the_prepared_sets_and_name_the_others(eval_dir):
  sets, missing = ood_data.ood_sources("cifar10", eval_dir)  # celeba is not prepared
  assert sorted(sets) == ["cifar100", "svhn"]
  assert missing == {"celeba": "python -m experiments.prepare_data --dataset=celeb_a "
                               f"--data_dir={eval_dir} --archive=img_align_celeba.zip "
                               "--archive=list_eval_partition.txt "
                               "--archive=list_attr_celeba.txt "
                               "--archive=list_landmarks_align_celeba.txt "
                               "--archive=identity_CelebA.txt"}
  assert len(sets["svhn"]) == 30 and len(sets["cifar100"]) == NUM_TEST
  for source in sets.values():
    item = source[0]
    assert set(item) == {"image", "label"} and item["label"] == tfds_sources.NO_LABEL
    assert item["image"].dtype == np.uint8 and item["image"].shape == (32, 32, 3)
  with pytest.raises(DatasetNotPreparedError, match="--dataset=celeb_a"):
    ood_data.ood_sources("cifar10", eval_dir, strict=True)
  sets, missing = ood_data.ood_sources("cifar100", eval_dir)  # CIFAR-10 is missing for this model
  assert sorted(sets) == ["svhn"] and sorted(missing) == ["celeba", "cifar10"]
  assert missing["cifar10"] == ("python -m experiments.prepare_data --dataset=cifar10 "
                                f"--data_dir={eval_dir} --archive=cifar-10-python.tar.gz")
  sets, missing = ood_data.ood_sources("cifar10", eval_dir, names=["svhn", "interp"])
  assert list(sets) == ["svhn"] and not missing
  with pytest.raises(ValueError, match="unknown OOD sets"):
    ood_data.ood_sources("cifar10", eval_dir, names=["mnist"])
  with pytest.raises(ValueError, match="in-distribution"):
    ood_data.ood_sources("cifar10", eval_dir, names=["cifar10"])
  with pytest.raises(ValueError, match="unknown OOD set"):
    ood_data.ood_source("mnist", eval_dir)
  assert ood_data.prepare_command("svhn", "/d") == (
      "python -m experiments.prepare_data --dataset=svhn_cropped --data_dir=/d "
      "--archive=train_32x32.mat --archive=test_32x32.mat")


def test_load_eval_data(eval_dir, tmp_path, cifar_data):
  with pytest.raises(DatasetNotPreparedError, match="--dataset=cifar10 "):
    ood_data.read_test_and_ood("cifar10", eval_dir)  # the in-distribution set is missing
  data, names = cifar_data["cifar10"]
  archive = write_cifar10_binary(tmp_path / "c10.tar.gz", data, names)
  prepare.prepare_from_archives("cifar10", eval_dir, [archive])
  loaded = ood_data.read_test_and_ood("cifar10", eval_dir, max_examples=12, seed=5)
  images, labels = loaded["test"]
  assert images.shape == (12, 32, 32, 3) and images.dtype == np.uint8 and labels.dtype == np.int32
  raw = tfds.data_source("cifar10", split="test", data_dir=os.fspath(eval_dir))
  for k in range(12):
    np.testing.assert_array_equal(images[k], raw[k]["image"])
    assert labels[k] == raw[k]["label"]
  assert list(loaded["ood"]) == ["svhn", "cifar100", "interp", "uniform", "constant"]
  assert list(loaded["ood_missing"]) == ["celeba"]
  assert loaded["ood"]["svhn"].shape == loaded["ood"]["cifar100"].shape == (12, 32, 32, 3)
  np.testing.assert_array_equal(loaded["ood"]["svhn"][3],
                                tfds.data_source("svhn_cropped", split="test",
                                                 data_dir=os.fspath(eval_dir))[3]["image"])
  for key in ood_data.SYNTHETIC_OOD:
    np.testing.assert_array_equal(loaded["ood"][key],
                                  ood_data.synthetic_ood(images, seed=5)[key])
  everything = ood_data.read_test_and_ood("cifar10", eval_dir)
  assert len(everything["test"][0]) == NUM_TEST and len(everything["ood"]["svhn"]) == 30
  chosen = ood_data.read_test_and_ood("cifar10", eval_dir,
                                      ood_names=("interp", "svhn", "celeba"))
  assert list(chosen["ood"]) == ["interp", "svhn"] and list(chosen["ood_missing"]) == ["celeba"]
  with pytest.raises(DatasetNotPreparedError, match="--dataset=celeb_a"):
    ood_data.read_test_and_ood("cifar10", eval_dir, ood_names=("svhn", "celeba"),
                               strict=True)
  assert ood_data.read_test_and_ood("cifar10", eval_dir, ood_names=())["ood"] == {}


def _face(colour) -> np.ndarray:
  """A 218x178 'aligned face': a plain central square, red bands above and below it."""
  face = np.zeros((218, 178, 3), np.uint8)
  face[:] = colour
  face[:20] = (255, 0, 0)
  face[198:] = (255, 0, 0)
  return face


def _prepare_fake_celeb_a(data_dir, colours) -> None:
  """TFDS's own celeb_a builder (features, version), fed a few synthetic JPEG faces."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  celeb_a = importlib.import_module(
      "tensorflow_datasets.datasets.celeb_a.celeb_a_dataset_builder")

  def jpeg(image):
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()

  class FakeCelebA(celeb_a.Builder, skip_registration=True):
    name = "celeb_a"
    pkg_dir_path = celeb_a.Builder._get_pkg_dir_path()  # TFDS's metadata (README, citation)

    def _split_generators(self, dl_manager):
      return {"test": self._faces()}

    def _faces(self):
      for i, colour in enumerate(colours):
        yield i, {"image": jpeg(_face(colour)),
                  "landmarks": {k: 0 for k in celeb_a.LANDMARK_HEADINGS},
                  "attributes": {k: False for k in celeb_a.ATTR_HEADINGS},
                  "identity": {"Identity_No": i}}

  with tempfile.TemporaryDirectory() as download_dir:
    FakeCelebA(data_dir=os.fspath(data_dir), file_format="array_record").download_and_prepare(
        download_dir=download_dir)


def test_celeba_ood_source_is_center_cropped_to_32(tmp_path):
  colours = [(0, 0, 200), (0, 180, 0), (90, 90, 90)]
  _prepare_fake_celeb_a(tmp_path, colours)
  source = ood_data.ood_source("celeba", tmp_path)
  assert len(source) == 3
  for i in range(3):
    item = source[i]
    assert item["image"].shape == (32, 32, 3) and item["image"].dtype == np.uint8
    assert item["label"] == tfds_sources.NO_LABEL
  # The central square only: each image is its plain colour (no red band; JPEG: a few levels).
  found = sorted(tuple(int(c) for c in source[i]["image"][16, 16]) for i in range(3))
  for centre, colour in zip(found, sorted(colours)):
    assert np.all(np.abs(np.subtract(centre, colour)) <= 6)
  for i in range(3):
    image = source[i]["image"].astype(np.int32)
    assert np.abs(image - image[16, 16]).max() <= 16
  sets, missing = ood_data.ood_sources("cifar10", tmp_path, names=["celeba"])
  assert list(sets) == ["celeba"] and not missing


def test_center_crop_resize_keeps_the_centre():
  face = np.zeros((218, 178, 3), np.uint8)
  face[:, :, 2] = 200           # blue centre square (rows 20..197)
  face[:20] = (255, 0, 0)       # red bands that the central crop removes
  face[198:] = (255, 0, 0)
  small = tfds_sources.center_crop_resize(face)
  assert small.shape == (32, 32, 3) and small.dtype == np.uint8
  np.testing.assert_array_equal(small, np.broadcast_to([0, 0, 200], (32, 32, 3)))
  same = np.arange(32 * 32 * 3, dtype=np.uint8).reshape(32, 32, 3)
  assert tfds_sources.center_crop_resize(same) is same


def _round_half_to_even(total):
  """`total / 2` for integer sums, .5 going to the even neighbour (a slow, obvious loop)."""
  out = np.empty_like(total)
  for index, t in np.ndenumerate(total):
    q, r = divmod(int(t), 2)
    out[index] = q + 1 if r and q % 2 else q
  return out


def test_synthetic_ood():
  images = np.random.default_rng(0).integers(0, 256, (8, 32, 32, 3), dtype=np.uint8)
  sets = ood_data.synthetic_ood(images, seed=3, num_examples=50)
  assert sorted(sets) == ["constant", "interp", "uniform"]
  for value in sets.values():
    assert value.dtype == np.uint8 and value.shape == (50, 32, 32, 3)
  again = ood_data.synthetic_ood(images, seed=3, num_examples=50)
  for key in sets:
    np.testing.assert_array_equal(sets[key], again[key])
  assert not np.array_equal(ood_data.synthetic_ood(images, seed=4)["uniform"][:8],
                            sets["uniform"][:8])
  # interp: every image is the mean of two distinct inputs, halves to even (brute force).
  wide = images.astype(np.int32)
  exact = {(i, j): (wide[i] + wide[j]) / 2 for i in range(8) for j in range(8) if i != j}
  found = []
  for mixed in sets["interp"]:
    pairs = [k for k, mean in exact.items()
             if np.array_equal(mixed, _round_half_to_even(wide[k[0]] + wide[k[1]]))]
    assert pairs, "an interp image is not the average of two distinct inputs"
    found.append(exact[pairs[0]])
  # Unbiased rounding: halves rounded up would brighten the set by 1/4 grey level.
  assert abs(sets["interp"].mean() - np.mean(found)) < 0.05
  constant = sets["constant"].reshape(50, -1, 3)
  assert np.all(constant == constant[:, :1])
  uniform = sets["uniform"]
  assert uniform.min() == 0 and uniform.max() == 255 and abs(uniform.mean() - 127.5) < 2
  with pytest.raises(ValueError, match="at least 2"):
    ood_data.synthetic_ood(images[:1], seed=0)
  with pytest.raises(ValueError, match="uint8"):
    ood_data.synthetic_ood(images.astype(np.float32), seed=0)
