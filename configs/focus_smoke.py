"""Smoke variant of configs/focus.py: the real code path in seconds (tests, laptops).

  python -m experiments.train --config=configs/focus_smoke.py:blend --workdir=runs/focus_blend
  python -m experiments.focus --config=configs/focus_smoke.py --output=runs/focus_smoke

trains the recipes ce and cyborg with seeds 0 and 1, no sweep, 32 salience images.

Expect no particular AUROC (a few dozen steps of a tiny CNN on a few hundred images).
"""

from configs import focus

RECIPES = focus.RECIPES


def get_config(recipe: str = "ce"):
  config = focus.get_config(recipe)
  config.dataset.num_train = 256
  config.dataset.num_validation = 64
  config.dataset.num_test = 64
  config.dataset.num_open_set_test = 64
  config.model.width = 4
  config.batch_size = 16
  config.num_steps = 12
  config.optimizer.warmup_steps = 2
  config.focus.start_step = 2
  config.focus.ramp_steps = 2
  config.log_every_steps = 4
  config.eval_every_steps = 6
  config.checkpoint_every_steps = 6
  config.eval.batch_size = 32
  config.progress_bar = False
  config.tensorboard = False
  config.focus_study.recipes = ("ce", "cyborg")
  config.focus_study.seeds = (0, 1)
  config.focus_study.entropy_sweep = ()
  config.focus_study.num_salience_images = 32
  return config
