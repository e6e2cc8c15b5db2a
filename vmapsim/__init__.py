"""vmapsim: a kernel-faithful model of the Linux vmalloc/vmap address space.

>>> import vmapsim
>>> space = vmapsim.VmapSpace(vmapsim.layouts.X86_64, cpus=2)
>>> hex(space.vmalloc(4096))
'0xffffc90000000000'
"""

from vmapsim import engine, explore, layouts, loader, modules, procfs, profiles, report, sweep, trace, workloads
from vmapsim.errors import (
    InvalidArgument,
    ModuleFileError,
    ParseError,
    UnknownAddress,
    VmapAllocationError,
    VmapsimError,
)
from vmapsim.explore import worst_case
from vmapsim.freetree import FreeTree
from vmapsim.layouts import Layout, Region
from vmapsim.loader import Request, Result, Run, Schedule, simulate
from vmapsim.modules import Catalog, ModuleImage
from vmapsim.profiles import KernelProfile
from vmapsim.space import RegionUsage, VmapArea, VmapBlock, VmapSpace
from vmapsim.units import PAGE_SIZE


def __getattr__(name: str) -> str:
    """``vmapsim.__version__``: the installed version (pyproject.toml is its one source), read on first use
    (importlib.metadata costs a tenth of the import)."""
    if name == "__version__":
        return report.version()
    raise AttributeError(f"module 'vmapsim' has no attribute {name!r}")

__all__ = [
    "PAGE_SIZE",
    "Catalog",
    "FreeTree",
    "InvalidArgument",
    "KernelProfile",
    "Layout",
    "ModuleFileError",
    "ModuleImage",
    "ParseError",
    "Region",
    "RegionUsage",
    "Request",
    "Result",
    "Run",
    "Schedule",
    "UnknownAddress",
    "VmapAllocationError",
    "VmapArea",
    "VmapBlock",
    "VmapSpace",
    "VmapsimError",
    "engine",
    "explore",
    "layouts",
    "loader",
    "modules",
    "procfs",
    "profiles",
    "report",
    "simulate",
    "sweep",
    "trace",
    "workloads",
    "worst_case",
]
