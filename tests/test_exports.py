"""The public surface: what vmapsim exports, and that every public name is documented."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import subprocess
import sys

import vmapsim

PUBLIC_MODULES = sorted(
    m.name for m in pkgutil.walk_packages(vmapsim.__path__, "vmapsim.") if not m.name.split(".")[-1].startswith("_")
)


def test_top_level_exports() -> None:
    assert sorted(vmapsim.__all__) == sorted(
        [
            "Catalog", "Coldplug", "Grid", "InvalidArgument", "Loads", "Machine", "ModuleFileError", "ParseError",
            "Request", "Result", "Run", "Scenario", "UnknownAddress", "VmapAllocationError", "VmapSpace",
            "VmapsimError", "simulate", "storm", "sweep", "worst_case",
        ]
    )  # fmt: skip
    for name in vmapsim.__all__:
        assert hasattr(vmapsim, name), name
    # every public non-module attribute of the package is exported
    unexported = {n for n in dir(vmapsim) if not n.startswith("_") and not inspect.ismodule(getattr(vmapsim, n))}
    assert unexported - set(vmapsim.__all__) == set()


def test_the_front_door_loads_its_names_on_use() -> None:
    code = ("import sys, vmapsim; before = sorted(m for m in sys.modules if m.startswith('vmapsim')); "
            "vmapsim.Scenario; import vmapsim.sweeps; "
            "print(before, 'vmapsim.scenario' in sys.modules, vmapsim.sweep is vmapsim.sweeps.sweep)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split("] ")[0] == "['vmapsim'"  # nothing but the package itself on import
    assert out.split("] ")[1].split() == ["True", "True"]


def test_every_public_name_has_a_docstring() -> None:
    missing = []
    for modname in PUBLIC_MODULES:
        mod = importlib.import_module(modname)
        if not mod.__doc__:
            missing.append(modname)
        for name in getattr(mod, "__all__", []):
            obj = getattr(mod, name)
            if inspect.isclass(obj) or inspect.isfunction(obj):
                if not obj.__doc__:
                    missing.append(f"{modname}.{name}")
                if inspect.isclass(obj):
                    for attr, member in vars(obj).items():
                        if attr.startswith("_") or not (inspect.isfunction(member) or isinstance(member, property)):
                            continue
                        doc = member.__doc__ if not isinstance(member, property) else member.fget.__doc__  # type: ignore[union-attr]
                        if not doc:
                            missing.append(f"{modname}.{name}.{attr}")
    assert missing == []


def test_every_submodule_declares_all_and_imports_without_cycles() -> None:
    for modname in PUBLIC_MODULES:
        if modname in ("vmapsim.__main__",):
            continue
        # a fresh interpreter per module: an import cycle would show up as an ImportError here
        subprocess.run([sys.executable, "-c", f"import {modname}"], check=True)
        assert hasattr(importlib.import_module(modname), "__all__"), modname
