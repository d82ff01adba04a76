"""The benchmark's reference set-up: WRN-10-1 (no normalization, LeakyReLU 0.2), batch 64, Adam.

Times one train step of the baseline, NG-EBM and SGLD-EBM (K = 1, 5, 10, 20, 40) on the same
model, batch, devices and dtype, each followed by the same step in PyTorch (the reference's
model and steps, from the same initial parameters and batch; needs `pip install -e '.[torch]'`
or `--pytorch_python=` an environment with torch; without it our side runs alone), then trains
the baseline, NG-EBM and SGLD-EBM (K = 5, 20) end to end on the embedded data until 30%
validation accuracy (experiments/benchmark.py):

  python -m experiments.benchmark --config=configs/benchmark_wrn10.py --output=runs/bench_steps \
      --config.race.target_accuracy=-1  # step times only, ours and PyTorch's: minutes
  python -m experiments.benchmark --config=configs/benchmark_wrn10.py --output=runs/benchmark

`--config.model.dtype=bfloat16` times bfloat16 compute (ours only); `--config.batch_size=...`
another batch. Targets (reported, asserted nowhere): NG-EBM <= 2x the baseline step, SGLD-EBM
<= the PyTorch reference's own ratios on this CPU (4.9x for K = 5, 11.9x for K = 20), each
step no slower than PyTorch's.

Measured on 2 CPU cores with nothing else running (JAX 0.10.2, PyTorch 2.13.0, load average
2.0-2.8), steps-only command, medians of 20 round-robin steps: baseline 139 ms (PyTorch 126),
NG-EBM 263 ms = 1.89x (PyTorch 337 ms = 2.68x), SGLD-EBM K = 1 508 ms = 3.66x, K = 5 822 ms =
5.92x (PyTorch 6.03x), K = 20 1931 ms = 13.90x (PyTorch 14.71x), K = 40 3468 ms = 24.97x. Each
Langevin step is one input-gradient pass (74 ms, 0.61x a baseline step here); JEM's training
step adds about three baseline steps (data, the unlabelled batch, the samples).
End to end (lr 1e-3, shared machine): the baseline reaches 30% in 650 steps, NG-EBM in 850;
SGLD-EBM K = 5 diverges at this learning rate and K = 20 is at 18% when the 900 s cap stops it.
The training loop with the real input pipeline (uint8 to the device, augmentation there, 2
batches prefetched; the baseline) against the same step on one reused batch, in paired rounds
(5 rounds of 10 steps back to back): on the quiet 2 cores (load average 1.5),
`--objectives=baseline --nocomponents --nopytorch`, 489 images/s in the loop against 487 for
the step alone, pipeline_efficiency 0.973; the pipeline alone took 9.4 ms a batch beside a
131 ms step (a CPU cannot hide it: both share the cores). On the shared machine (load 10-23)
five runs gave 0.82-1.14, where rounds of the same step swung by up to 2x.
"""

from configs import default


def get_config():
  config = default.get_config()
  config.race = default.race_config()
  config.model.depth = 10
  config.model.width = 1
  config.batch_size = 64
  # The end-to-end runs need a faster start than the recipe's 1e-4 with 1,000 warmup steps to
  # reach their target within minutes on a CPU (at 1e-4 the baseline is still at 17% after 400
  # steps); step times do not depend on it.
  config.optimizer.learning_rate = 1e-3
  config.optimizer.warmup_steps = 100
  config.eval.batch_size = 500
  config.progress_bar = False
  return config
