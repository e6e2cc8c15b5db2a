"""The ``vmapsim`` command line.

``vmapsim demo`` runs a short, deterministic sequence of vmalloc-family calls
and prints /proc/vmallocinfo, the meminfo lines and per-window usage with the
peak.  ``vmapsim replay SNAPSHOT TRACE`` rebuilds a space from a real
/proc/vmallocinfo and replays the kernel's vmalloc trace on it, listing every
allocation where vmapsim would have chosen differently.  Errors print one line
and exit with status 2.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import gc
import importlib
import json
import math
import multiprocessing
import os
import statistics
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn, TextIO

import attrs
import tqdm

from vmapsim import checks, layouts, procfs, profiles, report, trace
from vmapsim.errors import InvalidArgument, VmapsimError
from vmapsim.modules.catalog import Catalog
from vmapsim.modules.layout import KernelConfig
from vmapsim.space import VmapSpace
from vmapsim.units import MiB

__all__ = ["commands", "main"]


def progress_bar(what: str, unit: str = "it", stream: TextIO | None = None) -> Callable[[int, int], None] | None:
    """tqdm's bar (rate and ETA) on ``stream`` (stderr) when it is a terminal, else None: never in a pipe,
    a file or ``--json`` output.  The callback takes (done, total)."""
    out = stream or sys.stderr
    if not out.isatty():
        return None
    bar: list[Any] = []

    def show(done: int, total: int) -> None:
        if not bar:
            bar.append(tqdm.tqdm(total=total, desc=what, unit=unit, file=out, leave=False, dynamic_ncols=True))
        bar[0].update(done - bar[0].n)
        if done >= total:
            bar[0].close()

    return show


def _demo(args: argparse.Namespace) -> str:
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
        return _json("demo", {"layout": space.layout.name, "cpus": args.cpus, "kernel": args.kernel,
                              "profile": space.profile.name},
                      {"vmallocinfo": [attrs.asdict(r) for r in records],
                       "meminfo": procfs.parse_meminfo(procfs.render_meminfo(space)), "usage": usage})  # fmt: skip
    out.append("\n# /proc/vmallocinfo")
    out.append(vmallocinfo.rstrip("\n"))
    out.append("\n# /proc/meminfo (Vmalloc lines)")
    out.append(procfs.render_meminfo(space).rstrip("\n"))
    out.append("\n# usage per window (bytes)")
    out.append(f"{'window':8} {'busy':>10} {'lazy':>10} {'pooled':>8} {'peak pinned':>12} {'largest free':>18}")
    for r in space.layout.regions:
        u = space.usage(r)
        out.append(f"{r.name:8} {u.busy:10d} {u.lazy:10d} {u.pooled:8d} {u.peak_pinned:12d} {u.largest_free:18d}")
    return "\n".join(out) + "\n"


def _read(path: str) -> str:
    try:
        return Path(path).read_text(errors="replace")
    except OSError as e:
        raise InvalidArgument(f"cannot read {path}: {e.strerror}") from None


def _guess_layout(addresses: list[int]) -> layouts.Layout:
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


def _replay(args: argparse.Namespace) -> tuple[str, int]:
    records = procfs.parse_vmallocinfo(_read(args.snapshot), source=args.snapshot)
    events = trace.parse_trace(_read(args.trace), source=args.trace)
    if not any(e.kind == "alloc" for e in events):
        raise InvalidArgument(f"{args.trace}: no vmalloc allocation events (events/vmalloc or the kprobes of "
                              "docs/usage.md) to compare")  # fmt: skip
    traced = [e.addr for e in events if e.kind == "alloc" and e.addr is not None]
    starts = [r.start for r in records if r.start is not None]
    layout = _guess_layout(starts + traced) if args.layout == "auto" else layouts.by_name(args.layout)
    notes = []
    cpus = args.cpus
    if cpus is None:
        cpus = max(e.cpu for e in events) + 1
        notes.append(f"# {cpus} CPUs: the most the trace shows (pass --cpus if the machine had more)")
    from_boot = args.from_boot or not records  # an empty snapshot: nothing was there before the trace
    if not from_boot and _traced_from_boot(records, events):
        from_boot = True
        notes.append("# the trace allocates areas the snapshot already holds, so it began before the snapshot: "
                     "replayed from boot, on the snapshot's percpu chunks only")  # fmt: skip
    profile = profiles.for_version(args.kernel)
    space = procfs.restore(records, layout, cpus=cpus, profile=profile, percpu_only=from_boot)
    if profile.node_pools and cpus > 1 and not from_boot:
        notes.append(f"# warning: on {args.kernel} with several CPUs, VAs parked in the node pools are not in "
                     "/proc/vmallocinfo; the replay may offer addresses the kernel holds there (trace from boot "
                     "for an exact replay)")  # fmt: skip
    found = trace.replay(events, space)
    status = 1 if found.disagreements else 0
    if args.json:
        def where(e: trace.TraceEvent) -> dict[str, Any]:
            return {"line": e.line, "cpu": e.cpu, "size": e.size, "align": e.align, "vstart": e.vstart,
                    "vend": e.vend, "kernel": e.addr}  # fmt: skip

        params = {"snapshot": args.snapshot, "trace": args.trace, "layout": layout.name, "kernel": args.kernel,
                  "profile": space.profile.name, "cpus": cpus, "from_boot": from_boot}  # fmt: skip
        data = {"allocations": found.allocs, "agree": found.agreed,
                "disagreements": [{**where(d.event), "vmapsim": d.model} for d in found.disagreements],
                "unknown_frees": [where(e) for e in found.unknown_frees]}  # fmt: skip
        return _json("replay", params, data, [n.removeprefix("# ") for n in notes]), status
    out = [f"# replay on {layout.name}, {cpus} CPUs, kernel profile {space.profile.name}"
           f"{', from boot' if from_boot else ''}", *notes, found.summary()]  # fmt: skip
    for d in found.disagreements[: args.show]:
        e = d.event
        kernel = "failed" if e.addr is None else f"{e.addr:#x}"
        model = "fails" if d.model is None else f"{d.model:#x}"
        out.append(
            f"line {e.line}: cpu {e.cpu} size {e.size} align {e.align} window {e.vstart:#x}-{e.vend:#x}: "
            f"kernel {kernel}, vmapsim {model}"
        )
    for e in found.unknown_frees[: args.show]:
        out.append(f"line {e.line}: free of {e.addr or 0:#x}, which the model does not hold")
    if found.disagreements:
        out.append(f"# {len(found.disagreements)} allocations disagree")
    return "\n".join(out) + "\n", status


def _vmallocinfo(args: argparse.Namespace) -> str:
    records = procfs.parse_vmallocinfo(_read(args.file), source=args.file)
    starts = [r.start for r in records if r.start is not None]
    layout = _guess_layout(starts) if args.layout == "auto" else layouts.by_name(args.layout)
    s = procfs.summarize_vmallocinfo(records, layout, cpus=args.cpus, largest=args.largest)
    notes = []
    if s.hashed:
        notes.append("pointers are hashed or zeroed (kptr_restrict): no window fill or free ranges; read the file "
                     "as root with kptr_restrict=1 (or with drgn's contrib/vmallocinfo.py) for them")  # fmt: skip
    if args.layout == "auto" and not s.hashed:
        notes.append(f"layout {layout.name}: the one whose vmalloc window holds the most of these addresses")
    if args.json:
        data = {"areas": s.areas, "bytes": s.total_bytes, "lazy_bytes": s.lazy_bytes,
                "lazy_max_bytes": s.lazy_max_bytes, "hashed": s.hashed,
                "callers": [{"caller": c, "areas": n, "bytes": b} for c, n, b in s.callers],
                "kinds": [{"kind": k, "areas": n, "bytes": b} for k, n, b in s.kinds],
                "windows": [{"window": w, "size": size, "pinned": pinned, "largest_free": [list(r) for r in free]}
                            for w, size, pinned, free in s.windows],
                "next": [{"window": w, "size": size, "address": a} for w, size, a in s.next]}  # fmt: skip
        return _json("vmallocinfo", {"file": args.file, "layout": layout.name, "cpus": args.cpus,
                                     "largest": args.largest}, data, notes)  # fmt: skip
    size = str if args.bytes else report.human_bytes
    lines = [f"# {args.file}: {s.areas} areas, {size(s.total_bytes)} (sizes as the file counts them, guard pages "
             "included)",
             f"lazily freed, not yet purged: {size(s.lazy_bytes)} of the {size(s.lazy_max_bytes)} at which the "
             f"kernel purges (lazy_max_pages() with {args.cpus} CPUs{'' if args.cpus > 1 else '; pass --cpus'})",
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
    lines += [f"note: {n}" for n in notes]
    return "\n".join(lines) + "\n"


def _lsmod(args: argparse.Namespace) -> tuple[str, int]:
    from vmapsim.modules import check_sizes, parse_proc_modules

    catalog = Catalog.builtin(args.catalog) if args.catalog in Catalog.builtins() else Catalog.load(args.catalog)
    checks_ = check_sizes(catalog, parse_proc_modules(_read(args.file), source=args.file))
    known = [c for c in checks_ if c.catalog is not None]
    agree = sum(c.agrees for c in known)
    unknown = [c.name for c in checks_ if c.catalog is None]
    status = 0 if agree == len(known) else 1
    if args.json:
        return _json("lsmod", {"file": args.file, "catalog": args.catalog, "catalog_kernel": catalog.kernel},
                     {"modules": [attrs.asdict(c) | {"agrees": c.agrees} for c in checks_], "agree": agree,
                      "compared": len(known), "not_in_catalog": unknown}), status  # fmt: skip
    lines = [f"# {args.file} against the {catalog.kernel} catalog ({catalog.generation} sizes): {agree} of "
             f"{len(known)} modules' sizes agree" + (f"; {len(unknown)} not in the catalog" if unknown else "")]
    wrong = [c for c in known if not c.agrees]
    if wrong:
        lines.append(f"{'module':24} {'live':>10} {'catalog':>10} {'difference':>11}")
        lines += [f"{c.name:24} {c.live:10d} {c.catalog:10d} {c.live - (c.catalog or 0):+11d}" for c in wrong]
    if unknown:
        lines.append(f"not in the catalog: {' '.join(unknown)}")
    if wrong:
        lines.append("sizes differ where the file comes from another build than the catalog's (scan its modules: "
                     "vmapsim scan /lib/modules/$(uname -r) --save FILE, then --catalog FILE), or where vmapsim's "
                     "section layout departs from the kernel's (docs/fidelity.md)")
    return "\n".join(lines) + "\n", status


def _write(path: str, data: bytes) -> None:
    """Write all of ``data`` or nothing: a temporary file renamed into place."""
    target = Path(path)
    tmp = target.with_name(target.name + ".part")
    try:
        tmp.write_bytes(data)
        tmp.replace(target)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise InvalidArgument(f"cannot write {path}: {e.strerror}") from None


def _scan(args: argparse.Namespace) -> str:
    config = None
    if args.config:
        config = KernelConfig.from_text(_read(args.config), args.arch)
    elif args.arch != "x86_64":
        config = KernelConfig(arch=args.arch)
    catalog = Catalog.scan(args.path, config=config, jobs=args.jobs, progress=progress_bar("scanning", "file"))
    if args.csv:
        _write(args.csv, catalog.to_csv().encode())
    if args.save:
        catalog.save(args.save)
    gen = catalog.generation
    total = sum(sum(n for _, n in m.allocations(gen)) for m in catalog)
    if args.json:
        params = {"path": args.path, "config": args.config, "arch": args.arch, "csv": args.csv, "save": args.save}
        data = {"kernel": catalog.kernel, "generation": gen, "config_source": catalog.config_source,
                "modules": len(catalog), "file_bytes": sum(m.file_size for m in catalog),
                "decompressed_bytes": sum(m.decompressed_size for m in catalog), "module_area_bytes": total,
                "problems": [{"path": p.path, "reason": p.reason} for p in catalog.problems]}  # fmt: skip
        return _json("scan", params, data)
    out = [
        f"{len(catalog)} modules of {catalog.kernel} ({gen} loader), {len(catalog.problems)} skipped; "
        f"{sum(m.file_size for m in catalog)} file bytes, {sum(m.decompressed_size for m in catalog)} decompressed, "
        f"{total} bytes of module-area allocations if all were loaded",
        f"kernel config: {catalog.config_source}",
    ]
    releases = sorted({m.vermagic.split()[0] for m in catalog if m.vermagic.split()} - {catalog.kernel})
    if releases:
        out.append(f"note: modules of other kernels too ({', '.join(releases)}): a catalog is one kernel build's")
    out += [f"skipped {p.path}: {p.reason}" for p in catalog.problems]
    return "\n".join(out) + "\n"


def _load(args: argparse.Namespace) -> str:
    from vmapsim.engine import CostModel
    from vmapsim.loader import Request, Run
    from vmapsim.workloads import Modprobe

    catalog, names = _catalog_and_pipelines(args)
    modules: list[str] = []
    for name in args.module:  # a module name, or a modalias resolved as kmod would
        found = [name] if name in catalog else catalog.match_alias(name)
        if not found:
            raise InvalidArgument(f"no module or alias {name!r} in the {catalog.kernel} catalog")
        modules += found
    layout = layouts.by_name(args.layout)
    _check_arch(catalog, layout)
    costs = CostModel(lockstep=args.lockstep)
    jobs: list[Any] = []
    if modules and args.no_deps:  # insmod: each module alone
        jobs = [Request(m, cpu=c, syscall=args.syscall) for c in range(args.cpus) for m in modules]
        for m in modules:
            missing = [d for d in catalog[m].depends if d not in modules]
            if missing:  # simplify_symbols() is not modelled: say what a real kernel would do
                print(f"vmapsim: note: {m} needs {', '.join(missing)}, which --no-deps does not load; vmapsim "
                      "does not resolve symbols, where a kernel would fail the load with -ENOENT", file=sys.stderr)
    elif modules:  # modprobe: each CPU loads the modules' dependencies first, skipping live ones
        jobs = [Modprobe(tuple(modules), cpu=c, syscall=args.syscall) for c in range(args.cpus)]
    asked = len(jobs)
    if args.requests:
        from vmapsim.workloads import read_requests

        fmt = "csv" if args.requests.endswith(".csv") else "jsonl"
        requests = read_requests(_read(args.requests), fmt=fmt, source=args.requests)
        for req in requests:
            if not isinstance(req.module, str) or req.module not in catalog:
                raise InvalidArgument(f"{args.requests}: no module {req.module!r} in the {catalog.kernel} catalog")
        jobs += requests
    if not jobs:
        raise InvalidArgument("nothing to load: name modules or aliases, or give --requests FILE")
    what = []
    if modules:
        deps = "" if args.no_deps else ", dependencies first (modprobe)"
        what.append(f"{', '.join(modules)} on each of {args.cpus} CPUs{deps}")
    if args.requests:
        what.append(f"{len(jobs) - asked} requests from {args.requests}")
    runs = [Run(pipeline, layout, args.cpus, catalog, costs=costs, module_align=args.module_align, seed=args.seed,
                kernel=kernel) for _, pipeline, kernel in names]  # fmt: skip
    _BOOT_TASKS[:] = [(jobs, run, None, False, False) for run in runs]
    try:
        done = _fork_map(_boot_run, len(names), progress_bar("simulating", "run"), work=len(jobs) * len(names))
    finally:
        _BOOT_TASKS.clear()
    paths = [run.resolve_pipeline() for run in runs]
    rows = report.storm_rows(0, args.syscall, [(name, path, fig) for (name, _, _), path, (fig, _)
                                               in zip(names, paths, done, strict=True)])  # fmt: skip
    params = {"modules": modules, "requests": args.requests, "cpus": args.cpus, "catalog": args.catalog,
              "catalog_kernel": catalog.kernel, "kernel": args.kernel, "pipelines": [n for n, _, _ in names],
              "syscall": args.syscall, "deps": not args.no_deps, "lockstep": args.lockstep, "seed": args.seed,
              "layout": layout.name, "module_align": args.module_align}  # fmt: skip
    stats = {row.pipeline: peak["stats"] for row, (_, peak) in zip(rows, done, strict=True)}
    if args.json or args.csv:
        data = [{k: v for k, v in row.to_dict().items() if k != "kmod"} for row in rows]
        if args.stats:
            for d in data:
                st = stats[d["pipeline"]]
                d["stats"] = {**st.to_dict(), "text": st.render()}
        if args.json:
            return _json("load", params, {"windows": {r.name: r.size for r in layout.regions}, "runs": data})
        flat = {k: v for k, v in params.items() if k not in ("modules", "pipelines")}
        return report.csv_text([{**flat, "modules": " ".join(modules), **{k: v for k, v in d.items() if k != "stats"},
                                 **_stats_columns(d)} for d in data])  # fmt: skip
    size = str if args.bytes else report.human_bytes
    w = max(18, *(len(n) for n, _, _ in names))
    lines = [f"# {len(jobs)} jobs: {'; '.join(what)}; {catalog.kernel}, {args.syscall}(2), {layout.name}, "
             f"MODULE_ALIGN {args.module_align}, {'lockstep' if args.lockstep else 'timed'}, seed {args.seed}",
             *_table(rows, w, size)]  # fmt: skip
    lines += ["", _BOOT_LEGEND, "pipelines:"]
    lines += [f"         {n:{w}} {report.about(path)}" for (n, _, _), path in zip(names, paths, strict=True)]
    for row in rows if args.stats else ():
        lines.append(f"\n# /sys/kernel/debug/modules/stats after {row.pipeline}\n{stats[row.pipeline].render()}"
                     .rstrip("\n"))  # fmt: skip
    return "\n".join(lines) + "\n"


def _beside(real: Any, source: str, runs: Sequence[tuple[str, Any]], kmod: int) -> list[str]:
    """A real machine's CONFIG_MODULE_STATS counters beside each simulated run's."""
    w = max(14, *(len(p) for p, _ in runs))
    out = [f"# /sys/kernel/debug/modules/stats: {source} beside the simulated boot (kmod {kmod})",
           f"{'':25} {'real':>{w}}" + "".join(f" {p:>{w}}" for p, _ in runs)]  # fmt: skip
    columns = [real.counters(), *(s.counters() for _, s in runs)]
    for i, (label, _) in enumerate(columns[0]):
        out.append(f"{label:>25}" + "".join(f" {col[i][1]:>{w}}" for col in columns))
    return out


def _stats_columns(run: dict[str, Any]) -> dict[str, Any]:
    """A run's CONFIG_MODULE_STATS counters as CSV columns (``stats_<counter>``; not the duplicates table)."""
    stats = run.get("stats", {})
    return {f"stats_{k}": v for k, v in stats.items() if isinstance(v, int)}


