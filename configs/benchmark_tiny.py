"""A tiny benchmark for tests and laptops: small CNN (width 4), batch 16, little data, seconds.

  python -m experiments.benchmark --config=configs/benchmark_tiny.py --output=runs/bench_tiny \
      --steps=3 --sgld_steps=1 --config.race.max_steps=4 --config.race.eval_every=2

Exercises every part of the benchmark (step timing, memory and FLOPs figures, end-to-end runs,
the report); its timings mean nothing.
"""

from configs import default


def get_config():
  config = default.get_config()
  config.race = default.race_config()
  config.model.name = "small_cnn"
  config.model.width = 4
  config.dataset.num_train = 128
  config.dataset.num_validation = 32
  config.dataset.num_test = 32
  config.dataset.augment = False
  config.sgld.buffer_size = 64
  config.optimizer.learning_rate = 1e-3
  config.optimizer.warmup_steps = 2
  config.batch_size = 16
  config.eval.batch_size = 32
  config.progress_bar = False
  config.tensorboard = False
  return config
