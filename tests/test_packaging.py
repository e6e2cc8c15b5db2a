"""What a distribution packages: every data file the package reads is in its wheel.

The tests import vmapsim from the checkout, where every file is present, so a data file missing from
pyproject.toml's package-data would pass them and fail only in an installed copy.
"""

from __future__ import annotations

import fnmatch
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "vmapsim"


def test_package_data_carries_every_data_file_of_the_package() -> None:
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["vmapsim"]
    data = [
        p.relative_to(PACKAGE).as_posix()
        for p in PACKAGE.rglob("*")
        if p.is_file() and p.suffix not in {".py", ".pyc"} and "__pycache__" not in p.parts
    ]
    # fnmatch's * also crosses "/", setuptools' does not: match each pattern within its own folder
    carried = {f for f in data for pat in patterns if f.count("/") == pat.count("/") and fnmatch.fnmatch(f, pat)}
    assert data and sorted(set(data) - carried) == []
