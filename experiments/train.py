"""Trains and evaluates one config.

  python -m experiments.train --config=configs/cifar100_ngebm.py --workdir=/path/to/run
  python -m experiments.train --config=configs/smoke.py --workdir=/tmp/smoke \
      --config.objective=baseline --config.num_steps=100

Re-running the same command with the same --workdir resumes from its newest checkpoint, with
its compiled programs read from the persistent compilation cache (`config.compilation_cache_dir`).
Multi-host (TPU pod slices, multi-node GPUs): the same command on every host;
`jax.distributed.initialize()` runs when the environment describes a job of more than one
process (see README; NGEBM_NO_DISTRIBUTED=1 skips it). The workflow is
`ngebm_jax.workflows.train_and_evaluate`.
"""

from absl import app
from absl import flags
from ml_collections import config_flags

from ngebm_jax.workflows import launch
from ngebm_jax.workflows import train_and_evaluate

_CONFIG = config_flags.DEFINE_config_file("config", None, "Training config file.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics, results "
                               "(a local path or a URI such as gs://bucket/run).")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  launch.setup()
  train_and_evaluate.train_and_evaluate(_CONFIG.value, _WORKDIR.value)


if __name__ == "__main__":
  app.run(main)
