"""The documentation site builds with warnings as errors, and its references are complete: every public
name of every module is in the API reference, every command and option in the CLI reference."""

from __future__ import annotations

import html
import importlib
import pkgutil
import re
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
    assert not missing, f"public names missing from the API reference (docs/reference/api/*.md): {missing}"


def _inventory(site: Path) -> dict[str, str]:
    """Each Python name of the site's inventory and the page (and anchor) it links to."""
    with open(site / "objects.inv", "rb") as f:
        inventory = InventoryFile.load(f, "", lambda base, uri: uri)
    data = getattr(inventory, "data", inventory)
    return {name: item[2] if isinstance(item, tuple) else item.uri
            for kind, objects in data.items() if kind.startswith("py:") for name, item in objects.items()}  # fmt: skip


def test_the_api_reference_opens_with_the_front_door(site: Path) -> None:
    inventory = _inventory(site)
    toctree = (DOCS / "reference" / "api.md").read_text().split("```{toctree}", 1)[1]
    assert next(line for line in toctree.splitlines() if line.startswith("api/")) == "api/front-door"
    for name in vmapsim.__all__:  # each everyday name is there under the name vmapsim exports
        assert inventory[f"vmapsim.{name}"].startswith("reference/api/front-door.html#"), name
        obj = getattr(vmapsim, name)  # and its home module's name links to the same entry
        assert inventory[f"{obj.__module__}.{obj.__qualname__}"] == inventory[f"vmapsim.{name}"], name


def test_the_front_page_starts_with_the_readme_quick_start(site: Path) -> None:
    readme = (DOCS.parent / "README.md").read_text().split("## Quick start", 1)[1]
    quick_start = readme.split("```sh\n", 1)[1].split("```", 1)[0]
    index = (DOCS / "index.md").read_text()
    assert index.split("\n", 2)[2].startswith(f"```sh\n{quick_start}```\n"), "the title, then the quick start"
    article = (site / "index.html").read_text().split("<article", 1)[1]
    text = html.unescape(re.sub(r"<[^>]+>", "", article))
    assert text.index("pip install . && vmapsim boot") < text.index("What it is") < text.index("Tutorial")


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
