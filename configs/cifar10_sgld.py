"""CIFAR-10, SGLD-EBM (JEM): JEM's own recipe (arXiv 1912.03263 and its authors' training code).

K = 20 SGLD steps (alpha 1, sigma 0.01) per training step from a 10,000-image replay buffer
(reinit 0.05), JEM's second unlabelled batch for log p~(x_data); WRN-28-10 (no normalization),
Adam 1e-4 with 1,000 warmup steps, batch 64, 0.03 input noise, pad-4 crop + flip, and JEM's
schedule: 200 epochs (not NG-EBM's 150) with the learning rate x0.3 at epochs 160 and 180 (from
the first step of each). About 14-20x the cost of a baseline step. No stabilizer is on: JEM's
paper trained without, and its runs are known to diverge; a step whose loss is not finite or
exceeds config.max_abs_loss (1e8, JEM's bound) stops the run, keeping its last good checkpoint.
JEM's authors restarted such runs from the last checkpoint with a new seed (here:
--config.max_restarts=N does it by itself) or added an L2 penalty on the energies
(--config.sgld.energy_l2=0.1; see configs/sgld_embedded.py for what each does on a small run).

  python -m experiments.train --config=configs/cifar10_sgld.py --workdir=$RUNS/cifar10_sgld \
      --config.dataset.data_dir=$DATA

with CIFAR-10 prepared in $DATA once (README, "Data").

Published (JEM, WRN-28-10, this recipe): CIFAR-10 test accuracy 92.9% (JEM paper; reprinted in
HybViT, arXiv 2208.07791, Table 1).
"""

from configs import default


def get_config():
  config = default.get_config()
  config.objective = "sgld"
  config.dataset.name = "cifar10"
  config.dataset.num_train = -1  # all 45,000 images of the recipe's training split
  config.dataset.num_workers = 8
  config.on_cpu = "warn"  # a GPU or TPU recipe (days on a CPU)
  config.num_epochs = 200
  config.optimizer.decay_epochs = (160, 180)
  config.optimizer.decay_rate = 0.3
  return config
