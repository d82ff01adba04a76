"""Where metrics go: `metrics.jsonl` (one JSON object per line) and TensorBoard event files.

Only process 0 writes; the other processes of a multi-host run get a writer that does nothing.
The workdir may be a URI (`gs://bucket/run`): object stores cannot append to a file, so there
`metrics.jsonl` is rewritten whole at each write (a few hundred kB for a long run, once per
`config.log_every_steps`); a local file is appended to. TensorBoard's events on a URI go through
etils.epath too (the `[gcs]` extra's gcsfs for gs://), not through tensorboardX's own client.
"""

from __future__ import annotations

import io
import json
import math
import os

from etils import epath
import jax

from ngebm_jax.training import checkpoints


class _StorageRecordWriter:
  """tensorboardX's events file on remote storage, through etils.epath (the workdir's backend,
  e.g. gcsfs), instead of tensorboardX's own client for each store (google-cloud-storage for
  gs://). An object store cannot append: the file is rewritten whole at each flush, as
  tensorboardX's own GCS writer does."""

  def __init__(self, path: str):
    self._path = epath.Path(path)
    self._buffer = io.BytesIO()
    self.closed = False

  def write(self, data: bytes) -> None:
    self._buffer.write(data)

  def flush(self) -> None:
    self._path.write_bytes(self._buffer.getvalue())

  def close(self) -> None:
    self.flush()
    self.closed = True


class _StorageWriterFactory:
  def open(self, path: str) -> _StorageRecordWriter:
    return _StorageRecordWriter(path)

  def directory_check(self, path: str) -> None:
    epath.Path(path).mkdir(parents=True, exist_ok=True)


class MetricWriter:

  def __init__(self, workdir: str | os.PathLike, *, tensorboard: bool = True):
    self._active = jax.process_index() == 0
    self._path = checkpoints.workdir_path(workdir) / "metrics.jsonl"
    self._remote = checkpoints.is_uri(workdir)
    self._lines = None  # remote: the whole file, rewritten at each write
    self._jsonl = None
    self._tb = None
    if not self._active:
      return
    if self._remote:
      self._lines = self._path.read_text() if self._path.exists() else ""
    else:
      self._jsonl = self._path.open("a")
    if tensorboard:
      from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
      from tensorboardX import record_writer  # pylint: disable=g-import-not-at-top
      if self._remote:  # events through epath, like every other file of the workdir
        scheme = os.fspath(workdir).split("://", 1)[0]
        record_writer.register_writer_factory(scheme, _StorageWriterFactory())
      self._tb = SummaryWriter(os.fspath(checkpoints.workdir_path(workdir) / "tensorboard"))

  def write(self, step: int, metrics: dict) -> None:
    if not self._active:
      return
    # Unlike the reports (`reporting.to_jsonable`: null), the training log keeps "nan", "inf" and
    # "-inf" as strings: which of them a diverging step produced is what its reader looks for.
    clean = {k: (float(v) if math.isfinite(float(v)) else str(float(v)))
             for k, v in metrics.items()}
    line = json.dumps({"step": int(step), **clean}) + "\n"
    if self._remote:
      self._lines += line
      self._path.write_text(self._lines)
    else:
      self._jsonl.write(line)
      self._jsonl.flush()
    if self._tb is not None:
      for k, v in metrics.items():
        self._tb.add_scalar(k, float(v), int(step))

  def close(self) -> None:
    if self._jsonl is not None:
      self._jsonl.close()
    if self._tb is not None:
      self._tb.close()
