"""The shipped catalogs, known by their index: which kernel build each is, and the one a kernel runs on.

``vmapsim/data/catalogs.json`` lists each shipped catalog's kernel release, architecture, module count,
loader generation and whether its modules are compressed, so choosing a catalog for a kernel reads no
catalog (a catalog takes about 0.4 s to read; ``tests/test_modules.py`` holds the index to the catalogs).

>>> catalog_for("7.3").name, catalog_for("6.12").note
('debian-7.3-amd64', None)
>>> catalog_for("6.3").note
'no 6.3 catalog ships: running on the 6.1.0-56-amd64 catalog (debian-6.1-amd64), the nearest shipped kernel'
"""

from __future__ import annotations

import functools
import json
from importlib import resources

import attrs

from vmapsim.checks import show
from vmapsim.errors import InvalidArgument
from vmapsim.modules.scan import kernel_version

__all__ = ["CatalogChoice", "ShippedCatalog", "catalog_for", "shipped"]


@attrs.frozen
class ShippedCatalog:
    """One line of the index: a shipped catalog's name, kernel release, architecture, module count,
    loader generation (``module_layout`` ≤ 6.3, ``module_memory`` ≥ 6.4) and whether its files are
    compressed (which decides whether kmod < 31 decompresses them itself)."""

    name: str
    kernel: str
    arch: str
    modules: int
    generation: str
    compressed: bool


@attrs.frozen
class CatalogChoice:
    """The shipped catalog a kernel runs on, and the note to give when it is not that kernel's own."""

    name: str
    kernel: str
    note: str | None


@functools.cache
def shipped() -> tuple[ShippedCatalog, ...]:
    """The index of shipped catalogs, in name order (read once).  Runtime complexity: O(catalogs).

    >>> [c.name for c in shipped()][:2]
    ['debian-5.10-amd64', 'debian-6.1-amd64']
    """
    doc = json.loads((resources.files("vmapsim") / "data" / "catalogs.json").read_text())
    return tuple(ShippedCatalog(**row) for row in doc["catalogs"])


def catalog_for(kernel: str, arch: str = "x86_64", prefer: str | None = None) -> CatalogChoice:
    """The shipped catalog kernel ``kernel`` runs on: its own release's (``prefer`` first when it is one of
    them, else the first by name), else the nearest release's for ``arch``, with a note saying so.

    "Nearest" counts minor releases apart (6.3 is nearer 6.1 than 6.12; 7.0 nearer 7.3 than 6.12).  An
    architecture with no shipped catalog falls back to x86_64's, said in the note.
    Runtime complexity: O(catalogs).
    """
    key = kernel_version(kernel) if isinstance(kernel, str) else (0, 0)
    if key == (0, 0):
        raise InvalidArgument(f"kernel {show(kernel)}: expected a release such as 6.12 or 6.12.117+deb12-amd64")
    if not isinstance(arch, str):
        raise InvalidArgument(f"arch={show(arch)}: expected an architecture's name")
    mine = [c for c in shipped() if c.arch == arch]
    fallback = "" if mine else f" (no {arch} catalog ships; x86_64's)"
    mine = mine or [c for c in shipped() if c.arch == "x86_64"]
    exact = [c for c in mine if kernel_version(c.kernel) == key]
    if exact:
        best = next((c for c in exact if c.name == prefer), exact[0])
        return CatalogChoice(best.name, best.kernel, f"the {best.kernel} catalog{fallback}" if fallback else None)

    def distance(c: ShippedCatalog) -> tuple[int, str]:
        major, minor = kernel_version(c.kernel)
        return abs((major - key[0]) * 100 + minor - key[1]), c.name

    best = min(mine, key=distance)
    return CatalogChoice(best.name, best.kernel, f"no {key[0]}.{key[1]} catalog ships: running on the {best.kernel} "
                         f"catalog ({best.name}), the nearest shipped kernel{fallback}")  # fmt: skip
