"""A workdir, report folder or data folder given as a URI stays a URI.

`gs://bucket/run` must reach its storage: a path that went through `os.path.abspath` would
become `<cwd>/gs:/bucket/run`, and every host would write to its own disk. Here `gs://` is
served by an in-memory file system (fsspec's `memory`, put behind etils.epath's fsspec backend),
so the test runs offline and anything written to the local disk instead is caught. Orbax writes
array data through TensorStore, which this fake does not reach: the checkpoint test checks the
directories orbax is given.
"""

from __future__ import annotations

import json
import os
import struct

from etils import epath
from etils.epath import backend as epath_backend
from etils.epath import gpath
import fsspec
import pytest

from configs import smoke
from ngebm_jax import reporting
from ngebm_jax.evaluation import report
from ngebm_jax.training import checkpoints
from ngebm_jax.training import loop
from ngebm_jax.training import metric_writer
from ngebm_jax.workflows import train_and_evaluate

RUN = "gs://bucket/runs/ngebm"


@pytest.fixture
def fake_gcs(monkeypatch, tmp_path):
  """gs:// paths on an in-memory file system; the working directory is an empty folder."""
  memory = fsspec.filesystem("memory", skip_instance_cache=True)
  memory.store.clear()
  memory.pseudo_dirs.clear()
  memory.pseudo_dirs.append("")
  monkeypatch.setattr(gpath, "_is_tf_installed", lambda: False)  # epath's fsspec backend
  monkeypatch.setattr(epath_backend.fsspec_backend, "_get_filesystem", lambda name: memory)
  monkeypatch.setattr(checkpoints, "_storage_backend_installed", lambda scheme: True)  # gcsfs
  monkeypatch.chdir(tmp_path)
  yield memory
  assert os.listdir(tmp_path) == [], "something was written to a local path"


def test_uri_workdirs_are_never_made_local():
  assert str(checkpoints.workdir_path(RUN)) == RUN
  assert str(checkpoints.workdir_path(epath.Path(RUN)) / "checkpoints") == RUN + "/checkpoints"
  assert checkpoints.is_uri(RUN) and not checkpoints.is_uri("/data/run")
  local = checkpoints.workdir_path("runs/x")
  assert os.path.isabs(local) and str(local).endswith("runs/x")


def test_checkpoints_hand_orbax_the_uri(monkeypatch):
  directories = []

  class Recorder:
    def __init__(self, directory, **kwargs):
      directories.append(directory)

  monkeypatch.setattr(checkpoints.ocp, "CheckpointManager", Recorder)
  ckpts = checkpoints.Checkpoints(RUN, use_async=False)
  assert str(ckpts.workdir) == RUN
  assert [str(d) for d in directories] == [RUN + "/checkpoints", RUN + "/best"]


def test_config_metrics_and_probe_go_to_the_uri(fake_gcs):
  config = smoke.get_config()
  loop._check_writable(RUN)
  assert not checkpoints.has_config(RUN)
  checkpoints.save_config(RUN, config)
  assert checkpoints.has_config(RUN)
  assert checkpoints.config_differences(checkpoints.load_config(RUN), config) == []
  for step in (1, 2):  # a resumed run appends to the file of the first
    writer = metric_writer.MetricWriter(RUN, tensorboard=step == 2)
    writer.write(step, {"train/loss": 1.0 / step, "train/blowup": float("nan")})
    writer.close()
  lines = epath.Path(RUN + "/metrics.jsonl").read_text().splitlines()
  assert [json.loads(l)["step"] for l in lines] == [1, 2]
  assert json.loads(lines[0])["train/blowup"] == "nan"
  assert sorted(p.name for p in epath.Path(RUN).iterdir()) == [
      "config.json", "metrics.jsonl", "tensorboard"]
  # TensorBoard's events went to the bucket too (through epath, no google-cloud-storage), in
  # the TFRecord format TensorBoard reads.
  (events,) = epath.Path(RUN + "/tensorboard").iterdir()
  assert events.name.startswith("events.out.tfevents")
  assert _scalars(events.read_bytes())["train/loss"] == 0.5


def _scalars(data: bytes) -> dict:
  """tag -> value of the scalars in a TFRecord events file (length, crc, Event proto, crc)."""
  from tensorboardX.proto import event_pb2  # pylint: disable=g-import-not-at-top
  out, offset = {}, 0
  while offset < len(data):
    (length,) = struct.unpack("<Q", data[offset:offset + 8])
    event = event_pb2.Event.FromString(data[offset + 12:offset + 12 + length])
    out.update({v.tag: v.simple_value for v in event.summary.value})
    offset += 12 + length + 4
  return out


def test_a_bucket_without_its_backend_fails_at_start_naming_the_extra(monkeypatch, tmp_path):
  from etils.epath import gpath as epath_gpath  # pylint: disable=g-import-not-at-top
  monkeypatch.setattr(epath_gpath, "_is_tf_installed", lambda: False)
  real_find_spec = checkpoints.importlib.util.find_spec
  monkeypatch.setattr(checkpoints.importlib.util, "find_spec",
                      lambda name, *a: None if name == "gcsfs" else real_find_spec(name, *a))
  monkeypatch.chdir(tmp_path)
  config = smoke.get_config()
  with pytest.raises(checkpoints.MissingStorageBackendError,
                     match=r"needs gcsfs .*pip install 'ngebm_jax\[gcs\]'"):
    loop.train(config, RUN)
  with pytest.raises(checkpoints.MissingStorageBackendError, match=r"ngebm_jax\[gcs\]"):
    train_and_evaluate.train_and_evaluate(config, RUN)  # what experiments.train runs
  checkpoints.require_storage_backend("/a/local/run")  # local paths need nothing
  checkpoints.require_storage_backend("s3://bucket/run")  # other stores: epath's own message
  assert os.listdir(tmp_path) == []


def test_damaged_checkpoints_are_moved_on_object_stores(fake_gcs, monkeypatch):
  def no_rename(self, target):
    raise NotImplementedError("an object store renames objects, not folders")

  monkeypatch.setattr(gpath.PosixGPath, "rename", no_rename)
  source = epath.Path(RUN) / "checkpoints" / "20"
  (source / "state").mkdir(parents=True)
  (source / "state" / "array").write_bytes(b"damaged")
  (source / "_METADATA").write_text("{}")
  target = epath.Path(RUN) / "damaged_checkpoints" / "20-1"
  checkpoints._move_tree(source, target)
  assert (target / "state" / "array").read_bytes() == b"damaged"
  assert (target / "_METADATA").read_text() == "{}"
  assert not source.exists()


def test_report_is_written_to_the_uri(fake_gcs):
  figures = {"classification": {"accuracy": 0.5, "nll": 1.0, "brier": 0.6},
             "robustness": {"linf": {"epsilons": [0.0, 8 / 255], "accuracy": [0.5, 0.1]}},
             "meta": {"dataset": "cifar10", "objective": "ngebm", "ood_sets": ["interp"],
                      "ood_missing": {"svhn": "python -m experiments.prepare_data ..."}}}
  written = report.write_report({"run": figures}, "gs://bucket/report")
  assert written["report_md"] == "gs://bucket/report/report.md"
  text = epath.Path(written["report_md"]).read_text()
  assert "evaluated on interp" in text and "Not prepared, left out: svhn" in text
  record = reporting.read_json("gs://bucket/report/results.json")["runs"]["run"]
  assert record["accuracy"] == record["evaluation"]["classification"]["accuracy"] == 0.5
  assert epath.Path("gs://bucket/report/robustness_linf.png").read_bytes()[:4] == b"\x89PNG"
