"""Evaluates trained runs side by side: calibration, OOD detection, robustness, one report.

  python -m experiments.evaluate --workdir=runs/baseline --workdir=runs/ngebm \
      --output=runs/report [--data_dir=DIR]

For each --workdir it loads the best checkpoint (by validation accuracy), runs the evaluators of
the run's `config.eval.evaluators` (or --evaluators) on its test set and OOD sets, and writes
into --output (a local folder or a URI such as gs://bucket/report):
  results.json          every figure, one record per run (schema: docs/results.rst);
  report.md             a side-by-side table, the published figures beside ours (CIFAR), plots;
  robustness_<norm>.png accuracy against PGD epsilon, all runs on one plot;
  <run>/                per run: reliability diagram, OOD score histograms, ROC curves.
OOD sets: every one of the protocol that is prepared in the data directory is evaluated (CIFAR-10
model: SVHN, CIFAR-100, CelebA, and the synthetic interp, uniform, constant); each missing one is
named, with the command that prepares it, in the log and in report.md. --ood_sets chooses,
--ood_strict fails on a missing one.
Quick look on CPU: --max_examples=500 --robustness_num_examples=100 --pgd_steps=10.
"""

from __future__ import annotations

from absl import app
from absl import flags

from ngebm_jax.workflows import evaluate_runs
from ngebm_jax.workflows import launch

_WORKDIR = flags.DEFINE_multi_string("workdir", None, "A training workdir; repeat for more runs.")
_OUTPUT = flags.DEFINE_string("output", None, "Report folder (results.json, report.md, plots).")
_NAME = flags.DEFINE_multi_string("name", None, "Report name of each run, in --workdir order "
                                  "(default: the workdirs' basenames).")
_SPLIT = flags.DEFINE_enum("split", "test", ["test", "validation"],
                           "Split to evaluate: test (with the OOD sets), or validation (the "
                           "split that chose the checkpoint, with training's input noise).")
# Each flag below replaces one field of every run's config for this evaluation; unset, the
# run's own value holds (its config.json, whose defaults are configs/default.py's).
_SAME = "Unset: each run's config."
_EVALUATORS = flags.DEFINE_list("evaluators", None, "config.eval.evaluators: evaluators to run, "
                                "of classification, calibration, ood, robustness, "
                                f"focus_detection. {_SAME}")
_MAX_EXAMPLES = flags.DEFINE_integer("max_examples", None, "config.eval.max_examples: the first "
                                     f"N test images and N images of each OOD set. {_SAME}")
_OOD_SETS = flags.DEFINE_list(
    "ood_sets", None, "config.eval.ood_sets, e.g. svhn,cifar100,celeba,interp,uniform,constant "
    f"(empty: every set of the protocol that is prepared). {_SAME}")
_OOD_STRICT = flags.DEFINE_bool("ood_strict", None, "config.eval.ood_strict: fail when a chosen "
                                f"OOD set is not prepared. {_SAME}")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "config.dataset.data_dir: TFDS data directory "
                                f"of the test and OOD sets. {_SAME}")
_NOISE_STD = flags.DEFINE_float("noise_std", None, "config.dataset.noise_std: test-time input "
                                f"noise. {_SAME}")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", None, "config.eval.batch_size: examples per "
                                   f"device call. {_SAME}")
_NUM_BINS = flags.DEFINE_integer("num_bins", None, f"config.eval.num_bins: ECE bins. {_SAME}")
_PGD_STEPS = flags.DEFINE_integer("pgd_steps", None, "config.eval.pgd_steps: PGD iterations. "
                                  f"{_SAME}")
_PGD_STEP_SIZE = flags.DEFINE_float("pgd_step_size", None, "config.eval.pgd_step_size: PGD step "
                                    f"in [0, 1] pixel units. {_SAME}")
_ROBUST_N = flags.DEFINE_integer("robustness_num_examples", None, "config.eval."
                                 f"robustness_num_examples: test images attacked. {_SAME}")
_REFINE_STEPS = flags.DEFINE_integer("refine_steps", None, "config.eval.refine_steps: paper "
                                     f"protocol, SGLD steps refining each copy. {_SAME}")
_REFINE_NOISE = flags.DEFINE_float("refine_noise_std", None, "config.eval.refine_noise_std: "
                                   f"paper protocol, their Langevin noise. {_SAME}")
_EPS_LINF = flags.DEFINE_list("epsilons_linf", None, "config.eval.epsilons_linf: L-inf epsilons "
                              f"in [0, 1] pixel units; '8/255' is accepted. {_SAME}")
_EPS_L2 = flags.DEFINE_list("epsilons_l2", None, "config.eval.epsilons_l2: L2 epsilons in [0, 1] "
                            f"pixel units. {_SAME}")
_SEED = flags.DEFINE_integer("seed", None, "config.eval.seed: the evaluation's keys (input "
                             f"noise, PGD). {_SAME}")
_FIGURES = flags.DEFINE_bool("figures", None, "config.eval.figures: per-run figures (reliability "
                              f"diagrams, OOD histograms and ROC, robustness curves). {_SAME}")
flags.mark_flags_as_required(["workdir", "output"])


def _epsilons(values):
  if values is None:
    return None
  out = []
  for v in values:
    num, _, den = v.partition("/")
    out.append(float(num) / float(den) if den else float(num))
  return tuple(out)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  launch.setup()
  overrides = dict(
      evaluators=_EVALUATORS.value, max_examples=_MAX_EXAMPLES.value, ood_sets=_OOD_SETS.value,
      ood_strict=_OOD_STRICT.value, data_dir=_DATA_DIR.value,
      noise_std=_NOISE_STD.value, batch_size=_BATCH_SIZE.value, num_bins=_NUM_BINS.value,
      pgd_steps=_PGD_STEPS.value, pgd_step_size=_PGD_STEP_SIZE.value,
      robustness_num_examples=_ROBUST_N.value, refine_steps=_REFINE_STEPS.value,
      refine_noise_std=_REFINE_NOISE.value, epsilons_linf=_epsilons(_EPS_LINF.value),
      epsilons_l2=_epsilons(_EPS_L2.value), seed=_SEED.value, figures=_FIGURES.value)
  written = evaluate_runs.evaluate_workdirs(
      _WORKDIR.value, _OUTPUT.value, names=_NAME.value, split=_SPLIT.value,
      overrides={k: v for k, v in overrides.items() if v is not None})
  print(f"Report: {written['report_md']}")


if __name__ == "__main__":
  app.run(main)
