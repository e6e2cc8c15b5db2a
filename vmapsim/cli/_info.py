"""``vmapsim info``: what ships: catalogs, layouts, kernel allocator profiles, load paths, machines."""

from __future__ import annotations

import argparse
from typing import Any

from vmapsim import layouts, profiles, report
from vmapsim.cli import _options
from vmapsim.loader import PIPELINES, for_kernel
from vmapsim.modules.shipped import shipped
from vmapsim.workloads import PRESETS

__all__ = ["add", "run"]


def add(sub: Any) -> None:
    """Register ``vmapsim info``."""
    i = sub.add_parser("info", help="what ships: catalogs, layouts, kernel profiles, pipelines, machines")
    _options.output(i, sizes=False)
    i.set_defaults(run=run)


def run(args: argparse.Namespace) -> str:
    """What ships, as a table or JSON."""
    catalogs = [{"name": c.name, "kernel": c.kernel, "arch": c.arch, "modules": c.modules,
                 "generation": c.generation} for c in shipped()]  # fmt: skip
    kernels = []
    for version in ("5.4", "5.10", "5.11", "5.15", "5.16", "5.17", "5.18", "6.1", "6.3", "6.4", "6.5", "6.9", "6.10",
                    "6.11", "6.12", "6.15", "6.16", "7.3"):
        path = for_kernel(version)
        duplicates = "idempotent finit_module" if path.idempotent else "early_mod_check" if path.early_check else (
            "add_unformed_module only")  # fmt: skip
        memory = f"{path.generation} via {'execmem_alloc' if path.execmem else 'module_alloc'}"
        memory += " + ROX cache" if path.rox_cache else ""
        kernels.append({"version": version, "duplicates": duplicates, "memory": memory,
                        "allocator": path.profile.name})  # fmt: skip
    newest = ".".join(map(str, profiles.NEWEST))
    if args.json:
        data = {"catalogs": catalogs,
                "layouts": [{"name": lay.name, "bits": lay.bits, "vmalloc": [lay.vmalloc.start, lay.vmalloc.end],
                             "modules": [lay.modules.start, lay.modules.end]} for lay in layouts.LAYOUTS.values()],
                "profiles": [{"name": p.name, "first": ".".join(map(str, p.first))} for p in profiles.PROFILES],
                "kernels": kernels, "newest_kernel": newest,
                "pipelines": [{"name": p.name, "idempotent": p.idempotent, "stages": [st.name for st in p.stages]}
                              for p in PIPELINES.values()],
                "machines": [{"name": m.name, "catalog": m.catalog, "layout": m.layout, "kmod": m.kmod,
                              "ram": m.ram, "devices": len(m.devices)} for m in PRESETS.values()]}  # fmt: skip
        return report.json_text("info", {}, data)
    w = max(20, *(len(lay.name) for lay in layouts.LAYOUTS.values()))
    lines = ["# shipped catalogs"]
    lines += [f"{c['name']:{w}} {c['kernel']:26} {c['modules']:5d} modules, {c['generation']} loader" for c in catalogs]
    lines.append("\n# layouts (vmalloc window / modules window)")
    for lay in layouts.LAYOUTS.values():
        vm, mod = lay.vmalloc, lay.modules
        x = lay.bits // 4 + 2  # 0x and every digit of an address of this architecture
        pad = " " * 2 * (18 - x)
        lines.append(f"{lay.name:{w}} {vm.start:#0{x}x}-{vm.end:#0{x}x}{pad}  {mod.start:#0{x}x}-{mod.end:#0{x}x}")
    lines.append("\n# kernel allocator profiles (the kernels each models)")
    firsts = [".".join(map(str, p.first)) for p in profiles.PROFILES]
    lines += [f"profile {p.name:{w - 8}} {first} and later, before {later}" if later else
              f"profile {p.name:{w - 8}} {first} to {newest}"
              for p, first, later in zip(profiles.PROFILES, firsts, [*firsts[1:], None], strict=True)]  # fmt: skip
    lines += ["", *report.wrap("kernel versions (--kernel): load path, module memory (ROX cache: x86-64 text from "
                               "execmem's cache of 2 MiB chunks), allocator profile", "# ", "#   ")]  # fmt: skip
    wv = max(len(f"newer than {newest}"), *(len(k["version"]) for k in kernels))
    wm = max(len(k["memory"]) for k in kernels)
    lines += [f"{k['version']:{wv}} {k['duplicates']:24} {k['memory']:{wm}} allocator {k['allocator']}"
              for k in kernels]  # fmt: skip
    lines.append(f"{'newer than ' + newest:{wv}} refused: not read from a kernel's sources yet")
    lines.append("\n# pipelines")
    for p in PIPELINES.values():
        stages = f"{'idempotent finit_module: ' if p.idempotent else ''}{' -> '.join(st.name for st in p.stages)}"
        lines += report.wrap(stages, f"{p.name:{w}} ", " " * (w + 3))
    lines.append("\n# machines (vmapsim boot --machine)")
    lines += [f"{m.name:{w}} {m.catalog}, kmod {m.kmod}, {report.plural(len(m.devices), 'device')}"
              for m in PRESETS.values()]  # fmt: skip
    return "\n".join(lines) + "\n"
