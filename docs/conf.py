"""Sphinx configuration of the pynn_brainscales2 documentation (built with ``-W``)."""

import os
import sys

sys.path.insert(0, os.path.abspath(".."))

project = "pynn_brainscales2"
author = "pynn_brainscales2 developers"
copyright = "2026, pynn_brainscales2 developers"

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.doctest",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "figures/*.py", "README.md"]
myst_enable_extensions = ["dollarmath", "colon_fence"]
myst_heading_anchors = 3
autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autosummary_generate = False
napoleon_numpy_docstring = True
napoleon_google_docstring = False
# PyNN's own base classes document themselves; their docstrings are not ours to fix
autodoc_inherit_docstrings = False
nitpicky = False
html_theme = "alabaster"
html_title = "pynn_brainscales2"
html_static_path = []
