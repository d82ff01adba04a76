"""`make demo`: an over-fitted baseline and NG-EBM on the embedded data, then one report.

  python -m experiments.demo --output=runs/demo [--objectives=baseline,ngebm,sgld]
      [--config=configs/demo.py --config.num_steps=1500]
  python -m experiments.demo --output=runs/demo_cifar10 --config.dataset.name=cifar10 \
      --config.dataset.data_dir=DIR          # the same regime on real images

SGLD-EBM (JEM) is opt-in (`--objectives=baseline,ngebm,sgld`, or `make demo
OBJECTIVES=baseline,ngebm,sgld`). Every objective gets the same config but `objective`; each run
goes to `OUTPUT/<objective>` (re-running reuses finished runs), measured at a few steps on its
way; the report, `OUTPUT/report/report.md`, leads with calibration (against training steps, then
before and after temperature scaling). The workflow is `ngebm_jax.workflows.demo`.
"""

from absl import app
from absl import flags
from ml_collections import config_flags

from ngebm_jax.workflows import demo
from ngebm_jax.workflows import launch

_CONFIG = config_flags.DEFINE_config_file("config", "configs/demo.py",
                                          "Config shared by every objective.")
_OUTPUT = flags.DEFINE_string("output", "runs/demo", "Folder for the runs and the report.")
_OBJECTIVES = flags.DEFINE_list("objectives", ["baseline", "ngebm"], "Objectives to train.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  launch.setup()
  written = demo.run(_CONFIG.value, _OUTPUT.value, _OBJECTIVES.value)
  print(f"Report: {written['report_md']}")


if __name__ == "__main__":
  app.run(main)
