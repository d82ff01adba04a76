"""Smoke test of the real code path: embedded data, a small CNN, a few steps (< 1 min, 2 CPUs).

  python -m experiments.train --config=configs/smoke.py --workdir=runs/smoke

Expect no particular accuracy (a few dozen steps); the run writes metrics.jsonl, checkpoints
and results.json. `--config.objective=baseline` (or sgld, ...) smokes another objective.
"""

from configs import default


def get_config():
  config = default.get_config()
  config.dataset.num_train = 512
  config.dataset.num_validation = 128
  config.dataset.num_test = 128
  config.model.name = "small_cnn"
  config.model.width = 8
  config.sgld.buffer_size = 256
  config.optimizer.learning_rate = 1e-3
  config.optimizer.warmup_steps = 5
  config.batch_size = 32
  config.num_steps = 20
  config.log_every_steps = 5
  config.eval_every_steps = 10
  config.checkpoint_every_steps = 10
  config.eval.batch_size = 64
  config.eval.evaluators = ("classification", "calibration")  # OOD and PGD: experiments.evaluate
  config.eval.robustness_num_examples = 16  # PGD on a few images, a few steps: seconds
  config.eval.pgd_steps = 3
  config.eval.epsilons_linf = (0.0, 8 / 255)
  config.eval.epsilons_l2 = (0.0, 0.5)
  config.progress_bar = False
  return config
