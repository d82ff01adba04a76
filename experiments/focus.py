r"""Focus losses on the authentic-vs-generated task: train, measure, and one report.

  python -m experiments.focus --output=runs/focus
  python -m experiments.focus --config=configs/focus_smoke.py --output=/tmp/focus_smoke \
      --recipes=ce,cyborg --seeds=0,1 --entropy_sweep= --num_salience_images=32

For every recipe of the config file (`RECIPES` of configs/focus.py) and every seed, trains
`OUTPUT/runs/<recipe>_s<seed>`, then the entropy-weight sweep (`ENTROPY_SWEEP` of the config
file unless --entropy_sweep is given), measures each run and writes `OUTPUT/report.md`; see
`ngebm_jax.workflows.focus_study`. --config.x=y overrides apply to every run.

  # CYBORG with the CAM of the predicted class (its training code) and of the true class, and
  # salience measures (b), (e) under the authors' steps and under our first implementation:
  python -m experiments.focus --output=runs/focus_cam --recipes=ce,cyborg \
      --cam_classes=predicted,true --entropy_sweep= --salience_variants=default,authors,ours
"""

import runpy

from absl import app
from absl import flags
from ml_collections import config_flags

from ngebm_jax.workflows import focus_study
from ngebm_jax.workflows import launch

_CONFIG = config_flags.DEFINE_config_file(
    "config", "configs/focus.py", "Focus config file (configs/focus.py or a variant of it).",
    lock_config=False)
_OUTPUT = flags.DEFINE_string("output", None, "Folder for the runs and the report.")
_RECIPES = flags.DEFINE_list("recipes", ["ce", "cyborg", "entropy", "blend"],
                             "Recipes of the config file's RECIPES to train.")
_SEEDS = flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds of every recipe (stability needs 2+).")
_ENTROPY_SWEEP = flags.DEFINE_list(
    "entropy_sweep", None, "Entropy weights of the sweep (recipe 'entropy', first seed); default: "
    "the config file's ENTROPY_SWEEP; empty: no sweep.")
_CAM_CLASSES = flags.DEFINE_list(
    "cam_classes", None, "CAM classes to train each recipe with a CAM term with (predicted, "
    "true); default: the config's focus.cam_class.")
_SALIENCE = flags.DEFINE_bool("salience", True, "Run the five salience measures.")
_SALIENCE_VARIANTS = flags.DEFINE_list(
    "salience_variants", ["default"], "Variants of salience measures (a), (b), (e): default, "
    "authors, ours, or PRESET:SCHEDULE (ngebm_jax.salience.variants); the first fills the "
    "recipe table.")
_NUM_SALIENCE_IMAGES = flags.DEFINE_integer(
    "num_salience_images", 500, "Test images per run for the salience measures.")
flags.mark_flags_as_required(["output"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {list(argv[1:])}")
  launch.setup()
  # The config file also names its recipes and its default sweep.
  config_file = runpy.run_path(config_flags.get_config_filename(flags.FLAGS["config"]))
  sweep = _ENTROPY_SWEEP.value
  if sweep is None:
    sweep = config_file.get("ENTROPY_SWEEP", ())
  focus_study.run(_CONFIG.value, config_file["apply_recipe"], _OUTPUT.value,
                  recipes=_RECIPES.value, seeds=[int(s) for s in _SEEDS.value],
                  entropy_sweep=[float(w) for w in sweep if w != ""],
                  cam_classes=_CAM_CLASSES.value, salience=_SALIENCE.value,
                  num_salience_images=_NUM_SALIENCE_IMAGES.value,
                  salience_variants=_SALIENCE_VARIANTS.value)


if __name__ == "__main__":
  app.run(main)
