"""Where metrics go: `metrics.jsonl` (one JSON object per line) and TensorBoard event files.

Only process 0 writes; the other processes of a multi-host run get a writer that does nothing.
The workdir may be a URI (`gs://bucket/run`): object stores cannot append to a file, so there
`metrics.jsonl` is rewritten whole at each write (a few hundred kB for a long run, once per
`config.log_every_steps`); a local file is appended to.
"""

from __future__ import annotations

import json
import math
import os

import jax

from ngebm_jax.training import checkpoints


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
