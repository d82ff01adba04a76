r"""Which form of the Approximate Mass gradient is faster: a full NG-EBM training step per mode.

`ng.ngebm_loss(..., grad_mode=...)` differentiates the penalty `mean_i ||d log p~(x_i)/dx_i||`
either by a reverse-over-reverse double backward or by a forward-mode `jvp` along the normalized
input gradient (docs/method.rst). Both give the same loss and gradients; this
program times them, in one process, on the models of this package:

  .venv/bin/python -m experiments.bench_grad_modes --models=small_cnn,wide_resnet \
      --batch_size=64 --repeats=10 --output=/tmp/bench_grad_modes.json

For every model it times three jitted training steps (`value_and_grad` of the loss, then an
Adam update, parameters and optimizer state donated): the cross-entropy baseline and NG-EBM in
each `grad_mode`. After one compile and one warm-up call per step, the steps are timed
round-robin (so that load from other processes spreads over all of them) and the median of
`--repeats` calls is reported. Writes a JSON list of `{backend, device, model, step, batch_size,
compile_s, run_s (median), run_s_min, run_s_all, ratio_to_baseline}` and logs a table. Also
checks that both modes give the same loss and parameters after the first step.

Measured on 2 shared CPU cores (load average 10-14 from other jobs; see CHANGELOG.md for the
figures of the 0.1.0 release).
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
import optax

import ngebm_jax as ng
from ngebm_jax import models

_MODELS = flags.DEFINE_list("models", ["small_cnn", "wide_resnet"],
                            "Models to time: small_cnn (width 16) and/or wide_resnet (WRN-10-1).")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 64, "Batch size.")
_REPEATS = flags.DEFINE_integer("repeats", 10, "Timed calls per step (after a warm-up call).")
_OUTPUT = flags.DEFINE_string("output", None, "Where to write the JSON results (optional).")

MODEL_KWARGS = {"small_cnn": dict(width=16), "wide_resnet": dict(depth=10, width=1)}
STEPS = ("baseline", "forward_over_reverse", "reverse_over_reverse")


def make_train_step(apply_fn, optimizer, step: str):
  """A jitted `(params, opt_state, x, y) -> (params, opt_state, loss)`, state donated."""
  if step == "baseline":
    loss_fn = lambda p, x, y: ng.cross_entropy_loss(apply_fn, p, x, y)
  else:
    loss_fn = lambda p, x, y: ng.ngebm_loss(apply_fn, p, x, y, grad_mode=step)

  def train_step(params, opt_state, x, y):
    (loss, _), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, x, y)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  return jax.jit(train_step, donate_argnums=(0, 1))


def time_model(name: str, batch_size: int, repeats: int) -> list[dict]:
  key_params, key_x = jax.random.split(jax.random.key(0))
  fns, params = models.create_model(name, num_classes=10, key=key_params, **MODEL_KWARGS[name])
  x = jax.random.uniform(key_x, (batch_size, 32, 32, 3), minval=-1.0, maxval=1.0)
  y = jnp.arange(batch_size, dtype=jnp.int32) % 10
  optimizer = optax.adam(1e-3)
  copy = lambda tree: jax.tree.map(jnp.copy, tree)  # donated buffers: each step owns its state
  state, compiled, compile_s, first = {}, {}, {}, {}
  for step in STEPS:
    fn = make_train_step(fns.apply_fn, optimizer, step)
    state[step] = (copy(params), optimizer.init(copy(params)))
    t0 = time.perf_counter()
    compiled[step] = fn.lower(*state[step], x, y).compile()
    compile_s[step] = time.perf_counter() - t0
    new_params, opt_state, loss = jax.block_until_ready(compiled[step](*state[step], x, y))
    first[step] = (float(loss), jax.tree.map(np.asarray, new_params))
    state[step] = (new_params, opt_state)
    logging.info("%s %s compiled in %.1f s", name, step, compile_s[step])

  (l1, p1), (l2, p2) = first["forward_over_reverse"], first["reverse_over_reverse"]
  np.testing.assert_allclose(l1, l2, rtol=1e-5, err_msg="the grad modes give different losses")
  for a, b in zip(jax.tree.leaves(p1), jax.tree.leaves(p2)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6,
                               err_msg="the grad modes give different Adam steps")

  times = {step: [] for step in STEPS}
  for _ in range(repeats):
    for step in STEPS:
      t0 = time.perf_counter()
      new_params, opt_state, _ = jax.block_until_ready(compiled[step](*state[step], x, y))
      times[step].append(time.perf_counter() - t0)
      state[step] = (new_params, opt_state)

  baseline = float(np.median(times["baseline"]))
  rows = []
  for step in STEPS:
    t = times[step]
    row = {"backend": jax.default_backend(), "device": str(jax.devices()[0].device_kind),
           "model": name, **MODEL_KWARGS[name], "step": step, "batch_size": batch_size,
           "num_params": models.count_params(params), "compile_s": compile_s[step],
           "run_s": float(np.median(t)), "run_s_min": float(np.min(t)), "run_s_all": t,
           "ratio_to_baseline": float(np.median(t)) / baseline}
    rows.append(row)
    logging.info("%-11s %-21s compile %6.1f s  step %7.1f ms (median of %d; min %.1f)  "
                 "%.2fx baseline", name, step, row["compile_s"], 1e3 * row["run_s"], len(t),
                 1e3 * row["run_s_min"], row["ratio_to_baseline"])
  return rows


def main(argv):
  del argv
  for name in _MODELS.value:
    if name not in MODEL_KWARGS:
      raise app.UsageError(f"--models: unknown model {name!r}; choose from {sorted(MODEL_KWARGS)}.")
  results = []
  for name in _MODELS.value:
    results += time_model(name, _BATCH_SIZE.value, _REPEATS.value)
  print(json.dumps(results, indent=1))
  if _OUTPUT.value:
    with open(_OUTPUT.value, "w") as f:
      json.dump(results, f, indent=1)


if __name__ == "__main__":
  app.run(main)