def _table(rows: Sequence[report.StormRow], w: int, size: Callable[[int], str]) -> list[str]:
    """The lines of a storm's table: a header, then a row (and its first failure) per load path."""
    lines = [f"{'pipeline':{w}} {'calls':>6} {'ok':>5} {'EEXIST':>6} {'other':>5} {'reads':>5} "
             f"{'peak vmalloc':>12} {'peak modules':>12} {'fails':>5} {'wasted':>11}  verdict"]  # fmt: skip
    for row in rows:
        m = row.metrics
        lines.append(f"{row.pipeline:{w}} {m['loads']:6d} {m['ok']:5d} {m['eexist']:6d} {m['other_errors']:5d} "
                     f"{row.reads:5d} {size(m['peak_vmalloc']):>12} {size(m['peak_modules']):>12} "
                     f"{m['allocation_failures']:5d} {size(m['wasted_bytes']):>11}  {row.verdict}")  # fmt: skip
        if row.first_failure:
            lines.append(f"{'':{w}} first failure: {row.first_failure}")
    return lines


def _check_arch(catalog: Catalog, layout: layouts.Layout) -> None:
    """Warn (on stderr) when a catalog's modules were built for another architecture than the layout's
    (layouts are named after their architecture: x86_64, x86_64_la57, arm64_48, ...)."""
    arch = catalog.config.arch
    if not layout.name.startswith(arch):
        print(f"vmapsim: warning: the {catalog.kernel} catalog holds {arch} modules but layout {layout.name} is "
              "another architecture's", file=sys.stderr)  # fmt: skip


