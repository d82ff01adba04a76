"""CIFAR10, ngebm: the paper's recipe (docs/method.rst) on a GPU/TPU machine.

WRN-28-10 (no normalization, LeakyReLU 0.2), Adam 1e-4 with 1,000 warmup steps, batch 64,
150 epochs on the 45,000-image training split (JEM's 45,000/5,000 split), pad-4 crop + flip,
0.03 input noise; the best checkpoint by validation accuracy is evaluated on test.

  python -m experiments.train --config=configs/cifar10_ngebm.py --workdir=$RUNS/cifar10_ngebm \
      --config.dataset.data_dir=$DATA

with CIFAR-10 prepared in $DATA once (README, "Data").

Expected (published, WRN-28-10): README.md, "Published figures and ours"; the NG-EBM paper
reports an ECE 2.5x lower than the baseline's on CIFAR-10 with NG-EBM.
"""

from configs import default


def get_config():
  config = default.get_config()
  config.objective = "ngebm"
  config.dataset.name = "cifar10"
  config.dataset.num_train = -1  # all 45,000 images of the recipe's training split
  config.dataset.num_workers = 8
  config.on_cpu = "warn"  # a GPU or TPU recipe (days on a CPU)
  return config
