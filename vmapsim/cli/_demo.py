"""``vmapsim demo``: a short, deterministic sequence of vmalloc-family calls, and what the kernel would show."""

from __future__ import annotations

import argparse
from typing import Any

import attrs

from vmapsim import checks, layouts, procfs, profiles, report
from vmapsim.cli import _options
from vmapsim.cli._parser import integer, kernel_versions
from vmapsim.space import VmapSpace
from vmapsim.units import MiB

__all__ = ["add", "run"]


def add(sub: Any) -> None:
    """Register ``vmapsim demo``."""
    d = sub.add_parser("demo", help="a few vmallocs/vfrees on a layout; prints vmallocinfo and peak usage")
    d.add_argument("--layout", default="x86_64", help=f"one of: {', '.join(sorted(layouts.LAYOUTS))}")
    d.add_argument("--cpus", type=integer(1, checks.NR_CPUS_MAX), default=4, help="online CPUs")
    d.add_argument("--kernel", type=kernel_versions, default="6.3", help="kernel version whose allocator to model")
    _options.output(d)
    d.set_defaults(run=run)


def run(args: argparse.Namespace) -> str:
    """A few vmallocs and vfrees on a layout; /proc/vmallocinfo, meminfo and the peak per window."""
    space = VmapSpace(layouts.by_name(args.layout), cpus=args.cpus, profile=profiles.for_version(args.kernel))
    out = [f"# vmapsim demo: {space.layout.name}, {args.cpus} CPUs, kernel profile {space.profile.name}"]
    a = space.vmalloc(8192, caller="demo_small+0x12/0x40")
    b = space.vmalloc(3 * MiB, caller="demo_big+0x20/0x80")  # > 512 pages: nested page array
    c = space.alloc_thread_stack()
    space.ioremap(0x101000, phys=0xFEE00000, caller="demo_ioremap+0x9/0x30")
    space.vm_map_ram(3)
    space.vfree(a)
    space.vfree(b)
    space.vmalloc(4096, caller="demo_after+0x5/0x20")
    space.vfree(c)
    m = space.layout.modules
    space.vmalloc_node_range(
        200_000, start=m.start, end=m.end, caller="load_module+0x1a2/0x2b0", flush_reset_perms=True
    )
    vmallocinfo = procfs.render_vmallocinfo(space)
    if args.json:
        records = procfs.parse_vmallocinfo(vmallocinfo)
        usage = [{"window": r.name, **attrs.asdict(space.usage(r))} for r in space.layout.regions]
        return report.json_text("demo", {"layout": space.layout.name, "cpus": args.cpus, "kernel": args.kernel,
                              "profile": space.profile.name},
                      {"vmallocinfo": [attrs.asdict(r) for r in records],
                       "meminfo": procfs.parse_meminfo(procfs.render_meminfo(space)), "usage": usage})  # fmt: skip
    out.append("\n# /proc/vmallocinfo")
    out.append(vmallocinfo.rstrip("\n"))
    out.append("\n# /proc/meminfo (Vmalloc lines)")
    out.append(procfs.render_meminfo(space).rstrip("\n"))
    size = _options.sizes(args)
    out.append("\n# usage per window")
    out.append(f"{'window':8} {'busy':>10} {'lazy':>10} {'pooled':>10} {'peak pinned':>12} {'largest free':>18}")
    for r in space.layout.regions:
        u = space.usage(r)
        out.append(f"{r.name:8} {size(u.busy):>10} {size(u.lazy):>10} {size(u.pooled):>10} "
                   f"{size(u.peak_pinned):>12} {size(u.largest_free):>18}")  # fmt: skip
    return "\n".join(out) + "\n"
