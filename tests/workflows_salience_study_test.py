"""The salience-study workflow end to end on smoke workdirs (untrained small CNNs, saved as best)."""

from __future__ import annotations

import json
import os

import pytest

from configs import smoke
from ngebm_jax import models
from ngebm_jax.workflows import salience_study as program
from ngebm_jax.training import checkpoints as ckpt_lib


def _fake_run(workdir: str, *, seed: int, objective: str = "baseline") -> str:
  """A workdir as training leaves it (config.json + best parameters), without training."""
  config = smoke.get_config()
  config.seed = seed
  config.objective = objective
  config.dataset.num_train = 20
  config.dataset.num_validation = 10
  config.dataset.num_test = 20
  os.makedirs(workdir)
  ckpt_lib.save_config(workdir, config)
  _, params = models.from_config(config, 10)
  ckpts = ckpt_lib.Checkpoints(workdir, use_async=False)
  try:
    ckpts.save_best(0, params, {"accuracy": 0.0})
    ckpts.wait()
  finally:
    ckpts.close()
  return workdir


def test_program_measures_runs_groups_seeds_and_writes_all_files(tmp_path):
  a = _fake_run(str(tmp_path / "base_s0"), seed=0)
  b = _fake_run(str(tmp_path / "base_s1"), seed=1)
  c = _fake_run(str(tmp_path / "ngebm_s0"), seed=0, objective="ngebm")
  out = str(tmp_path / "report")
  paths = program.run([a, b, c], {}, out, num_images=6, batch_size=4,
                      variants=("default", "ours"), sigma_factors=(1.0, 2.0), num_examples=3)
  for kind in ("json", "per_image", "report", "entropy", "out_of_set", "equivariance",
               "degradation", "examples"):
    assert os.path.getsize(paths[kind]) > 0, kind
  doc = json.load(open(paths["json"]))
  assert list(doc["models"]) == ["base_s0", "base_s1", "ngebm_s0"]
  # Runs whose configs differ only in the seed form a stability group by themselves.
  (group,) = doc["groups"].values()
  assert group["runs"] == ["base_s0", "base_s1"] and group["num_pairs"] == 1
  assert -1.0 <= group["mean"] <= 1.0
  m = doc["models"]["ngebm_s0"]
  assert m["objective"] == "ngebm" and m["map_shape"] == [8, 8] and m["num_images"] == 6
  assert len(m["equivariance"]["per_transform"]) == 12
  # (b) and (e) are keyed by salience variant, and each variant's options are recorded.
  assert m["primary_variant"] == "default" and list(m["variants"]) == ["default", "ours"]
  assert set(m["entropy"]["by_variant"]) == {"default", "ours"}
  assert m["variants"]["ours"]["noise"] == "pixel"
  assert m["variants"]["default"]["map_scaling"] == "max"
  for v in ("default", "ours"):
    assert m["out_of_set"][v]["ssim"][0] == pytest.approx(1.0, abs=1e-5)
    assert set(m["degradation"][v]) >= {"background", "object", "schedule", "max_sigma"}
  assert m["degradation"]["default"]["schedule"] == "octaves"
  assert m["degradation"]["ours"]["max_sigma"] == pytest.approx(10 / 7)
  curve = m["degradation_curve"]
  assert curve["variant"] == "default" and curve["background"]["sigma_factor"] == [1.0, 2.0]
  assert doc["settings"]["variants"] == ["default", "ours"]
  report = open(paths["report"]).read()
  assert "| ngebm_s0 | ngebm | small_cnn |" in report and "examples.png" in report
  (ours,) = [line for line in report.splitlines() if line.startswith("- `ours`:")]
  assert "noise=pixel" in ours and "map_scaling=min_max" in ours and "schedule=scaled" in ours
  assert "| ngebm_s0 | ours |" in report and "primary variant `default`" in report


def test_unknown_variant_is_refused(tmp_path):
  a = _fake_run(str(tmp_path / "base_s0"), seed=0)
  with pytest.raises(ValueError, match="variant"):
    program.run([a], {}, str(tmp_path / "report"), num_images=2, variants=("theirs",))


def test_parse_group():
  assert program.parse_group("ce:/a,/b,/c") == ("ce", ["/a", "/b", "/c"])
  with pytest.raises(ValueError):
    program.parse_group("ce:/a")
  with pytest.raises(ValueError):
    program.parse_group("/a,/b")
