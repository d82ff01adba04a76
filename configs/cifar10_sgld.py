"""CIFAR10, SGLD-EBM (JEM): the shared recipe (docs/method.rst) with JEM's sampler.

K = 20 SGLD steps (alpha 1, sigma 0.01) per training step from a 10,000-image replay buffer
(reinit 0.05), JEM's second unlabelled batch for log p~(x_data); WRN-28-10, Adam 1e-4 with
1,000 warmup steps, batch 64, 150 epochs. About 14-20x the cost of a baseline step. JEM runs
are known to diverge (the run stops at a non-finite loss, keeping its last good checkpoint);
the authors advise more SGLD steps or a lower learning rate.

  python -m experiments.train --config=configs/cifar10_sgld.py --workdir=$RUNS/cifar10_sgld \
      --config.dataset.data_dir=$DATA

Published (JEM, WRN-28-10): CIFAR-10 test accuracy 92.9%; CIFAR-100 ECE 4.87% (baseline 22.32%).
"""

from configs import default


def get_config():
  config = default.get_config()
  config.objective = "sgld"
  config.dataset.name = "cifar10"
  config.dataset.num_train = -1  # all 45,000 images of the recipe's training split
  config.dataset.num_workers = 8
  return config
