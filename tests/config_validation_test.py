"""Every config value is checked before anything is written (ngebm_jax/config_validation.py)."""

import json
import os
import re
import subprocess
import sys

import pytest

from configs import default
from configs import smoke
from ngebm_jax import config_validation
from ngebm_jax import focus as focus_lib
from ngebm_jax import models
from ngebm_jax import objectives as objectives_lib
from ngebm_jax.evaluation import evaluators
from ngebm_jax.evaluation import ood
from ngebm_jax.evaluation import robustness
from ngebm_jax.training import checkpoints as ckpt_lib
from ngebm_jax.training import loop
from ngebm_jax.training import objective_registry
from ngebm_jax.workflows import evaluate_runs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _set(config, field: str, value) -> None:
  *blocks, name = field.split(".")
  target = config
  for block in blocks:
    target = target[block]
  with target.ignore_type():
    target[name] = value


# Each enumerated field, a value it does not allow, and one value the message must list (read
# from the module that defines the allowed values, so a new one is allowed when registered).
ENUMERATED = [
    ("objective", "double_ngebm", lambda: objective_registry.names()[0]),
    ("ngebm.grad_mode", "double_backward", lambda: objectives_lib.GRAD_MODES[0]),
    ("model.name", "resnet50", lambda: models.MODEL_NAMES[0]),
    ("model.dtype", "float16", lambda: config_validation.MODEL_DTYPES[1]),
    ("dataset.name", "imagenet", lambda: "cifar10"),
    ("eval.evaluators", ("classification", "fid"), lambda: sorted(evaluators.EVALUATORS)[0]),
    ("eval.ood_scores", ("energy",), lambda: ood.SCORE_NAMES[0]),
    ("eval.robustness_norms", ("l1",), lambda: robustness.NORMS[0]),
    ("eval.robustness_protocol", "autoattack", lambda: robustness.PROTOCOLS[1]),
    ("eval.ood_sets", ("mnist",), lambda: "celeba"),
    ("focus.entropy_form", "max", lambda: focus_lib.ENTROPY_FORMS[0]),
    ("focus.cam_class", "second", lambda: focus_lib.CAM_CLASSES[0]),
]


@pytest.mark.parametrize("field,bad,allowed", ENUMERATED, ids=[f for f, _, _ in ENUMERATED])
def test_each_enumerated_field_is_checked_with_the_allowed_values(field, bad, allowed):
  config = default.get_config()
  config_validation.validate_config(config, 1)  # the defaults pass
  _set(config, field, bad)
  with pytest.raises(ValueError, match=re.escape(f"config.{field} must")) as e:
    config_validation.validate_config(config, 1)
  assert repr(allowed()) in str(e.value) or str(allowed()) in str(e.value)


def test_focus_task_kinds_are_checked():
  config = default.get_config()
  config.dataset.name = "focus_task"
  config.dataset.train_kinds = ("checkerboard", "moire")
  with pytest.raises(ValueError, match=r"config\.dataset\.train_kinds.*'seam'.*\['moire'\]"):
    config_validation.validate_config(config, 1)


def test_objectives_registered_later_are_allowed():
  config = default.get_config()
  config.objective = "test_only_objective"
  with pytest.raises(ValueError, match="config.objective must be one of"):
    config_validation.validate_config(config, 1)
  objective_registry.register("test_only_objective", objective_registry._REGISTRY["baseline"])
  try:
    config_validation.validate_config(config, 1)
  finally:
    del objective_registry._REGISTRY["test_only_objective"]


NUMERIC = [
    ("batch_size", 0, r"\[1, inf\)"),
    ("sgld.reinit_prob", 1.5, r"\[0, 1\]"),
    ("ngebm.penalty_fraction", 0.0, r"\(0, 1\]"),
    ("sgld.step_size", 0.0, r"\(0, inf\)"),
    ("model.dropout_rate", 1.0, r"\[0, 1\)"),
    ("model.depth", 27, "6 n \\+ 4"),
    ("optimizer.learning_rate", -1e-4, r"\(0, inf\)"),
    ("optimizer.b2", 1.0, r"\[0, 1\)"),
    ("focus.alpha", -0.1, r"\[0, 1\]"),
    ("dataset.noise_std", float("nan"), r"\[0, inf\)"),
    ("dataset.split_seed", -1, "integer"),
    ("dataset.split_num_validation", 0, "integer"),
    ("dataset.read_threads", -1, "integer"),
    ("eval.max_examples", 0, "integer"),
    ("eval.robustness_num_examples", 2.5, "integer"),
    ("eval.refine_steps", -1, "integer"),
    ("eval.refine_noise_std", -0.01, r"\[0, inf\)"),
    ("eval.pgd_step_size", 0.0, r"\(0, inf\)"),
    ("eval.epsilons_linf", (0.0, -8 / 255), r"\[0, inf\)"),
    ("log_every_steps", 0, "integer"),
]


