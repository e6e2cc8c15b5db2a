"""Sphinx configuration of vmapsim's documentation site (``pip install '.[docs]'``; ``sphinx-build -W docs out``).

The pages are the Markdown files beside this one (myst-parser); the API reference is autodoc over the
package; the command-line reference is generated from vmapsim's own argument parser (``_ext/cliref.py``).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

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


def _reexported_names(app: Any, env: Any) -> None:
    """Each name a package re-exports is documented once, and links by every name: the front door documents
    ``vmapsim.simulate`` and ``vmapsim.Scenario``, so ``vmapsim.loader.run.simulate``,
    ``vmapsim.loader.simulate`` and ``vmapsim.scenario.Scenario.run`` link there; the loader's page documents
    ``vmapsim.loader.pipelines.Pipeline``, so ``vmapsim.loader.Pipeline`` links there. Each other name (of an
    object and of its members) is added to the inventory as an alias of the documented one."""
    import importlib
    import pkgutil

    import vmapsim

    objects = env.get_domain("py").objects
    known: dict[int, set[str]] = {}  # each re-exported object's names: where it is defined, where exported
    packages = ["vmapsim"] + [m.name for m in pkgutil.walk_packages(vmapsim.__path__, "vmapsim.") if m.ispkg]
    for package in packages:
        module = importlib.import_module(package)
        for name in getattr(module, "__all__", ()):
            obj = getattr(module, name)
            if hasattr(obj, "__qualname__") and hasattr(obj, "__module__"):  # not a value such as PIPELINES
                known.setdefault(id(obj), {f"{obj.__module__}.{obj.__qualname__}"}).add(f"{package}.{name}")
    for names in known.values():
        documented = [n for n in names if n in objects and not objects[n].aliased]
        if len(documented) != 1:
            continue
        (home,) = documented
        members = [(k, e) for k, e in objects.items() if (k == home or k.startswith(home + ".")) and not e.aliased]
        for other in names - {home}:
            for key, entry in members:
                objects.setdefault(other + key[len(home) :], entry._replace(aliased=True))


def setup(app: Any) -> None:
    app.connect("env-updated", _reexported_names)
