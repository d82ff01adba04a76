"""The paper's recipe (docs/method.rst), on the embedded default data: the base every config edits.

Trains a Wide-ResNet-28-10 (no normalization, LeakyReLU 0.2) with NG-EBM: Adam 1e-4 with a
1,000-step linear warmup, batch 64, pad-4 reflect crop + flip, 0.03 input noise in training and
test; the best checkpoint by validation accuracy is evaluated on test.

  python -m experiments.train --config=configs/default.py --workdir=runs/default

Every field that any config or the code reads is declared here, with its default; other configs
change fields, never replace blocks, and any field can be set on the command line
(`--config.eval.max_examples=500`). One block is declared here but added only by the configs
that use it: the benchmark's race (`race_config()`, in configs/benchmark_*.py and
configs/race_embedded.py), which a training run neither reads nor compares on resuming.
Fields without a value (`placeholder`) mean "not set".
On 2 CPU cores this full-size model is slow; use configs/smoke.py or configs/demo.py there.
"""

import ml_collections
from ml_collections import config_dict


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.seed = 0
  # "baseline" (cross-entropy), "ngebm", "sgld" (JEM), "label_smoothing", "focal", "cyborg",
  # "focus".
  config.objective = "ngebm"
  config.ngebm = ml_collections.ConfigDict(dict(
      beta=1.0, gamma=1.0,  # L = CE + beta * L_var + gamma * L_grad
      grad_mode="forward_over_reverse",  # or "reverse_over_reverse": same values, slower
      # Share of each batch that carries L_grad (1.0: the paper; less: a cheaper NG-EBM, see
      # ngebm_jax/objectives.py ngebm_loss).
      penalty_fraction=1.0))
  config.sgld = ml_collections.ConfigDict(dict(
      num_steps=20, step_size=1.0, noise_std=0.01,  # K, alpha, sigma of JEM
      buffer_size=10_000, reinit_prob=0.05,         # replay buffer, uniform in [-1, 1]
      separate_unlabelled_batch=True,  # JEM's second data batch for log p~(x_data)
      unroll=config_dict.placeholder(int),  # lax.scan unroll of the chain; unset: per backend
      energy_l2=0.0))  # weight of an L2 penalty on the energies of data and samples (JEM's fix)
  # The calibration peers (ngebm_jax/calibration_objectives.py): label smoothing (Muller et al.
  # 2019) and focal loss (Mukhoti et al. 2020: "fixed" gamma, or "flsd53": 5 if p_y < 0.2 else 3).
  config.label_smoothing = ml_collections.ConfigDict(dict(alpha=0.1))
  config.focal = ml_collections.ConfigDict(dict(gamma=3.0, schedule="fixed"))
  # Focus losses on the authentic-vs-generated task (objectives "cyborg", "focus").
  config.focus = ml_collections.ConfigDict(dict(
      alpha=0.5,                  # cyborg: L = alpha CE + (1 - alpha) MSE(CAM, h)
      ce_weight=1.0,              # focus: L = ce_weight CE + human_weight MSE(CAM, h)
      human_weight=0.0,           #        + entropy_weight entropy_term
      entropy_weight=0.0,
      entropy_form="mean",        # "mean", "log1p" or "match_reference"
      reference_entropy=-1.0,     # match_reference target in nats; < 0: the batch's human maps
      cam_class="predicted",      # class of the CAM the terms shape: "predicted" (CYBORG's
                                  # training code) or "true" (the label)
      start_step=0,               # CAM terms off before this step, then ramped up linearly
      ramp_steps=0))              # over these steps (0, 0: always on)

  config.dataset = ml_collections.ConfigDict(dict(
      name="embedded",   # "embedded", "focus_task", "cifar10", "cifar100", "svhn_cropped"
      data_dir=config_dict.placeholder(str),  # TFDS data_dir; unset: ~/tensorflow_datasets
      seed=0,            # procedural data only: generator seed
      # TFDS data: seed of the recipe's validation split (5,000 training images held out;
      # JEM's code draws them with seed 1234, see ngebm_jax/data/tfds_sources.py).
      split_seed=1234,
      # TFDS data: how many training images that split holds out as validation (the recipe's
      # 5,000; fewer validate and fit the temperature faster, on a noisier estimate).
      split_num_validation=5_000,
      # Training examples: procedural data generates this many; a TFDS dataset takes the first
      # num_train of the recipe's 45,000-image training split (-1: all of it).
      num_train=10_000,
      num_validation=1_000, num_test=2_000,  # procedural data only (TFDS: the recipe's splits)
      augment=True,      # pad-4 reflect + random crop (+ flip)
      # Horizontal flips in the augmentation; unset: the dataset's default (DatasetInfo.flip):
      # flips, except for SVHN, whose digits a mirror changes (JEM flips CIFAR, not SVHN).
      flip=config_dict.placeholder(bool),
      noise_std=0.03,    # Gaussian noise on every input, train and test
      num_workers=0,     # grain worker processes that read and batch (they pay for decoding)
      read_threads=0,    # grain threads reading batches ahead, per process (see data/pipeline.py)
      prefetch=2,        # batches put on the devices and augmented ahead of the step
      poison_batch=-1,   # tests only: makes that batch NaN
      # focus_task only (ngebm_jax/data/procedural/focus_task.py):
      num_open_set_test=2_000, strength=1.0,
      train_kinds=("checkerboard", "seam", "blockiness", "noise"),
      open_set_kinds=("spectral", "blur", "color_shift")))

  config.model = ml_collections.ConfigDict(dict(
      name="wide_resnet",  # or "small_cnn" (reads width and dropout_rate)
      depth=28, width=10, dropout_rate=0.0, dtype="float32"))

  config.optimizer = ml_collections.ConfigDict(dict(
      learning_rate=1e-4, warmup_steps=1000,
      decay_epochs=(), decay_rate=1.0,  # learning rate x decay_rate at each of these epochs
      b1=0.9, b2=0.999, weight_decay=0.0))
  config.batch_size = 64        # global batch, split over all devices
  config.num_epochs = 150
  config.num_steps = -1         # > 0 overrides num_epochs

  config.log_every_steps = 100
  config.eval_every_steps = 1000
  config.checkpoint_every_steps = 1000
  config.progress_bar = True
  config.tensorboard = True
  config.skip_nonfinite = False  # True: skip non-finite updates (counted) instead of stopping
  config.max_abs_loss = 1e8      # |loss| above this counts as a blow-up, like a non-finite loss
  # After a blow-up: restart from the last good checkpoint with a new key, at most this many
  # times over the run (0: stop, as JEM's code does; see ngebm_jax/training/divergence.py).
  config.max_restarts = 0
  config.allow_config_change = False
  # Persistent compilation cache: "auto" ($JAX_COMPILATION_CACHE_DIR, else WORKDIR/
  # compilation_cache for a gs:// workdir, else ~/.cache/ngebm_jax), a folder, or "" (off).
  config.compilation_cache_dir = "auto"
  # When JAX has only the CPU backend: "run"; "warn" (log that the config is meant for a GPU or
  # TPU, then run: the paper's CIFAR recipes, which take days on a CPU but whose smaller forms
  # tests and trials run there); "refuse" (stop at start, naming the install command: the GPU
  # benchmark). --config.on_cpu=run is the override that lets tests run such a config's path.
  config.on_cpu = "run"

  # `make gpu-check` (experiments/gpu_check.py, configs/gpu_check.py): the benchmark grid of
  # batch sizes x dtypes x objectives, then `train_steps` steps of the training loop (its real
  # input pipeline) of `train_objective` in `train_dtype` at `config.batch_size`. A grid setting
  # is not started once `budget_s` seconds minus the training's share are spent (reported).
  config.gpu_check = ml_collections.ConfigDict(dict(
      batch_sizes=(64, 256), dtypes=("bfloat16", "float32"),
      objectives=("baseline", "ngebm", "sgld"), sgld_steps=20, steps=10, warmup=2,
      train_steps=300, train_objective="ngebm", train_dtype="bfloat16",
      budget_s=390.0, train_share_s=90.0))

  config.eval = ml_collections.ConfigDict(dict(
      evaluators=("classification", "calibration", "ood", "robustness"),
      batch_size=500,
      seed=0,            # keys of the evaluation: test-time noise per split, PGD starts
      num_bins=20,       # ECE and reliability-diagram bins
      # Per-run figures (reliability diagrams, OOD histograms and ROC curves, robustness
      # curves) beside results.json. The study configs turn them off: their reports draw
      # their own, and a claims-study run would otherwise write 25 PNGs.
      figures=True,
      # First N test / OOD images, and at most N attacked images (robustness_num_examples
      # caps them further); unset: all. The one knob that sizes every evaluator.
      max_examples=config_dict.placeholder(int),
      ood_sets=(),       # OOD sets to evaluate; empty: every one that is prepared
      ood_strict=False,  # True: a chosen OOD set that is not prepared is an error, not skipped
      ood_scores=("log_density", "max_softmax", "approximate_mass"),
      robustness_norms=("linf", "l2"),
      robustness_num_examples=1000,  # PGD attacks the first N test images
      # "fixed_epsilon": accuracy under PGD at each epsilon below. "paper": NG-EBM's code's
      # protocol: each image's smallest successful epsilon (foolbox 1.8's exponential + binary
      # search, binary_search_steps each) against the mean of noise_copies noisy copies.
      robustness_protocol="fixed_epsilon",
      binary_search_steps=20,
      noise_copies=5,
      # "paper" protocol: SGLD steps (gradient of log p~(x), step 1, plus noise of this std)
      # refining each noisy copy before it is classified, as the reference's attack commands
      # (--n_steps_refine 1, its sgld_sigma 0.01); 0: no refinement.
      refine_steps=1,
      refine_noise_std=0.01,
      pgd_steps=40,
      pgd_step_size=config_dict.placeholder(float),  # pixel units; unset: 2.5 eps / steps
      epsilons_linf=(0.0, 1 / 255, 2 / 255, 4 / 255, 8 / 255, 12 / 255, 16 / 255, 22 / 255,
                     30 / 255),
      epsilons_l2=(0.0, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 5.0)))
  return config


def race_config() -> ml_collections.ConfigDict:
  """The benchmark's race (experiments/benchmark.py, ngebm_jax/benchmarking/race.py): each
  variant trains from the same seed on the same data until `target_accuracy` on validation;
  accuracy and ECE are also read at `budget_s` seconds of training. A benchmark config adds it
  as `config.race`."""
  return ml_collections.ConfigDict(dict(
      objectives=("baseline", "ngebm", "sgld_k5", "sgld_k20"),  # timed variants to race
      target_accuracy=0.3,  # validation accuracy to reach; <= 0 skips the race
      budget_s=config_dict.placeholder(float),  # common training seconds; unset: none
      max_steps=1200,       # caps per runner: steps, and training seconds (<= 0: none)
      max_seconds=900.0,
      eval_every=50))       # steps between validations (clock stopped)
