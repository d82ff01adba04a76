"""CIFAR100, label_smoothing: configs/cifar100_baseline.py with label smoothing, alpha = 0.05.

The calibration peer of NG-EBM that costs nothing per step: cross-entropy against
(1 - alpha) onehot(y) + alpha / K (Szegedy et al. 2016; Muller et al. 2019, arXiv 1906.02629,
for calibration).
Everything else as the baseline: WRN-28-10 (no normalization, LeakyReLU 0.2), Adam 1e-4 with
1,000 warmup steps, batch 64, 150 epochs on the 45,000-image training split, pad-4 crop + flip,
0.03 input noise; the best checkpoint by validation accuracy is evaluated on test.

  python -m experiments.train --config=configs/cifar100_label_smoothing.py \
      --workdir=$RUNS/cifar100_label_smoothing --config.dataset.data_dir=$DATA

with CIFAR-100 prepared in $DATA once (README, "Data").

Expected: Mukhoti et al. 2020 (arXiv 2002.09437, Table 1) report a test ECE several times
lower than cross-entropy's for LS-0.05 with ResNets and Wide-ResNets on CIFAR-100; no published
comparison with NG-EBM exists (README, "The calibration study", has ours at CPU size).
"""

from configs import cifar100_baseline


def get_config():
  config = cifar100_baseline.get_config()
  config.objective = "label_smoothing"
  config.label_smoothing.alpha = 0.05  # the value Mukhoti et al. 2020 compare with
  return config
