"""What XLA says about a compiled step: FLOPs, planned memory, and the allocator's peak.

XLA's cost analysis counts the body of a while loop once, whatever its trip count, so the
FLOPs of a rolled SGLD chain are corrected here with XLA's own count of one Langevin step.
MFU needs the device's dense peak, known for the accelerators listed in `PEAK_FLOPS`.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
from absl import logging

from ngebm_jax import sgld
from ngebm_jax.benchmarking.step_programs import StepProgram

PEAK_FLOPS: dict[str, dict[str, float]] = {
    "H200": {"bfloat16": 989e12, "float32": 495e12},
    "H100": {"bfloat16": 989e12, "float32": 495e12},  # SXM; the PCIe card is ~25% lower
    "A100": {"bfloat16": 312e12, "float32": 156e12},
    "L4": {"bfloat16": 121e12, "float32": 60e12},
    "TPU v4": {"bfloat16": 275e12},
    "TPU v5 lite": {"bfloat16": 197e12},
    "TPU v5p": {"bfloat16": 459e12},
    "TPU v6 lite": {"bfloat16": 918e12},
}


def peak_flops(device_kind: str, dtype: str) -> float | None:
  """Dense peak FLOP/s of a device of kind `device_kind` in `dtype`, or None if unknown."""
  for name in sorted(PEAK_FLOPS, key=len, reverse=True):  # "TPU v5 lite" before "TPU v5"
    if name.lower() in device_kind.lower():
      return PEAK_FLOPS[name].get(dtype)
  return None


def memory_figures(compiled) -> dict:
  """Bytes XLA plans for one call of `compiled` (per device), from its memory analysis.

  `peak_bytes` = arguments + outputs - aliased (donated) + temporaries: the device memory one
  step needs with its inputs resident. XLA's own `peak_memory_in_bytes` is kept as
  `xla_peak_memory_bytes` where reported; on CPU it leaves out the temporaries, so it is not the
  headline figure. Empty when the backend has no memory analysis.
  """
  try:
    m = compiled.memory_analysis()
  except Exception as e:  # pylint: disable=broad-except  # not implemented on some backends
    logging.warning("No memory analysis on this backend (%s: %s).", type(e).__name__, e)
    return {}
  if m is None:
    return {}
  out = {}
  for field in ("argument", "output", "temp", "alias", "generated_code"):
    value = getattr(m, f"{field}_size_in_bytes", None)
    if value is not None:
      out[f"{field}_bytes"] = int(value)
  out["peak_bytes"] = int(out.get("argument_bytes", 0) + out.get("output_bytes", 0)
                          - out.get("alias_bytes", 0) + out.get("temp_bytes", 0))
  xla_peak = getattr(m, "peak_memory_in_bytes", None)
  if xla_peak is not None:
    out["xla_peak_memory_bytes"] = int(xla_peak)
  return out


def allocator_peak_bytes(devices) -> int | None:
  """The largest `peak_bytes_in_use` over `devices` (a process-lifetime high-water mark)."""
  peaks = []
  for d in devices:
    try:
      stats = d.memory_stats()
    except Exception:  # pylint: disable=broad-except
      stats = None
    if stats and "peak_bytes_in_use" in stats:
      peaks.append(int(stats["peak_bytes_in_use"]))
  return max(peaks) if peaks else None


def _cost(compiled) -> dict:
  try:
    cost = compiled.cost_analysis()
  except Exception as e:  # pylint: disable=broad-except
    logging.warning("No cost analysis on this backend (%s: %s).", type(e).__name__, e)
    return {}
  if isinstance(cost, (list, tuple)):  # older JAX: one dict per program
    cost = cost[0] if cost else {}
  return dict(cost or {})


def langevin_step_flops(model_fns, params, x, *, step_size: float, noise_std: float
                        ) -> float | None:
  """XLA's FLOPs of one SGLD step on `x`: input-gradient pass, Langevin noise, update.

  Measured as the difference between XLA's counts of a 2-step and a 1-step chain (both without
  a loop), so everything a step does is in it (the Gaussian noise's random-bit generation is a
  sizeable share of it for small models).
  """
  key = jax.random.key(0)
  counts = []
  for k in (1, 2):
    fn = jax.jit(lambda p, x_, key_, k=k: sgld.sgld_sample(
        model_fns.apply_fn, p, x_, key_, num_steps=k, step_size=step_size, noise_std=noise_std,
        unroll=k))
    counts.append(_cost(fn.lower(params, x, key).compile()).get("flops"))
  if None in counts:
    return None
  return float(counts[1] - counts[0])


def step_flops(program: StepProgram, per_device_batch: int, image_shape: Sequence[int]) -> dict:
  """FLOPs of one step on one device: XLA's count, corrected for a rolled SGLD loop.

  XLA's cost analysis counts the body of a while loop once, whatever its trip count. A rolled
  SGLD chain (`lax.scan` with unroll u < K, the default off CPU) is a loop of K // u iterations
  of u Langevin steps (then K % u more), so about `(K // u - 1) * u` Langevin steps are missing
  from the count; they are added here, at XLA's own count for one step (`langevin_step_flops`).
  """
  flops_xla = _cost(program.compiled).get("flops")
  if flops_xla is None:
    return {}
  out = {"flops_xla": float(flops_xla), "flops": float(flops_xla)}
  v = program.variant
  if v.objective == "sgld" and v.sgld_steps:
    from ngebm_jax import sgld  # pylint: disable=g-import-not-at-top
    unroll = sgld.resolve_unroll(v.config.sgld.get("unroll"), v.sgld_steps)
    missing = (v.sgld_steps // unroll - 1) * unroll
    out["sgld_unroll"] = unroll
    if missing > 0:
      x = jnp.zeros((per_device_batch, *image_shape), jnp.float32)
      per_step = langevin_step_flops(program.model_fns, program.params_template, x,
                                     step_size=v.config.sgld.step_size,
                                     noise_std=v.config.sgld.noise_std)
      if per_step is not None:
        out["flops"] = float(flops_xla) + missing * per_step
        out["flops_note"] = (f"rolled loop: {missing} Langevin steps of {per_step:.3g} FLOPs "
                             "added to XLA's count")
  return out
