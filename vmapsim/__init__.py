"""vmapsim: a kernel-faithful model of the Linux vmalloc/vmap address space and the module loader.

The front door offers the everyday names; each is loaded on first use, so ``import vmapsim`` is cheap.
The layers behind it are packages of their own (:mod:`vmapsim.space`, :mod:`vmapsim.loader`,
:mod:`vmapsim.workloads`, :mod:`vmapsim.modules`, ...), also loaded on first use.

>>> import vmapsim
>>> space = vmapsim.VmapSpace(vmapsim.layouts.X86_64, cpus=2)
>>> hex(space.vmalloc(4096))
'0xffffc90000000000'
>>> vmapsim.Scenario("qemu-kvm", cpus=2, pipeline="v6.5").simulate().metrics()["ok"] > 0
True
"""

import importlib as _importlib
import types as _types
import typing as _typing

if _typing.TYPE_CHECKING:  # what __getattr__ loads, for type checkers and readers
    from vmapsim.errors import (
        InvalidArgument,
        ModuleFileError,
        ParseError,
        UnknownAddress,
        VmapAllocationError,
        VmapsimError,
    )
    from vmapsim.explore import worst_case
    from vmapsim.loader import Request, Result, Run, simulate
    from vmapsim.modules import Catalog
    from vmapsim.scenario import Coldplug, Loads, Scenario, storm
    from vmapsim.space import VmapSpace
    from vmapsim.sweeps import Grid, sweep
    from vmapsim.workloads import Machine

#: Each everyday name and the module it comes from.
_NAMES = {
    "Catalog": "vmapsim.modules",
    "Coldplug": "vmapsim.scenario",
    "Grid": "vmapsim.sweeps",
    "InvalidArgument": "vmapsim.errors",
    "Loads": "vmapsim.scenario",
    "Machine": "vmapsim.workloads",
    "ModuleFileError": "vmapsim.errors",
    "ParseError": "vmapsim.errors",
    "Request": "vmapsim.loader",
    "Result": "vmapsim.loader",
    "Run": "vmapsim.loader",
    "Scenario": "vmapsim.scenario",
    "UnknownAddress": "vmapsim.errors",
    "VmapAllocationError": "vmapsim.errors",
    "VmapSpace": "vmapsim.space",
    "VmapsimError": "vmapsim.errors",
    "simulate": "vmapsim.loader",
    "storm": "vmapsim.scenario",
    "sweep": "vmapsim.sweeps",
    "worst_case": "vmapsim.explore",
}

__all__ = [
    "Catalog",
    "Coldplug",
    "Grid",
    "InvalidArgument",
    "Loads",
    "Machine",
    "ModuleFileError",
    "ParseError",
    "Request",
    "Result",
    "Run",
    "Scenario",
    "UnknownAddress",
    "VmapAllocationError",
    "VmapSpace",
    "VmapsimError",
    "simulate",
    "storm",
    "sweep",
    "worst_case",
]


def __getattr__(name: str) -> _typing.Any:
    """An everyday name, a subpackage or module (``vmapsim.layouts``), or ``vmapsim.__version__`` (the
    installed version, pyproject.toml's), each loaded on first use and kept."""
    if name == "__version__":
        from vmapsim.report import version

        return version()
    if name in _NAMES:
        value = getattr(_importlib.import_module(_NAMES[name]), name)
    elif not name.startswith("_"):
        try:
            value = _importlib.import_module(f"vmapsim.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"vmapsim.{name}":
                raise
            raise AttributeError(f"module 'vmapsim' has no attribute {name!r}") from None
    else:
        raise AttributeError(f"module 'vmapsim' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """The everyday names and the submodules loaded so far."""
    return sorted({*_NAMES, *(n for n, v in globals().items() if isinstance(v, _types.ModuleType) and n[0] != "_")})
