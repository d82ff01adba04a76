r"""A seconds-sized calibration study for tests: the real code path, no particular result.

  python -m experiments.calibration_study --config=configs/calibration_study_smoke.py \
      --output=runs/cs_smoke

Two seeds, measured at step 10 and at the end (20 steps), a one-point gamma sweep and one extra
training-set size. Expect no over-fitting (the report says so).
"""

from configs import smoke

SEEDS = (0, 1)
STAGES = (10,)
GAMMAS = (0.5,)
TRAIN_SIZES = (256,)


def get_config():
  config = smoke.get_config()
  config.dataset.augment = False
  config.eval.evaluators = ("classification", "calibration")
  return config
