"""Focus losses on the procedural authentic-vs-generated task, one recipe per run.

Trains a small CNN to tell authentic from generated images
(ngebm_jax/data/procedural/focus_task.py) with one of the recipes of CYBORG (Boyd et al.,
WACV 2023) and arXiv 2303.00818, all through `ngebm_jax.focus`:

  ce             cross-entropy only (the baseline; objective "focus" so CAM metrics are logged)
  cyborg         0.5 CE + 0.5 MSE(CAM, human map), from step 0 as published (objective "cyborg")
  entropy        CE + 0.1 mean H(CAM)                                        (direct minimization)
  entropy_log1p  CE + 0.1 mean ln(1 + H(CAM))                                (softer)
  match_human    CE + 1.0 (mean H(CAM) - mean H(human maps))^2               (match human focus)
  blend          0.5 CE + 0.5 MSE(CAM, human map) + 0.05 mean H(CAM)         (all three)

The entropy recipes switch their CAM terms on at step 1,000 and ramp them up over 1,000 steps
(`focus.start_step`, `focus.ramp_steps`; the cyborg recipe sets both to 0, as published). The
papers fine-tune pretrained backbones; trained from scratch, the scale-invariant CAM terms
(gradients ~ 1 / CAM range) swamp cross-entropy while the CAMs are still flat, and from step 0
every entropy weight >= 0.03 left the classifier at chance (CE stuck at ln 2, CAM entropy at
~2 nats). CYBORG's MSE term did not need the ramp. The CAM terms shape the CAM of the predicted
class, as CYBORG's training code does; `--config.focus.cam_class=true` uses the label instead.

  python -m experiments.focus --output=runs/focus   # every recipe, seeds, sweep, one report
  python -m experiments.train --config=configs/focus.py:cyborg --workdir=runs/cyborg  # one run

`config.focus_study` holds what `experiments/focus.py` runs: the recipes to train, the seeds,
the sweep of the entropy weight from 0 (CE only) to aggressive that it runs on top, the CAM
classes and the salience measures (`--config.focus.entropy_weight=W` sets one weight by hand,
`--config.focus_study.seeds=(0,1)` the seeds). The recipes themselves are config fields too,
`config.focus_study.recipe_settings.<recipe>` (the objective and the `config.focus` fields it
sets); a training run neither reads nor compares `focus_study` on resuming.

Expected on 2 CPU cores (1-3 minutes a run, 3-10 when the cores are shared; the default
`experiments/focus.py`, 4 recipes x 3 seeds + the sweep, about 45 minutes), closed / open-set
AUROC, mean over 3 seeds: ce 0.90 / 0.574, cyborg 0.894 / 0.595, entropy 0.77 / 0.55 (one seed
of three stayed near chance), blend 0.89 / 0.57. With `cam_class=true`: cyborg 0.907 / 0.604,
entropy 0.77 / 0.54 (one seed near chance), blend 0.875 / 0.558: AUROC moved by no more than
about one seed-to-seed standard deviation, in no consistent direction, and the true class gave
somewhat lower CAM entropy.
CYBORG's Grad-CAMs were also less spread than CE's and the most equivariant and stable across
seeds; the entropy recipes had the most focused CAMs but no better open-set AUROC.

The data need no download. Augmentation (pad-4 crop + flip) must move the human maps with the
images (`ngebm_jax/data/pipeline.py` does so for a `human_map` field). No input noise: the
recipe's 0.03 (about 4 grey levels) would blur the very artifacts the task is about.
"""

import ml_collections

from configs import default

RECIPES = {
    "ce": dict(objective="focus", ce_weight=1.0, human_weight=0.0, entropy_weight=0.0),
    "cyborg": dict(objective="cyborg", alpha=0.5, start_step=0, ramp_steps=0),
    "entropy": dict(objective="focus", ce_weight=1.0, entropy_weight=0.1, entropy_form="mean"),
    "entropy_log1p": dict(objective="focus", ce_weight=1.0, entropy_weight=0.1,
                          entropy_form="log1p"),
    "match_human": dict(objective="focus", ce_weight=1.0, entropy_weight=1.0,
                        entropy_form="match_reference", reference_entropy=-1.0),
    "blend": dict(objective="focus", ce_weight=0.5, human_weight=0.5, entropy_weight=0.05,
                  entropy_form="mean"),
}


def study_config() -> ml_collections.ConfigDict:
  """`config.focus_study`: what experiments/focus.py trains and measures
  (ngebm_jax/workflows/focus_study.py)."""
  return ml_collections.ConfigDict(dict(
      recipes=("ce", "cyborg", "entropy", "blend"),  # recipe_settings' names to train
      seeds=(0, 1, 2),        # seeds of every recipe (stability needs 2+)
      # Entropy weights of the sweep (recipe "entropy", first seed); (): no sweep.
      entropy_sweep=(0.0, 0.01, 0.03, 0.1, 0.3, 1.0),
      # CAM classes ("predicted", "true") to train each recipe with a CAM term with; a recipe
      # without one trains once. (): config.focus.cam_class alone.
      cam_classes=(),
      salience=True,          # the five salience measures (Explain2Me)
      # Variants of salience measures (a), (b), (e): default, authors, ours or PRESET:SCHEDULE
      # (ngebm_jax/salience/variants.py); the first fills the recipe table.
      salience_variants=("default",),
      num_salience_images=500,  # test images per run for the salience measures
      # Each recipe: the objective, and the config.focus fields it sets.
      recipe_settings={name: dict(objective=r["objective"],
                                  focus={k: v for k, v in r.items() if k != "objective"})
                       for name, r in RECIPES.items()}))


def apply_recipe(config: ml_collections.ConfigDict, recipe: str) -> ml_collections.ConfigDict:
  """Sets `config.objective` and `config.focus` to `config.focus_study.recipe_settings[recipe]`,
  in place (the study does the same: ngebm_jax.workflows.focus_study.apply_recipe)."""
  settings = config.focus_study.recipe_settings
  if recipe not in settings:
    raise ValueError(f"Unknown focus recipe {recipe!r}; choose one of {sorted(settings)}.")
  config.objective = settings[recipe].objective
  config.focus.update(settings[recipe].focus.to_dict())
  return config


def get_config(recipe: str = "ce") -> ml_collections.ConfigDict:
  config = default.get_config()
  config.focus.start_step = 1_000   # CAM terms off before this step, then ramped up linearly
  config.focus.ramp_steps = 1_000   # over these steps (the cyborg recipe sets both to 0)
  config.dataset.name = "focus_task"
  config.dataset.noise_std = 0.0
  config.model.name = "small_cnn"
  config.model.width = 16
  config.optimizer.learning_rate = 1e-3
  config.optimizer.warmup_steps = 100
  config.batch_size = 32
  config.num_steps = 4_000
  config.log_every_steps = 100
  config.eval_every_steps = 500
  config.checkpoint_every_steps = 1_000
  config.eval.batch_size = 500
  config.eval.evaluators = ("classification", "calibration")
  config.focus_study = study_config()
  return apply_recipe(config, recipe)
