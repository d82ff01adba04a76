"""The examples in examples/ run, and the README shows them as they are."""

from __future__ import annotations

import os
import re
import runpy

import numpy as np

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OWN_MODEL_EXAMPLE = os.path.join(REPO_ROOT, "examples", "own_model_ngebm.py")
README_SECTION = "## Use the loss in your own code"


def _readme_python_block(section: str) -> str:
  with open(os.path.join(REPO_ROOT, "README.md"), encoding="utf-8") as f:
    readme = f.read()
  assert section in readme, f"README.md has no section {section!r}"
  body = readme.split(section, 1)[1]
  body = re.split(r"\n## ", body, maxsplit=1)[0]
  match = re.search(r"```python\n(.*?)```", body, flags=re.DOTALL)
  assert match, f"README.md section {section!r} has no ```python block"
  return match.group(1)


def test_readme_shows_the_example_file_verbatim():
  with open(OWN_MODEL_EXAMPLE, encoding="utf-8") as f:
    code = f.read()
  assert _readme_python_block(README_SECTION) == code, (
      "README.md's example differs from examples/own_model_ngebm.py: copy the file into the "
      "README's ```python block")


def test_own_model_example_runs_and_its_ngebm_loss_decreases(capsys):
  namespace = runpy.run_path(OWN_MODEL_EXAMPLE, run_name="__main__")
  losses = np.asarray(namespace["losses"])
  assert losses.shape == (100,) and np.all(np.isfinite(losses))
  # Minibatch losses are noisy: compare the first and last ten steps.
  assert losses[-10:].mean() < losses[:10].mean() - 0.1, losses
  assert "NG-EBM loss" in capsys.readouterr().out
