"""The paper's recipe (NGEBM.md), on the embedded default data: the base every config edits.

Trains a Wide-ResNet-28-10 (no normalization, LeakyReLU 0.2) with NG-EBM: Adam 1e-4 with a
1,000-step linear warmup, batch 64, pad-4 reflect crop + flip, 0.03 input noise in training and
test; the best checkpoint by validation accuracy is evaluated on test.

  python -m experiments.train --config=configs/default.py --workdir=/tmp/ngebm_default

Other configs import this one and change a few fields (so each reads as a diff). On 2 CPU cores
this full-size model is slow; use configs/smoke.py or configs/demo.py there.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.seed = 0
  # "baseline" (cross-entropy), "ngebm", "sgld" (JEM), "cyborg", "focus".
  config.objective = "ngebm"
  config.ngebm = ml_collections.ConfigDict(dict(
      beta=1.0, gamma=1.0,  # L = CE + beta * L_var + gamma * L_grad
      grad_mode="forward_over_reverse"))  # or "reverse_over_reverse": same values, slower
  config.sgld = ml_collections.ConfigDict(dict(
      num_steps=20, step_size=1.0, noise_std=0.01,  # K, alpha, sigma of JEM
      buffer_size=10_000, reinit_prob=0.05,         # replay buffer, uniform in [-1, 1]
      separate_unlabelled_batch=True,  # JEM's second data batch for log p~(x_data)
      unroll=None))                    # lax.scan unroll of the chain; None: per backend

  config.dataset = ml_collections.ConfigDict(dict(
      name="embedded",          # "embedded", "cifar10", "cifar100", "svhn_cropped"
      data_dir=None,            # TFDS data_dir (None: TFDS's default, ~/tensorflow_datasets)
      seed=0,                   # embedded data only: generator seed
      num_train=10_000, num_validation=1_000, num_test=2_000,  # embedded data only
      augment=True,             # pad-4 reflect + random crop + horizontal flip
      noise_std=0.03,           # Gaussian noise on every input, train and test
      num_workers=0,            # grain worker processes for augmentation
      poison_batch=-1))         # tests only: makes that batch NaN

  config.model = ml_collections.ConfigDict(dict(
      name="wide_resnet", depth=28, width=10, dropout_rate=0.0, dtype="float32"))

  config.optimizer = ml_collections.ConfigDict(dict(
      learning_rate=1e-4, warmup_steps=1000, b1=0.9, b2=0.999, weight_decay=0.0))
  config.batch_size = 64        # global batch, split over all devices
  config.num_epochs = 150
  config.num_steps = -1         # > 0 overrides num_epochs

  config.log_every_steps = 100
  config.eval_every_steps = 1000
  config.checkpoint_every_steps = 1000
  config.progress_bar = True
  config.tensorboard = True
  config.skip_nonfinite = False  # True: skip non-finite updates (counted) instead of stopping
  config.allow_config_change = False

  config.eval = ml_collections.ConfigDict(dict(
      batch_size=500, num_bins=20, max_examples=None,
      evaluators=("classification", "calibration", "ood", "robustness")))
  return config
