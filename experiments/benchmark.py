"""Wall-clock benchmark: the train step of the baseline, NG-EBM and SGLD-EBM, and end to end.

  python -m experiments.benchmark --config=configs/benchmark_wrn10.py --output=runs/benchmark
  python -m experiments.benchmark --config=configs/benchmark_wrn10.py --output=runs/bench_bf16 \
      --config.model.dtype=bfloat16 --objectives=baseline,ngebm --config.race.target_accuracy=-1
  python -m experiments.benchmark --config=configs/race_embedded.py --output=runs/race \
      --sgld_steps=5,20 --steps=10      # the race of baseline, NG-EBM and SGLD-EBM (K = 5, 20)

In one process, on the same model, batch, devices and dtype: compiles each objective's train
step (compile time reported apart), times `--steps` steps of each round-robin (median, p10/p90,
images/s, ratio to the baseline, SGLD(K=20)/NG-EBM), reads XLA's memory and FLOPs figures (and
the MFU on known accelerators), then races the variants of `config.race.objectives` on the
config's data: each trains until `config.race.target_accuracy` validation accuracy (and at least
`config.race.budget_s` seconds of training, where accuracy and ECE are read), at most
`config.race.max_steps` steps and about `config.race.max_seconds` seconds of training each
(`--config.race.target_accuracy=-1` skips the race: minutes instead of an hour).
Writes OUTPUT/benchmark.{json,md,png} (and benchmark_race.png) and prints the Markdown tables. Objectives not registered
in this version (e.g. "sgld" before the SGLD-EBM objective lands) are skipped with a warning.
The workflow is `ngebm_jax.workflows.benchmark`.
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
_OBJECTIVES = flags.DEFINE_list("objectives", ["baseline", "ngebm", "sgld"],
                                "Objectives to time (those not registered are skipped).")
_SGLD_STEPS = flags.DEFINE_list("sgld_steps", [str(k) for k in step_programs.DEFAULT_SGLD_STEPS],
                                "SGLD chain lengths K to time for the 'sgld' objective.")
_STEPS = flags.DEFINE_integer("steps", 20, "Timed steps per objective (after the warm-up).")
_WARMUP = flags.DEFINE_integer("warmup", 1, "Untimed steps per objective before timing.")
_COMPONENTS = flags.DEFINE_bool("components", True,
                                "Also time the pieces of a step (forward, input gradient, jvp).")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  launch.setup()
  try:
    sgld_steps = [int(k) for k in _SGLD_STEPS.value]
  except ValueError as e:
    raise app.UsageError(f"--sgld_steps must be integers; got {_SGLD_STEPS.value}.") from e
  results = benchmark.run(
      _CONFIG.value, objective_names=_OBJECTIVES.value, sgld_steps=sgld_steps,
      steps=_STEPS.value, warmup=_WARMUP.value, components=_COMPONENTS.value)
  paths = report.write_report(results, _OUTPUT.value)
  print(report.markdown(results), flush=True)
  print("Wrote " + ", ".join(paths.values()), flush=True)


if __name__ == "__main__":
  app.run(main)
