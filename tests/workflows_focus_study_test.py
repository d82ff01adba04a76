"""The focus-study workflow end to end on the smoke config: each focus objective trains."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

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
  paths = focus_study.run(base, focus_smoke.apply_recipe, str(tmp_path), recipes=["ce", "cyborg"],
                          seeds=[0], entropy_sweep=[0.0, 0.5], cam_classes=["predicted", "true"],
                          salience=True, num_salience_images=8,
                          salience_variants=("default", "ours"))
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
    focus_study.plan_runs(focus_smoke.get_config(), focus_smoke.apply_recipe, ["ce", "nope"], [0],
                          [])
  with pytest.raises(ValueError, match="cam_class"):
    focus_study.plan_runs(focus_smoke.get_config(), focus_smoke.apply_recipe, ["ce"], [0], [],
                          cam_classes=["label"])


def test_plan_runs_trains_recipes_without_a_cam_term_once():
  runs = focus_study.plan_runs(focus_smoke.get_config(), focus_smoke.apply_recipe,
                               ["ce", "cyborg", "entropy"], [0, 1], [],
                               cam_classes=["true", "predicted"])
  assert sorted(runs) == sorted(
      ["ce_s0", "ce_s1"] + [f"{r}-{c}_s{s}" for r in ("cyborg", "entropy")
                            for c in ("true", "predicted") for s in (0, 1)])
  assert runs["ce_s0"]["config"].focus.cam_class == "true"  # the first, unused by its loss
  assert runs["entropy-predicted_s1"]["config"].focus.cam_class == "predicted"
  single = focus_study.plan_runs(focus_smoke.get_config(), focus_smoke.apply_recipe, ["cyborg"],
                                 [0], [])
  assert list(single) == ["cyborg_s0"]
  assert single["cyborg_s0"]["config"].focus.cam_class == "predicted"  # the config's default
