r"""Rolled against unrolled `lax.scan` for the SGLD chain: compile time and run time.

XLA:CPU runs convolutions inside while loops (a rolled `lax.scan` / `lax.fori_loop`) slower than
the same convolutions at top level (1.6-2.5x here; jax-ml/jax#12868), so `ngebm_jax.sgld` unrolls
the chain fully on CPU. This program measures it, on a small conv net written here in plain JAX
(3 conv layers, LeakyReLU, global average pool, linear head; 32x32x3 inputs), for one jitted
`sgld_sample` call and for a whole JEM training step (value and gradient of `sgld_ebm_loss`,
with an unlabelled batch).

  PYTHONPATH=. .venv/bin/python experiments/bench_sgld_unroll.py --unrolls=1,20 --repeats=7 \
      --output=/tmp/bench_sgld_unroll.json

Writes a JSON list of `{backend, mode, unroll, batch_size, num_steps, compile_s, run_s,
run_s_min, run_s_all}` (`compile_s`: lower + compile; `run_s`: median wall time of one call,
timed round-robin over the settings) and logs a table. Also checks that every unroll setting
computes the same result.
"""

from __future__ import annotations

import json
import time

from absl import app
from absl import flags
from absl import logging
import jax
import jax.numpy as jnp
import numpy as np

from ngebm_jax import sgld

_BATCH_SIZE = flags.DEFINE_integer("batch_size", 64, "SGLD batch size.")
_NUM_STEPS = flags.DEFINE_integer("num_steps", 20, "SGLD steps K.")
_UNROLLS = flags.DEFINE_list("unrolls", ["1", "20"], "lax.scan unroll factors to compare.")
_REPEATS = flags.DEFINE_integer("repeats", 5, "Timed runs per setting (after one warm-up).")
_WIDTH = flags.DEFINE_integer("width", 32, "Channels of the first conv layer (then 2x, 2x).")
_MODES = flags.DEFINE_list("modes", ["sample", "train_step"],
                           "What to time: 'sample' (one sgld_sample chain) and/or 'train_step' "
                           "(value and gradient of sgld_ebm_loss, x_unlabelled given).")
_OUTPUT = flags.DEFINE_string("output", None, "Where to write the JSON results (optional).")


def init_small_cnn(key, *, width: int, num_classes: int = 10, in_channels: int = 3):
  """Parameters of a 3-layer conv net: 3x3 convs `in -> w -> 2w (stride 2) -> 2w (stride 2)`."""
  chans = [in_channels, width, 2 * width, 2 * width]
  keys = jax.random.split(key, 4)
  params = {}
  for i in range(3):
    fan_in = 9 * chans[i]
    params[f"conv{i}"] = {
        "w": jax.random.normal(keys[i], (3, 3, chans[i], chans[i + 1])) / np.sqrt(fan_in),
        "b": jnp.zeros((chans[i + 1],)),
    }
  params["head"] = {
      "w": jax.random.normal(keys[3], (chans[-1], num_classes)) / np.sqrt(chans[-1]),
      "b": jnp.zeros((num_classes,)),
  }
  return params


def small_cnn_apply(params, x):
  """`[B, 32, 32, 3] -> logits [B, K]`."""
  h = x
  for i, stride in enumerate((1, 2, 2)):
    p = params[f"conv{i}"]
    h = jax.lax.conv_general_dilated(h, p["w"], (stride, stride), "SAME",
                                     dimension_numbers=("NHWC", "HWIO", "NHWC")) + p["b"]
    h = jax.nn.leaky_relu(h, 0.2)
  h = jnp.mean(h, axis=(1, 2))
  return h @ params["head"]["w"] + params["head"]["b"]


def _programs(mode: str, unroll: int, batch_size: int, num_steps: int):
  """The jitted function to time and its arguments' builder, for one mode."""
  if mode == "sample":
    return jax.jit(lambda p, x, y, b, k: sgld.sgld_sample(
        small_cnn_apply, p, x, k, num_steps=num_steps, unroll=unroll))
  if mode == "train_step":  # value and gradient of the JEM loss, buffer update included
    return jax.jit(jax.value_and_grad(lambda p, x, y, b, k: sgld.sgld_ebm_loss(
        small_cnn_apply, p, x, y, b, k, num_steps=num_steps, unroll=unroll, x_unlabelled=x),
                                      has_aux=True))
  raise ValueError(f"unknown mode {mode!r}; expected 'sample' or 'train_step'.")


def main(argv):
  del argv
  backend = jax.default_backend()
  key_params, key_x, key_buf, key_chain = jax.random.split(jax.random.key(0), 4)
  params = init_small_cnn(key_params, width=_WIDTH.value)
  x = jax.random.uniform(key_x, (_BATCH_SIZE.value, 32, 32, 3), minval=-1.0, maxval=1.0)
  y = jnp.arange(_BATCH_SIZE.value, dtype=jnp.int32) % 10
  buf = sgld.init_replay_buffer(key_buf, 1000, (32, 32, 3))
  args = (params, x, y, buf, key_chain)
  settings = [(mode, int(u)) for mode in _MODES.value for u in _UNROLLS.value]
  compiled, compile_s, outputs = {}, {}, {}
  for mode, unroll in settings:
    fn = _programs(mode, unroll, _BATCH_SIZE.value, _NUM_STEPS.value)
    t0 = time.perf_counter()
    compiled[mode, unroll] = fn.lower(*args).compile()
    compile_s[mode, unroll] = time.perf_counter() - t0
    outputs[mode, unroll] = jax.block_until_ready(compiled[mode, unroll](*args))  # warm-up
    logging.info("%s %s unroll=%d compiled in %.2f s", backend, mode, unroll,
                 compile_s[mode, unroll])
  # Round-robin timing, so that load from other processes spreads over all settings.
  times = {s: [] for s in settings}
  for _ in range(_REPEATS.value):
    for s in settings:
      t0 = time.perf_counter()
      jax.block_until_ready(compiled[s](*args))
      times[s].append(time.perf_counter() - t0)
  results = []
  for mode, unroll in settings:
    t = times[mode, unroll]
    row = {"backend": backend, "device": str(jax.devices()[0].device_kind), "mode": mode,
           "unroll": unroll, "batch_size": _BATCH_SIZE.value, "num_steps": _NUM_STEPS.value,
           "width": _WIDTH.value, "compile_s": compile_s[mode, unroll],
           "run_s": float(np.median(t)), "run_s_min": float(np.min(t)), "run_s_all": t}
    results.append(row)
    logging.info("%s %-10s unroll=%3d  compile %6.2f s  run %.3f s (median of %d; min %.3f)",
                 backend, mode, unroll, row["compile_s"], row["run_s"], len(t), min(t))
  for mode in _MODES.value:  # every unroll setting computes the same thing
    ref = jax.tree.leaves(outputs[mode, int(_UNROLLS.value[0])])
    for u in _UNROLLS.value:
      for a, b in zip(ref, jax.tree.leaves(outputs[mode, int(u)])):
        if jnp.issubdtype(a.dtype, jnp.floating):
          np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-3, atol=1e-3,
                                     err_msg=f"{mode}: unroll={u} changed the result")
  print(json.dumps(results, indent=1))
  if _OUTPUT.value:
    with open(_OUTPUT.value, "w") as f:
      json.dump(results, f, indent=1)


if __name__ == "__main__":
  app.run(main)