#: The distribution each kmod version shipped in, for the section headings.
_KMOD_RELEASES = {30: "Debian 12", 34: "Debian 13"}


def _userspace(kmod: int, syscall: str) -> str:
    """How kmod ``kmod`` hands modules to the kernel, as a section heading."""
    where = f" ({_KMOD_RELEASES[kmod]})" if kmod in _KMOD_RELEASES else ""
    how = ("decompresses each module itself and calls init_module(2)" if syscall == "init_module" else
           "passes the compressed file to finit_module(2)")  # fmt: skip
    return f"kmod {kmod}{where}: modprobe {how}"


_BOOT_LEGEND = """\
columns: calls  load syscalls that reached the kernel (modprobe skips a module already live, so a path whose
                loads finish sooner makes fewer; kread-dedup's -EBUSY stops a device's modprobe chain)
         ok, EEXIST, other  what they returned (6.5's waiters return the first load's 0; -EBUSY and -ETXTBSY
                are "other")
         reads  kernel_read_file() buffers: none with init_module(2), where userspace read the file
         peak vmalloc, peak modules  the most bytes pinned at once in each window (busy + lazily freed)
         fails  allocations that failed after purge and retry: the window ran out
         wasted  CONFIG_MODULE_STATS' "Virtual mem wasted bytes": what failed loads allocated, over the boot
         verdict  against the section's first row"""


def _boot(args: argparse.Namespace) -> str:
    if args.plot:
        from vmapsim.plot import plot_path

        plot_path(args.plot)  # a bad name is refused before minutes of simulation

    from vmapsim.loader import Run
    from vmapsim.workloads import udev_boot

    machine, catalog, names, layout, jobs, costs, workers = _coldplug(args)
    _check_arch(catalog, layout)
    schedule = _schedule(args.schedule) if args.schedule else None
    # Both userspace paths unless one is asked for (a schedule belongs to one storm's jobs).
    kmods = [args.kmod or machine.kmod]
    if args.kmod is None and schedule is None:
        kmods.append(34 if machine.kmod < 31 else 30)
    jobs_of = {kmod: jobs if kmod == kmods[0] else
               udev_boot(catalog, machine, args.cpus, seed=args.seed, jitter=args.jitter, kmod=kmod)
               for kmod in kmods}  # fmt: skip
    tasks = []
    for kmod in kmods:
        for name, pipeline, kernel in names:
            run = Run(pipeline, layout, args.cpus, catalog, costs=costs, module_align=args.module_align,
                      seed=args.seed, workers=workers, kernel=kernel)  # fmt: skip
            tasks.append((name, kmod, run))
    _BOOT_TASKS[:] = [(jobs_of[kmod], run, schedule, bool(args.vmallocinfo), bool(args.plot)) for _, kmod, run in tasks]
    try:
        done = _fork_map(_boot_run, len(tasks), progress_bar("simulating", "run"),
                         work=sum(len(jobs_of[k]) for _, k, _ in tasks))  # fmt: skip
    finally:
        _BOOT_TASKS.clear()
    rows: list[report.StormRow] = []
    extras: dict[tuple[int, str], dict[str, Any]] = {}
    runs: dict[str, dict[str, Any]] = {}
    peaks: dict[str, Any] = {}
    paths = {name: run.resolve_pipeline() for name, _, run in tasks}
    for kmod in kmods:
        section = [(name, paths[name], done[i][0]) for i, (name, k, _) in enumerate(tasks) if k == kmod]
        syscall = "init_module" if any(j.syscall == "init_module" for j in jobs_of[kmod]) else "finit_module"
        rows += report.storm_rows(kmod, syscall, section)
    stats_of = {(kmod, name): peak["stats"] for (name, kmod, _), (_, peak) in zip(tasks, done, strict=True)}
    for (name, kmod, _), (_, peak) in zip(tasks, done, strict=True):
        label = name if len(kmods) == 1 else f"{name}, kmod {kmod}"
        extra = extras.setdefault((kmod, name), {})
        if args.stats:
            stats = peak["stats"]
            extra["stats"] = {**stats.to_dict(), "text": stats.render()}
        if args.plot:
            runs.setdefault(f"kmod {kmod}", {})[name] = peak["result"]
            peaks[label] = peak["space"]
        if args.vmallocinfo:
            extra["vmallocinfo"] = {k: peak[k] for k in ("window", "time", "text")}
    jobs = jobs_of[kmods[0]]
    see = "; the kmod 34 rows show them" if 34 in kmods else ": try --kmod 34"
    notes = [f"kmod {k} decompresses modules in userspace and calls init_module(2): v6.5, kread-dedup, page-list "
             f"and exclusive-deny act on finit_module(2) and cannot help it{see}"
             for k in kmods if any(r.kmod == k and r.syscall == "init_module" for r in rows)]  # fmt: skip
    if args.plot:
        from vmapsim.plot import pinned_over_time

        title = (f"udev coldplug of {machine.name}: {args.cpus} CPUs, {catalog.kernel}, kmod "
                 f"{' and '.join(map(str, kmods))}, seed {args.seed}")  # fmt: skip
        pinned_over_time(runs, args.plot, at_peak=peaks, layout=layout, title=title)
    real = None
    if args.real_stats:
        from vmapsim.loader import ModuleStats

        real = ModuleStats.parse(_read(args.real_stats), source=args.real_stats)
    if args.json or args.csv:
        params = {"machine": machine.name, "cpus": args.cpus, "ram": machine.ram, "udev_workers": workers,
                  "catalog": args.catalog, "catalog_kernel": catalog.kernel, "kernel": args.kernel,
                  "pipelines": [n for n, _, _ in names], "kmods": kmods, "seed": args.seed, "jitter": args.jitter,
                  "cost_jitter": args.cost_jitter, "layout": layout.name, "module_align": args.module_align,
                  "schedule": args.schedule, "uevents": len(jobs), "real_stats": args.real_stats}  # fmt: skip
        data = [{**row.to_dict(), **extras[row.kmod, row.pipeline]} for row in rows]
        if args.json:
            real_doc = {"real_stats": real.to_dict()} if real else {}
            return _json("boot", params, {"windows": {r.name: r.size for r in layout.regions}, "runs": data,
                                          **real_doc}, notes)  # fmt: skip
        for note in notes:
            print(f"vmapsim: note: {note}", file=sys.stderr)
        if args.vmallocinfo:
            print("vmapsim: note: CSV has no room for /proc/vmallocinfo text: use --json for it", file=sys.stderr)
        nested = ("pipelines", "kmods", "stats", "vmallocinfo")
        flat = [{**{k: v for k, v in {**params, **d}.items() if k not in nested}, **_stats_columns(d)} for d in data]
        return report.csv_text(flat)
    size = str if args.bytes else report.human_bytes
    w = max(18, *(len(n) for n, _, _ in names))
    lines = [
        f"# udev coldplug of {machine.name}: {args.cpus} CPUs, {machine.ram >> 30} GiB RAM ({workers} udev workers), "
        f"{catalog.kernel}, {len(jobs)} uevents with modules, seed {args.seed}",
        f"# {layout.name}: modules window {size(layout.modules.size)}, vmalloc window {size(layout.vmalloc.size)}",
    ]
    for kmod in kmods:
        shown = [r for r in rows if r.kmod == kmod]
        lines += ["", _userspace(kmod, shown[0].syscall), *_table(shown, w, size)]
    if real is not None:
        lines += ["", *_beside(real, args.real_stats, [(r.pipeline, stats_of[r.kmod, r.pipeline]) for r in rows
                                                        if r.kmod == kmods[0]], kmods[0])]  # fmt: skip
    lines += ["", _BOOT_LEGEND, "pipelines:"]
    lines += [f"         {n:{w}} {report.about(p)}" for n, p in paths.items()]
    lines += [f"note: {n}" for n in notes]
    for row in rows:
        extra = extras[row.kmod, row.pipeline]
        if "stats" in extra:
            lines.append(f"\n# /sys/kernel/debug/modules/stats after {row.pipeline}, kmod {row.kmod}\n"
                         f"{extra['stats']['text']}".rstrip("\n"))  # fmt: skip
        if "vmallocinfo" in extra:
            v = extra["vmallocinfo"]
            lines.append(f"\n# /proc/vmallocinfo of {row.pipeline}, kmod {row.kmod}, at the {v['window']} window's "
                         f"peak ({v['time'] * 1000:.3f} ms)\n{v['text']}".rstrip("\n"))  # fmt: skip
    return "\n".join(lines) + "\n"


