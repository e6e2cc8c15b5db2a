"""``vmapsim vmallocinfo``: a machine's /proc/vmallocinfo summed up."""

from __future__ import annotations

import argparse
from typing import Any

from vmapsim import checks, layouts, procfs, report
from vmapsim.cli import _options
from vmapsim.cli._io import label, note, read
from vmapsim.cli._parser import integer
from vmapsim.cli._replay import guess_layout

__all__ = ["PROC_VMALLOCINFO", "add", "run"]

#: The live file read when no FILE is given (root only: the kernel creates it with mode 0400).
PROC_VMALLOCINFO = "/proc/vmallocinfo"


def add(sub: Any) -> None:
    """Register ``vmapsim vmallocinfo``."""
    vi = sub.add_parser("vmallocinfo", help="sum up a machine's /proc/vmallocinfo: by caller and kind, lazily "
                        "freed bytes, window fill, largest free ranges")  # fmt: skip
    vi.add_argument("file", nargs="?", default=PROC_VMALLOCINFO, help="a copy of /proc/vmallocinfo (any "
                    "kptr_restrict; real pointers give more) or crash's 'kmem -v' output; '-' reads standard input "
                    "(default: this machine's /proc/vmallocinfo, as root)")  # fmt: skip
    vi.add_argument("--cpus", type=integer(1, checks.NR_CPUS_MAX), default=1,
                    help="the machine's online CPUs (lazy_max_pages() depends on them)")  # fmt: skip
    vi.add_argument("--layout", default="auto", help="a layout name, or 'auto' (from the addresses)")
    vi.add_argument("--largest", type=integer(0, 1000), default=5, help="free ranges to list per window")
    vi.add_argument("--callers", type=integer(0), default=20, help="callers to list")
    _options.output(vi)
    vi.set_defaults(run=run)


def run(args: argparse.Namespace) -> str:
    """Sum up the file by caller and kind, window fill and free ranges."""
    text = read(args.file, procfs.MAX_VMALLOCINFO_BYTES)
    records = procfs.parse_vmallocinfo(text, source=label(args.file))
    starts = [r.start for r in records if r.start is not None]
    layout = guess_layout(starts) if args.layout == "auto" else layouts.by_name(args.layout)
    s = procfs.summarize_vmallocinfo(records, layout, cpus=args.cpus, largest=args.largest)
    notes = []
    if procfs.is_crash_kmem_v(text):
        notes.append("crash's kmem -v lists the areas that have a vm_struct, without callers or flags: vm_map_ram"
                     " blocks and lazily freed areas are not in it, so the free ranges include them")  # fmt: skip
    if s.hashed:
        notes.append("pointers are hashed or zeroed (kptr_restrict): no window fill or free ranges; read the file "
                     "as root with kptr_restrict=1 (or with drgn's contrib/vmallocinfo.py) for them")  # fmt: skip
    if args.layout == "auto" and not s.hashed:
        notes.append(f"layout {layout.name}: the one whose vmalloc window holds the most of these addresses")
    note(*notes)  # on stderr whatever the output, in the JSON, and under the text
    if args.json:
        data = {"areas": s.areas, "bytes": s.total_bytes, "lazy_bytes": s.lazy_bytes,
                "lazy_max_bytes": s.lazy_max_bytes, "hashed": s.hashed,
                "callers": [{"caller": c, "areas": n, "bytes": b} for c, n, b in s.callers],
                "kinds": [{"kind": k, "areas": n, "bytes": b} for k, n, b in s.kinds],
                "windows": [{"window": w, "size": size, "pinned": pinned, "largest_free": [list(r) for r in free]}
                            for w, size, pinned, free in s.windows],
                "next": [{"window": w, "size": size, "address": a} for w, size, a in s.next]}  # fmt: skip
        return report.json_text("vmallocinfo", {"file": args.file, "layout": layout.name, "cpus": args.cpus,
                                     "largest": args.largest}, data, notes)  # fmt: skip
    size = _options.sizes(args)
    lines = [*report.wrap(f"{label(args.file)}: {report.plural(s.areas, 'area')}, {size(s.total_bytes)} (sizes as "
                          "the file counts them, guard pages included)", "# ", "#   "),
             *report.wrap(f"lazily freed, not yet purged: {size(s.lazy_bytes)} of the {size(s.lazy_max_bytes)} at "
                          f"which the kernel purges (lazy_max_pages() with {report.plural(args.cpus, 'CPU')}"
                          f"{'' if args.cpus > 1 else '; pass --cpus'})", "", "  "),
             "", f"{'by kind':24} {'areas':>7} {'bytes':>12}"]  # fmt: skip
    lines += [f"{k:24} {n:7d} {size(b):>12}" for k, n, b in s.kinds]
    lines += ["", f"{'by caller':40} {'areas':>7} {'bytes':>12}"]
    lines += [f"{c:40} {n:7d} {size(b):>12}" for c, n, b in s.callers[: args.callers]]
    if len(s.callers) > args.callers:
        lines.append(f"... {len(s.callers) - args.callers} more callers (--callers N)")
    for w, wsize, pinned, free in s.windows:
        lines += ["", f"{w} window: {size(pinned)} pinned of {size(wsize)} ({pinned / wsize:.2%}); largest free:"]
        lines += [f"  {a:#x}-{e:#x} {size(e - a)}" for a, e in free]
    if s.next:
        lines.append("\nthe next allocations would get (as vmapsim's allocator places them):")
        lines += [f"  {w}: {size(n)} at {'a failure' if a is None else f'{a:#x}'}" for w, n, a in s.next]
    lines += [line for n in notes for line in report.wrap(n, "note: ", "      ")]
    return "\n".join(lines) + "\n"
