"""``vmapsim replay``: a real kernel's vmalloc trace replayed on its /proc/vmallocinfo snapshot."""

from __future__ import annotations

import argparse
from typing import Any

from vmapsim import checks, layouts, procfs, profiles, report, trace
from vmapsim.cli import _options
from vmapsim.cli._io import STDIN, label, note, progress_bar, read
from vmapsim.cli._parser import integer, kernel_versions
from vmapsim.errors import InvalidArgument

__all__ = ["add", "guess_layout", "run"]


def add(sub: Any) -> None:
    """Register ``vmapsim replay``."""
    r = sub.add_parser("replay", help="replay a real kernel's vmalloc trace on its /proc/vmallocinfo snapshot")
    r.add_argument("snapshot", help="/proc/vmallocinfo read when tracing began (root, kptr_restrict=1); '-' reads "
                   "standard input")  # fmt: skip
    r.add_argument("trace", help="the ftrace text: events/vmalloc, or the kprobes of docs/usage.md; '-' reads "
                   "standard input (one of the two at most)")  # fmt: skip
    r.add_argument(
        "--layout", default="auto", help="a layout name, or 'auto' (from the snapshot's and the trace's addresses)"
    )
    r.add_argument(
        "--kernel", type=kernel_versions, required=True, help="kernel version of the traced machine (uname -r)"
    )
    r.add_argument(
        "--cpus", type=integer(1, checks.NR_CPUS_MAX), help="CPUs of the traced machine (default: the trace's)"
    )
    r.add_argument(
        "--from-boot",
        action="store_true",
        help="the trace began at boot: replay it on the snapshot's percpu chunks only (found by itself when the "
        "trace allocates areas the snapshot holds)",
    )
    r.add_argument("--show", type=integer(0), default=20, help="disagreements to list")
    _options.output(r)
    r.set_defaults(run=run)


def guess_layout(addresses: list[int]) -> layouts.Layout:
    """The shipped layout whose vmalloc window holds the most of these addresses (snapshot areas, traced ones)."""
    return max(layouts.LAYOUTS.values(), key=lambda lay: sum(a in lay.vmalloc for a in addresses))


def _traced_from_boot(records: list[procfs.VmallocInfoRecord], events: list[trace.TraceEvent]) -> bool:
    """Whether the trace began before the snapshot: it allocates areas the snapshot already holds."""
    busy = {r.start for r in records if r.kind not in ("unpurged", "vm_map_ram")}
    freed: set[int | None] = set()
    again = 0
    for e in events:
        if e.kind == "free":
            freed.add(e.addr)
        elif e.kind == "alloc" and e.addr in busy and e.addr not in freed:
            again += 1
    return again >= 2  # one could be a snapshot line racing the trace's start


def run(args: argparse.Namespace) -> tuple[str, int]:
    """Replay the trace on the snapshot; the disagreements (exit 1 when any)."""
    if args.snapshot == args.trace == STDIN:
        raise InvalidArgument("SNAPSHOT and TRACE are both '-': standard input can hold only one of them")
    records = procfs.parse_vmallocinfo(read(args.snapshot, procfs.MAX_VMALLOCINFO_BYTES),
                                       source=label(args.snapshot))
    events = trace.parse_trace(read(args.trace, trace.MAX_TRACE_BYTES), source=label(args.trace))
    if not any(e.kind == "alloc" for e in events):
        raise InvalidArgument(f"{label(args.trace)}: no vmalloc allocation events (events/vmalloc or the kprobes of "
                              "docs/usage.md) to compare")  # fmt: skip
    traced = [e.addr for e in events if e.kind == "alloc" and e.addr is not None]
    starts = [r.start for r in records if r.start is not None]
    layout = guess_layout(starts + traced) if args.layout == "auto" else layouts.by_name(args.layout)
    notes = []
    cpus = args.cpus
    if cpus is None:
        cpus = max(e.cpu for e in events) + 1
        notes.append(f"{report.plural(cpus, 'CPU')}: the most the trace shows (pass --cpus if the machine had more)")
    from_boot = args.from_boot or not records  # an empty snapshot: nothing was there before the trace
    if not from_boot and _traced_from_boot(records, events):
        from_boot = True
        notes.append("the trace allocates areas the snapshot already holds, so it began before the snapshot: "
                     "replayed from boot, on the snapshot's percpu chunks only")  # fmt: skip
    profile = profiles.for_version(args.kernel)
    space = procfs.restore(records, layout, cpus=cpus, profile=profile, percpu_only=from_boot)
    if profile.node_pools and cpus > 1 and not from_boot:
        notes.append(f"warning: on {args.kernel} with several CPUs, VAs parked in the node pools are not in "
                     "/proc/vmallocinfo; the replay may offer addresses the kernel holds there (trace from boot "
                     "for an exact replay)")  # fmt: skip
    found = trace.replay(events, space, progress=progress_bar("replaying", "event"))
    status = 1 if found.disagreements else 0
    note(*notes)  # on stderr whatever the output, in the JSON, and under the text's heading
    if args.json:
        def where(e: trace.TraceEvent) -> dict[str, Any]:
            return {"line": e.line, "cpu": e.cpu, "size": e.size, "align": e.align, "vstart": e.vstart,
                    "vend": e.vend, "kernel": e.addr}  # fmt: skip

        params = {"snapshot": args.snapshot, "trace": args.trace, "layout": layout.name, "kernel": args.kernel,
                  "profile": space.profile.name, "cpus": cpus, "from_boot": from_boot}  # fmt: skip
        data = {"allocations": found.allocs, "agree": found.agreed,
                "disagreements": [{**where(d.event), "vmapsim": d.model} for d in found.disagreements],
                "unknown_frees": [where(e) for e in found.unknown_frees]}  # fmt: skip
        return report.json_text("replay", params, data, notes), status
    out = [f"# replay on {layout.name}, {report.plural(cpus, 'CPU')}, kernel profile {space.profile.name}"
           f"{', from boot' if from_boot else ''}", *(line for n in notes for line in report.wrap(n, "# ", "#   ")),
           found.summary()]  # fmt: skip
    size = _options.sizes(args)
    for d in found.disagreements[: args.show]:
        e = d.event
        kernel = "failed" if e.addr is None else f"{e.addr:#x}"
        model = "fails" if d.model is None else f"{d.model:#x}"
        out += [f"line {e.line}: cpu {e.cpu} size {size(e.size)} align {size(e.align)} window "
                f"{e.vstart:#x}-{e.vend:#x}:", f"  kernel {kernel}, vmapsim {model}"]  # fmt: skip
    for e in found.unknown_frees[: args.show]:
        out.append(f"line {e.line}: free of {e.addr or 0:#x}, which the model does not hold")
    if found.disagreements:
        out.append(f"# {report.plural(len(found.disagreements), 'allocation')} disagree")
    return "\n".join(out) + "\n", status
