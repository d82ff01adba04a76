"""CIFAR100, focal: configs/cifar100_baseline.py with the focal loss, FLSD-53.

The calibration peer of NG-EBM that costs nothing per step: the focal loss -(1 - p)^gamma log p
(Lin et al. 2017) with Mukhoti et al. 2020's (arXiv 2002.09437) sample-dependent gamma: 5
where the true-class probability is below 0.2, else 3.
Everything else as the baseline: WRN-28-10 (no normalization, LeakyReLU 0.2), Adam 1e-4 with
1,000 warmup steps, batch 64, 150 epochs on the 45,000-image training split, pad-4 crop + flip,
0.03 input noise; the best checkpoint by validation accuracy is evaluated on test.

  python -m experiments.train --config=configs/cifar100_focal.py \
      --workdir=$RUNS/cifar100_focal --config.dataset.data_dir=$DATA

with CIFAR-100 prepared in $DATA once (README, "Data").

Expected: Mukhoti et al. 2020 (arXiv 2002.09437, Table 1) report a test ECE several times
lower than cross-entropy's for FLSD-53 with ResNets and Wide-ResNets on CIFAR-100; no published
comparison with NG-EBM exists (README, "The calibration study", has ours at CPU size).
"""

from configs import cifar100_baseline


def get_config():
  config = cifar100_baseline.get_config()
  config.objective = "focal"
  config.focal.schedule = "flsd53"  # --config.focal.schedule=fixed: gamma = config.focal.gamma
  return config
