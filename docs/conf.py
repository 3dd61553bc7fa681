"""Sphinx configuration for the xplayers documentation.

Build with ``nox -s docs`` (or ``sphinx-build -W --keep-going -b html docs docs/_build/html``).
The build needs no network: intersphinx links to the Python and NumPy
documentation are only fetched when ``XPLAYERS_DOCS_INTERSPHINX=1`` is set.
Nor do the built pages: MathJax is copied into them (``sphinx-mathjax-offline``),
and ``nox -s docs`` fails if any page loads a script or style sheet from
another host.
"""

from __future__ import annotations

import os
import re
from typing import Any

import xplayers

project = "xplayers"
author = "The xplayers developers"
copyright = "the xplayers developers"
release = xplayers.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    # a copy of MathJax in _static/mathjax instead of a CDN, so the pages need no network
    "sphinx-mathjax-offline",
    "sphinx.ext.intersphinx",
    "sphinx_copybutton",
]

source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
root_doc = "index"
# README.md is for maintainers; conftest.py only configures the doctests of the pages.
exclude_patterns = ["_build", "README.md", "conftest.py", ".pytest_cache"]

# --- MyST: Markdown pages with $...$ math and ::: directives
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist"]
myst_heading_anchors = 3

# --- autodoc + napoleon: numpydoc docstrings with reST math roles
autodoc_member_order = "bysource"
autodoc_typehints = "none"  # the numpydoc sections already give every type
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_rtype = False
# Attributes sections as fields: no cross-reference targets named "x" or "t" per layer
napoleon_use_ivar = True
napoleon_custom_sections = ["Numerical stability"]

# --- intersphinx: off unless asked for, so that builds work offline
intersphinx_mapping: dict[str, tuple[str, str | None]] = {}
if os.environ.get("XPLAYERS_DOCS_INTERSPHINX") == "1":
    intersphinx_mapping = {
        "python": ("https://docs.python.org/3", None),
        "numpy": ("https://numpy.org/doc/stable", None),
    }

# --- copy buttons leave out the >>> and ... prompts and the printed output
copybutton_prompt_text = r">>> |\.\.\. |\$ "
copybutton_prompt_is_regexp = True
copybutton_only_copy_prompt_lines = True

# --- HTML
html_theme = "furo"
html_title = f"xplayers {release}"
pygments_style = "sphinx"


# --- Doctest padding: a ```pycon block must end with a blank line, or doctest
# would read the closing fence as expected output. Drop that line from what
# Sphinx renders (the file itself, which pytest reads, keeps it).
_PADDING = re.compile(r"\n[ \t]*\n(```[ \t]*(?:\n|$))")


def _drop_doctest_padding(app: Any, docname: str, source: list[str]) -> None:
    source[0] = _PADDING.sub(r"\n\1", source[0])


def setup(app: Any) -> dict[str, bool]:
    app.connect("source-read", _drop_doctest_padding)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
