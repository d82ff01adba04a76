r"""Calibration study: NG-EBM against an over-confident baseline, beside temperature scaling.

  python -m experiments.calibration_study --output=runs/calibration_study
  python -m experiments.calibration_study --output=/tmp/cs --config.study.seeds=0,1 \
      --config.study.gammas=0.3, --config.study.train_sizes="()" \
      --config.num_steps=1000                                    # a smaller one
  python -m experiments.calibration_study --output=runs/cs_cifar10 \
      --config.dataset.name=cifar10 --config.dataset.data_dir=DIR   # the first N CIFAR images
  python -m experiments.calibration_study --config=configs/claims_study.py \
      --output=runs/claims_study                                 # NG-EBM's three claims

Trains what the config's `study` block asks (configs/calibration_study.py says what each field
does): the variants for every seed, measured on their way at `study.stages`; the gamma and
training-set-size sweeps; the calibration peers, chosen on validation and compared with NG-EBM
paired by seed; with `study.claims`, every variant against the baseline on calibration, OOD
detection and robustness. Writes OUTPUT/report.md, results.json and the plots; see
`ngebm_jax.workflows.calibration_study`. Every setting is a config field: --config.x=y overrides
apply to every run, --config.study.x=y to the study (a tuple as `0,1` or `"()"` for none).
Re-running the command reuses finished runs.
"""

from absl import app
from absl import flags
from ml_collections import config_flags

from ngebm_jax.workflows import calibration_study
from ngebm_jax.workflows import launch

_CONFIG = config_flags.DEFINE_config_file(
    "config", "configs/calibration_study.py", "The config of the study and of every run.",
    lock_config=False)
_OUTPUT = flags.DEFINE_string("output", None, "Folder for the runs, the report and its plots.")
flags.mark_flags_as_required(["output"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {list(argv[1:])}")
  launch.setup()
  calibration_study.run(_CONFIG.value, _OUTPUT.value)


if __name__ == "__main__":
  app.run(main)
