"""Measuring train steps: compiled step programs, XLA's cost and memory figures, timing.

The pieces the benchmark workflow (`ngebm_jax.workflows.benchmark`) composes:

  step_programs  one compiled SPMD train step per objective variant (SGLD with its K)
  xla_costs      FLOPs, planned memory and allocator peaks of a compiled step; device peaks
  analytic_flops a Wide-ResNet's FLOPs counted by hand, beside XLA's count
  timing         round-robin step timing, its summary, the components of a step, traces
  pytorch_peer   the reference's steps in PyTorch (a child process), timed beside ours
  memory_fit     the largest batch whose compiled step fits a memory budget
  race           training time to a validation accuracy
  report         benchmark.json, benchmark.md and benchmark.png

Nothing here decides what to run or writes anything but the report.
"""
