"""SGLD-EBM (JEM) on the embedded data at the recipe's learning rate: the stabilizer study.

Small CNN (width 32), the embedded data (10,000 train / 1,000 validation images), Adam 1e-4
with 1,000 linear warmup steps (the recipe's), batch 64, 3,000 steps; SGLD K = 20 (alpha 1,
sigma 0.01, 10,000-image buffer, reinit 0.05, JEM's unlabelled second batch).

  python -m experiments.train --config=configs/sgld_embedded.py --workdir=runs/sgld_k20
  python -m experiments.train --config=configs/sgld_embedded.py --workdir=runs/sgld_k5 \
      --config.sgld.num_steps=5
  python -m experiments.train --config=configs/sgld_embedded.py --workdir=runs/baseline \
      --config.objective=baseline                       # the reference curve
"""

from configs import default


def get_config():
  config = default.get_config()
  config.objective = "sgld"
  config.model.name = "small_cnn"
  config.model.width = 32
  config.dataset.num_train = 10_000
  config.dataset.num_validation = 1_000
  config.dataset.num_test = 2_000
  config.num_steps = 3_000
  config.log_every_steps = 50
  config.eval_every_steps = 250
  config.checkpoint_every_steps = 250
  config.progress_bar = False
  config.eval.evaluators = ("classification", "calibration")
  return config
