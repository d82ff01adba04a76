"""The PyTorch peer: the reference's train steps in PyTorch, timed beside ours in one run.

`start_peer` starts a child process that runs `_pytorch_worker.py` (the baseline, NG-EBM by
double backward, and JEM with its replay buffer, written in PyTorch as the reference code
does), gives it our model's initial parameters and our batch, and returns a `PytorchPeer`
whose `step(name)` runs and times one PyTorch train step. The benchmark calls it right after
each of our steps of the same name (`timing.step_benchmark`), so both sides are timed
round-robin, minutes apart at most, on the same machine and under the same load.

Why a child process rather than importing torch here: PyTorch and XLA each keep their own
thread pools and OpenMP/oneDNN runtimes, which would share (and fight over) one process; the
child owns its runtime, sleeps on its pipe while our step runs, and may come from another
Python environment (`python=`), so torch need not be installed beside JAX. Without torch,
`start_peer` says why and the benchmark times our side alone.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from typing import Any, Sequence

import jax
import numpy as np

WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_pytorch_worker.py")
MODELS = ("wide_resnet", "small_cnn")
OBJECTIVES = ("baseline", "ngebm", "sgld")
COMPONENTS = ("forward", "input_grad", "param_grad", "ngebm_grad")  # as timing.component_times


class PeerError(RuntimeError):
  """The PyTorch worker failed or answered with an error."""


def step_spec(variant) -> tuple[dict | None, str | None]:
  """What the worker builds for one of our variants, or None and the reason it cannot."""
  config = variant.config
  if not variant.canonical:
    return None, "another form of one of our steps; PyTorch's is beside the config's form"
  if variant.objective not in OBJECTIVES:
    return None, f"no PyTorch step for objective {variant.objective!r}"
  if variant.objective == "ngebm" and config.ngebm.penalty_fraction != 1:
    return None, "the PyTorch NG-EBM step has the paper's penalty on the whole batch only"
  spec = {"name": variant.name, "objective": variant.objective}
  if variant.objective == "ngebm":
    spec.update(beta=float(config.ngebm.beta), gamma=float(config.ngebm.gamma))
  elif variant.objective == "sgld":
    c = config.sgld
    if c.energy_l2:
      return None, "the PyTorch JEM step has no energy penalty (config.sgld.energy_l2 > 0)"
    spec.update(num_steps=int(c.num_steps), step_size=float(c.step_size),
                noise_std=float(c.noise_std), reinit_prob=float(c.reinit_prob),
                buffer_size=int(c.buffer_size),
                separate_unlabelled_batch=bool(c.separate_unlabelled_batch))
  return spec, None


def model_spec(config, num_classes: int, in_channels: int) -> tuple[dict | None, str | None]:
  """The worker's model for `config.model`, or None and the reason it has none."""
  m = config.model
  if m.name not in MODELS:
    return None, f"no PyTorch model for {m.name!r}"
  if m.dropout_rate > 0 or m.dtype != "float32":
    return None, "the PyTorch steps run float32 without dropout"
  return {"name": m.name, "depth": int(m.depth), "width": int(m.width),
          "num_classes": int(num_classes), "in_channels": int(in_channels)}, None


