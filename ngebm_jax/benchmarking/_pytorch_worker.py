"""The PyTorch side of the side-by-side benchmark: the reference's train steps, served on a pipe.

`pytorch_peer.PytorchPeer` runs this file as a script (`python _pytorch_worker.py`), possibly
in another Python environment than the benchmark's, so it imports only the standard library,
NumPy and torch. It reads one JSON command per line on stdin and answers one JSON line on
stdout: `setup` (build the models, optimizers and buffers), `step` (run and time one train
step, or one piece of a step: `component:forward`, ... for the profile), `stats` (the
process's peak memory), `quit`.

The steps are written from the papers' descriptions, in the style of the reference code (eager
PyTorch, float32, NCHW):

- the model: the Wide-ResNet of JEM (arXiv 1912.03263) as NG-EBM (arXiv 2304.01297) trains it,
  without normalization, LeakyReLU(0.2), every convolution with a bias, the stride on a
  block's second convolution, global average pool and a linear head; or the small CNN of this
  package (same conventions, three convolutions);
- baseline: cross-entropy, Adam;
- NG-EBM: `CE + beta * Var(logsumexp f) + gamma * mean ||d logsumexp f / dx||`, the input
  gradient taken with `torch.autograd.grad(..., create_graph=True)` and the norm's gradient by
  double backward, as the NG-EBM code computes it;
- JEM: K SGLD steps `x <- x + alpha * d logsumexp f / dx + sigma * N(0, I)` from a persistent
  replay buffer (uniform restarts with probability `reinit_prob`), the samples written back,
  then `CE(f(x), y) - mean logsumexp f(x_data) + mean logsumexp f(x~)` with three forward passes
  (labelled batch, unlabelled batch, samples), as JEM's code does.

Every step ends with `loss.item()` (the reference's divergence check), so the timed call
includes all of its work. The 0.03 input noise of the recipe is in the batch the benchmark
passes (its data pipeline adds it, as the reference's data transform does), outside the timed
step on both sides.
"""

from __future__ import annotations

import copy
import json
import resource
import sys
import time

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

NEGATIVE_SLOPE = 0.2


def _lrelu(x):
  return F.leaky_relu(x, NEGATIVE_SLOPE)


