"""`make demo`: baseline vs NG-EBM on the embedded data, about 10 minutes on 2 CPU cores.

  python -m experiments.demo --output=runs/demo      # what `make demo` runs
  python -m experiments.train --config=configs/demo.py --workdir=runs/demo/ngebm \
      --config.objective=ngebm                        # one of its runs by hand

The same small CNN, steps, data and seed for every objective; only `objective` differs. The
embedded data is procedural (ngebm_jax/data/procedural/embedded.py): no download. What to expect is in the
README (figures of the last run are written to runs/demo/report/report.md).
"""

from configs import default


def get_config():
  config = default.get_config()
  config.model.name = "small_cnn"
  config.model.width = 32
  config.dataset.num_train = 10_000
  config.dataset.num_validation = 1_000
  config.dataset.num_test = 2_000
  # A short run needs a faster start than the recipe's 1e-4 with 1,000 warmup steps.
  config.optimizer.learning_rate = 1e-3
  config.optimizer.warmup_steps = 100
  config.num_steps = 2_000
  config.log_every_steps = 50
  config.eval_every_steps = 250
  config.checkpoint_every_steps = 500
  # JEM with K = 5 SGLD steps (not 20) keeps the demo within minutes; the paper configs use 20.
  config.sgld.num_steps = 5
  config.eval.batch_size = 500
  # PGD-40 on 200 test images at a few epsilons ([0, 1] pixel units): minutes, not an hour.
  config.eval.robustness_num_examples = 200
  config.eval.epsilons_linf = (0.0, 2 / 255, 4 / 255, 8 / 255)
  config.eval.epsilons_l2 = (0.0, 0.25, 0.5, 1.0)
  return config
