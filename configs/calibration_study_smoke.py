r"""A seconds-sized calibration study for tests: the real code path, no particular result.

  python -m experiments.calibration_study --config=configs/calibration_study_smoke.py \
      --output=runs/cs_smoke

Two seeds, measured at step 10 and at the end (20 steps), a one-point gamma sweep and one extra
training-set size, no peers. Expect no over-fitting (the report says so).
"""

from configs import calibration_study
from configs import smoke


def get_config():
  config = smoke.get_config()
  config.dataset.augment = False
  config.eval.evaluators = ("classification", "calibration")
  config.eval.figures = False  # as configs/calibration_study.py
  config.study = calibration_study.get_config().study
  config.study.seeds = (0, 1)
  config.study.sweep_seeds = (0, 1)
  config.study.stages = (10,)
  config.study.gammas = (0.5,)
  config.study.train_sizes = (256,)
  config.study.peers = ()
  return config
