"""setup.cfg declares what the package imports, and nothing it does not."""

from __future__ import annotations

import ast
import configparser
import glob
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Distribution name -> the module it is imported as.
MODULES = {"orbax-checkpoint": "orbax", "tensorflow-datasets": "tensorflow_datasets",
           "ml-collections": "ml_collections", "absl-py": "absl", "scikit-learn": "sklearn",
           "scikit-image": "skimage", "pillow": "PIL", "pytest-xdist": "xdist"}
# Declared but never imported by name, and why.
INDIRECT = {
    "jaxlib": "the compiled half of jax, pinned to jax's range",
    "importlib_resources": "tensorflow-datasets imports it without declaring it",
    "pytest-xdist": "pytest's -n option (the suite runs with -n 2)",
}


def _setup_cfg():
  config = configparser.ConfigParser()
  config.read(os.path.join(ROOT, "setup.cfg"))
  return config


def _names(block: str) -> list[str]:
  return [re.split(r"[<>=\[ ;]", line.strip(), maxsplit=1)[0]
          for line in block.splitlines() if line.strip() and not line.strip().startswith("#")]


def _imports(folders) -> set[str]:
  found = set()
  for folder in folders:
    for path in glob.glob(os.path.join(ROOT, folder, "**", "*.py"), recursive=True):
      for node in ast.walk(ast.parse(open(path).read())):
        if isinstance(node, ast.Import):
          found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
          found.add(node.module.split(".")[0])
  return found


def test_every_dependency_is_used_where_it_is_declared():
  options = _setup_cfg()
  library = _imports(["ngebm_jax", "experiments"])
  tests = _imports(["tests"])
  for name in _names(options["options"]["install_requires"]):
    assert name in INDIRECT or MODULES.get(name, name) in library, (
        f"{name} is in install_requires but ngebm_jax/ and experiments/ never import it.")
  for name in _names(options["options.extras_require"]["test"]):
    module = MODULES.get(name, name)
    assert name in INDIRECT or (module in tests and module not in library), (
        f"{name} is a test dependency: tests/ must import it and the library must not.")


def test_python_and_jax_ranges():
  options = _setup_cfg()
  assert options["options"]["python_requires"] == ">=3.11"  # jax >= 0.7 needs 3.11
  requires = options["options"]["install_requires"]
  assert "jax>=0.7.0,<0.13" in requires and "jaxlib>=0.7.0,<0.13" in requires
  extras = options["options.extras_require"]
  for accelerator in ("cuda12", "cuda13", "tpu"):
    assert _names(extras[accelerator]) == ["jax"]
    assert f"jax[{accelerator}]>=0.7.0,<0.13" in extras[accelerator]
  # requirements-gpu.txt installs the package itself with its CUDA extra, so that `pip install
  # -r` brings flax, optax and orbax too, not jax alone.
  with open(os.path.join(ROOT, "requirements-gpu.txt")) as f:
    lines = [l.strip() for l in f if l.strip() and not l.startswith("#")]
  assert lines == ["-e .[cuda13]"]


def test_license_file_matches_setup_cfg():
  assert _setup_cfg()["metadata"]["license"] == "Apache-2.0"
  with open(os.path.join(ROOT, "LICENSE")) as f:
    text = f.read()
  assert "Apache License" in text and "Version 2.0, January 2004" in text
  assert "END OF TERMS AND CONDITIONS" in text  # the full text, not a pointer to it


def test_makefile_takes_the_newest_python_that_runs(tmp_path):
  # A pyenv shim answers `command -v python3.13` but fails when run: it must be passed over.
  import subprocess
  import sys
  bin_dir = tmp_path / "bin"
  bin_dir.mkdir()
  shim = bin_dir / "python3.13"
  shim.write_text("#!/bin/sh\necho 'pyenv: python3.13: command not found' >&2\nexit 127\n")
  shim.chmod(0o755)
  (bin_dir / "python3.12").symlink_to(sys.executable)  # runs, and is >= 3.11
  env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}/usr/bin{os.pathsep}/bin")
  out = subprocess.run(["make", "-n", "-C", ROOT, f"VENV={tmp_path}/venv", "test"], env=env,
                       capture_output=True, text=True, check=True).stdout
  assert "python3.12 -m venv" in out, out
