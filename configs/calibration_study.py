r"""The calibration study (experiments/calibration_study.py): NG-EBM where a baseline over-fits.

  python -m experiments.calibration_study --output=runs/calibration_study
  python -m experiments.calibration_study --output=runs/cs_cifar10 \
      --config.dataset.name=cifar10 --config.dataset.data_dir=$DATA  # first 250 CIFAR-10 images

The regime of NG-EBM's calibration claim (arXiv 2304.01297), at CPU size: a small CNN (width
16) on 250 training images without augmentation, 2,000 steps of 32 (256 epochs), so that the
baseline fits most of its training set and its confidence far outgrows its test accuracy. Every
run gets the same model, data and steps; the variants (baseline, NG-EBM at beta = gamma = 1,
gamma only, beta only) run for each of SEEDS and are measured at STAGES on their way; the gamma
sweep (NG-EBM at beta = 1) and the training-set sizes run for SWEEP_SEEDS (the first seed; gamma
= 0 and 1 come from the variants, with every seed): 16 runs. Only the
classification and calibration evaluators run (OOD and PGD: `experiments.evaluate` on the runs).
The default takes about half an hour on 2 CPU cores; the README quotes its results.
"""

from configs import demo

SEEDS = (0, 1, 2)
SWEEP_SEEDS = (0,)                # the sweeps' extra runs: one seed, to fit half an hour on a CPU
STAGES = (500, 1000, 1500)        # and the end, 2,000
GAMMAS = (0.3, 3.0)               # with gamma = 0 (beta only) and 1 (NG-EBM) from the variants
TRAIN_SIZES = (500,)              # besides the config's 250, for the baseline and NG-EBM
PEER_SWEEP_SEEDS = (0,)           # the peers' sweeps (ngebm_jax.workflows.calibration_study.
                                  # PEER_SWEEPS); the setting chosen on validation: every seed


def get_config():
  # The demo's regime (small CNN of width 16, no augmentation, batch 32, Adam 2e-3), on half
  # its images for half its steps: 256 epochs, as in the demo.
  config = demo.get_config()
  config.dataset.num_train = 250
  config.num_steps = 2_000
  config.log_every_steps = 100
  config.progress_bar = False
  config.tensorboard = False
  # OOD detection (the embedded data's own OOD sets; scores without an input gradient) and
  # PGD-40 under L-inf on the first 100 test images, for the comparison with the peers.
  config.eval.evaluators = ("classification", "calibration", "ood", "robustness")
  config.eval.ood_scores = ("max_softmax", "log_density")
  config.eval.robustness_norms = ("linf",)
  return config
