"""Wall-clock benchmark: the train steps of the baseline, NG-EBM and SGLD-EBM, ours and PyTorch's.

  python -m experiments.benchmark --config=configs/benchmark_wrn10.py --output=runs/benchmark \
      --config.race.target_accuracy=-1                   # step times only: minutes
  python -m experiments.benchmark --config=configs/benchmark_wrn10.py --output=runs/benchmark
  python -m experiments.benchmark --config=configs/benchmark_gpu.py --output=runs/bench_gpu \
      --batch_sizes=64,256 --dtypes=float32,bfloat16    # `make bench-gpu`
  python -m experiments.benchmark --config=configs/benchmark_gpu.py --output=runs/fit \
      --objectives= --fit_memory_gib=80 --config.on_cpu=run  # the largest WRN-28-10 NG-EBM batch

  python -m experiments.benchmark --config=configs/race_embedded.py --output=runs/race \
      --sgld_steps=5,20 --steps=10      # the race of baseline, NG-EBM and SGLD-EBM (K = 5, 20)

In one process tree, on the same model, batch, devices and dtype: compiles each objective's
train step (compile time reported apart), times `--steps` steps of each round-robin (median,
p10/p90, images/s, ratio to the baseline, SGLD(K=20)/NG-EBM), each followed by the PyTorch
reference's step of the same name when torch is installed (`--pytorch_python` may name another
environment's Python; without torch the JAX side runs alone), reads XLA's memory and FLOPs
figures (and the MFU on known accelerators), times the pieces of a step beside PyTorch's, then
races the variants of `config.race.objectives` on the config's data: each trains until
`config.race.target_accuracy` validation accuracy (and at least `config.race.budget_s` seconds,
where accuracy and ECE are read), at most `config.race.max_steps` steps and about
`config.race.max_seconds` seconds each; `--config.race.target_accuracy=-1` skips the race
(minutes instead of an hour).
`--ngebm_grad_modes` and `--sgld_unrolls` add the other forms of the NG-EBM gradient and of the
SGLD loop to the same run; `--ngebm_penalty_fractions=0.25,0.5` adds the cheaper NG-EBM (its
penalty on that share of each batch). Writes OUTPUT/benchmark.{json,md,png} (and
benchmark_race.png) and prints the Markdown. The workflow is `ngebm_jax.workflows.benchmark`.
"""

from __future__ import annotations

from absl import app
from absl import flags
from ml_collections import config_flags

from ngebm_jax.benchmarking import report
from ngebm_jax.benchmarking import step_programs
from ngebm_jax.workflows import benchmark
from ngebm_jax.workflows import launch

_CONFIG = config_flags.DEFINE_config_file(
    "config", "configs/benchmark_wrn10.py",
    "Training config whose model, batch, dtype and data are benchmarked.", lock_config=True)
_OUTPUT = flags.DEFINE_string("output", "runs/benchmark", "Folder for benchmark.{json,md,png}.")
_OBJECTIVES = flags.DEFINE_list("objectives", ["baseline", "ngebm", "sgld", "label_smoothing",
                                                "focal"],
                                "Objectives to time (those not registered are skipped).")
_SGLD_STEPS = flags.DEFINE_list("sgld_steps", [str(k) for k in step_programs.DEFAULT_SGLD_STEPS],
                                "SGLD chain lengths K to time for the 'sgld' objective.")
_GRAD_MODES = flags.DEFINE_list("ngebm_grad_modes", [],
                                "Also time NG-EBM in these grad_modes (e.g. reverse_over_reverse).")
_UNROLLS = flags.DEFINE_list("sgld_unrolls", [], "Also time SGLD with these lax.scan unrolls.")
_FRACTIONS = flags.DEFINE_list("ngebm_penalty_fractions", [],
                               "Also time NG-EBM with its penalty on these shares of each batch.")
_STEPS = flags.DEFINE_integer("steps", 20, "Timed steps per objective (after the warm-up).")
_WARMUP = flags.DEFINE_integer("warmup", 1, "Untimed steps per objective before timing.")
_BATCH_SIZES = flags.DEFINE_list("batch_sizes", [], "A grid of batch sizes (default: config's).")
_DTYPES = flags.DEFINE_list("dtypes", [], "A grid of compute dtypes (default: the config's).")
_PYTORCH = flags.DEFINE_bool("pytorch", True, "Time the PyTorch reference's steps beside ours.")
_PYTORCH_PYTHON = flags.DEFINE_string("pytorch_python", None,
                                      "Python with torch for the peer (default: this one).")
_PYTORCH_THREADS = flags.DEFINE_integer("pytorch_threads", None, "torch intra-op threads.")
_FIT_GIB = flags.DEFINE_float("fit_memory_gib", None,
                              "Report the largest batch whose step fits this many GiB/device.")
_FIT_OBJECTIVES = flags.DEFINE_list("fit_objectives", ["ngebm"], "Objectives to size.")
_PROFILE_DIR = flags.DEFINE_string("profile_dir", None, "Write a profiler trace there.")
_COMPONENTS = flags.DEFINE_bool("components", True,
                                "Also time the pieces of a step, ours and PyTorch's.")


def _ints(flag) -> list[int]:
  try:
    return [int(k) for k in flag.value]
  except ValueError as e:
    raise app.UsageError(f"--{flag.name} must be integers; got {flag.value}.") from e


def _floats(flag) -> list[float]:
  try:
    return [float(f) for f in flag.value]
  except ValueError as e:
    raise app.UsageError(f"--{flag.name} must be numbers; got {flag.value}.") from e


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  launch.setup()
  config = _CONFIG.value
  results = benchmark.run_and_report(
      config, _OUTPUT.value, batch_sizes=_ints(_BATCH_SIZES), dtypes=_DTYPES.value,
      objective_names=_OBJECTIVES.value, sgld_steps=_ints(_SGLD_STEPS),
      ngebm_grad_modes=_GRAD_MODES.value, sgld_unrolls=_ints(_UNROLLS),
      ngebm_penalty_fractions=_floats(_FRACTIONS),
      steps=_STEPS.value, warmup=_WARMUP.value,
      components=_COMPONENTS.value, pytorch=_PYTORCH.value,
      pytorch_python=_PYTORCH_PYTHON.value, pytorch_threads=_PYTORCH_THREADS.value,
      fit_memory_gib=_FIT_GIB.value, fit_objectives=_FIT_OBJECTIVES.value,
      profile_dir=_PROFILE_DIR.value)
  print(report.markdown(results[0]) if len(results) == 1 else report.grid_markdown(results),
        flush=True)
  print(f"Wrote {_OUTPUT.value}/benchmark.md and its data", flush=True)


if __name__ == "__main__":
  app.run(main)