#: What the forked workers of ``boot`` run: (jobs, run, schedule, want vmallocinfo, want the peak space).
_BOOT_TASKS: list[tuple[Any, Any, Any, bool, bool]] = []


def _boot_run(i: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run boot's task ``i`` (and, when asked, its rerun to the peak): its figures, its stats and, for a
    plot, the Result (without its space) and the space at the peak; the figures alone travel cheaply."""
    from vmapsim.loader import simulate

    jobs, run, schedule, want_text, want_space = _BOOT_TASKS[i]
    r = simulate(jobs, run, schedule=schedule)
    peak: dict[str, Any] = {"stats": r.stats, "result": attrs.evolve(r, space=None) if want_space else None}
    if want_text or want_space:
        # Runs are deterministic: rerun up to the instant the window peaked to see the space then.
        window = "modules" if "modules" in r.peak_time else "vmalloc"
        at = r.peak_time.get(window, 0.0)
        space = simulate(jobs, run, until=at, schedule=schedule).space
        assert space is not None  # simulate() always returns its space
        peak |= {"window": window, "time": at, "space": space if want_space else None,
                 "text": procfs.render_vmallocinfo(space) if want_text else None}  # fmt: skip
    return report.figures(r), peak


#: Jobs (summed over the runs) below which forking workers costs more than it saves.
_FORK_WORK = 1000


def _fork_map(fn: Callable[[int], Any], n: int, bar: Callable[[int, int], None] | None, *, work: int) -> list[Any]:
    """``[fn(0), ..., fn(n-1)]``, on forked workers (one per usable CPU) where fork exists and the ``work``
    (jobs over all runs) is worth it, else in turn.

    The workers inherit what ``fn`` reads (catalog, jobs) instead of being sent it; each task is
    deterministic, so the answers are the same whichever ran them.
    """
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    out: list[Any] = [None] * n
    # fork is safe only in a process with one thread (a library caller's threads could hold locks)
    small = work < _FORK_WORK or n < 2
    if small or cpus < 2 or threading.active_count() > 1 or "fork" not in multiprocessing.get_all_start_methods():
        for i in range(n):
            out[i] = fn(i)
            if bar:
                bar(i + 1, n)
        return out
    ctx = multiprocessing.get_context("fork")
    with concurrent.futures.ProcessPoolExecutor(min(cpus, n), mp_context=ctx) as pool:
        futures = {pool.submit(fn, i): i for i in range(n)}
        for k, f in enumerate(concurrent.futures.as_completed(futures), 1):
            out[futures[f]] = f.result()
            if bar:
                bar(k, n)
    return out


def _coldplug(args: argparse.Namespace) -> tuple[Any, Catalog, list[tuple[str, str | None, str | None]], Any,
                                               list[Any], Any, int]:  # fmt: skip
    """What ``boot`` and ``worst`` run: machine, catalog, pipeline rows, layout, udev's jobs, costs, workers."""
    from vmapsim.engine import CostModel
    from vmapsim.workloads import find_machine, udev_boot, udev_workers

    machine = find_machine(args.machine)
    if args.ram is not None:
        machine = attrs.evolve(machine, ram=args.ram << 30)
    # What the options leave open comes from the machine (its file's CPUs and calibrated timing), then defaults.
    args.cpus = args.cpus or machine.cpus or 255
    args.jitter, args.cost_jitter = machine.timing(args.jitter, args.cost_jitter)
    args.catalog = args.catalog or machine.catalog
    catalog, names = _catalog_and_pipelines(args)
    catalog = machine.own_files(catalog)
    layout = layouts.by_name(args.layout or machine.layout)
    jobs = udev_boot(catalog, machine, args.cpus, seed=args.seed, jitter=args.jitter, kmod=args.kmod)
    costs = CostModel(jitter=args.cost_jitter)
    workers = udev_workers(args.cpus, machine.ram)
    return machine, catalog, names, layout, jobs, costs, workers


def _machine(args: argparse.Namespace) -> str:
    from vmapsim.workloads import capture

    machine, notes = capture(args.root, name=args.name, kmod=args.kmod)
    if args.ram is not None:
        machine = attrs.evolve(machine, ram=args.ram << 30)
    for note in notes:
        print(f"vmapsim: note: {note}", file=sys.stderr)
    text = machine.to_json()
    if not args.output:
        return text
    _write(args.output, text.encode())
    return (f"{args.output}: {machine.name}, {machine.cpus or '?'} CPUs, {machine.ram >> 30} GiB, kmod {machine.kmod}, "
            f"kernel {machine.release or '?'}, {len(machine.devices)} devices; simulate its boot with: vmapsim boot "
            f"--machine {args.output}\n")  # fmt: skip


def _schedule(path: str) -> Any:
    from vmapsim.loader import Schedule

    return Schedule.load(path)


def _worst(args: argparse.Namespace) -> str:
    from vmapsim.explore import METRICS, STRATEGIES, Space, worst_case
    from vmapsim.loader import Run

    if args.metric not in METRICS:
        raise InvalidArgument(f"unknown metric {args.metric!r}: one of {', '.join(METRICS)}")
    if args.strategy not in STRATEGIES:
        raise InvalidArgument(f"unknown strategy {args.strategy!r}: one of {', '.join(STRATEGIES)}")
    own = args.pipeline is None  # the kernel's own path (or, without --kernel, 6.3's: the storm before the fixes)
    if own:
        args.pipeline = "all" if args.kernel else "v6.3"
    machine, catalog, names, layout, jobs, costs, workers = _coldplug(args)
    if own and args.kernel:
        names = [row for row in names if row[1] is None]
    if len(names) != 1:
        raise InvalidArgument(f"worst searches one load path; --kernel/--pipeline give {len(names)} "
                              f"({', '.join(n for n, _, _ in names)}): name one")  # fmt: skip
    label, pipeline, kernel = names[0]
    run = Run(pipeline, layout, args.cpus, catalog, costs=costs, module_align=args.module_align, seed=args.seed,
              workers=workers, kernel=kernel)  # fmt: skip
    space = Space(span=args.span, slots=args.slots, bound=args.cost_jitter, ties=not args.no_ties)
    bar = progress_bar("searching", "schedule")
    w = worst_case(jobs, run, metric=args.metric, budget=args.budget, strategy=args.strategy, space=space,
                   seed=args.seed, goal=args.goal, progress=(lambda d, t, _: bar(d, t)) if bar else None)  # fmt: skip
    if args.save:
        _write(args.save, (w.schedule.to_json() + "\n").encode())
    seeded = w.values[0]  # worst_case() runs the seeded run first
    best = w.best_so_far()
    marks = sorted({n for n in (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000) if n < len(best)} | {len(best)})
    if args.json:
        v = sorted(w.values)
        params = {"machine": machine.name, "cpus": args.cpus, "catalog": args.catalog, "catalog_kernel": catalog.kernel,
                  "pipeline": label, "kmod": args.kmod or machine.kmod, "metric": w.metric, "strategy": w.strategy,
                  "seed": args.seed, "budget": args.budget, "goal": args.goal, "span": args.span, "slots": args.slots,
                  "ties": not args.no_ties, "jitter": args.jitter, "cost_jitter": args.cost_jitter,
                  "layout": layout.name, "module_align": args.module_align}  # fmt: skip
        data = {"worst": w.value, "seeded_run": seeded, "evaluations": w.evaluations, "first": w.first,
                "hits": w.hits, "min": v[0], "median": statistics.median(v),
                "allocation_failures": len(w.result.failures), "best_so_far": {str(n): best[n - 1] for n in marks},
                "schedule": json.loads(w.schedule.to_json())}  # fmt: skip
        return _json("worst", params, data)
    lines = [
        f"# worst {w.metric} of the udev coldplug of {machine.name} with {args.cpus} CPUs, {label}, {len(jobs)} "
        f"uevents with modules; {w.strategy} search, budget {args.budget}, seed {args.seed}",
        f"{'evaluations':>11} {'best so far':>14}",
        *(f"{n:11d} {_number(best[n - 1]):>14}" for n in marks),
        w.summary(),
        f"the seeded run (--seed {args.seed}): {_number(seeded)}; the worst: {_number(w.value)}"
        + (f", {len(w.result.failures)} allocation failures" if w.result.failures else ""),
    ]
    if args.save:
        lines.append(f"saved to {args.save}: replay with vmapsim boot --schedule {args.save} and the same options")
    if args.stats:
        lines.append(f"\n# /sys/kernel/debug/modules/stats of the worst schedule\n{w.result.stats.render()}")
    return "\n".join(lines) + "\n"


def _json(command: str, parameters: dict[str, Any], data: dict[str, Any], notes: Sequence[str] = ()) -> str:
    """A command's ``--json`` output: :func:`vmapsim.report.document`, indented, one trailing newline."""
    return json.dumps(report.document(command, parameters, data, notes), indent=1, allow_nan=False) + "\n"


def _grid_parameters(grid: Any) -> dict[str, Any]:
    """A sweep grid's parameters, as the JSON documents record them."""
    return {"machines": list(grid.machines), "cpus": list(grid.cpus), "kernels": list(grid.kernels),
            "pipelines": list(grid.pipelines), "kmods": list(grid.kmods), "seeds": grid.seeds,
            "jitter": grid.jitter, "cost_jitter": grid.cost_jitter, "module_align": grid.module_align,
            "layout": grid.layout}  # fmt: skip


def _number(x: float) -> str:
    return str(int(x)) if x == int(x) else f"{x:.6g}"


def _cpu_list(text: str) -> tuple[int, ...]:
    """``8,16,32`` or ranges ``8-64:8`` (start-stop:step, stop included), mixed; each a CPU count."""
    out: list[int] = []
    for part in text.split(","):
        try:
            if "-" in part:
                span, _, step = part.partition(":")
                lo, hi = (int(x) for x in span.split("-", 1))
                out += range(lo, hi + 1, int(step or 1))
            else:
                out.append(int(part))
        except ValueError:
            raise InvalidArgument(f"--cpus {text!r}: {part!r} is not a CPU count or a range like 8-64:8") from None
    if not out:
        raise InvalidArgument(f"--cpus {text!r}: no CPU counts")
    return tuple(out)


def _names(text: str | None) -> tuple[str | None, ...]:
    return (None,) if not text else tuple(text.split(","))


def _grid(args: argparse.Namespace) -> Any:
    """The Grid that ``sweep`` and ``compare`` options describe."""
    from vmapsim.sweep import Grid

    kernels = _names(args.kernel)
    if args.pipeline == "all":
        from vmapsim.loader import PIPELINES, PROPOSALS, for_kernel

        pipelines: tuple[str | None, ...] = tuple(PIPELINES) if kernels == (None,) else (None, *PROPOSALS)
        if kernels != (None,):  # a proposal that does not apply to a kernel (page-list needs the early check)
            pipelines = tuple(p for p in pipelines if p is None or all(PROPOSALS[p].applies_to(for_kernel(k))
                                                                        for k in kernels if k))  # fmt: skip
    else:
        pipelines = _names(args.pipeline)
    kmods = tuple(None if k == "machine" else int(k) for k in args.kmod.split(",")) if args.kmod else (None,)
    return Grid(machines=tuple(args.machine.split(",")), cpus=_cpu_list(args.cpus), kernels=kernels,
                pipelines=pipelines, kmods=kmods, seeds=args.seeds, jitter=args.jitter,
                cost_jitter=args.cost_jitter, module_align=args.module_align, layout=args.layout)  # fmt: skip


def _compare(args: argparse.Namespace) -> str:
    from vmapsim.sweep import METRICS, Point, compare, exhaustion_cpus, sweep

    if args.metric not in METRICS:
        raise InvalidArgument(f"unknown metric {args.metric!r}: one of {', '.join(METRICS)}")
    grid = _grid(args)
    paths = [(k, p) for k in grid.kernels for p in grid.pipelines]
    if len(paths) < 2:
        raise InvalidArgument("compare needs two or more load paths: give several --kernel or --pipeline values")
    executor = "serial" if args.executor == "serial" else None
    table = sweep(grid, executor=executor, progress=progress_bar("sweeping", "run"))
    rows = compare(table, args.metric)
    exhausted = []
    if args.exhaustion:
        for machine in grid.machines:
            for kmod in grid.kmods:
                for kernel, pipeline in paths:
                    n = exhaustion_cpus(
                        machine, kernel=kernel, pipeline=pipeline, kmod=kmod, seeds=len(grid.seed_list()),
                        hi=args.exhaustion, jitter=grid.jitter, cost_jitter=grid.cost_jitter,
                        module_align=grid.module_align, layout=grid.layout,
                    )
                    exhausted.append({"machine": machine, "kmod": kmod, "kernel": kernel, "pipeline": pipeline,
                                      "label": Point(machine, 1, kernel, pipeline, kmod, 0).label, "cpus": n})
    if args.json:
        finite = [{**c, "ratio": c["ratio"] if math.isfinite(c["ratio"]) else None} for c in rows]  # JSON has no inf
        return _json("compare", {**_grid_parameters(grid), "metric": args.metric, "exhaustion": args.exhaustion},
                     {"rows": finite, "exhaustion": exhausted}, ["ratio null: the baseline's median is 0"])  # fmt: skip
    if args.csv:  # one row per cell and load path; with --exhaustion, each path's CPU count in its own column
        at = {(e["machine"], e["kmod"], e["label"]): e["cpus"] for e in exhausted}
        return report.csv_text([{**c, **({"exhaustion_cpus": at.get((c["machine"], c["kmod"], c["pipeline"]))}
                                        if args.exhaustion else {})} for c in rows])  # fmt: skip
    lines = [
        f"# {args.metric}: each load path's median over {len(grid.seed_list())} seeds beside the first one's",
        f"{'machine':16} {'cpus':>5} {'pipeline':22} {'baseline':22} {'median':>13} {'difference':>13} {'ratio':>7}",
    ]
    for c in rows:
        lines.append(f"{c['machine']:16} {c['cpus']:5d} {c['pipeline']:22} {c['baseline']:22} {c['median']:13.0f} "
                     f"{c['difference']:13.0f} {c['ratio']:7.3f}")  # fmt: skip
    if args.exhaustion:
        lines.append(f"\n# where a window starts to run out (up to {args.exhaustion} CPUs), found by bisection: "
                     "that many CPUs fail, one fewer does not")
        lines += [f"{e['machine']:16} kmod {e['kmod'] or '-':>3} {e['label']:22} {e['cpus'] or 'none':>6}"
                  for e in exhausted]  # fmt: skip
    return "\n".join(lines) + "\n"


def _sweep(args: argparse.Namespace) -> str:
    from vmapsim.sweep import METRICS, Table, sweep

    if args.metric not in METRICS:
        raise InvalidArgument(f"unknown metric {args.metric!r}: one of {', '.join(METRICS)}")
    if args.plot:
        from vmapsim.plot import plot_path

        plot_path(args.plot)  # a bad name is refused before the runs
    grid = _grid(args)
    resuming = args.resume and Path(args.resume).exists()
    done = Table.from_json(_read(args.resume), source=args.resume) if resuming else None
    executor: Any = args.executor
    client = None
    if args.executor == "dask":
        dask = _optional("distributed", "--executor dask needs Dask: pip install 'vmapsim[sweep]'")
        if args.scheduler:
            client = dask.Client(args.scheduler)
        else:
            client = dask.Client(dask.LocalCluster(n_workers=args.workers or 2, threads_per_worker=1, processes=True,
                                                   dashboard_address=None))  # fmt: skip
        executor = client
    elif args.executor not in ("local", "serial"):
        raise InvalidArgument(f"--executor {args.executor!r}: one of local, serial, dask")
    elif args.executor == "local" and args.workers:
        executor = concurrent.futures.ProcessPoolExecutor(args.workers)
    bar = progress_bar("sweeping", "run")
    try:
        table = sweep(grid, executor=executor, done=done, progress=bar)
    finally:
        if client is not None:
            client.close()  # a remote scheduler and its workers stay up
        elif isinstance(executor, concurrent.futures.Executor):
            executor.shutdown()
    for path in (args.json, args.resume):
        if path:
            _write(path, table.to_json({**_grid_parameters(grid), "executor": args.executor}).encode())
    if args.csv:
        _write(args.csv, table.to_csv().encode())
    if args.parquet:
        table.to_parquet(args.parquet)
    if args.plot:
        from vmapsim.plot import sweep_curves

        window = layouts.by_name(grid.layout or _machine_layout(grid.machines[0])).modules.size
        sweep_curves(table.rows, args.plot, window=window, title=f"udev coldplug of {', '.join(grid.machines)}: "
                     f"{len(table.rows)} runs, {len(grid.seed_list())} seeds per point (median, min–max)")  # fmt: skip
    lines = [
        f"# sweep of {len(grid)} runs ({', '.join(grid.machines)}; CPUs {', '.join(map(str, grid.cpus))}; "
        f"{len(grid.seed_list())} seeds each), {args.metric} per cell: min / median / max, mean and its 95% interval",
        f"{'machine':16} {'cpus':>5} {'pipeline':22} {'kmod':>5} {'min':>13} {'median':>13} {'max':>13} "
        f"{'mean ± 95%':>24}",
    ]
    for c in table.cells(args.metric):
        lo, hi = c["ci95"]
        lines.append(f"{c['machine']:16} {c['cpus']:5d} {c['pipeline']:22} {c['kmod'] or '-':>5} {c['min']:13d} "
                     f"{c['median']:13.0f} {c['max']:13d} {c['mean']:13.0f} ± {(hi - lo) / 2:8.0f}")  # fmt: skip
    return "\n".join(lines) + "\n"


def _optional(module: str, why: str) -> Any:
    """An optional dependency's module (typed Any: Dask and tqdm ship no type information), or a clear error."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise InvalidArgument(why) from None


def _machine_layout(name: str) -> str:
    from vmapsim.workloads import find_machine

    return find_machine(name).layout


def _info(args: argparse.Namespace) -> str:
    from vmapsim.loader import PIPELINES, for_kernel
    from vmapsim.loader.pipelines import NEWEST
    from vmapsim.workloads import PRESETS

    catalogs = []
    for name in Catalog.builtins():
        cat = Catalog.builtin(name)
        catalogs.append({"name": name, "kernel": cat.kernel, "arch": cat.config.arch, "modules": len(cat),
                         "generation": cat.generation})  # fmt: skip
    kernels = []
    for version in ("5.18", "6.1", "6.3", "6.4", "6.5", "6.9", "6.10", "6.11", "6.12", "6.15", "6.16", "7.3"):
        path = for_kernel(version)
        duplicates = "idempotent finit_module" if path.idempotent else "early_mod_check" if path.early_check else (
            "add_unformed_module only")  # fmt: skip
        memory = f"{path.generation} via {'execmem_alloc' if path.execmem else 'module_alloc'}"
        memory += " (x86-64 text: ROX cache)" if path.rox_cache else ""
        kernels.append({"version": version, "duplicates": duplicates, "memory": memory,
                        "allocator": path.profile.name})  # fmt: skip
    newest = ".".join(map(str, NEWEST))
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
        return _json("info", {}, data)
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
    lines.append("\n# kernel versions (--kernel): load path, module memory, allocator profile")
    lines += [f"{k['version']:{w}} {k['duplicates']:26} {k['memory']:61} allocator {k['allocator']}" for k in kernels]
    lines.append(f"{'newer than ' + newest:{w}} refused: not read from a kernel's sources yet")
    lines.append("\n# pipelines")
    lines += [
        f"{p.name:{w}} {'idempotent finit_module: ' if p.idempotent else ''}{' -> '.join(st.name for st in p.stages)}"
        for p in PIPELINES.values()
    ]
    lines.append("\n# machines (vmapsim boot --machine)")
    lines += [f"{m.name:{w}} {m.catalog}, kmod {m.kmod}, {len(m.devices)} devices" for m in PRESETS.values()]
    return "\n".join(lines) + "\n"


def _simulation_options(p: argparse.ArgumentParser, *, cpus: int | None, catalog: str | None,
                        layout: str | None) -> None:  # fmt: skip
    """Options every simulating subcommand shares."""
    p.add_argument(
        "--catalog",
        default=catalog,
        help=f"a shipped catalog name or a saved catalog file (default: {catalog or 'the machine’s'})",
    )
    mine = "" if cpus else "; default: the machine file's CPUs, else 255"
    p.add_argument("--cpus", type=_integer(1, checks.NR_CPUS_MAX), default=cpus,
                   help=f"online CPUs (1 to {checks.NR_CPUS_MAX}){mine}")  # fmt: skip
    p.add_argument(
        "--kernel",
        help="kernel version(s), comma-separated: each one's own load path, allocator and messages, with the "
        "proposals of --pipeline on top (default: the released paths v6.3, v6.4, v6.5 and the proposals on 6.4)",
    )
    p.add_argument("--pipeline", default="all", help="a pipeline name, a comma-separated list, or 'all'; "
                   "concurrency-limit:N limits loads to N at once")
    p.add_argument("--layout", default=layout, help=f"a layout name (default: {layout or 'the machine’s'})")
    p.add_argument(
        "--module-align", type=_integer(4096, 1 << 30), default=4096, help="MODULE_ALIGN (32768 with generic KASAN)"
    )
    p.add_argument("--seed", type=_integer(0), default=0,
                   help="seeds uevent arrival jitter and stage-duration jitter: the same seed, the same answer")
    p.add_argument("--stats", action="store_true", help="print each pipeline's CONFIG_MODULE_STATS text")
    p.add_argument("--image", action="append", default=[], metavar="NAME[=BASE]:TYPE=SIZE,...",
                   help="a module of your own sizes (repeatable): BASE's image (default: NAME's) with the given memory "
                   "types (text, data, rodata, ro_after_init, init_text, init_data, init_rodata) resized, e.g. a "
                   "KASAN build: big_kasan=kvm_intel:text=2436K,init_text=304K")  # fmt: skip


def _image(spec: str, catalog: Catalog) -> Any:
    """``--image NAME[=BASE]:TYPE=SIZE,...``: BASE's image (default NAME's) renamed NAME and resized."""
    head, colon, sizes = spec.partition(":")
    name, _, base = head.partition("=")
    if not colon or not name:
        raise InvalidArgument(f"--image {spec!r}: expected NAME[=BASE]:TYPE=SIZE,... (e.g. "
                              "big_kasan=kvm_intel:text=2436K,init_text=304K)")  # fmt: skip
    values: dict[str, int] = {}
    for part in filter(None, sizes.split(",")):
        kind, eq, size = part.partition("=")
        scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(size[-1:].upper(), 1)
        digits = size[:-1] if scale > 1 else size
        if not eq or not digits.isdigit() or len(digits) > 12:
            raise InvalidArgument(f"--image {spec!r}: {part!r} is not TYPE=SIZE (bytes, or with K, M or G)")
        values[kind] = int(digits) * scale
    return catalog[base or name].resized(name, **values)


def _catalog_and_pipelines(args: argparse.Namespace) -> tuple[Catalog, list[tuple[str, str | None, str | None]]]:
    """The catalog and the (label, pipeline, kernel) rows the options ask for; one clear error if any is unknown.

    Without --kernel the rows are the released paths and the proposals as posted (``all``: every named
    pipeline); with --kernel, each kernel's own path (``all``) and the proposals named, on top of it.
    """
    from vmapsim.loader import PIPELINES, PROPOSALS, Run, for_kernel

    catalog = Catalog.builtin(args.catalog) if args.catalog in Catalog.builtins() else Catalog.load(args.catalog)
    if args.image:
        catalog = catalog.with_images(_image(spec, catalog) for spec in args.image)
    kernels: list[str | None] = args.kernel.split(",") if args.kernel else [None]
    rows: list[tuple[str | None, str | None]] = []
    for kernel in kernels:
        if args.pipeline != "all":
            names: list[str | None] = list(args.pipeline.split(","))
        elif kernel is None:
            names = list(PIPELINES)
        else:  # the kernel's own path, and every proposal that applies to it (page-list needs the early check)
            base = for_kernel(kernel)
            names = [None, *(n for n, prop in PROPOSALS.items() if prop.applies_to(base))]
        rows += [(name, kernel) for name in names]
    # Run() refuses an unknown name or kernel, naming it; a row is labelled with the path it resolves to
    return catalog, [(Run(n, catalog=catalog, kernel=k).resolve_pipeline().name, n, k) for n, k in rows]


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="vmapsim", description="Model the Linux vmalloc/vmap address space and the module loader: "
                "start with 'vmapsim boot' (the udev storm of a 255-CPU server under each kernel and fix).")
    p.add_argument("--version", action="version", version=f"vmapsim {report.version()}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", help="run 'vmapsim COMMAND --help' for its options")
    d = sub.add_parser("demo", help="a few vmallocs/vfrees on a layout; prints vmallocinfo and peak usage")
    d.add_argument("--layout", default="x86_64", help=f"one of: {', '.join(sorted(layouts.LAYOUTS))}")
    d.add_argument("--cpus", type=_integer(1, checks.NR_CPUS_MAX), default=4, help="online CPUs (default 4)")
    d.add_argument("--kernel", default="6.3", help="kernel version whose allocator to model (default 6.3)")
    d.add_argument("--json", action="store_true", help="machine-readable JSON instead of the text")
    d.set_defaults(run=_demo)
    i = sub.add_parser("info", help="what ships: catalogs, layouts, kernel profiles, pipelines, machines")
    i.add_argument("--json", action="store_true", help="machine-readable JSON instead of the text")
    i.set_defaults(run=_info)
    r = sub.add_parser("replay", help="replay a real kernel's vmalloc trace on its /proc/vmallocinfo snapshot")
    r.add_argument("snapshot", help="/proc/vmallocinfo read when tracing began (root, kptr_restrict=1)")
    r.add_argument("trace", help="the ftrace text: events/vmalloc, or the kprobes of docs/usage.md")
    r.add_argument(
        "--layout", default="auto", help="a layout name, or 'auto' (from the snapshot's and the trace's addresses)"
    )
    r.add_argument("--kernel", required=True, help="kernel version of the traced machine (uname -r)")
    r.add_argument(
        "--cpus", type=_integer(1, checks.NR_CPUS_MAX), help="CPUs of the traced machine (default: the trace's)"
    )
    r.add_argument(
        "--from-boot",
        action="store_true",
        help="the trace began at boot: replay it on the snapshot's percpu chunks only (found by itself when the "
        "trace allocates areas the snapshot holds)",
    )
    r.add_argument("--show", type=_integer(0), default=20, help="disagreements to list (default 20)")
    r.add_argument("--json", action="store_true", help="machine-readable JSON (every disagreement) instead of the text")
    r.set_defaults(run=_replay)
    vi = sub.add_parser("vmallocinfo", help="sum up a machine's /proc/vmallocinfo: by caller and kind, lazily "
                        "freed bytes, window fill, largest free ranges")  # fmt: skip
    vi.add_argument("file", help="a copy of /proc/vmallocinfo (any kptr_restrict; real pointers give more)")
    vi.add_argument("--cpus", type=_integer(1, checks.NR_CPUS_MAX), default=1,
                    help="the machine's online CPUs (lazy_max_pages() depends on them)")  # fmt: skip
    vi.add_argument("--layout", default="auto", help="a layout name, or 'auto' (from the addresses)")
    vi.add_argument("--largest", type=_integer(0, 1000), default=5, help="free ranges to list per window")
    vi.add_argument("--callers", type=_integer(0), default=20, help="callers to list")
    vi.add_argument("--bytes", action="store_true", help="print sizes in bytes, not KiB/MiB/GiB")
    vi.add_argument("--json", action="store_true", help="machine-readable JSON instead of the text")
    vi.set_defaults(run=_vmallocinfo)
    lm = sub.add_parser("lsmod", help="check a catalog's module sizes against a live system's /proc/modules or lsmod")
    lm.add_argument("file", help="a copy of /proc/modules, or lsmod's output")
    lm.add_argument("--catalog", default="debian-6.12-amd64", help="a shipped catalog name or a saved catalog file")
    lm.add_argument("--json", action="store_true", help="machine-readable JSON instead of the text")
    lm.set_defaults(run=_lsmod)
    c = sub.add_parser("scan", help="read a module tree into a catalog (sizes, allocations, deps, aliases)")
    c.add_argument("path", help="lib/modules/<kver>, an extracted package root, or any directory of modules")
    c.add_argument("--csv", help="write one row per module to this CSV file")
    c.add_argument("--save", help="write the catalog (xz-compressed JSON) to this file")
    c.add_argument("--jobs", type=_integer(1, 1024), help="worker processes (default: all CPUs)")
    c.add_argument(
        "--config", help="the kernel's .config, when the tree has no boot/config-* (default: Debian amd64 options)"
    )
    c.add_argument("--arch", default="x86_64", choices=["x86_64", "arm64"], help="architecture without a config")
    c.add_argument("--json", action="store_true", help="machine-readable JSON summary instead of the text")
    c.set_defaults(run=_scan)
    ld = sub.add_parser("load", help="load modules on every CPU at once under each pipeline; compare")
    ld.add_argument("module", nargs="*", help="module names or modaliases (every CPU loads each)")
    ld.add_argument("--requests", help="also run the requests of a JSON-lines or .csv file (time, cpu, module, ...)")
    _simulation_options(ld, cpus=8, catalog="debian-6.12-amd64", layout="x86_64")
    ld.add_argument("--syscall", default="finit_module", choices=["finit_module", "init_module"],
                    help="what userspace calls: finit_module (kmod >= 31, the file) or init_module (kmod < 31, the "
                    "decompressed image)")  # fmt: skip
    ld.add_argument(
        "--lockstep", action="store_true", help="every heavy stage takes the same time (callers stay in step)"
    )
    ld.add_argument("--no-deps", action="store_true", help="load only the modules named, as insmod does (default: "
                    "their dependencies first, skipping live modules, as modprobe does)")  # fmt: skip
    ld.add_argument("--bytes", action="store_true", help="print sizes in bytes, not KiB/MiB/GiB")
    lfmt = ld.add_mutually_exclusive_group()
    lfmt.add_argument("--json", action="store_true", help="machine-readable JSON instead of the table")
    lfmt.add_argument("--csv", action="store_true", help="machine-readable CSV instead of the table")
    ld.set_defaults(run=_load)
    b = sub.add_parser("boot", help="the udev coldplug storm on a machine, every pipeline side by side",
                       description="The udev coldplug of a machine (a preset, a machine file from 'vmapsim machine "
                       "capture', or a modalias list) under each kernel's load path and each proposal, for the "
                       "machine's kmod and the other generation: calls, returns, reads, peak pinned bytes per "
                       "window, failed allocations and CONFIG_MODULE_STATS' waste, with a verdict per row.")
    _coldplug_options(b)
    b.add_argument("--schedule", help="replay a schedule file (vmapsim worst --save): arrivals, durations, tie-breaks")
    b.add_argument("--vmallocinfo", action="store_true", help="print /proc/vmallocinfo at each run's peak")
    b.add_argument("--bytes", action="store_true", help="print sizes in bytes, not KiB/MiB/GiB")
    b.add_argument("--real-stats", metavar="FILE", help="a real machine's /sys/kernel/debug/modules/stats, printed "
                   "beside each simulated run's (boot the same machine: --machine FILE from vmapsim machine capture)")
    b.add_argument("--plot", help="write the figure to this .png, .svg or .pdf: pinned bytes over time per window and "
                   "kmod, the module window at each run's peak (needs matplotlib)")  # fmt: skip
    fmt = b.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="machine-readable JSON instead of the table")
    fmt.add_argument("--csv", action="store_true", help="machine-readable CSV instead of the table")
    b.set_defaults(run=_boot)
    wc = sub.add_parser("worst", help="search arrival times, stage durations and tie-breaks for a storm's worst case")
    _coldplug_options(wc)
    wc.add_argument("--metric", default="peak-modules", help="peak-modules, peak-vmalloc, failures, wasted, becoming, "
                    "load (default peak-modules)")  # fmt: skip
    wc.add_argument("--strategy", default="guided", help="guided, random, pct or exhaustive (default guided)")
    wc.add_argument("--budget", type=_integer(1, 10**6), default=100, help="schedules to run (default 100)")
    wc.add_argument("--goal", type=_finite(-1e300), help="stop at the first schedule whose metric reaches this")
    wc.add_argument("--span", type=_finite(0), help="arrivals within this many seconds (default: the uevents' own)")
    wc.add_argument("--slots", type=_integer(1, 1 << 16), help="arrivals on a grid of this many instants")
    wc.add_argument("--no-ties", action="store_true", help="do not search the tie-breaks (FIFO)")
    wc.add_argument("--save", help="write the worst schedule to this file (JSON)")
    wc.add_argument("--json", action="store_true", help="machine-readable JSON instead of the table")
    wc.set_defaults(run=_worst, pipeline=None)
    mc = sub.add_parser("machine", help="machine files: capture this machine (or a copied root) for --machine FILE")
    msub = mc.add_subparsers(dest="action", metavar="ACTION", required=True, help="what to do with a machine file")
    cap = msub.add_parser("capture", help="write a machine file: CPU and device modaliases, CPUs, RAM, kmod, kernel")
    cap.add_argument("--root", default="/", help="the system's root: / for this machine, or a copy of its /sys, "
                     "/proc and /var/lib/dpkg")  # fmt: skip
    cap.add_argument("-o", "--output", help="write the machine file here (default: standard output)")
    cap.add_argument("--name", help="the machine's name (default: its hostname)")
    cap.add_argument("--kmod", type=_integer(1, 999), help="kmod's version (default: kmod --version, or dpkg's)")
    cap.add_argument("--ram", type=_integer(1, 1 << 24), help="RAM in GiB (default: /proc/meminfo's MemTotal)")
    cap.set_defaults(run=_machine)
    sw = sub.add_parser("sweep", help="a grid of machines × CPUs × kernels × pipelines × kmods × seeds; the spread")
    _grid_options(sw)
    sw.add_argument("--executor", default="local", help="local (a process pool), serial, or dask")
    sw.add_argument("--scheduler", help="with --executor dask: a scheduler's address (default: a local cluster)")
    sw.add_argument("--workers", type=_integer(1, 4096), help="worker processes (default: every CPU; dask: 2)")
    sw.add_argument("--csv", help="write every run's row to this CSV file")
    sw.add_argument("--json", help="write every run's row to this JSON file")
    sw.add_argument("--parquet", help="write every run's row to this Parquet file (needs pyarrow)")
    sw.add_argument("--plot", help="write peak and wasted bytes against CPUs to this image (needs matplotlib)")
    sw.add_argument("--resume", help="a JSON file of rows: runs already in it are kept, and it is rewritten at the end")
    sw.set_defaults(run=_sweep)
    cp = sub.add_parser("compare", help="two or more kernels or pipelines on one grid: differences, ratios, exhaustion")
    _grid_options(cp)
    cp.add_argument("--executor", default="local", help="local (a process pool) or serial")
    cp.add_argument("--exhaustion", type=_integer(1, checks.NR_CPUS_MAX),
                    help="also bisect, up to this many CPUs, for the fewest at which each path runs out of a window")
    cfmt = cp.add_mutually_exclusive_group()
    cfmt.add_argument("--json", action="store_true", help="machine-readable JSON instead of the table")
    cfmt.add_argument("--csv", action="store_true", help="machine-readable CSV instead of the table")
    cp.set_defaults(run=_compare)
    return p


def _grid_options(p: argparse.ArgumentParser) -> None:
    """The options of a sweep's grid (``sweep`` and ``compare``)."""
    p.add_argument("--machine", default="intel-server", help="machines, comma-separated: presets or machine files")
    p.add_argument("--cpus", default="255", help="CPU counts: 8,16,32 or ranges 8-64:8, mixed")
    p.add_argument("--kernel", help="kernel versions, comma-separated (default: the released paths)")
    p.add_argument("--pipeline", default="v6.3,v6.4,v6.5", help="pipelines, comma-separated, or 'all'")
    p.add_argument("--kmod", help="kmod versions, comma-separated ('machine': the machine's; default)")
    p.add_argument("--seeds", type=_integer(1, 100_000), default=5, help="seeds per cell (default 5)")
    p.add_argument("--jitter", type=_finite(0), help="uevent arrivals spread over this many seconds (default: each "
                   "machine's calibrated value, else 0.05)")  # fmt: skip
    p.add_argument("--cost-jitter", type=_finite(0, 0.99), help="stage durations vary by this fraction (default: "
                   "each machine's calibrated value, else 0.25)")  # fmt: skip
    p.add_argument("--module-align", type=_integer(4096, 1 << 30), default=4096, help="MODULE_ALIGN")
    p.add_argument("--layout", help="a layout name in place of the machine's own")
    p.add_argument("--metric", default="peak_modules", help="the metric of the cell table (default peak_modules)")


