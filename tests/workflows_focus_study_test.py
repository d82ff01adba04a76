"""The focus-study workflow end to end on the smoke config: each focus objective trains."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from configs import focus
from configs import focus_smoke
from ngebm_jax.workflows import focus_study
from ngebm_jax.data.procedural import focus_task
from ngebm_jax.training import objective_registry

needs_focus_objectives = pytest.mark.skipif(
    not {"cyborg", "focus"} <= set(objective_registry.names()),
    reason="the trainer does not register the 'cyborg' and 'focus' objectives yet (issue 8)")


@needs_focus_objectives
def test_focus_program_trains_each_objective_and_writes_the_report(tmp_path):
  base = focus_smoke.get_config()
  base.num_steps = 6
  base.eval_every_steps = 6
  base.checkpoint_every_steps = 6
  # cross-entropy and CYBORG recipes, plus one entropy-sweep point: objectives focus and cyborg,
  # with the human-map, entropy and cross-entropy terms all exercised.
  # CYBORG with the CAM of the predicted and of the true class; CE has no CAM term (one run).
  study = base.focus_study
  study.recipes, study.seeds, study.entropy_sweep = ("ce", "cyborg"), (0,), (0.0, 0.5)
  study.cam_classes, study.salience_variants = ("predicted", "true"), ("default", "ours")
  study.salience, study.num_salience_images = True, 8
  paths = focus_study.run(base, str(tmp_path))
  with open(paths["results"]) as f:
    results = json.load(f)
  runs = results["runs"]
  assert set(runs) == {"ce_s0", "cyborg-predicted_s0", "cyborg-true_s0", "entropy_w0.5_s0"}
  assert runs["ce_s0"]["aliases"] == ["entropy_w0_s0"]  # the sweep's w = 0 is the CE run
  assert runs["ce_s0"]["cam_class"] is None
  assert runs["cyborg-true_s0"]["cam_class"] == "true"
  assert runs["cyborg-predicted_s0"]["focus"]["cam_class"] == "predicted"
  assert set(runs["cyborg-true_s0"]["salience"]["variants"]) == {"default", "ours"}
  for name, row in runs.items():
    for key in ("closed_auroc", "open_auroc", "cam_entropy", "human_mse", "hit_open"):
      assert np.isfinite(row[key]), (name, key)
    assert 0.0 <= row["cam_entropy"] <= np.log(64) + 1e-5
    assert set(row["open_per_kind"]) == set(focus_task.DEFAULT_OPEN_SET_KINDS)
    assert "entropy" in row["salience"]
  logged = {}
  for c in ("predicted", "true"):
    with open(os.path.join(tmp_path, "runs", f"cyborg-{c}_s0", "metrics.jsonl")) as f:
      logged[c] = [json.loads(line) for line in f]
    assert any("train/human_mse" in m for m in logged[c])
  # config.focus.cam_class reaches the loss: same seed and data, another CAM, another training.
  mse = {c: [m["train/human_mse"] for m in logged[c] if "train/human_mse" in m] for c in logged}
  assert mse["predicted"] != mse["true"]
  report = open(paths["report"]).read()
  assert "| cyborg-true | true | 1 |" in report and "| ce | - | 1 |" in report
  assert "open-set AUROC" in report
  (ours,) = [line for line in report.splitlines() if line.startswith("- `ours`:")]
  assert "noise=pixel" in ours and "map_scaling=min_max" in ours
  assert report.index("| cyborg-true | default |") < report.index("| cyborg-true | ours |")


def test_unknown_recipe_and_cam_class_are_refused():
  with pytest.raises(ValueError, match="recipe"):
    focus_study.plan_runs(focus_smoke.get_config(), ["ce", "nope"], [0],
                          [])
  with pytest.raises(ValueError, match="cam_class"):
    focus_study.plan_runs(focus_smoke.get_config(), ["ce"], [0], [],
                          cam_classes=["label"])


def test_plan_runs_trains_recipes_without_a_cam_term_once():
  runs = focus_study.plan_runs(focus_smoke.get_config(), ["ce", "cyborg", "entropy"], [0, 1],
                               [],
                               cam_classes=["true", "predicted"])
  assert sorted(runs) == sorted(
      ["ce_s0", "ce_s1"] + [f"{r}-{c}_s{s}" for r in ("cyborg", "entropy")
                            for c in ("true", "predicted") for s in (0, 1)])
  assert runs["ce_s0"]["config"].focus.cam_class == "true"  # the first, unused by its loss
  assert runs["entropy-predicted_s1"]["config"].focus.cam_class == "predicted"
  single = focus_study.plan_runs(focus_smoke.get_config(), ["cyborg"],
                                 [0], [])
  assert list(single) == ["cyborg_s0"]
  assert single["cyborg_s0"]["config"].focus.cam_class == "predicted"  # the config's default


def test_a_run_config_is_the_recipe_applied_without_the_study_block():
  base = focus.get_config()
  base.focus_study.recipe_settings.cyborg.focus.alpha = 0.25  # a recipe is config fields
  config = focus_study.apply_recipe(base, "cyborg")
  assert "focus_study" not in config and "focus_study" in base
  assert config.objective == "cyborg" and config.focus.alpha == 0.25
  assert config.focus.start_step == 0 and base.focus.start_step == 1_000  # base unchanged
  # The same fields as the config file's own recipe (configs/focus.py:cyborg) sets.
  by_file = focus.get_config("cyborg")
  del by_file["focus_study"]
  by_file.focus.alpha = 0.25
  assert config.to_json_best_effort(sort_keys=True) == by_file.to_json_best_effort(sort_keys=True)


@pytest.mark.parametrize("field,value,match", [
    ("recipes", ("ce", "nope"), "focus_study.recipes"),
    ("seeds", (), "focus_study.seeds"),
    ("seeds", (-1,), "focus_study.seeds"),
    ("entropy_sweep", (-0.1,), "focus_study.entropy_sweep"),
    ("cam_classes", ("label",), "focus_study.cam_classes"),
    ("num_salience_images", 0, "focus_study.num_salience_images")])
def test_bad_study_settings_fail_before_anything_is_written(tmp_path, field, value, match):
  base = focus_smoke.get_config()
  base.focus_study[field] = value
  with pytest.raises(ValueError, match=match):
    focus_study.run(base, str(tmp_path / "study"))
  assert not (tmp_path / "study").exists()
