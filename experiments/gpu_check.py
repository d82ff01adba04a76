"""The first check on a newly lent GPU or TPU: the benchmark grid and a short training run.

  python -m experiments.gpu_check --config=configs/gpu_check.py --output=runs/gpu_check

`make gpu-check` installs JAX's accelerator build and runs this. Writes
OUTPUT/gpu_check.{json,md}; configs/gpu_check.py says what it measures and how it is sized.
The workflow is `ngebm_jax.workflows.gpu_check`.
"""

from __future__ import annotations

from absl import app
from absl import flags
from ml_collections import config_flags

from ngebm_jax.workflows import gpu_check
from ngebm_jax.workflows import launch

_CONFIG = config_flags.DEFINE_config_file(
    "config", "configs/gpu_check.py", "The check's config (model, grid, training run).",
    lock_config=True)
_OUTPUT = flags.DEFINE_string("output", "runs/gpu_check", "Folder for gpu_check.{json,md}.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  launch.setup()
  gpu_check.run(_CONFIG.value, _OUTPUT.value)
  print(f"Wrote {_OUTPUT.value}/gpu_check.md and gpu_check.json", flush=True)


if __name__ == "__main__":
  app.run(main)
