r"""`make demo`: an over-fitted baseline and NG-EBM on the embedded data, ~10 minutes on 2 CPUs.

  python -m experiments.demo --output=runs/demo      # what `make demo` runs
  python -m experiments.demo --output=runs/demo_cifar10 \
      --config.dataset.name=cifar10 --config.dataset.data_dir=$DATA  # the same on CIFAR-10
  python -m experiments.train --config=configs/demo.py --workdir=runs/demo/ngebm \
      --config.objective=ngebm                        # one of its runs by hand
  python -m experiments.demo --output=runs/demo_peers \
      --objectives=baseline,ngebm,label_smoothing,focal  # with the calibration peers

The regime NG-EBM's calibration claim is about (arXiv 2304.01297): a classifier that has fitted
its training set and grown over-confident. A small CNN (width 16) trains on 500 images (on
CIFAR-10: the first 500 of the 45,000-image training split), without augmentation, for 4,000
steps of 32 (256 epochs), so the baseline fits its training set while its test accuracy stays far
below its confidence. The same model, steps, data and seed for every objective; only `objective`
differs. The embedded data is procedural (ngebm_jax/data/procedural/embedded.py): no download.
What to expect is in the README (the figures of the last run are in runs/demo/report/report.md).
"""

from configs import default


def get_config():
  config = default.get_config()
  config.model.name = "small_cnn"
  config.model.width = 16
  # Few images, no augmentation: the baseline memorizes them (the test-time input noise of the
  # recipe stays on, in training and test).
  config.dataset.num_train = 500
  config.dataset.num_validation = 1_000
  config.dataset.num_test = 2_000
  config.dataset.augment = False
  config.batch_size = 32
  # A short run needs a faster start than the recipe's 1e-4 with 1,000 warmup steps.
  config.optimizer.learning_rate = 2e-3
  config.optimizer.warmup_steps = 100
  config.num_steps = 4_000
  config.log_every_steps = 50
  config.eval_every_steps = 250
  config.checkpoint_every_steps = 500
  # The calibration peers (`--objectives=baseline,ngebm,label_smoothing,focal`): label smoothing
  # at the default alpha = 0.1 and the focal loss with Mukhoti et al.'s FLSD-53 schedule; the
  # calibration study sweeps both on validation in this regime (README).
  config.focal.schedule = "flsd53"
  # JEM with K = 5 SGLD steps (not 20) keeps the demo within minutes; the paper configs use 20.
  config.sgld.num_steps = 5
  config.eval.batch_size = 500
  # On CIFAR-10 the test and OOD sets are the first 2,000 images of each (minutes on a CPU).
  config.eval.max_examples = 2_000
  # PGD-40 on 100 test images at two epsilons per norm ([0, 1] pixel units): a minute, where
  # calibration is the demo's point.
  config.eval.robustness_num_examples = 100
  config.eval.epsilons_linf = (0.0, 2 / 255, 8 / 255)
  config.eval.epsilons_l2 = (0.0, 0.25, 0.5)
  return config