def _coldplug_options(b: argparse.ArgumentParser) -> None:
    """The options of a udev coldplug (``boot`` and ``worst``)."""
    _simulation_options(b, cpus=None, catalog=None, layout=None)
    b.add_argument(
        "--machine",
        default="intel-server",
        help="a preset (vmapsim info lists them; kdevops is the guest of the 2023 thread's figures), a machine "
        "file (vmapsim machine capture), or a file of the machine's modaliases: "
        "cat /sys/devices/system/cpu/modalias /sys/bus/*/devices/*/modalias > FILE",
    )
    b.add_argument("--ram", type=_integer(1, 1 << 24), help="the machine's RAM in GiB (sets udev's worker limit)")
    b.add_argument("--kmod", type=_integer(1, 999), help="kmod version (default: the machine's, 30 as in Debian 12)")
    b.add_argument("--jitter", type=_finite(0), help="uevent arrivals spread over this many seconds (default: the "
                   "machine's calibrated value, else 0.05)")  # fmt: skip
    b.add_argument("--cost-jitter", type=_finite(0, 0.99), help="stage durations vary by this fraction (default: the "
                   "machine's calibrated value, else 0.25)")  # fmt: skip


def commands() -> list[tuple[str, argparse.ArgumentParser]]:
    """Every command of ``vmapsim`` as ``(name, parser)``, nested ones included (``vmapsim machine capture``),
    for references generated from the parser.  Runtime complexity: O(commands).

    >>> [name for name, _ in commands()][:3]
    ['vmapsim', 'vmapsim demo', 'vmapsim info']
    """
    out: list[tuple[str, argparse.ArgumentParser]] = []

    def walk(parser: argparse.ArgumentParser, path: str) -> None:
        out.append((path, parser))
        for name, sub in getattr(parser, "children", {}).items():
            walk(sub, f"{path} {name}")

    walk(_parser(), "vmapsim")
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (2 on bad input, one line on stderr)."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:  # bare vmapsim: what it can do
        parser.print_help()
        return 0
    status = 0
    # One command runs several simulations; between them the cyclic collector would only re-scan
    # the catalog and each run's results (simulate() pauses it during a run).
    enabled = gc.isenabled()
    gc.disable()
    try:
        text = args.run(args)
        if isinstance(text, tuple):
            text, status = text
    except (VmapsimError, OSError) as e:
        print(f"vmapsim: error: {_one_line(str(e))}", file=sys.stderr)
        return 2
    finally:
        if enabled:
            gc.enable()
    sys.stdout.write(text)
    return status


