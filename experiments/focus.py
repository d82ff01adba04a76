r"""Focus losses on the authentic-vs-generated task: train, measure, and one report.

  python -m experiments.focus --output=runs/focus
  python -m experiments.focus --config=configs/focus_smoke.py --output=/tmp/focus_smoke

Trains every recipe of `config.focus_study.recipes` (defined in its `recipe_settings`,
configs/focus.py) for every seed of `focus_study.seeds` into `OUTPUT/runs/<recipe>_s<seed>`,
then the entropy-weight sweep (`focus_study.entropy_sweep`), measures each run and writes
`OUTPUT/report.md`; see `ngebm_jax.workflows.focus_study`. --config.x=y overrides apply to every
run; --config.focus_study.x=y sets the study.

  # CYBORG with the CAM of the predicted class (its training code) and of the true class, and
  # salience measures (b), (e) under the authors' steps and under our first implementation:
  python -m experiments.focus --output=runs/focus_cam \
      "--config.focus_study.recipes=('ce','cyborg')" \
      "--config.focus_study.cam_classes=('predicted','true')" \
      "--config.focus_study.entropy_sweep=()" \
      "--config.focus_study.salience_variants=('default','authors','ours')"
"""

from absl import app
from absl import flags
from ml_collections import config_flags

from ngebm_jax.workflows import focus_study
from ngebm_jax.workflows import launch

_CONFIG = config_flags.DEFINE_config_file(
    "config", "configs/focus.py", "Focus config file (configs/focus.py or a variant of it).",
    lock_config=False)
_OUTPUT = flags.DEFINE_string("output", None, "Folder for the runs and the report.")
flags.mark_flags_as_required(["output"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {list(argv[1:])}")
  launch.setup()
  focus_study.run(_CONFIG.value, _OUTPUT.value)


if __name__ == "__main__":
  app.run(main)
