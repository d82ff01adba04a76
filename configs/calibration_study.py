r"""The calibration study (experiments/calibration_study.py): NG-EBM where a baseline over-fits.

  python -m experiments.calibration_study --output=runs/calibration_study
  python -m experiments.calibration_study --output=runs/cs_cifar10 \
      --config.dataset.name=cifar10 --config.dataset.data_dir=$DATA  # first 250 CIFAR-10 images

The regime of NG-EBM's calibration claim (arXiv 2304.01297), at CPU size: a small CNN (width
16) on 250 training images without augmentation, 2,000 steps of 32 (256 epochs), so that the
baseline fits most of its training set and its confidence far outgrows its test accuracy. Every
run gets the same model, data and steps; the variants (baseline, NG-EBM at beta = gamma = 1,
gamma only, beta only) run for each of `study.seeds` and are measured at `study.stages` on their
way; the gamma sweep (NG-EBM at beta = 1) and the training-set sizes run for `study.sweep_seeds`
(the first seed; gamma = 0 and 1 come from the variants, with every seed); the calibration peers
(label smoothing, focal loss) are swept on `study.peer_sweep_seeds` and their settings chosen on
validation NLL, then trained for every seed. OOD detection (scores without an input gradient)
and PGD-40 under L-inf on the first 100 test images. `--config.study.peers=()` leaves the peers
out; `--config.study.gammas=()` the gamma sweep. The default took 33 minutes on 2 CPU cores
before the peers and the OOD/PGD evaluation were added; the README quotes its results.
"""

import ml_collections

from configs import demo


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
  # The study's report draws its figures from every run's numbers; per-run PNGs are left out.
  config.eval.figures = False
  # What the study trains (ngebm_jax/workflows/calibration_study.py); not part of any run's
  # config, so adding a seed leaves the finished runs reusable.
  config.study = ml_collections.ConfigDict(dict(
      seeds=(0, 1, 2),
      # ngebm_jax.workflows.calibration_study.VARIANTS: baseline, ngebm, gamma_only, beta_only,
      # sgld; and NG-EBM with its penalty on each of these fractions of a batch (ngebm_pf<f>).
      variants=("baseline", "ngebm", "gamma_only", "beta_only"),
      penalty_fractions=(),
      stages=(500, 1000, 1500),   # and the end, 2,000
      sweep_seeds=(0,),           # the sweeps' extra runs: one seed, to fit half an hour on a CPU
      gammas=(0.3, 3.0),          # with gamma = 0 (beta only) and 1 (NG-EBM) from the variants
      sweep_beta=1.0,
      train_sizes=(500,),         # besides the config's 250, for size_variants
      size_variants=("baseline", "ngebm"),
      peers=("label_smoothing", "focal"),  # calibration_study.PEER_SWEEPS; (): none
      peer_sweep_seeds=(0,),      # the chosen setting then runs for every seed
      select_on="val_nll",        # or "val_ece", "val_accuracy": validation, never test
      claims=False))              # True: NG-EBM's three claims (configs/claims_study.py)
  return config
