"""The API reference: it covers every module and public name, and docstrings render as reST.

The full Sphinx build with warnings as errors (`make docs`'s) runs here too: a broken docstring
fails the tests. It is a test rather than a step after them, so that it runs beside the others.
"""

from __future__ import annotations

import glob
import io
import os
import re
import subprocess
import sys

import pytest

import ngebm_jax as ng

pytest.importorskip("sphinx", reason="the docs extra is not installed: pip install -e '.[docs]'")
import docutils.core  # pylint: disable=wrong-import-position
from sphinx.ext.napoleon import Config  # pylint: disable=wrong-import-position
from sphinx.ext.napoleon.docstring import GoogleDocstring  # pylint: disable=wrong-import-position

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO_ROOT, "docs", "_ext"))
import plain_docstrings  # pylint: disable=g-import-not-at-top,wrong-import-position

# Documented through `ngebm_jax.__all__`: their module names are shadowed by the function
# `ngebm_jax.energy` (a module entry would collide with it) or hold nothing else public.
DOCUMENTED_THROUGH_PACKAGE = {"ngebm_jax.energy", "ngebm_jax.objectives"}


def _public_modules() -> set[str]:
  modules = set()
  for path in glob.glob(os.path.join(REPO_ROOT, "ngebm_jax", "**", "*.py"), recursive=True):
    rel = os.path.relpath(path, REPO_ROOT)[:-len(".py")].split(os.sep)
    if rel[-1] == "__init__":
      rel = rel[:-1]
    if not any(part.startswith("_") for part in rel):
      modules.add(".".join(rel))
  return modules - DOCUMENTED_THROUGH_PACKAGE


def _documented_modules() -> set[str]:
  names = set()
  for path in glob.glob(os.path.join(REPO_ROOT, "docs", "**", "*.rst"), recursive=True):
    with open(path, encoding="utf-8") as f:
      names.update(re.findall(r"^\.\. automodule:: (\S+)", f.read(), flags=re.MULTILINE))
  return names


def test_the_api_reference_builds_without_warnings(tmp_path):
  # `make docs`'s command, into a scratch folder (docs/_build is the user's).
  proc = subprocess.run([sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
                         "docs", str(tmp_path / "html")], cwd=REPO_ROOT, capture_output=True,
                        text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-4000:]
  assert (tmp_path / "html" / "index.html").exists()


def test_every_module_is_in_the_api_reference():
  missing = _public_modules() - _documented_modules()
  assert not missing, f"add `.. automodule:: NAME` to a page of docs/api/ for {sorted(missing)}"
  assert "ngebm_jax" in _documented_modules()  # documents ngebm_jax.__all__


def test_every_public_name_has_a_docstring():
  undocumented = [name for name in ng.__all__
                  if callable(getattr(ng, name)) and not (getattr(ng, name).__doc__ or "").strip()]
  assert not undocumented


def _rest_warnings(lines: list[str]) -> str:
  """docutils' warnings for a docstring after napoleon, as Sphinx would render it."""
  rest = "\n".join(GoogleDocstring(lines, Config(napoleon_use_rtype=False)).lines())
  stream = io.StringIO()
  docutils.core.publish_doctree(
      rest, settings_overrides={"warning_stream": stream, "report_level": 2, "halt_level": 5})
  return stream.getvalue()


PLAIN_TEXT_DOCSTRINGS = {
    "list right after its line": """Scores (JEM §5):
- `log_density`: log p~(x);
- `approximate_mass`: the norm of the input
  gradient.
A paragraph right after the list.
""",
    "indented block after a colon": """Layout of `workdir`:
  config.json        the config
  checkpoints/<step> the newest states,
                     written atomically
""",
    "formula with bars": """Expected Calibration Error, with bins

  ECE = sum_b |B_b| / n * |acc(B_b) - conf(B_b)|,

and `n` examples.
""",
    "plain-text table with a hanging indent": """The sets.

interp    pixel average of two images;
          JEM averages two batches.
uniform   uniform pixels.
""",
    "nested list in an item": """Kinds:

- **Generated**: a scene with an artifact. Kinds
  (amplitudes in grey levels):
    - `checkerboard`: a period-2 pattern;
    - `seam`: a copied region.
  Amplitudes are small.
- **Human maps**: rectangles.
""",
    "fenced code and plural code": """Salience of `jax.Array`s.

```python
maps = salience.grad_cam(model_fns, params, x)
```

Args:
  x: `[B, H, W, C]` images.
    Second line of `x`s description.

Returns:
  `(maps, logits)`.
""",
}


@pytest.mark.parametrize("name", sorted(PLAIN_TEXT_DOCSTRINGS))
def test_plain_text_docstrings_render_without_warnings(name):
  lines = PLAIN_TEXT_DOCSTRINGS[name].splitlines()
  assert _rest_warnings(lines), "the raw text should be invalid reST (else the case tests nothing)"
  converted = plain_docstrings.convert(lines)
  assert _rest_warnings(converted) == "", "\n".join(converted)


def test_converter_keeps_rest_and_google_sections():
  text = """Summary.

Example::

    x = 1
      y = 2

Args:
  x: first.
    continued.
"""
  assert plain_docstrings.convert(text.splitlines()) == text.splitlines()


def test_converter_output_keeps_the_text():
  lines = PLAIN_TEXT_DOCSTRINGS["indented block after a colon"].splitlines()
  converted = plain_docstrings.convert(lines)
  assert converted[0] == "Layout of `workdir`::"
  assert [l for l in converted if l.strip()][1:] == lines[1:]
