"""What XLA says about a compiled step: FLOPs, planned memory, and the allocator's peak.

XLA's cost analysis may count the body of a while loop once, whatever its trip count (XLA:CPU
does); whether this backend does is measured (`langevin_step_flops`: chains of 1, 2 and 4
steps differenced), and only then are the FLOPs of a rolled SGLD chain corrected with XLA's own count
of one Langevin step. A count XLA cannot give (-1, e.g. for an opaque custom call, or missing)
is reported as unknown, never as a number. MFU needs the device's dense peak (`PEAK_FLOPS`).
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
from absl import logging

from ngebm_jax import sgld
from ngebm_jax.benchmarking.step_programs import StepProgram

# Dense (no structured sparsity) peak FLOP/s per device kind, from the vendors' data sheets.
# "bfloat16": tensor-core / MXU bfloat16. "tf32": what a float32 step runs at on NVIDIA GPUs,
# whose convolutions and matmuls JAX computes in TF32 by default (default precision); a TPU
# computes float32 in bfloat16 passes, so no float32 peak is claimed for TPUs. Keys are matched
# against `jax.Device.device_kind`, longest first ("H100 PCIe" before "H100", whose plain
# device kind, "NVIDIA H100 80GB HBM3", is the SXM card).
PEAK_FLOPS: dict[str, dict[str, float]] = {
    "H100 PCIe": {"bfloat16": 756e12, "tf32": 378e12},
    "H100 NVL": {"bfloat16": 835e12, "tf32": 418e12},
    "H100": {"bfloat16": 989e12, "tf32": 495e12},  # SXM
    "H200 NVL": {"bfloat16": 835e12, "tf32": 418e12},
    "H200": {"bfloat16": 989e12, "tf32": 495e12},  # SXM
    "A100": {"bfloat16": 312e12, "tf32": 156e12},  # SXM and PCIe alike
    "L4": {"bfloat16": 121e12, "tf32": 60e12},
    "TPU v4": {"bfloat16": 275e12},
    "TPU v5 lite": {"bfloat16": 197e12},  # v5e
    "TPU v5e": {"bfloat16": 197e12},
    "TPU v5p": {"bfloat16": 459e12},
    "TPU v5": {"bfloat16": 459e12},  # v5p's device kind on some runtimes
    "TPU v6 lite": {"bfloat16": 918e12},  # v6e (Trillium)
    "TPU v6e": {"bfloat16": 918e12},
}
# The peak that a step in each compute dtype is measured against.
PEAK_PRECISION = {"bfloat16": "bfloat16", "float32": "tf32"}


def peak(device_kind: str, dtype: str) -> dict | None:
  """`{"flops", "precision", "device"}`: the dense peak a `dtype` step runs at, or None."""
  precision = PEAK_PRECISION.get(dtype)
  for name in sorted(PEAK_FLOPS, key=len, reverse=True):  # "TPU v5 lite" before "TPU v5"
    if name.lower() in device_kind.lower():
      flops = PEAK_FLOPS[name].get(precision)
      return None if flops is None else {"flops": flops, "precision": f"dense {precision}",
                                         "device": name}
  return None


def peak_flops(device_kind: str, dtype: str) -> float | None:
  """Dense peak FLOP/s of a device of kind `device_kind` for a `dtype` step, or None."""
  p = peak(device_kind, dtype)
  return p["flops"] if p else None


def known_flops(flops) -> float | None:
  """A FLOP count, or None where XLA gives none or a negative one (unknown)."""
  return float(flops) if flops is not None and flops >= 0 else None


def mfu(flops, seconds, peak_flops_per_s) -> float | None:
  """Model FLOPs utilization, or None when any of its parts is unknown."""
  flops = known_flops(flops)
  if not flops or not seconds or not peak_flops_per_s or seconds <= 0:
    return None
  return flops / seconds / peak_flops_per_s


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


def _chain_flops(model_fns, params, x, *, num_steps: int, unroll: int, step_size: float,
                 noise_std: float) -> float | None:
  fn = jax.jit(lambda p, x_, key_: sgld.sgld_sample(
      model_fns.apply_fn, p, x_, key_, num_steps=num_steps, step_size=step_size,
      noise_std=noise_std, unroll=unroll))
  return known_flops(_cost(fn.lower(params, x, jax.random.key(0)).compile()).get("flops"))


def langevin_step_flops(model_fns, params, x, *, step_size: float, noise_std: float
                        ) -> dict:
  """XLA's FLOPs of SGLD chains on `x`, and what they say about this backend's counting.

  `per_step`: one SGLD step (input-gradient pass, Langevin noise, update), the difference of
  XLA's counts of a 2-step and a 1-step chain (both without a loop), so everything a step does
  is in it (the Gaussian noise's random-bit generation is a sizeable share of it for small
  models). `loop_counted_once`: whether a rolled loop's body is counted once (XLA:CPU), from
  the count of a rolled 4-step chain: about one step's if so, about four if each trip is
  counted. Values are None where XLA gives no count.
  """
  kw = dict(step_size=step_size, noise_std=noise_std)
  one, two = (_chain_flops(model_fns, params, x, num_steps=k, unroll=k, **kw) for k in (1, 2))
  if one is None or two is None or two <= one:
    return {"per_step": None, "loop_counted_once": None}
  per_step = two - one
  rolled = _chain_flops(model_fns, params, x, num_steps=4, unroll=1, **kw)
  once = None if rolled is None else abs(rolled - one) < 1.5 * per_step
  return {"per_step": float(per_step), "loop_counted_once": once}


def step_flops(program: StepProgram, per_device_batch: int, image_shape: Sequence[int]) -> dict:
  """FLOPs of one step on one device: XLA's count, corrected for a rolled SGLD loop.

  A rolled SGLD chain (`lax.scan` with unroll u < K, the default off CPU) is a loop of K // u
  iterations of u Langevin steps (then K % u more). Where this backend's cost analysis counts
  a loop body once (`langevin_step_flops`), `(K // u - 1) * u` Langevin steps are missing from
  XLA's count; they are added, at XLA's own count for one step (`langevin_step_flops`). A count
  XLA cannot give is `None` ("unknown"), with the reason in `flops_note`.
  """
  flops_xla = _cost(program.compiled).get("flops")
  if known_flops(flops_xla) is None:
    return {"flops_xla": None, "flops": None,
            "flops_note": f"unknown: XLA's cost analysis gave {flops_xla!r}"}
  out = {"flops_xla": float(flops_xla), "flops": float(flops_xla)}
  v = program.variant
  if v.objective == "sgld" and v.sgld_steps:
    unroll = sgld.resolve_unroll(v.config.sgld.unroll, v.sgld_steps)
    missing = (v.sgld_steps // unroll - 1) * unroll
    out["sgld_unroll"] = unroll
    if missing > 0:
      x = jnp.zeros((per_device_batch, *image_shape), jnp.float32)
      c = v.config.sgld
      chain = langevin_step_flops(program.model_fns, program.params_template, x,
                                  step_size=c.step_size, noise_std=c.noise_std)
      per_step, once = chain["per_step"], chain["loop_counted_once"]
      out["loop_body_counted_once"] = once
      if once is None:
        out["flops"] = None
        out["flops_note"] = "unknown: no XLA count of a Langevin step on this backend"
      elif once:
        out["flops"] = float(flops_xla) + missing * per_step
        out["flops_note"] = (f"rolled loop counted once by XLA: {missing} Langevin steps of "
                             f"{per_step:.3g} FLOPs added to its count")
      else:
        out["flops_note"] = "rolled loop counted per trip by XLA: its count as it is"
  return out
