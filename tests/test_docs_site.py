"""The documentation site builds with warnings as errors, and its references are complete: every public
name of every module is in the API reference, every command and option in the CLI reference."""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import vmapsim
from vmapsim import cli

sphinx = pytest.importorskip("sphinx", reason="the site needs the docs extra: pip install '.[docs]'")
from sphinx.util.inventory import InventoryFile  # noqa: E402

DOCS = Path(__file__).parent.parent / "docs"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    r = subprocess.run([sys.executable, "-m", "sphinx", "-W", "-E", "-q", "-b", "html", str(DOCS), str(out)],
                       capture_output=True, text=True, timeout=600)  # fmt: skip
    assert r.returncode == 0, r.stderr
    return out


def _public_names() -> set[str]:
    names = set()
    for info in pkgutil.walk_packages(vmapsim.__path__, "vmapsim."):
        if info.name.split(".")[-1].startswith("_"):
            continue
        mod = importlib.import_module(info.name)
        names.add(info.name)
        for name in getattr(mod, "__all__", ()):
            obj = getattr(mod, name)
            if getattr(obj, "__module__", None) == info.name:  # defined here, not re-exported
                names.add(f"{info.name}.{name}")
    return names


def test_the_api_reference_names_every_public_name(site: Path) -> None:
    with open(site / "objects.inv", "rb") as f:
        inventory = InventoryFile.load(f, "", lambda base, uri: uri)
    data = getattr(inventory, "data", inventory)  # an object with .data from Sphinx 8.2, a dict before
    documented = {name for kind, objects in data.items() if kind.startswith("py:") for name in objects}
    missing = sorted(_public_names() - documented)
    assert not missing, f"public names missing from docs/reference/api.md: {missing}"


def test_the_cli_reference_names_every_command_and_option(site: Path) -> None:
    page = (site / "reference" / "cli.html").read_text()
    for path, parser in cli.commands():
        assert path in page, path
        for action in parser._actions:
            for option in action.option_strings:
                assert option in page, (path, option)


def test_every_page_is_in_the_site(site: Path) -> None:
    pages = {p.relative_to(DOCS).with_suffix("") for p in DOCS.rglob("*.md")}
    built = {p.relative_to(site).with_suffix("") for p in site.rglob("*.html")}
    assert pages <= built, sorted(map(str, pages - built))



def test_figures_are_drawn_by_vmapsim_when_the_site_is_built(site: Path) -> None:
    plots = sum(page.read_text().count(".. plot::") for page in DOCS.rglob("*.md"))
    images = list((site / "_images").glob("*.png"))
    assert plots >= 1 and len(images) >= plots and all(p.stat().st_size > 10_000 for p in images)