def _conv(cin: int, cout: int, k: int, stride: int = 1) -> nn.Conv2d:
  return nn.Conv2d(cin, cout, k, stride=stride, padding=(k - 1) // 2, bias=True)


class WideBasic(nn.Module):
  """Pre-activation block without normalization: `conv2(lrelu(conv1(lrelu(x)))) + shortcut`."""

  def __init__(self, cin: int, cout: int, stride: int):
    super().__init__()
    self.conv1 = _conv(cin, cout, 3)
    self.conv2 = _conv(cout, cout, 3, stride)
    self.shortcut = _conv(cin, cout, 1, stride) if stride != 1 or cin != cout else None

  def forward(self, x):
    out = self.conv2(_lrelu(self.conv1(_lrelu(x))))
    return out + (x if self.shortcut is None else self.shortcut(x))


class WideResNet(nn.Module):
  """WRN-depth-width: stem, three stages of (depth - 4) / 6 blocks, lrelu, pool, linear."""

  def __init__(self, depth: int, width: int, num_classes: int, in_channels: int = 3):
    super().__init__()
    self.stem = _conv(in_channels, 16, 3)
    blocks, cin = {}, 16
    for stage, (cout, stride) in enumerate([(16 * width, 1), (32 * width, 2), (64 * width, 2)],
                                           start=1):
      for i in range((depth - 4) // 6):
        blocks[f"stage{stage}_block{i + 1}"] = WideBasic(cin, cout, stride if i == 0 else 1)
        cin = cout
    self.blocks = nn.ModuleDict(blocks)  # in insertion order
    self.head = nn.Linear(cin, num_classes)

  def forward(self, x):
    out = self.stem(x)
    for block in self.blocks.values():
      out = block(out)
    return self.head(_lrelu(out).mean(dim=(2, 3)))


class SmallCNN(nn.Module):
  """stem (w) -> lrelu -> conv 2w stride 2 -> lrelu -> conv 4w stride 2 -> lrelu, pool, linear."""

  def __init__(self, width: int, num_classes: int, in_channels: int = 3):
    super().__init__()
    self.stem = _conv(in_channels, width, 3)
    self.conv1 = _conv(width, 2 * width, 3, 2)
    self.conv2 = _conv(2 * width, 4 * width, 3, 2)
    self.head = nn.Linear(4 * width, num_classes)

  def forward(self, x):
    out = self.conv2(_lrelu(self.conv1(_lrelu(self.stem(x)))))
    return self.head(_lrelu(out).mean(dim=(2, 3)))


def build_model(spec: dict) -> nn.Module:
  if spec["name"] == "wide_resnet":
    return WideResNet(spec["depth"], spec["width"], spec["num_classes"], spec["in_channels"])
  if spec["name"] == "small_cnn":
    return SmallCNN(spec["width"], spec["num_classes"], spec["in_channels"])
  raise ValueError(f"no PyTorch model for {spec['name']!r}")


def load_params(model: nn.Module, params: dict[str, np.ndarray]) -> None:
  """Copies JAX parameters (`"stem/kernel"`: HWIO kernels, `(in, out)` dense) into `model`."""
  state = {}
  for path, value in params.items():
    *module, leaf = path.split("/")
    if leaf == "kernel":
      value = value.transpose(3, 2, 0, 1) if value.ndim == 4 else value.T
    state[".".join(module) + (".weight" if leaf == "kernel" else ".bias")] = torch.from_numpy(
        np.ascontiguousarray(value, np.float32))
  model.load_state_dict(state, strict=True)


class Step:
  """One variant: its own model, Adam, and (JEM) replay buffer; `__call__` runs one step."""

  def __init__(self, spec: dict, model: nn.Module, data: dict, learning_rate: float,
               generator: torch.Generator):
    self.spec, self.model, self.data, self.gen = spec, model, data, generator
    self.optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate, betas=(0.9, 0.999))
    if spec["objective"] == "sgld":
      shape = (spec["buffer_size"],) + tuple(data["x"].shape[1:])
      self.buffer = torch.rand(shape, generator=generator) * 2 - 1

  def __call__(self) -> float:
    loss = getattr(self, "_" + self.spec["objective"])()
    self.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    self.optimizer.step()
    return float(loss.item())  # the reference checks |loss| > 1e8 every step

  def _baseline(self):
    return F.cross_entropy(self.model(self.data["x"]), self.data["y"])

  def _ngebm(self):
    x = self.data["x"].clone().requires_grad_(True)
    logits = self.model(x)
    log_p = logits.logsumexp(dim=1)
    energy_var = ((log_p.mean() - log_p) ** 2).mean()
    grad = torch.autograd.grad(log_p.sum(), x, create_graph=True)[0]
    grad_norm = grad.flatten(1).norm(p=2, dim=1).mean()
    ce = F.cross_entropy(logits, self.data["y"])
    return ce + self.spec["beta"] * energy_var + self.spec["gamma"] * grad_norm

  def _sgld(self):
    s, x = self.spec, self.data["x"]
    n = x.shape[0]
    idx = torch.randint(0, self.buffer.shape[0], (n,), generator=self.gen)
    x_k = self.buffer[idx]
    restart = (torch.rand(n, generator=self.gen) < s["reinit_prob"]).view(-1, 1, 1, 1)
    x_k = torch.where(restart, torch.rand(x_k.shape, generator=self.gen) * 2 - 1, x_k)
    x_k.requires_grad_(True)
    for _ in range(s["num_steps"]):
      grad = torch.autograd.grad(self.model(x_k).logsumexp(dim=1).sum(), [x_k])[0]
      x_k.data += s["step_size"] * grad + s["noise_std"] * torch.randn(
          x_k.shape, generator=self.gen)
    samples = x_k.detach()
    self.buffer[idx] = samples
    x_data = self.data["x_unlabelled"] if s["separate_unlabelled_batch"] else x
    log_p_data = self.model(x_data).logsumexp(dim=1).mean()
    log_p_samples = self.model(samples).logsumexp(dim=1).mean()
    ce = F.cross_entropy(self.model(x), self.data["y"])
    return ce - log_p_data + log_p_samples


def components(model: nn.Module, data: dict, beta: float = 1.0, gamma: float = 1.0) -> dict:
  """The pieces of the steps, as zero-argument calls (no optimizer update), for a profile.

  `forward`: logits; `input_grad`: `d logsumexp f / dx` (one SGLD step); `param_grad`:
  cross-entropy and its parameter gradient (the baseline's network work); `ngebm_grad`: the
  NG-EBM loss and its parameter gradient (double backward).
  """
  x, y = data["x"], data["y"]
  params = list(model.parameters())
  step = Step({"objective": "ngebm", "beta": beta, "gamma": gamma}, model, data, 0.0, None)

  def forward():
    with torch.no_grad():
      model(x)

  def input_grad():
    x_ = x.clone().requires_grad_(True)
    torch.autograd.grad(model(x_).logsumexp(dim=1).sum(), [x_])

  def param_grad():
    torch.autograd.grad(F.cross_entropy(model(x), y), params)

  def ngebm_grad():
    torch.autograd.grad(step._ngebm(), params)  # pylint: disable=protected-access

  return {"forward": forward, "input_grad": input_grad, "param_grad": param_grad,
          "ngebm_grad": ngebm_grad}


def _setup(command: dict) -> tuple[dict, dict]:
  if command.get("threads"):
    torch.set_num_threads(int(command["threads"]))
  torch.manual_seed(command["seed"])
  arrays = np.load(command["arrays"])
  to_nchw = lambda a: torch.from_numpy(np.ascontiguousarray(a.transpose(0, 3, 1, 2), np.float32))
  data = {"x": to_nchw(arrays["image"]), "y": torch.from_numpy(arrays["label"].astype(np.int64))}
  if "image_unlabelled" in arrays:
    data["x_unlabelled"] = to_nchw(arrays["image_unlabelled"])
  params = {k[len("param/"):]: arrays[k] for k in arrays.files if k.startswith("param/")}
  model = build_model(command["model"])
  if params:
    load_params(model, params)
  steps = {}
  for i, spec in enumerate(command["steps"]):
    if spec["objective"] == "sgld" and spec["separate_unlabelled_batch"] and (
        "x_unlabelled" not in data):
      raise ValueError(f"{spec['name']}: the batch has no 'image_unlabelled'.")
    gen = torch.Generator().manual_seed(command["seed"] + i)
    steps[spec["name"]] = Step(spec, copy.deepcopy(model), data, command["learning_rate"], gen)
  steps.update({f"component:{k}": v for k, v in components(model, data).items()})
  return steps, {"torch_version": torch.__version__, "threads": torch.get_num_threads()}


def serve(stdin=sys.stdin, stdout=sys.stdout) -> None:
  """Answers the commands of `pytorch_peer.PytorchPeer`, one JSON line each, until `quit`."""
  steps = {}
  for line in stdin:
    command = json.loads(line)
    try:
      if command["cmd"] == "setup":
        steps, reply = _setup(command)
      elif command["cmd"] == "step":  # a train step (its loss) or a component (None)
        t0 = time.perf_counter()
        loss = steps[command["name"]]()
        reply = {"seconds": time.perf_counter() - t0, "loss": loss}
      elif command["cmd"] == "stats":
        # ru_maxrss is in KiB on Linux.
        reply = {"peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}
      elif command["cmd"] == "quit":
        return
      else:
        raise ValueError(f"unknown command {command['cmd']!r}")
    except Exception as e:  # pylint: disable=broad-except  # reported to the benchmark
      reply = {"error": f"{type(e).__name__}: {e}"}
    stdout.write(json.dumps(reply) + "\n")
    stdout.flush()


if __name__ == "__main__":
  serve()
