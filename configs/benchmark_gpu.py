"""The GPU benchmark: WRN-28-10 (the paper's model), baseline / NG-EBM / SGLD-EBM K = 20.

One command on a machine with a GPU or TPU, `make bench-gpu`, which installs JAX's matching
accelerator build first (`ACCEL=cuda12|cuda13|tpu`, detected; see the Makefile) and runs the
command below; under 8 minutes on one H100/H200-class device is the aim, most of it
compilation:

  python -m experiments.benchmark --config=configs/benchmark_gpu.py --output=runs/bench_gpu \
      --batch_sizes=64,256 --dtypes=float32,bfloat16 --objectives=baseline,ngebm,sgld \
      --sgld_steps=20 --steps=20 --warmup=2 --config.race.target_accuracy=-1 --nocomponents \
      --nopytorch

(`--profile_dir=runs/bench_gpu/trace` adds a profiler trace of a few steps of each objective.)

For each batch (64, 256) and compute dtype (float32, bfloat16): the median step time, images/s,
MFU against the device's dense peak (known devices: `xla_costs.PEAK_FLOPS`), the allocator's
peak memory per objective, compile time, and with `--profile_dir` a profiler trace (TensorBoard
or Perfetto). `runs/bench_gpu/benchmark.md` is the table across settings; each setting's full
report is in `runs/bench_gpu/b<batch>_<dtype>/`. Sizing a run before renting a device:

  python -m experiments.benchmark --config=configs/benchmark_gpu.py --output=runs/fit \
      --objectives= --fit_memory_gib=80 --config.on_cpu=run --fit_objectives=ngebm,sgld

reports the largest batch whose compiled step fits 80 GiB per device (XLA's memory analysis;
exact on the device kind it runs on, an estimate on a CPU). On a CPU-only JAX this config stops
at start with the install command (`config.on_cpu = "refuse"`): its timings would say nothing;
`--config.on_cpu=run` runs it anyway, as the sizing command above does. No GPU figures have been measured
for this project yet: they are the open part of the benchmark.
"""

from configs import default


def get_config():
  config = default.get_config()  # WRN-28-10, batch 64, float32, JEM's SGLD (K = 20)
  config.race = default.race_config()
  config.dataset.num_train = 2_000  # the steps reuse one batch; this only shortens start-up
  config.dataset.num_validation = 500
  config.dataset.num_test = 500
  config.progress_bar = False
  config.tensorboard = False
  config.on_cpu = "refuse"  # WRN-28-10 timings on a CPU say nothing; --config.on_cpu=run
  return config
