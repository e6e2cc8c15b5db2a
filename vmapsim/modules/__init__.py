"""Real kernel modules: scanning module trees into catalogs of sizes, dependencies and aliases.

One module per concept: :mod:`~vmapsim.modules.compression` (kbuild's ``.ko.xz``/``.zst``/``.gz``),
:mod:`~vmapsim.modules.elf` (headers, sections, symbols, ``.modinfo``, the appended signature),
:mod:`~vmapsim.modules.layout` (``layout_sections()``/``layout_symtab()`` replayed),
:mod:`~vmapsim.modules.image` (:class:`ModuleImage`), :mod:`~vmapsim.modules.scan` (a tree
read in a process pool), :mod:`~vmapsim.modules.alias` (kmod's alias matching, indexed) and
:mod:`~vmapsim.modules.catalog` (:class:`Catalog`: lookups, closure, CSV, save/load, shipped catalogs) and
:mod:`~vmapsim.modules.proc_modules` (a live kernel's ``/proc/modules`` checked against a catalog).

>>> from vmapsim.modules import Catalog
>>> Catalog.builtin("debian-6.1-amd64")["loop"].legacy
(32768, 20480)
"""

from vmapsim.modules.alias import AliasIndex, kmod_fnmatch
from vmapsim.modules.catalog import CSV_COLUMNS, Catalog, UnknownModule
from vmapsim.modules.image import ModuleImage
from vmapsim.modules.layout import ARCHES, MEMORY_TYPES, Generation, KernelConfig, ModuleLayout
from vmapsim.modules.proc_modules import LoadedModule, SizeCheck, check_sizes, parse_proc_modules
from vmapsim.modules.scan import ScanProblem, read_module

__all__ = [
    "ARCHES",
    "CSV_COLUMNS",
    "MEMORY_TYPES",
    "AliasIndex",
    "Catalog",
    "Generation",
    "KernelConfig",
    "LoadedModule",
    "ModuleImage",
    "ModuleLayout",
    "ScanProblem",
    "SizeCheck",
    "UnknownModule",
    "check_sizes",
    "kmod_fnmatch",
    "parse_proc_modules",
    "read_module",
]
