"""Sphinx configuration of vmapsim's documentation site (``pip install '.[docs]'``; ``sphinx-build -W docs out``).

The pages are the Markdown files beside this one (myst-parser); the API reference is autodoc over the
package; the command-line reference is generated from vmapsim's own argument parser (``_ext/cliref.py``).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent / "_ext"))

project = "vmapsim"
author = "the vmapsim developers"
# matplotlib's plot directive runs each figure's code at build time: no committed image can go stale.
extensions = ["myst_parser", "sphinx.ext.autodoc", "matplotlib.sphinxext.plot_directive", "cliref"]
plot_include_source = True
plot_html_show_source_link = False
plot_html_show_formats = False
plot_formats = [("png", 110)]
source_suffix = {".md": "markdown"}
exclude_patterns = ["_build", "_ext"]
html_theme = "furo"
html_title = "vmapsim"
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
myst_heading_anchors = 3
