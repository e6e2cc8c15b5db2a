"""The documentation site builds in a fresh virtual environment from the ``docs`` extra alone.

tests/test_docs_site.py builds the site with the test tools installed, where a page that needs something the
``docs`` extra lacks would still build. Here a new venv gets only ``pip install '<checkout>[docs]'``, as a
reader building the site would, and Sphinx runs outside the checkout, so autodoc and the figures import the
installed vmapsim: a data file the wheel lacks fails here too. pip builds from a copy of the checkout without
its build outputs: setuptools builds in the tree, and a stale ``build/lib`` would hand the wheel files the
sources no longer package. It takes a few minutes (pip fetches Sphinx, myst-parser, furo and matplotlib); ``-m
"not freshvenv"`` leaves it out. Skipped, saying so, only when pip cannot reach a package index.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.freshvenv

ROOT = Path(__file__).resolve().parent.parent
#: What a checkout may hold beside its sources: version control, build outputs, caches, virtual environments.
NOT_SOURCES = shutil.ignore_patterns(".git", "build", "dist", "site", "*.egg-info", "__pycache__", ".*_cache",
                                     ".hypothesis", ".venv")  # fmt: skip
#: What pip prints when it cannot reach an index (connection, name resolution, proxy, TLS, timeouts).
UNREACHABLE = re.compile(
    r"NewConnectionError|Failed to establish a new connection|Temporary failure in name resolution"
    r"|Name or service not known|Network is unreachable|No route to host|Connection refused|ConnectTimeoutError"
    r"|Read timed out|ProxyError|SSLError|Max retries exceeded|Could not fetch URL",
    re.IGNORECASE,
)


def _run(*argv: str | Path, cwd: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in argv], cwd=cwd, capture_output=True, text=True, timeout=timeout)


def test_the_site_builds_from_the_docs_extra_alone(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    made = _run(sys.executable, "-m", "venv", venv, cwd=tmp_path, timeout=300)
    assert made.returncode == 0, made.stderr
    python = venv / "bin" / "python"
    checkout = shutil.copytree(ROOT, tmp_path / "vmapsim", ignore=NOT_SOURCES)
    install = _run(python, "-m", "pip", "install", f"{checkout}[docs]", cwd=tmp_path, timeout=1200)
    if install.returncode != 0:
        said = install.stdout + install.stderr
        if unreachable := UNREACHABLE.search(said):
            pytest.skip(f"pip cannot reach a package index: {unreachable[0]}")
        pytest.fail(f"pip install '.[docs]' failed:\n{said[-4000:]}")
    where = _run(python, "-c", "import vmapsim; print(vmapsim.__file__)", cwd=tmp_path, timeout=60)
    assert Path(where.stdout.strip()).is_relative_to(venv), where  # the installed copy, not the checkout
    out = tmp_path / "site"
    built = _run(python, "-m", "sphinx", "-W", "-q", "-b", "html", checkout / "docs", out, cwd=tmp_path, timeout=900)
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-4000:]
    assert "vmapsim boot" in (out / "index.html").read_text()
    assert (out / "reference" / "api" / "front-door.html").is_file()