class PytorchPeer:
  """A running PyTorch worker: `step(name) -> (seconds, loss)` times one train step there."""

  def __init__(self, python: str | None = None):
    self.python = python or sys.executable
    self._log = tempfile.TemporaryFile(mode="w+")
    self._proc = subprocess.Popen(
        [self.python, WORKER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log,
        text=True, bufsize=1, env=dict(os.environ, PYTHONPATH=""))
    self.names: tuple[str, ...] = ()
    self.info: dict = {}

  def _ask(self, **command) -> dict:
    try:
      self._proc.stdin.write(json.dumps(command) + "\n")
      self._proc.stdin.flush()
      line = self._proc.stdout.readline()
    except (BrokenPipeError, OSError):
      line = ""
    if not line:
      self._log.seek(0)
      raise PeerError(f"the PyTorch worker ({self.python}) stopped: "
                      f"{self._log.read()[-2000:].strip()}")
    reply = json.loads(line)
    if "error" in reply:
      raise PeerError(f"the PyTorch worker failed on {command['cmd']}: {reply['error']}")
    return reply

  def setup(self, model: dict, steps: Sequence[dict], arrays: dict[str, np.ndarray], *,
            learning_rate: float, seed: int, threads: int | None = None) -> dict:
    """Builds one model (from the same initial parameters), Adam and buffer per step."""
    with tempfile.TemporaryDirectory() as tmp:
      path = os.path.join(tmp, "arrays.npz")
      np.savez(path, **arrays)
      self.info = self._ask(cmd="setup", model=model, steps=list(steps), arrays=path,
                            learning_rate=float(learning_rate), seed=int(seed), threads=threads)
    self.names = tuple(s["name"] for s in steps)
    return self.info

  def step(self, name: str) -> tuple[float, float | None]:
    """Runs the train step `name` (or `component:<piece>`); its seconds and loss (or None)."""
    reply = self._ask(cmd="step", name=name)
    loss = reply["loss"]
    return float(reply["seconds"]), (float(loss) if loss is not None else None)

  def component_calls(self) -> dict:
    """`{"pytorch_forward": call, ...}`: zero-argument calls of the profile's pieces."""
    return {f"pytorch_{piece}": (lambda piece=piece: self.step(f"component:{piece}"))
            for piece in COMPONENTS}

  def peak_rss_bytes(self) -> int:
    return int(self._ask(cmd="stats")["peak_rss_bytes"])

  def close(self) -> None:
    if self._proc.poll() is None:
      try:
        self._proc.stdin.write(json.dumps({"cmd": "quit"}) + "\n")
        self._proc.stdin.close()
        self._proc.wait(timeout=30)
      except (BrokenPipeError, OSError, subprocess.TimeoutExpired):
        self._proc.kill()
        self._proc.wait()
    self._log.close()


def torch_version(python: str | None = None) -> tuple[str | None, str | None]:
  """`(version, None)` if `python` can import torch, else `(None, reason)`."""
  python = python or sys.executable
  try:
    proc = subprocess.run([python, "-c", "import torch; print(torch.__version__)"],
                          capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, PYTHONPATH=""))
  except (OSError, subprocess.TimeoutExpired) as e:
    return None, f"cannot run {python}: {e}"
  if proc.returncode != 0:
    return None, (f"torch is not installed for {python} (pip install 'ngebm_jax[torch]', or "
                  "pass the Python of an environment that has it)")
  return proc.stdout.strip(), None


def host_params(params: Any) -> dict[str, np.ndarray]:
  """Our parameters as `{"blocks/stage1_block1/conv1/kernel": array}` (host float32)."""
  flat = jax.tree_util.tree_flatten_with_path(jax.device_get(params))[0]
  key = lambda path: "/".join(str(getattr(k, "key", getattr(k, "name", k))) for k in path)
  return {key(path): np.asarray(leaf, np.float32) for path, leaf in flat}


def start_peer(variants: Sequence, params: Any, batch: dict, *, num_classes: int,
               python: str | None = None, threads: int | None = None
               ) -> tuple[PytorchPeer | None, dict]:
  """Starts the worker for the `variants` it can run, from `params` and the host `batch`.

  Returns `(peer or None, info)`: `info` says whether the peer runs (`available`), why not
  (`reason`), torch's version and threads, and the variants it skips with their reasons.
  """
  info = {"available": False, "python": python or sys.executable, "skipped": {}}
  if jax.default_backend() != "cpu":
    info["reason"] = f"the PyTorch peer times CPU steps; this run is on {jax.default_backend()}"
    return None, info
  version, reason = torch_version(python)
  if reason:
    info["reason"] = reason
    return None, info
  config = variants[0].config
  model, reason = model_spec(config, num_classes, np.shape(batch["image"])[-1])
  if reason:
    info["reason"] = reason
    return None, info
  specs = []
  for v in variants:
    spec, why = step_spec(v)
    if spec:
      specs.append(spec)
    else:
      info["skipped"][v.name] = why
  if not specs:
    info["reason"] = "none of the timed objectives has a PyTorch step"
    return None, info
  arrays = {k: np.asarray(v) for k, v in batch.items()}
  arrays.update({f"param/{k}": v for k, v in host_params(params).items()})
  peer = PytorchPeer(python)
  try:
    info.update(peer.setup(model, specs, arrays, learning_rate=config.optimizer.learning_rate,
                           seed=config.seed, threads=threads))
  except PeerError:
    peer.close()
    raise
  info.update(available=True, torch_version=version, steps=list(peer.names))
  return peer, info
