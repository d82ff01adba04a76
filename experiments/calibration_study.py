r"""Calibration study: NG-EBM against an over-confident baseline, beside temperature scaling.

  python -m experiments.calibration_study --output=runs/calibration_study
  python -m experiments.calibration_study --output=/tmp/cs --seeds=0,1 --gammas=0.3 \
      --train_sizes= --config.num_steps=1000          # a smaller one
  python -m experiments.calibration_study --output=runs/cs_cifar10 \
      --config.dataset.name=cifar10 --config.dataset.data_dir=DIR   # the first N CIFAR images

Trains the variants (baseline, NG-EBM at beta = gamma = 1, gamma only, beta only) for every seed,
measuring each at the config file's STAGES on its way, then the gamma sweep (NG-EBM at
--sweep_beta) and the training-set-size sweep; sweeps the calibration peers (--peers: label
smoothing, focal loss) on --peer_sweep_seeds, chooses each one's setting on validation
(--select_on) and trains it for every seed, compared with NG-EBM paired by seed; and writes
OUTPUT/report.md, results.json and the plots; see `ngebm_jax.workflows.calibration_study`.
Lists default to the config file's SEEDS, SWEEP_SEEDS, STAGES, GAMMAS, TRAIN_SIZES and
PEER_SWEEP_SEEDS; an empty flag (--gammas=, --peers=) turns a sweep off. --config.x=y overrides
apply to every run. Re-running the command reuses finished runs.
"""

import runpy

from absl import app
from absl import flags
from ml_collections import config_flags

from ngebm_jax.workflows import calibration_study
from ngebm_jax.workflows import launch

_CONFIG = config_flags.DEFINE_config_file(
    "config", "configs/calibration_study.py", "The config every run starts from.",
    lock_config=False)
_OUTPUT = flags.DEFINE_string("output", None, "Folder for the runs, the report and its plots.")
_VARIANTS = flags.DEFINE_list("variants", list(calibration_study.DEFAULT_VARIANTS),
                              f"Variants to train, among {list(calibration_study.DEFAULT_VARIANTS)}.")
_SEEDS = flags.DEFINE_list("seeds", None, "Seeds of every run (default: the config file's SEEDS).")
_STAGES = flags.DEFINE_list("stages", None, "Steps at which the variants are measured on their "
                            "way (default: the config file's STAGES).")
_GAMMAS = flags.DEFINE_list("gammas", None, "Gamma sweep (default: the config file's GAMMAS).")
_SWEEP_BETA = flags.DEFINE_float("sweep_beta", 1.0, "Beta of the gamma sweep.")
_SWEEP_SEEDS = flags.DEFINE_list("sweep_seeds", None, "Seeds of the gamma and training-set-size "
                                 "sweeps (default: the config file's SWEEP_SEEDS, else --seeds).")
_TRAIN_SIZES = flags.DEFINE_list("train_sizes", None, "Training-set sizes of the size sweep "
                                 "(default: the config file's TRAIN_SIZES).")
_PEERS = flags.DEFINE_list("peers", list(calibration_study.PEER_SWEEPS),
                           "Calibration peers to sweep, choose on validation and compare with "
                           f"NG-EBM, among {list(calibration_study.PEER_SWEEPS)}; empty: none.")
_PEER_SWEEP_SEEDS = flags.DEFINE_list("peer_sweep_seeds", None, "Seeds of the peers' sweeps "
                                      "(default: the config file's PEER_SWEEP_SEEDS, else the "
                                      "first seed).")
_SELECT_ON = flags.DEFINE_enum("select_on", "val_nll", ["val_nll", "val_ece", "val_accuracy"],
                               "Validation figure the peers' settings are chosen on.")
flags.mark_flags_as_required(["output"])


def _list(flag, file_values, cast):
  values = file_values if flag.value is None else [v for v in flag.value if v != ""]
  return [cast(v) for v in values]


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {list(argv[1:])}")
  launch.setup()
  config_file = runpy.run_path(config_flags.get_config_filename(flags.FLAGS["config"]))
  unknown = sorted(set(_VARIANTS.value) - set(calibration_study.DEFAULT_VARIANTS))
  if unknown:
    raise app.UsageError(f"unknown variants {unknown}; choose from "
                         f"{list(calibration_study.DEFAULT_VARIANTS)}.")
  unknown = sorted(set(_PEERS.value) - set(calibration_study.PEER_SWEEPS))
  if unknown:
    raise app.UsageError(f"unknown peers {unknown}; choose from "
                         f"{list(calibration_study.PEER_SWEEPS)}.")
  seeds = _list(_SEEDS, config_file.get("SEEDS", (0, 1, 2)), int)
  calibration_study.run(
      _CONFIG.value, _OUTPUT.value,
      variants={v: calibration_study.DEFAULT_VARIANTS[v] for v in _VARIANTS.value},
      seeds=seeds,
      sweep_seeds=_list(_SWEEP_SEEDS, config_file.get("SWEEP_SEEDS", seeds), int),
      stages=_list(_STAGES, config_file.get("STAGES", ()), int),
      gammas=_list(_GAMMAS, config_file.get("GAMMAS", ()), float),
      sweep_beta=_SWEEP_BETA.value,
      train_sizes=_list(_TRAIN_SIZES, config_file.get("TRAIN_SIZES", ()), int),
      peers={p: calibration_study.PEER_SWEEPS[p] for p in _PEERS.value if p},
      peer_sweep_seeds=_list(_PEER_SWEEP_SEEDS, config_file.get("PEER_SWEEP_SEEDS", seeds[:1]),
                             int),
      select_on=_SELECT_ON.value)


if __name__ == "__main__":
  app.run(main)