def _one_line(message: str) -> str:
    return " ".join(message.split())[:500]


class _Help(argparse.HelpFormatter):
    """Help that shows each option's default, unless its text already says it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        shown = action.default not in (None, False, argparse.SUPPRESS) and action.option_strings
        return f"{text} (default: %(default)s)" if shown and "default" not in text else text


class _Parser(argparse.ArgumentParser):
    """argparse with errors as one line, ``vmapsim: error: ...``, exit status 2 (no usage block)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _Help)
        super().__init__(*args, **kwargs)
        #: The subcommands, by name, as they are added (what :func:`commands` walks).
        self.children: dict[str, argparse.ArgumentParser] = {}

    def add_subparsers(self, **kwargs: Any) -> Any:
        """argparse's, remembering each subcommand's parser in :attr:`children`."""
        action = super().add_subparsers(**kwargs)
        add = action.add_parser

        def add_parser(name: str, **options: Any) -> argparse.ArgumentParser:
            sub: argparse.ArgumentParser = add(name, **options)
            self.children[name] = sub
            return sub

        action.add_parser = add_parser  # type: ignore[method-assign]  # wrap, to see each one added
        return action

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"vmapsim: error: {_one_line(message)} (see '{self.prog} --help')\n")


def _integer(lo: int, hi: int | None = None) -> Callable[[str], int]:
    """An argparse type: a whole number in ``[lo, hi]``."""
    return _option(int, checks.integer, "a whole number", lo, hi)


def _finite(lo: float, hi: float | None = None) -> Callable[[str], float]:
    """An argparse type: a finite number in ``[lo, hi]``."""
    return _option(float, checks.number, "a finite number", lo, hi)


def _option(
    kind: Callable[[str], Any], check: Callable[..., Any], what: str, lo: float, hi: float | None
) -> Callable[[str], Any]:
    def parse(token: str) -> Any:
        try:
            return check("value", kind(token) if len(token) <= checks.MAX_DIGITS else None, lo, hi)
        except (ValueError, InvalidArgument):
            span = f"from {_num(lo)} to {_num(hi)}" if hi is not None else f">= {_num(lo)}"
            raise argparse.ArgumentTypeError(f"{checks.show(token)}: expected {what} {span}") from None

    return parse


def _num(v: float) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)
