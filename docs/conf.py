"""Sphinx configuration of the ngebm_jax API reference (`make docs`).

Builds offline (no intersphinx), from the docstrings (Google style, read by napoleon) of the
package in this checkout, whether or not it is installed.
"""

from __future__ import annotations

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "docs", "_ext"))

import ngebm_jax  # pylint: disable=g-import-not-at-top,wrong-import-position

project = "ngebm_jax"
author = "ngebm_jax authors"
copyright = "2026, ngebm_jax authors"  # pylint: disable=redefined-builtin
release = ngebm_jax.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
    "plain_docstrings",  # docs/_ext: plain-text docstrings (indented blocks, lists) as reST
]

# Docstrings write code and shapes in single backticks (`x: [B, H, W, C]`), as in Markdown:
# render them as inline code rather than reST's default (italic "interpreted text").
default_role = "code"

napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
napoleon_use_ivar = True

autodoc_member_order = "bysource"  # `__all__` order where a module defines it
autodoc_typehints = "signature"
autodoc_default_options = {"members": True, "show-inheritance": False}
# Flax NNX modules carry many inherited methods; document only what a class defines.
autodoc_inherit_docstrings = False

templates_path: list[str] = []
exclude_patterns = ["_build"]
html_theme = "alabaster"
html_static_path: list[str] = []
html_title = f"ngebm_jax {release}"
