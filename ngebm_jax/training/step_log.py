"""What the training loop logs: step metrics fetched once per log interval, the progress bar."""

from __future__ import annotations

import time

import jax
import numpy as np

from ngebm_jax.training.divergence import NonFiniteLossError


class MetricsBuffer:
  """The metrics of the steps since the last fetch, fetched together from the devices.

  Steps run ahead of the host; one fetch per log interval is the only host sync. A fetch finds a
  diverged step (`finite < 1`): it raises `NonFiniteLossError`, or counts the step as skipped
  under `config.skip_nonfinite`.
  """

  def __init__(self, config, workdir, step: int):
    self._config, self._workdir = config, workdir
    self._pending: list[tuple[int, dict]] = []
    self.skipped = 0
    self.restart_clock(step)

  def restart_clock(self, step: int) -> None:
    """Times the next steps from now, starting at `step` (after a restart, say)."""
    self._last_time, self._last_step = time.perf_counter(), step

  def add(self, step: int, metrics: dict) -> None:
    self._pending.append((step, metrics))

  def fetch(self) -> dict:
    """The mean of the pending steps' metrics and the step time; {} if none are pending."""
    if not self._pending:
      return {}
    fetched = jax.device_get([m for _, m in self._pending])
    steps = [s for s, _ in self._pending]
    self._pending = []
    for s, m in zip(steps, fetched):
      if m["finite"] < 1:
        self._diverged(s, m)
    now = time.perf_counter()
    mean = {k: float(np.mean([m[k] for m in fetched])) for k in fetched[0]}
    mean["step_time_s"] = (now - self._last_time) / max(steps[-1] + 1 - self._last_step, 1)
    mean["skipped_nonfinite_steps"] = self.skipped
    self.restart_clock(steps[-1] + 1)
    return mean

  def _diverged(self, step: int, metrics: dict) -> None:
    config = self._config
    if config.skip_nonfinite:
      self.skipped += 1
      return
    terms = ", ".join(f"{k}={float(v):.6g}" for k, v in sorted(metrics.items()))
    raise NonFiniteLossError(
        f"Non-finite loss or gradient, or |loss| above config.max_abs_loss "
        f"({config.max_abs_loss:g}), at step {step} ({terms}). The update was not applied; "
        f"the last good checkpoint in {self._workdir} is kept. Lower the learning rate (JEM "
        "diverges this way), set config.max_restarts > 0 to restart from the last good "
        "checkpoint with a new key, or config.skip_nonfinite=True to skip such steps.",
        step=step)


class Progress:
  """The progress bar of process 0 (`config.progress_bar`); does nothing elsewhere."""

  def __init__(self, config, total: int, step: int):
    self._bar = None
    if jax.process_index() == 0 and config.progress_bar:
      from tqdm import auto as tqdm  # pylint: disable=g-import-not-at-top
      self._bar = tqdm.tqdm(total=total, initial=step, desc=f"train {config.objective}",
                            unit="step", dynamic_ncols=True)

  def update(self) -> None:
    if self._bar is not None:
      self._bar.update(1)

  def show(self, mean: dict) -> None:
    if self._bar is not None:
      self._bar.set_postfix(loss=f"{mean['loss']:.4f}", acc=f"{mean['accuracy']:.3f}",
                            step_s=f"{mean['step_time_s']:.3f}")

  def move_to(self, step: int) -> None:
    if self._bar is not None:
      self._bar.n = step
      self._bar.refresh()

  def close(self) -> None:
    if self._bar is not None:
      self._bar.close()
