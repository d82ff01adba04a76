r"""Salience report of trained runs: Grad-CAM and the five measures of Explain2Me.

  python -m experiments.salience --workdir=/runs/baseline --workdir=/runs/ngebm \
      --output=/tmp/salience_report

Stability (measure (d)) needs several independently seeded runs of one recipe. Train them with
the same config and different seeds, then pass them as a group (`name:dir,dir,...`):

  for s in 0 1 2; do
    python -m experiments.train --config=configs/smoke.py --config.seed=$s \
        --workdir=/tmp/smoke_seed$s
  done
  python -m experiments.salience --group=smoke:/tmp/smoke_seed0,/tmp/smoke_seed1,/tmp/smoke_seed2 \
      --output=/tmp/salience_smoke

Runs passed with --workdir whose configs differ only in `seed` are grouped automatically
(--noauto_group turns that off). --variants lists the salience variants of measures (a), (b), (e)
(`default`: the authors' steps; `ours`: our first implementation; see
`ngebm_jax.salience.variants`). The workflow, and the files it writes, are described in
`ngebm_jax.workflows.salience_study`.
"""

from absl import app
from absl import flags

from ngebm_jax.salience import variants as salience_variants
from ngebm_jax.workflows import launch
from ngebm_jax.workflows import salience_study

_WORKDIR = flags.DEFINE_multi_string("workdir", [], "A training workdir to measure (repeat).")
_GROUP = flags.DEFINE_multi_string(
    "group", [], "NAME:DIR1,DIR2,...: seeded runs of one recipe, for stability (repeat).")
_AUTO_GROUP = flags.DEFINE_bool(
    "auto_group", True, "Group --workdir runs whose configs differ only in `seed`.")
_OUTPUT = flags.DEFINE_string("output", None, "Report directory.")
_NUM_IMAGES = flags.DEFINE_integer("num_images", 500, "Test images measured per run.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 128, "Images per Grad-CAM call.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the salt-and-pepper noise.")
_VARIANTS = flags.DEFINE_list(
    "variants", ["default"],
    "Salience variants of measures (a), (b), (e): default, authors, ours, or PRESET:SCHEDULE "
    "(SCHEDULE: octaves, scaled, literal); the first is the primary one.")
_SIGMA_FACTORS = flags.DEFINE_list(
    "sigma_factors", ["0.5", "1", "2", "4"],
    "Degradation sweep (primary variant), in multiples of the authors' blur sigmas.")
_NUM_EXAMPLES = flags.DEFINE_integer("num_examples", 8, "Images in the example grid.")
flags.mark_flags_as_required(["output"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {list(argv[1:])}")
  launch.setup()
  try:
    groups = dict(salience_study.parse_group(s) for s in _GROUP.value)
    for v in _VARIANTS.value:
      salience_variants.get_variant(v)
  except ValueError as e:
    raise app.UsageError(str(e)) from e
  paths = salience_study.run(
      _WORKDIR.value, groups, _OUTPUT.value, auto_group=_AUTO_GROUP.value,
      num_images=_NUM_IMAGES.value, batch_size=_BATCH_SIZE.value, seed=_SEED.value,
      variants=_VARIANTS.value, sigma_factors=[float(f) for f in _SIGMA_FACTORS.value],
      num_examples=_NUM_EXAMPLES.value)
  print(f"Report: {paths['report']}")


if __name__ == "__main__":
  app.run(main)
