"""The first check on a newly lent GPU or TPU: the benchmark grid and a short training run.

  make gpu-check             # installs JAX's accelerator build, then runs the command below
  python -m experiments.gpu_check --config=configs/gpu_check.py --output=runs/gpu_check

Writes `runs/gpu_check/gpu_check.json` and `gpu_check.md` (each grid setting's full benchmark
report under `runs/gpu_check/benchmark/`, the training run under `runs/gpu_check/train/`):

- the benchmark grid on WRN-28-10: batch 64 and 256, bfloat16 and float32; baseline, NG-EBM and
  SGLD-EBM K = 20: median and back-to-back step ms, images/s, MFU, peak memory, compile s;
- 300 steps of the training loop (`experiments.train`'s path, the real input pipeline on the
  embedded data), NG-EBM in bfloat16 at batch 64: the loop's images/s beside the step-alone
  figure of the same setting (and the benchmark's `pipeline_efficiency` where it reports one).

Sized for at most 8 minutes on one H100, install included (about 1-2 minutes of pip). The
estimate, from FLOPs per image (XLA's counting: forward 10.9 GFLOPs, baseline step 33, NG-EBM
about 65, SGLD-EBM K = 20 about 535) and about 35% of the dense peak: each program runs about
2 x warmup + 2 x steps = 24 calls per batch size, 7,680 images over batch 64 and 256, so
SGLD-EBM takes about 12 s in bfloat16 and 24 s in TF32, NG-EBM 2 + 3 s, the baseline 1 + 2 s:
about 45 s of device time. Compilation dominates: 12 train steps of WRN-28-10 (plus small SGLD
chains for its FLOP count), guessed at 20-40 s each; so a grid setting is not started once
`gpu_check.budget_s` (390 s) minus the training's share (90 s) is spent, and the report lists
what was left out. The compilation cache is on: a second run loads the compiled steps. On a
CPU-only JAX it stops at start with the install command (`--config.on_cpu=run` overrides,
for the tests).
"""

from configs import benchmark_gpu


def get_config():
  config = benchmark_gpu.get_config()  # WRN-28-10, on_cpu = "refuse"
  config.race.target_accuracy = -1.0  # step times only
  config.log_every_steps = 50  # the loop's images/s: the median interval after the first
  config.eval_every_steps = 300
  config.checkpoint_every_steps = 300
  config.eval.evaluators = ("classification",)
  config.eval.max_examples = 500
  return config
