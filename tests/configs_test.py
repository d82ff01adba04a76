"""Every field of every config in configs/ can be set from the command line.

Each config (and each `get_config(arg)` variant, e.g. configs/focus.py:cyborg) is loaded through
`ml_collections.config_flags` exactly as the programs load it, with one `--config.a.b=value`
override per leaf, of the leaf's type (int, float, str, bool, tuple, unset placeholder); the
test asserts that every leaf took its new value.
"""

from __future__ import annotations

import glob
import importlib
import inspect
import os

from absl import flags
import ml_collections
from ml_collections import config_flags
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG_FILES = sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, "configs",
                                                                               "*.py"))
                      if not p.endswith("__init__.py"))


def _variants(path: str) -> list[str]:
  """`path`, or `path:arg` for every argument a `get_config(arg)` takes (its `RECIPES`)."""
  module = importlib.import_module(path[:-3].replace(os.sep, "."))
  parameters = inspect.signature(module.get_config).parameters
  if not parameters:
    return [path]
  if not hasattr(module, "RECIPES"):
    raise AssertionError(f"{path}: get_config takes arguments; declare them in RECIPES so "
                         "that this test overrides every variant.")
  return [path] + [f"{path}:{arg}" for arg in module.RECIPES]


VARIANTS = [v for path in CONFIG_FILES for v in _variants(path)]


def _leaves(config: ml_collections.ConfigDict, prefix: str = ""):
  """(dotted name, value, declared type) of every leaf."""
  for key in config.keys():
    value = config[key]
    if isinstance(value, ml_collections.ConfigDict):
      yield from _leaves(value, f"{prefix}{key}.")
    else:
      yield f"{prefix}{key}", value, config.get_type(key)


def _new_value(value, field_type):
  """A value of `field_type` that differs from `value`, and how a user types it."""
  if field_type is bool:
    return (not value), str(not value)
  if field_type is int:
    new = 7 if value is None else value + 1
    return new, str(new)
  if field_type is float:
    new = 0.25 if value is None else value + 0.5
    return new, repr(new)
  if field_type is str:
    new = "/tmp/somewhere" if value is None else value + "_x"
    return new, new
  if field_type is tuple:
    new = tuple(value) + ((value[0],) if value else ("x",))
    return new, repr(new)  # a Python literal: --config.eval.ood_sets="('svhn',)"
  raise AssertionError(f"no command-line form for a field of type {field_type}")


def _parse(variant: str, overrides: list[str]) -> ml_collections.ConfigDict:
  """The config as `python -m experiments.train --config=VARIANT OVERRIDES` builds it."""
  argv = ["program", f"--config={variant}", *overrides]
  flag_values = flags.FlagValues()
  holder = config_flags.DEFINE_config_file("config", None, "config", flag_values=flag_values,
                                           lock_config=True, sys_argv=argv)
  cwd = os.getcwd()
  os.chdir(ROOT)  # config paths are relative to the repository, as in the README
  try:
    flag_values(argv)
  finally:
    os.chdir(cwd)
  return holder.value


def test_every_config_file_is_covered():
  assert "configs/default.py" in CONFIG_FILES and "configs/focus.py:cyborg" in VARIANTS
  assert len(CONFIG_FILES) >= 14


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_leaf_can_be_overridden_on_the_command_line(variant):
  config = _parse(variant, [])
  leaves = list(_leaves(config))
  untyped = [name for name, value, t in leaves if t is type(None)]
  assert not untyped, (f"{variant}: fields {untyped} are None; the command line cannot set a "
                       "None field: declare it with config_dict.placeholder(type).")
  expected, overrides = {}, []
  for name, value, field_type in leaves:
    expected[name], typed = _new_value(value, field_type)
    overrides.append(f"--config.{name}={typed}")
  try:
    changed = _parse(variant, overrides)
  except Exception:  # pylint: disable=broad-except
    failing = []
    for override in overrides:  # which ones: one at a time
      try:
        _parse(variant, [override])
      except Exception as e:  # pylint: disable=broad-except
        failing.append(f"{override}: {type(e).__name__}: {e}")
    raise AssertionError(f"{variant}: overrides refused:\n" + "\n".join(failing)) from None
  for name, value, field_type in _leaves(changed):
    assert value == expected[name], (name, value, expected[name])
    assert field_type is not type(None)


def test_placeholders_are_unset_until_given():
  config = _parse("configs/cifar10_ngebm.py", [])
  assert config.dataset.data_dir is None and config.eval.max_examples is None
  config = _parse("configs/cifar10_ngebm.py",
                  ["--config.dataset.data_dir=/data/tfds", "--config.eval.max_examples=500"])
  assert config.dataset.data_dir == "/data/tfds" and config.eval.max_examples == 500
