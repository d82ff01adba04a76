"""Can each OOD set answer? How well simple image features tell it from the test set.

  python -m experiments.ood_separability --output=runs/ood_separability
  python -m experiments.ood_separability --output=runs/ood_separability_cifar10 \
      --config.dataset.name=cifar10 --config.dataset.data_dir=DIR

For the test set and the OOD sets the evaluator uses (embedded data by default), the AUROC of
each pixel statistic used alone as a score and of a cross-validated logistic regression on
simple features, and each set called "far", "near" or "unconfirmed"
(ngebm_jax/evaluation/ood_separability.py). Writes OUTPUT/separability.{json,md} and prints the
table. The workflow is `ngebm_jax.workflows.ood_separability`.
"""

from absl import app
from absl import flags
from ml_collections import config_flags

from ngebm_jax.evaluation import ood_separability as separability_lib
from ngebm_jax.workflows import launch
from ngebm_jax.workflows import ood_separability

_CONFIG = config_flags.DEFINE_config_file("config", "configs/default.py",
                                          "Config whose dataset and OOD sets are checked.")
_OUTPUT = flags.DEFINE_string("output", "runs/ood_separability",
                              "Folder for separability.{json,md}.")
_OOD_SETS = flags.DEFINE_list("ood_sets", None, "OOD sets to check (default: the dataset's).")
_MAX_EXAMPLES = flags.DEFINE_integer("max_examples", None,
                                     "TFDS datasets: at most this many test and OOD images.")
_SEED = flags.DEFINE_integer("seed", 0, "Seeds the input noise and the folds.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  launch.setup()
  results = ood_separability.run(_CONFIG.value, _OUTPUT.value, ood_sets=_OOD_SETS.value,
                                 max_examples=_MAX_EXAMPLES.value, seed=_SEED.value)
  print(separability_lib.markdown(results["sets"]), flush=True)
  print(f"Wrote {_OUTPUT.value}/separability.md and its data", flush=True)


if __name__ == "__main__":
  app.run(main)
