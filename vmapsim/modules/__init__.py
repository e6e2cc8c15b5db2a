"""Real kernel modules: scanning module trees into catalogs of sizes, dependencies and aliases.

>>> from vmapsim.modules import Catalog
>>> Catalog.builtin("debian-6.1-amd64")["loop"].legacy
(32768, 20480)
"""

from vmapsim.modules.catalog import CSV_COLUMNS, Catalog, ModuleImage, ScanProblem, UnknownModule, read_module
from vmapsim.modules.layout import MEMORY_TYPES, KernelConfig

__all__ = [
    "CSV_COLUMNS",
    "MEMORY_TYPES",
    "Catalog",
    "KernelConfig",
    "ModuleImage",
    "ScanProblem",
    "UnknownModule",
    "read_module",
]
