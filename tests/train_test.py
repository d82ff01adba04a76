"""The trainer: the SPMD step on 8 devices equals one device; the smoke run end to end."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import smoke
from ngebm_jax import config_validation
from ngebm_jax import data as data_lib
from ngebm_jax import models
from ngebm_jax import reporting
from ngebm_jax.data import pipeline
from ngebm_jax.evaluation import inference
from ngebm_jax.workflows import evaluate_runs
from ngebm_jax.workflows import train_and_evaluate
from ngebm_jax.training import checkpoints as ckpt_lib
from ngebm_jax.training import loop
from ngebm_jax.training import objective_registry
from ngebm_jax.training import spmd
from ngebm_jax.training.state import TrainState, make_optimizer
from tests import calibration_references as ref


def _smoke_config(**overrides):
  config = smoke.get_config()
  config.update(overrides)
  return config


def _run_steps(config, devices, batches, *, use_pmap=False):
  fns, params = models.from_config(config, 10)
  objective = objective_registry.make_objective(config, fns)
  optimizer = make_optimizer(1e-3, 2)
  state = TrainState(step=jnp.zeros((), jnp.int32), params=params,
                     opt_state=optimizer.init(params),
                     key=jax.random.key_data(jax.random.key(0)), objective_state={})
  if use_pmap:
    n = len(devices)
    step = jax.pmap(spmd.train_step_fn(objective.loss_fn, optimizer), axis_name=spmd.AXIS,
                    devices=devices)
    state = jax.tree.map(lambda a: np.stack([np.asarray(a)] * n), state)
    for batch in batches:
      state, metrics = step(state, {k: v.reshape(n, -1, *v.shape[1:]) for k, v in batch.items()})
    return jax.tree.map(lambda a: a[0], state.params), jax.tree.map(lambda a: a[0], metrics)
  mesh = spmd.make_mesh(devices)
  state = spmd.put_state(state, mesh)
  step = spmd.make_train_step(objective.loss_fn, optimizer, mesh, state)
  for batch in batches:
    state, metrics = step(state, spmd.host_to_global(mesh, batch))
  return state.params, metrics


@pytest.mark.parametrize("objective", ["baseline", "ngebm"])
def test_data_parallel_step_equals_single_device(objective):
  assert jax.device_count() == 8
  config = _smoke_config(objective=objective)
  rng = np.random.default_rng(0)
  batches = [{"image": rng.uniform(-1, 1, (16, 32, 32, 3)).astype(np.float32),
              "label": rng.integers(0, 10, 16).astype(np.int32)} for _ in range(2)]
  p1, m1 = _run_steps(config, jax.devices()[:1], batches)
  p8, m8 = _run_steps(config, jax.devices(), batches)
  pp, mp = _run_steps(config, jax.devices(), batches, use_pmap=True)
  for other_p, other_m in ((p8, m8), (pp, mp)):
    np.testing.assert_allclose(other_m["loss"], m1["loss"], rtol=1e-5)
    for a, b in zip(jax.tree.leaves(other_p), jax.tree.leaves(p1)):
      np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-6)


def test_smoke_train_and_evaluate_writes_its_files(tmp_path, monkeypatch):
  workdir = str(tmp_path / "run")
  # The best parameters go from training to evaluation in memory, never read back from disk.
  with monkeypatch.context() as patch:
    def no_reading(*args, **kwargs):
      raise AssertionError("train_and_evaluate read the best parameters back from disk")
    patch.setattr(ckpt_lib.Checkpoints, "restore_best_params", no_reading)
    results = train_and_evaluate.train_and_evaluate(_smoke_config(), workdir)
  for name in ("config.json", "metrics.jsonl", "results.json"):
    assert os.path.exists(os.path.join(workdir, name)), name
  assert os.listdir(os.path.join(workdir, "checkpoints"))
  assert os.listdir(os.path.join(workdir, "best"))
  with open(os.path.join(workdir, "results.json")) as f:
    written = json.load(f)
  assert written == results  # the JSON file holds exactly what the workflow returned
  assert written["schema"] == 1 and written["best_step"] in (10, 20)
  assert written["evaluation"]["meta"]["best_step"] == written["best_step"]
  # The same entry on the parameters read from disk (experiments.evaluate) gives every figure.
  again = evaluate_runs.evaluate_workdir(workdir, str(tmp_path / "again"))
  assert json.loads(json.dumps(reporting.to_jsonable(again))) == written["evaluation"]
  assert 0 <= written["accuracy"] <= 1 and 0 <= written["ece"] <= 1 and written["nll"] > 0
  assert written["num_examples"] == 128
  _check_calibration_against_references(workdir, written)
  lines = [json.loads(l) for l in open(os.path.join(workdir, "metrics.jsonl"))]
  train_steps = [l["step"] for l in lines if "train/loss" in l]
  assert train_steps == [5, 10, 15, 20]
  assert all(np.isfinite(l["train/loss"]) for l in lines if "train/loss" in l)
  assert {"train/ce", "train/energy_var", "train/grad_norm"} <= set(lines[0])
  assert any("val/accuracy" in l for l in lines)
  # The saved parameters restore, and give the logged results again.
  config, fns, params = ckpt_lib.load_run(workdir)
  assert config.objective == "ngebm"
  assert jax.tree.structure(params) == jax.tree.structure(
      models.from_config(config, 10)[1])


def _check_calibration_against_references(workdir, written):
  """results.json's calibration figures, recomputed from the best checkpoint with the slow
  NumPy references (the logits come from the same evaluation path and keys)."""
  config, fns, params = ckpt_lib.load_run(workdir)
  sources = data_lib.get_sources(config)
  test_x, test_y = pipeline.read_split(sources["test"])
  val_x, val_y = pipeline.read_split(sources["validation"])

  def logits(x, split, noise_std):
    return inference.predict_logits(
        fns.apply_fn, params, pipeline.to_model_space(x), noise_std=noise_std, batch_size=64,
        key=inference.noise_key(config.eval.seed, split))

  noisy = logits(test_x, "test", config.dataset.noise_std)
  clean = logits(test_x, "test", 0.0)
  val = logits(val_x, "validation", config.dataset.noise_std)
  probs = ref.softmax_rows(noisy)
  assert written["ece"] == pytest.approx(ref.slow_ece(probs, test_y, 20), abs=1e-9)
  assert written["ece_paper"] == pytest.approx(ref.reference_paper_ece(clean, test_y), abs=1e-4)
  assert written["confidence_gap"] == pytest.approx(ref.slow_confidence_gap(noisy, test_y),
                                                    abs=1e-9)
  t_grid, spacing = ref.brute_force_temperature(val, val_y)
  assert abs(np.log(written["temperature"]) - np.log(t_grid)) <= spacing
  scaled = np.float64(noisy) / written["temperature"]
  assert written["ece_ts"] == pytest.approx(ref.slow_ece(ref.softmax_rows(scaled), test_y, 20),
                                            abs=1e-9)
  assert written["nll_ts"] == pytest.approx(ref.slow_nll(scaled, test_y), rel=1e-6)
  assert written["ece_paper_ts"] == pytest.approx(
      ref.reference_paper_ece(np.float64(clean) / written["temperature"], test_y), abs=1e-4)


@pytest.mark.parametrize("overrides, error, match", [
    (dict(objective="jem"), ValueError, "config.objective"),
    (dict(batch_size=12), ValueError, "divisible"),
    (dict(num_steps=0, num_epochs=0), ValueError, "num_steps"),
    (dict(log_every_steps=0), ValueError, "log_every_steps"),
])
def test_bad_configs_fail_before_training(tmp_path, overrides, error, match):
  with pytest.raises(error, match=match):
    loop.train(_smoke_config(**overrides), str(tmp_path / "run"))


def test_unknown_dataset_fails(tmp_path):
  config = _smoke_config()
  config.dataset.name = "imagenet"
  with pytest.raises(ValueError, match="dataset.name"):
    loop.train(config, str(tmp_path / "run"))


def test_validation_and_test_evaluation_are_one_path(tmp_path):
  # The best checkpoint is chosen by the validation accuracy training logs; evaluating that
  # checkpoint's validation split through the test path (`experiments.evaluate --split=
  # validation`) must give the same accuracy and NLL: same batching, same noise, same metrics.
  workdir = str(tmp_path / "run")
  config = _smoke_config(num_steps=10, eval_every_steps=5)
  loop.train(config, workdir, devices=jax.devices()[:2])  # validation split over 2 devices
  ckpts = ckpt_lib.Checkpoints(workdir, use_async=False)
  try:
    best = ckpts.best_metrics()
  finally:
    ckpts.close()
  figures = evaluate_runs.evaluate_workdir(workdir, str(tmp_path / "eval"), split="validation")
  assert figures["classification"]["num_examples"] == config.dataset.num_validation
  assert figures["classification"]["accuracy"] == pytest.approx(best["val_accuracy"], abs=1e-12)
  assert figures["classification"]["nll"] == pytest.approx(best["val_nll"], rel=1e-5)
  # The validation noise is real: without it the figures differ.
  clean = evaluate_runs.evaluate_workdir(workdir, str(tmp_path / "clean"), split="validation",
                                         overrides={"noise_std": 0.0})
  assert clean["classification"]["nll"] != pytest.approx(best["val_nll"], rel=1e-7)


def test_objectives_that_need_human_maps_are_refused_on_data_without_them():
  config = _smoke_config(objective="cyborg")
  with pytest.raises(ValueError, match="needs human salience maps.*focus_task"):
    config_validation.validate_config(config)
  config = _smoke_config(objective="focus")
  config.focus.human_weight = 0.5
  with pytest.raises(ValueError, match="needs human salience maps"):
    config_validation.validate_config(config)
  config.focus.human_weight = 0.0  # CE + entropy of the CAM: no human maps needed
  config.focus.entropy_weight = 0.1
  config_validation.validate_config(config)
  config.dataset.name = "focus_task"
  config.objective = "cyborg"
  config_validation.validate_config(config)


@pytest.mark.parametrize("dataset,flip,flips", [
    ("svhn_cropped", None, False),  # JEM does not flip SVHN's digits
    ("cifar10", None, True), ("embedded", None, True),
    ("svhn_cropped", True, True), ("cifar10", False, False)])  # an explicit setting wins
def test_horizontal_flips_follow_the_dataset_unless_set(dataset, flip, flips):
  from ngebm_jax.data import pipeline  # pylint: disable=g-import-not-at-top
  config = _smoke_config()
  config.dataset.name, config.dataset.flip, config.dataset.noise_std = dataset, flip, 0.0
  images = np.zeros((64, 32, 32, 3), np.uint8)
  images[:, :, :16] = 255  # bright left half: a pad-4 crop keeps it left unless mirrored
  source = pipeline.ArraySource({"image": images, "label": np.zeros(64, np.int32)})
  x = np.asarray(next(loop.train_iterator(config, source, spmd.make_mesh()))["image"])
  mirrored = x[:, :, :8].mean(axis=(1, 2, 3)) < x[:, :, -8:].mean(axis=(1, 2, 3))
  assert mirrored.any() == flips  # with flips, all 32 unmirrored has probability 2^-32
