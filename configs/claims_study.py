r"""The claims study: NG-EBM's three claims against an over-fitted baseline, with their costs.

  python -m experiments.calibration_study --config=configs/claims_study.py \
      --output=runs/claims_study
  python -m experiments.calibration_study --config=configs/claims_study.py \
      --output=runs/claims_cifar10 --config.dataset.name=cifar10 \
      --config.dataset.data_dir=$DATA           # the first 250 CIFAR-10 training images

NG-EBM's abstract (arXiv 2304.01297) claims better calibration, out-of-distribution detection
and adversarial robustness than a cross-entropy baseline, without SGLD's cost. This study
measures each claim for the baseline, NG-EBM (beta = gamma = 1), each penalty alone (gamma only,
beta only), NG-EBM with its gradient penalty on a quarter and on half of each batch
(`ngebm.penalty_fraction`, variants ngebm_pf0.25 and ngebm_pf0.5) and SGLD-EBM (JEM, K = 5,
with the energy penalty `sgld.energy_l2 = 0.1` that keeps it from diverging, see
configs/sgld_embedded.py), over 3 seeds, in the calibration study's regime (small CNN of width 16,
250 training images, no augmentation, Adam 2e-3, batch 32) for 1,000 steps instead of 2,000 (128
epochs: the baseline's validation NLL climbs from step 250 on while its accuracy creeps up, its
confidence far above its accuracy; half the steps fit SGLD-EBM into the CPU budget). Each run's
best checkpoint is measured on calibration, on OOD detection (AUROC and FPR@95 of log p~(x),
max p(y|x) and Approximate Mass on each OOD set of the data, 1,000 images each) and on
robustness by the paper protocol (each of the first 100 test images' smallest successful L-inf
epsilon, by foolbox 1.8's search, and from it the accuracy at fixed epsilons), sized for a CPU:
20 PGD steps a try, 5 bisections, one noisy copy and no SGLD refinement (the reference: 40
steps, 20 bisections, 5 copies, one refinement step; `--config.eval.pgd_steps=40` and so on
restore it, at about 20 times the cost). The report (`ngebm_jax.evaluation.claims_report`) gives
every variant minus the baseline paired by seed with a 95% t-interval, claim by claim and OOD
set by set (named with their separability), and the training seconds per run beside ECE, AUROC
and robustness. 21 runs; 22 minutes on 2 quiet CPU cores.
"""

from configs import calibration_study


def claims_evaluation(config):
  """The claims' evaluators, scores and attack protocol (one noisy copy, no SGLD refinement:
  the CPU sizing of the docstring); the sizes are the caller's."""
  e = config.eval
  e.evaluators = ("classification", "calibration", "ood", "robustness")
  e.ood_scores = ("log_density", "max_softmax", "approximate_mass")
  e.robustness_protocol = "paper"
  e.robustness_norms = ("linf",)
  e.noise_copies = 1
  e.refine_steps = 0
  e.figures = False  # the claims report draws its own; a run's 25 PNGs would take a minute


def get_config():
  config = calibration_study.get_config()
  config.num_steps = 1_000
  config.checkpoint_every_steps = 250
  # SGLD-EBM: JEM with K = 5 SGLD steps (configs/demo.py's) and the energy penalty of
  # configs/sgld_embedded.py, which keeps the energies of data and samples bounded.
  config.sgld.num_steps = 5
  config.sgld.energy_l2 = 0.1
  claims_evaluation(config)
  config.eval.max_examples = 1_000  # test images and each OOD set
  config.eval.robustness_num_examples = 100
  config.eval.pgd_steps = 20
  config.eval.binary_search_steps = 5
  config.eval.epsilons_linf = (0.0, 1 / 255, 2 / 255, 4 / 255, 8 / 255)
  config.eval.epsilons_l2 = (0.0, 0.25, 0.5, 1.0)
  s = config.study
  s.variants = ("baseline", "ngebm", "gamma_only", "beta_only", "sgld")
  s.penalty_fractions = (0.25, 0.5)
  s.stages = ()      # the end only: the regime check reads the baseline's last stage
  s.gammas = ()
  s.train_sizes = ()
  s.peers = ()
  s.claims = True
  return config
