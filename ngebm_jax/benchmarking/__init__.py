"""Measuring train steps: compiled step programs, XLA's cost and memory figures, timing.

The pieces the benchmark workflow (`ngebm_jax.workflows.benchmark`) composes:

  step_programs  one compiled SPMD train step per objective variant (SGLD with its K)
  xla_costs      FLOPs, planned memory and allocator peaks of a compiled step; device peaks
  timing         round-robin step timing, its summary, and the components of a step
  report         benchmark.json, benchmark.md and benchmark.png

Nothing here decides what to run or writes anything but the report.
"""