@pytest.mark.parametrize("field,bad,interval", NUMERIC, ids=[f for f, _, _ in NUMERIC])
def test_numeric_ranges_are_checked(field, bad, interval):
  config = default.get_config()
  _set(config, field, bad)
  with pytest.raises(ValueError, match=re.escape(f"config.{field}") + ".*" + interval):
    config_validation.validate_config(config, 1)


def test_evaluation_settings_are_checked_with_the_overrides():
  config = smoke.get_config()
  evaluate_runs.check_settings(config, {"max_examples": 10})
  with pytest.raises(ValueError, match=r"config\.eval\.evaluators.*\['fid'\]"):
    evaluate_runs.check_settings(config, {"evaluators": ["classification", "fid"]})
  with pytest.raises(ValueError, match=r"config\.eval\.ood_sets.*\['mnist'\]"):
    evaluate_runs.check_settings(config, {"ood_sets": ["mnist"]})


def test_the_issues_command_writes_nothing_and_the_corrected_one_trains_there(tmp_path):
  workdir = tmp_path / "W"
  command = [sys.executable, "-m", "experiments.train", "--config=configs/smoke.py",
             "--config.ngebm.grad_mode=double_backward", f"--workdir={workdir}"]
  done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300,
                        env=dict(os.environ, JAX_PLATFORMS="cpu"))
  assert done.returncode != 0
  assert "config.ngebm.grad_mode must be one of ('forward_over_reverse'" in done.stderr
  assert not workdir.exists() or not any(workdir.rglob("*"))
  # The corrected command (sized down) trains in the same workdir.
  config = smoke.get_config()
  config.num_steps = 2
  config.eval_every_steps = config.checkpoint_every_steps = 2
  config.tensorboard = False
  assert loop.train(config, str(workdir)).last_step == 2


def test_a_config_without_a_saved_step_is_a_fresh_start(tmp_path):
  workdir = str(tmp_path / "W")
  started = smoke.get_config()
  started.ngebm.beta = 0.5  # a run that failed before its first checkpoint
  os.makedirs(workdir)
  ckpt_lib.save_config(workdir, started)
  assert not ckpt_lib.has_saved_step(workdir)
  config = smoke.get_config()
  config.num_steps = 2
  config.eval_every_steps = config.checkpoint_every_steps = 2
  config.tensorboard = False
  assert loop.train(config, workdir).resumed_from_step is None
  assert ckpt_lib.has_saved_step(workdir)
  assert json.loads((tmp_path / "W" / "config.json").read_text())["ngebm"]["beta"] == 1.0
  started.num_steps = 4
  with pytest.raises(loop.ConfigMismatchError, match=r"ngebm\.beta: 1\.0 -> 0\.5"):
    loop.train(started, workdir)  # now a step is saved: the run is protected


def test_configs_saved_before_new_fields_read_back_with_the_values_they_ran_with(tmp_path):
  config = smoke.get_config().to_dict()
  config["dataset"]["split_num_validation"] = 32
  del config["dataset"]["split_seed"], config["eval"]["refine_steps"]
  del config["dataset"]["read_threads"]
  (tmp_path / "config.json").write_text(json.dumps(config))
  loaded = ckpt_lib.load_config(str(tmp_path))
  assert loaded.dataset.split_seed == 1234 and loaded.eval.refine_steps == 0
  assert loaded.dataset.read_threads == 0
  assert loaded.dataset.split_num_validation == 32  # a saved value is kept
  del config["dataset"]["split_num_validation"]
  (tmp_path / "config.json").write_text(json.dumps(config))
  assert ckpt_lib.load_config(str(tmp_path)).dataset.split_num_validation == 5000
  config_validation.validate_config(loaded, 1)
