"""Wall-clock benchmark: the train step of the baseline, NG-EBM and SGLD-EBM, and end to end.

  python -m experiments.benchmark --config=configs/benchmark_wrn10.py --output=runs/benchmark
  python -m experiments.benchmark --config=configs/benchmark_wrn10.py --output=runs/bench_bf16 \
      --config.model.dtype=bfloat16 --objectives=baseline,ngebm --end_to_end_accuracy=-1

In one process, on the same model, batch, devices and dtype: compiles each objective's train
step (compile time reported apart), times `--steps` steps of each round-robin (median, p10/p90,
images/s, ratio to the baseline, SGLD(K=20)/NG-EBM), reads XLA's memory and FLOPs figures (and
the MFU on known accelerators), then trains the `--end_to_end_objectives` on the embedded data
until `--end_to_end_accuracy` validation accuracy, at most `--end_to_end_max_steps` steps and
about `--end_to_end_max_seconds` of training each (on 2 CPU cores the whole program takes about
an hour with the defaults; `--end_to_end_accuracy=-1` skips the end-to-end part: minutes).
Writes OUTPUT/benchmark.{json,md,png} and prints the Markdown table. Objectives not registered
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
_E2E_ACCURACY = flags.DEFINE_float(
    "end_to_end_accuracy", 0.3,
    "Validation accuracy the end-to-end runs train to; negative skips the end-to-end runs.")
_E2E_OBJECTIVES = flags.DEFINE_list(
    "end_to_end_objectives", ["baseline", "ngebm", "sgld_k5", "sgld_k20"],
    "Timed variants (baseline, ngebm, sgld_k<K>) to train end to end; empty: all of them.")
_E2E_MAX_STEPS = flags.DEFINE_integer("end_to_end_max_steps", 1200,
                                      "Cap on training steps per end-to-end run.")
_E2E_EVAL_EVERY = flags.DEFINE_integer("end_to_end_eval_every", 50,
                                       "Steps between validation evaluations end to end.")
_E2E_MAX_SECONDS = flags.DEFINE_float(
    "end_to_end_max_seconds", 900.0,
    "Cap on training seconds per end-to-end run (checked at each evaluation); <= 0: none.")
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
  accuracy = _E2E_ACCURACY.value
  results = benchmark.run(
      _CONFIG.value, objective_names=_OBJECTIVES.value, sgld_steps=sgld_steps,
      steps=_STEPS.value, warmup=_WARMUP.value,
      end_to_end_accuracy=accuracy if accuracy is not None and accuracy >= 0 else None,
      end_to_end_objectives=_E2E_OBJECTIVES.value or None,
      end_to_end_max_steps=_E2E_MAX_STEPS.value, end_to_end_eval_every=_E2E_EVAL_EVERY.value,
      end_to_end_max_seconds=_E2E_MAX_SECONDS.value if _E2E_MAX_SECONDS.value > 0 else None,
      components=_COMPONENTS.value)
  paths = report.write_report(results, _OUTPUT.value)
  print(report.markdown(results), flush=True)
  print("Wrote " + ", ".join(paths.values()), flush=True)


if __name__ == "__main__":
  app.run(main)
