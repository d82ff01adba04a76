r"""A seconds-sized claims study for tests: the real code path, no particular result.

  python -m experiments.calibration_study --config=configs/claims_study_smoke.py \
      --output=runs/claims_smoke

The claims study's evaluation (OOD per set and score, the paper robustness protocol, separability)
on the smoke config: baseline, NG-EBM and NG-EBM on half of each batch, 2 seeds, 10 steps.
"""

from configs import claims_study
from configs import smoke


def get_config():
  config = smoke.get_config()
  config.dataset.augment = False
  config.num_steps = 10
  config.dataset.num_validation = 64
  config.dataset.num_test = 64
  config.eval.max_examples = 64
  config.eval.batch_size = 32
  config.study = claims_study.get_config().study
  config.study.seeds = (0, 1)
  config.study.variants = ("baseline", "ngebm")
  config.study.penalty_fractions = (0.5,)
  claims_study.claims_evaluation(config)
  config.eval.robustness_num_examples = 16
  config.eval.pgd_steps = 2
  config.eval.binary_search_steps = 2
  return config
