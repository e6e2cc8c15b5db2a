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
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn, TextIO

import attrs

from vmapsim import checks, layouts, procfs, profiles, trace
from vmapsim.errors import InvalidArgument, VmapsimError
from vmapsim.modules.catalog import Catalog
from vmapsim.modules.layout import KernelConfig
from vmapsim.space import VmapSpace
from vmapsim.units import MiB

__all__ = ["main"]


def progress_bar(what: str, stream: TextIO | None = None) -> Callable[[int, int], None] | None:
    """A one-line progress bar on ``stream`` (stderr) when it is a terminal, else None."""
    out = stream or sys.stderr
    if not out.isatty():
        return None

    def show(done: int, total: int) -> None:
        width = 40
        filled = width * done // total
        out.write(f"\r{what} [{'#' * filled}{'.' * (width - filled)}] {done}/{total}")
        if done == total:
            out.write("\n")
        out.flush()

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
    out.append("\n# /proc/vmallocinfo")
    out.append(procfs.render_vmallocinfo(space).rstrip("\n"))
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
    report = trace.replay(events, space)
    out = [f"# replay on {layout.name}, {cpus} CPUs, kernel profile {space.profile.name}"
           f"{', from boot' if from_boot else ''}", *notes, report.summary()]  # fmt: skip
    for d in report.disagreements[: args.show]:
        e = d.event
        kernel = "failed" if e.addr is None else f"{e.addr:#x}"
        model = "fails" if d.model is None else f"{d.model:#x}"
        out.append(
            f"line {e.line}: cpu {e.cpu} size {e.size} align {e.align} window {e.vstart:#x}-{e.vend:#x}: "
            f"kernel {kernel}, vmapsim {model}"
        )
    for e in report.unknown_frees[: args.show]:
        out.append(f"line {e.line}: free of {e.addr or 0:#x}, which the model does not hold")
    if report.disagreements:
        out.append(f"# {len(report.disagreements)} allocations disagree")
    return "\n".join(out) + "\n", 1 if report.disagreements else 0


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
    catalog = Catalog.scan(args.path, config=config, jobs=args.jobs, progress=progress_bar("scanning"))
    if args.csv:
        _write(args.csv, catalog.to_csv().encode())
    if args.save:
        catalog.save(args.save)
    gen = catalog.generation
    total = sum(sum(n for _, n in m.allocations(gen)) for m in catalog)
    out = [
        f"{len(catalog)} modules of {catalog.kernel} ({gen} loader), {len(catalog.problems)} skipped; "
        f"{sum(m.file_size for m in catalog)} file bytes, {sum(m.decompressed_size for m in catalog)} decompressed, "
        f"{total} bytes of module-area allocations if all were loaded",
        f"kernel config: {catalog.config_source}",
    ]
    out += [f"skipped {p.path}: {p.reason}" for p in catalog.problems]
    return "\n".join(out) + "\n"


def _load(args: argparse.Namespace) -> str:
    from vmapsim.engine import CostModel
    from vmapsim.loader import Request, Run, simulate

    catalog, names = _catalog_and_pipelines(args)
    modules: list[str] = []
    for name in args.module:  # a module name, or a modalias resolved as kmod would
        found = [name] if name in catalog else catalog.match_alias(name)
        if not found:
            raise InvalidArgument(f"no module or alias {name!r} in the {catalog.kernel} catalog")
        modules += found
    layout = layouts.by_name(args.layout)
    costs = CostModel(lockstep=args.lockstep)
    reqs = [Request(m, cpu=c, syscall=args.syscall) for c in range(args.cpus) for m in modules]
    if args.requests:
        from vmapsim.workloads import read_requests

        fmt = "csv" if args.requests.endswith(".csv") else "jsonl"
        reqs += read_requests(_read(args.requests), fmt=fmt, source=args.requests)
        for req in reqs:
            if not isinstance(req.module, str) or req.module not in catalog:
                raise InvalidArgument(f"{args.requests}: no module {req.module!r} in the {catalog.kernel} catalog")
    if not reqs:
        raise InvalidArgument("nothing to load: name modules or aliases, or give --requests FILE")
    w = max(18, *(len(n) for n, _, _ in names))
    out = [
        f"# {len(reqs)} requests ({', '.join(modules) or args.requests} on each of {args.cpus} CPUs), {layout.name}, "
        f"MODULE_ALIGN {args.module_align}, {'lockstep' if args.lockstep else 'timed'}",
        f"{'pipeline':{w}} {'ok':>5} {'EEXIST':>6} {'other':>5} {'reads':>5} {'peak vmalloc':>14} "
        f"{'peak modules':>14} {'failures':>8} {'stats wasted':>14}",
    ]
    stats_text = []
    for name, pipeline, kernel in names:
        run = Run(pipeline, layout, args.cpus, catalog, costs=costs, module_align=args.module_align, seed=args.seed,
                  kernel=kernel)  # fmt: skip
        r = simulate(reqs, run)
        rets = [o.ret for o in r.outcomes]
        out.append(
            f"{name:{w}} {rets.count(0):5d} {rets.count(-17):6d} {len(rets) - rets.count(0) - rets.count(-17):5d} "
            f"{r.reads:5d} {r.peak_pinned.get('vmalloc', 0):14d} {r.peak_pinned.get('modules', 0):14d} "
            f"{len(r.failures):8d} {r.stats.wasted_bytes:14d}"
        )
        if r.failures:
            out.append(f"{'':{w}} first failure: {r.failures[0].message}")
        if args.stats:
            stats_text.append(f"\n# /sys/kernel/debug/modules/stats after {name}\n{r.stats.render()}")
    return "\n".join(out) + "\n" + "".join(stats_text)


def _boot(args: argparse.Namespace) -> str:
    import csv
    import io
    import json

    if args.plot:
        from vmapsim.plot import plot_path

        plot_path(args.plot)  # a bad name is refused before minutes of simulation

    from vmapsim.loader import Run, simulate

    machine, catalog, names, layout, jobs, costs, workers = _coldplug(args)
    schedule = _schedule(args.schedule) if args.schedule else None
    rows = []
    extra = []
    runs = {}
    peaks = {}
    bar = progress_bar("simulating")
    for i, (name, pipeline, kernel) in enumerate(names):
        run = Run(pipeline, layout, args.cpus, catalog, costs=costs, module_align=args.module_align, seed=args.seed,
                  workers=workers, kernel=kernel)  # fmt: skip
        r = simulate(jobs, run, schedule=schedule)
        if bar:
            bar(i + 1, len(names))
        if args.plot:
            runs[name] = r
        rets = [o.ret for o in r.outcomes]
        rows.append({
            "pipeline": name, "loads": len(rets), "ok": rets.count(0), "eexist": rets.count(-17),
            "other_errors": len(rets) - rets.count(0) - rets.count(-17), "reads": r.reads,
            "peak_vmalloc": r.peak_pinned.get("vmalloc", 0), "peak_modules": r.peak_pinned.get("modules", 0),
            "allocation_failures": len(r.failures), "failed_becoming": r.stats.failed_becoming,
            "failed_load": r.stats.failed_load_modules, "wasted_bytes": r.stats.wasted_bytes,
            "first_failure": r.failures[0].message if r.failures else "",
        })  # fmt: skip
        if args.stats:
            extra.append(f"\n# /sys/kernel/debug/modules/stats after {name}\n{r.stats.render()}")
        if args.vmallocinfo or args.plot:
            # Runs are deterministic: rerun up to the instant the window peaked to see the space then.
            window = "modules" if "modules" in r.peak_time else "vmalloc"
            peak = simulate(jobs, run, until=r.peak_time.get(window, 0.0), schedule=schedule)
            peaks[name] = peak.space
            if args.vmallocinfo:
                extra.append(
                    f"\n# /proc/vmallocinfo of {name} at the {window} window's peak "
                    f"({r.peak_time.get(window, 0.0) * 1000:.3f} ms)\n{procfs.render_vmallocinfo(peak.space)}"
                )
    if args.plot:
        from vmapsim.plot import pinned_over_time

        pinned_over_time(runs, args.plot, at_peak=peaks)
    if args.json:
        return json.dumps({"machine": machine.name, "cpus": args.cpus, "catalog": catalog.kernel, "pipelines": rows},
                          indent=1) + "\n"  # fmt: skip
    if args.csv:
        out = io.StringIO()
        writer = csv.DictWriter(out, list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        return out.getvalue()
    w = max(18, *(len(n) for n, _, _ in names))
    lines = [
        f"# udev coldplug of {machine.name} with {args.cpus} CPUs, {catalog.kernel}, {len(jobs)} uevents with "
        f"modules, kmod {args.kmod or machine.kmod}",
        f"{'pipeline':{w}} {'loads':>6} {'ok':>5} {'EEXIST':>6} {'other':>5} {'reads':>6} {'peak vmalloc':>13} "
        f"{'peak modules':>13} {'failures':>8} {'becoming':>8} {'load':>6} {'stats wasted':>13}",
    ]
    for row in rows:
        lines.append(
            f"{row['pipeline']:{w}} {row['loads']:6d} {row['ok']:5d} {row['eexist']:6d} {row['other_errors']:5d} "
            f"{row['reads']:6d} {row['peak_vmalloc']:13d} {row['peak_modules']:13d} {row['allocation_failures']:8d} "
            f"{row['failed_becoming']:8d} {row['failed_load']:6d} {row['wasted_bytes']:13d}"
        )
        if row["first_failure"]:
            lines.append(f"{'':{w}} first failure: {row['first_failure']}")
    if jobs and jobs[0].syscall == "init_module":
        lines.append(
            "note: kmod < 31 decompresses modules itself and calls init_module(2); the fixes that act on\n"
            "      finit_module() (v6.5, kread-dedup, page-list, exclusive-deny) cannot help here: try --kmod 31"
        )
    return "\n".join(lines) + "\n" + "".join(extra)


def _coldplug(args: argparse.Namespace) -> tuple[Any, Catalog, list[tuple[str, str | None, str | None]], Any,
                                               list[Any], Any, int]:  # fmt: skip
    """What ``boot`` and ``worst`` run: machine, catalog, pipeline rows, layout, udev's jobs, costs, workers."""
    from vmapsim.engine import CostModel
    from vmapsim.workloads import PRESETS, Machine, udev_boot, udev_workers

    if args.machine in PRESETS:
        machine = PRESETS[args.machine]
    elif Path(args.machine).is_file():  # a machine's own modalias files, as Machine.from_modaliases reads them
        machine = Machine.from_modaliases(_read(args.machine), name=Path(args.machine).stem, source=args.machine)
    else:
        raise InvalidArgument(f"unknown machine {args.machine!r}: a preset ({', '.join(PRESETS)}) or a file of "
                              "modaliases")  # fmt: skip
    if args.ram is not None:
        machine = attrs.evolve(machine, ram=args.ram << 30)
    args.catalog = args.catalog or machine.catalog
    catalog, names = _catalog_and_pipelines(args)
    layout = layouts.by_name(args.layout or machine.layout)
    jobs = udev_boot(catalog, machine, args.cpus, seed=args.seed, jitter=args.jitter, kmod=args.kmod)
    costs = CostModel(jitter=args.cost_jitter)
    workers = udev_workers(args.cpus, machine.ram)
    return machine, catalog, names, layout, jobs, costs, workers


def _schedule(path: str) -> Any:
    from vmapsim.loader import Schedule

    return Schedule.load(path)


def _worst(args: argparse.Namespace) -> str:
    import json

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
    bar = progress_bar("searching")
    w = worst_case(jobs, run, metric=args.metric, budget=args.budget, strategy=args.strategy, space=space,
                   seed=args.seed, goal=args.goal, progress=(lambda d, t, _: bar(d, t)) if bar else None)  # fmt: skip
    if args.save:
        _write(args.save, (w.schedule.to_json() + "\n").encode())
    seeded = w.values[0]  # worst_case() runs the seeded run first
    best = w.best_so_far()
    marks = sorted({n for n in (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000) if n < len(best)} | {len(best)})
    if args.json:
        v = sorted(w.values)
        doc = {
            "schema": "vmapsim-worst/1", "machine": machine.name, "cpus": args.cpus, "catalog": catalog.kernel,
            "pipeline": label, "metric": w.metric, "strategy": w.strategy, "seed": args.seed, "budget": args.budget,
            "worst": w.value, "seeded_run": seeded, "evaluations": w.evaluations, "first": w.first, "hits": w.hits,
            "min": v[0], "median": v[len(v) // 2] if len(v) % 2 else (v[len(v) // 2 - 1] + v[len(v) // 2]) / 2,
            "allocation_failures": len(w.result.failures), "best_so_far": {str(n): best[n - 1] for n in marks},
            "schedule": json.loads(w.schedule.to_json()),
        }  # fmt: skip
        return json.dumps(doc, indent=1) + "\n"
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
    table = sweep(grid, executor="serial" if args.executor == "serial" else None, progress=_sweep_bar(len(grid)))
    lines = [
        f"# {args.metric}: each load path's median over {len(grid.seed_list())} seeds beside the first one's",
        f"{'machine':16} {'cpus':>5} {'pipeline':22} {'baseline':22} {'median':>13} {'difference':>13} {'ratio':>7}",
    ]
    for c in compare(table, args.metric):
        lines.append(f"{c['machine']:16} {c['cpus']:5d} {c['pipeline']:22} {c['baseline']:22} {c['median']:13.0f} "
                     f"{c['difference']:13.0f} {c['ratio']:7.3f}")  # fmt: skip
    if args.exhaustion:
        lines.append(f"\n# where a window starts to run out (up to {args.exhaustion} CPUs), found by bisection: "
                     "that many CPUs fail, one fewer does not")
        for machine in grid.machines:
            for kmod in grid.kmods:
                for kernel, pipeline in paths:
                    n = exhaustion_cpus(
                        machine, kernel=kernel, pipeline=pipeline, kmod=kmod, seeds=len(grid.seed_list()),
                        hi=args.exhaustion, jitter=grid.jitter, cost_jitter=grid.cost_jitter,
                        module_align=grid.module_align, layout=grid.layout,
                    )
                    name = Point(machine, 1, kernel, pipeline, kmod, 0).label
                    lines.append(f"{machine:16} kmod {kmod or '-':>3} {name:22} {n if n else 'none':>6}")
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
    bar = _sweep_bar(len(grid))
    try:
        table = sweep(grid, executor=executor, done=done, progress=bar)
    finally:
        if client is not None:
            client.close()  # a remote scheduler and its workers stay up
        elif isinstance(executor, concurrent.futures.Executor):
            executor.shutdown()
    for path in (args.json, args.resume):
        if path:
            _write(path, table.to_json().encode())
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
    from vmapsim.workloads import PRESETS

    return PRESETS[name].layout


def _sweep_bar(total: int) -> Callable[[int, int], None] | None:
    """tqdm's bar with rate and ETA when tqdm is installed (the sweep extra), else vmapsim's own."""
    if not sys.stderr.isatty():
        return None
    try:
        tqdm: Any = importlib.import_module("tqdm")
    except ImportError:
        return progress_bar("sweeping")
    bar = tqdm.tqdm(total=total, unit="run", desc="sweeping")

    def show(done: int, _total: int) -> None:
        bar.update(done - bar.n)
        if done == _total:
            bar.close()

    return show


def _info(args: argparse.Namespace) -> str:
    from vmapsim.loader import PIPELINES, for_kernel
    from vmapsim.loader.pipelines import NEWEST
    from vmapsim.workloads import PRESETS

    lines = ["# shipped catalogs"]
    for name in Catalog.builtins():
        cat = Catalog.builtin(name)
        lines.append(f"{name:20} {cat.kernel:26} {len(cat):5d} modules, {cat.generation} loader")
    lines.append("\n# layouts (vmalloc window / modules window)")
    for lay in layouts.LAYOUTS.values():
        lines.append(
            f"{lay.name:20} {lay.vmalloc.start:#x}-{lay.vmalloc.end:#x}  {lay.modules.start:#x}-{lay.modules.end:#x}"
        )
    lines.append("\n# kernel profiles (first version)")
    lines += [f"{p.name:20} from {p.first[0]}.{p.first[1]}" for p in profiles.PROFILES]
    lines.append("\n# kernel versions (--kernel): load path, module memory, allocator profile")
    for version in ("5.18", "6.1", "6.3", "6.4", "6.5", "6.9", "6.10", "6.11", "6.12", "6.15", "6.16", "7.3"):
        path = for_kernel(version)
        duplicates = "idempotent finit_module" if path.idempotent else "early_mod_check" if path.early_check else (
            "add_unformed_module only")  # fmt: skip
        memory = f"{path.generation} via {'execmem_alloc' if path.execmem else 'module_alloc'}"
        memory += " (x86-64 text: ROX cache)" if path.rox_cache else ""
        lines.append(f"{version:20} {duplicates:26} {memory:61} allocator {path.profile.name}")
    lines.append(f"{'newer than ' + '.'.join(map(str, NEWEST)):20} refused: not read from a kernel's sources yet")
    lines.append("\n# pipelines")
    lines += [
        f"{p.name:20} {'idempotent finit_module: ' if p.idempotent else ''}{' -> '.join(st.name for st in p.stages)}"
        for p in PIPELINES.values()
    ]
    lines.append("\n# machines (vmapsim boot --machine)")
    lines += [f"{m.name:20} {m.catalog}, kmod {m.kmod}, {len(m.devices)} devices" for m in PRESETS.values()]
    return "\n".join(lines) + "\n"


def _simulation_options(p: argparse.ArgumentParser, *, cpus: int, catalog: str | None, layout: str | None) -> None:
    """Options every simulating subcommand shares."""
    p.add_argument(
        "--catalog",
        default=catalog,
        help=f"a shipped catalog name or a saved catalog file ({catalog or 'the machine’s'})",
    )
    p.add_argument("--cpus", type=_integer(1, checks.NR_CPUS_MAX), default=cpus)
    p.add_argument(
        "--kernel",
        help="kernel version(s), comma-separated: each one's own load path, allocator and messages, with the "
        "proposals of --pipeline on top (default: the released paths v6.3, v6.4, v6.5 and the proposals on 6.4)",
    )
    p.add_argument("--pipeline", default="all", help="a pipeline name, a comma-separated list, or 'all'")
    p.add_argument("--layout", default=layout, help=f"a layout name ({layout or 'the machine’s'})")
    p.add_argument(
        "--module-align", type=_integer(4096, 1 << 30), default=4096, help="MODULE_ALIGN (32768 with generic KASAN)"
    )
    p.add_argument("--seed", type=_integer(0), default=0)
    p.add_argument("--stats", action="store_true", help="print each pipeline's CONFIG_MODULE_STATS text")


def _catalog_and_pipelines(args: argparse.Namespace) -> tuple[Catalog, list[tuple[str, str | None, str | None]]]:
    """The catalog and the (label, pipeline, kernel) rows the options ask for; one clear error if any is unknown.

    Without --kernel the rows are the released paths and the proposals as posted (``all``: every named
    pipeline); with --kernel, each kernel's own path (``all``) and the proposals named, on top of it.
    """
    from vmapsim.loader import PIPELINES, PROPOSALS, Run, for_kernel

    catalog = Catalog.builtin(args.catalog) if args.catalog in Catalog.builtins() else Catalog.load(args.catalog)
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
    p = _Parser(prog="vmapsim", description="Model the Linux vmalloc/vmap address space.")
    sub = p.add_subparsers(dest="command", required=True)
    d = sub.add_parser("demo", help="a few vmallocs/vfrees on a layout; prints vmallocinfo and peak usage")
    d.add_argument("--layout", default="x86_64", help=f"one of: {', '.join(sorted(layouts.LAYOUTS))}")
    d.add_argument("--cpus", type=_integer(1, checks.NR_CPUS_MAX), default=4, help="online CPUs (default 4)")
    d.add_argument("--kernel", default="6.3", help="kernel version whose allocator to model (default 6.3)")
    d.set_defaults(run=_demo)
    sub.add_parser("info", help="what ships: catalogs, layouts, kernel profiles, pipelines, machines").set_defaults(
        run=_info
    )
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
    r.set_defaults(run=_replay)
    c = sub.add_parser("scan", help="read a module tree into a catalog (sizes, allocations, deps, aliases)")
    c.add_argument("path", help="lib/modules/<kver>, an extracted package root, or any directory of modules")
    c.add_argument("--csv", help="write one row per module to this CSV file")
    c.add_argument("--save", help="write the catalog (xz-compressed JSON) to this file")
    c.add_argument("--jobs", type=_integer(1, 1024), help="worker processes (default: all CPUs)")
    c.add_argument(
        "--config", help="the kernel's .config, when the tree has no boot/config-* (default: Debian amd64 options)"
    )
    c.add_argument("--arch", default="x86_64", choices=["x86_64", "arm64"], help="architecture without a config")
    c.set_defaults(run=_scan)
    ld = sub.add_parser("load", help="load modules on every CPU at once under each pipeline; compare")
    ld.add_argument("module", nargs="*", help="module names or modaliases (every CPU loads each)")
    ld.add_argument("--requests", help="also run the requests of a JSON-lines or .csv file (time, cpu, module, ...)")
    _simulation_options(ld, cpus=8, catalog="debian-6.12-amd64", layout="x86_64")
    ld.add_argument("--syscall", default="finit_module", choices=["finit_module", "init_module"])
    ld.add_argument(
        "--lockstep", action="store_true", help="every heavy stage takes the same time (callers stay in step)"
    )
    ld.set_defaults(run=_load)
    b = sub.add_parser("boot", help="the udev coldplug storm on a machine, every pipeline side by side")
    _coldplug_options(b)
    b.add_argument("--schedule", help="replay a schedule file (vmapsim worst --save): arrivals, durations, tie-breaks")
    b.add_argument("--vmallocinfo", action="store_true", help="print /proc/vmallocinfo at each run's peak")
    b.add_argument("--plot", help="write pinned bytes over time per pipeline to this image (needs matplotlib)")
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
    cp.set_defaults(run=_compare)
    return p


def _grid_options(p: argparse.ArgumentParser) -> None:
    """The options of a sweep's grid (``sweep`` and ``compare``)."""
    p.add_argument("--machine", default="intel-server", help="machine presets, comma-separated")
    p.add_argument("--cpus", default="255", help="CPU counts: 8,16,32 or ranges 8-64:8, mixed")
    p.add_argument("--kernel", help="kernel versions, comma-separated (default: the released paths)")
    p.add_argument("--pipeline", default="v6.3,v6.4,v6.5", help="pipelines, comma-separated, or 'all'")
    p.add_argument("--kmod", help="kmod versions, comma-separated ('machine': the machine's; default)")
    p.add_argument("--seeds", type=_integer(1, 100_000), default=5, help="seeds per cell (default 5)")
    p.add_argument("--jitter", type=_finite(0), default=0.05, help="uevent arrivals spread over this many seconds")
    p.add_argument("--cost-jitter", type=_finite(0, 0.99), default=0.25, help="stage durations vary by this fraction")
    p.add_argument("--module-align", type=_integer(4096, 1 << 30), default=4096, help="MODULE_ALIGN")
    p.add_argument("--layout", help="a layout name in place of the machine's own")
    p.add_argument("--metric", default="peak_modules", help="the metric of the cell table (default peak_modules)")


def _coldplug_options(b: argparse.ArgumentParser) -> None:
    """The options of a udev coldplug (``boot`` and ``worst``)."""
    _simulation_options(b, cpus=255, catalog=None, layout=None)
    b.add_argument(
        "--machine",
        default="intel-server",
        help="a preset (qemu-kvm, intel-server, amd-server, arm64-server) or a file of the machine's modaliases: "
        "cat /sys/devices/system/cpu/modalias /sys/bus/*/devices/*/modalias > FILE",
    )
    b.add_argument("--ram", type=_integer(1, 1 << 24), help="the machine's RAM in GiB (sets udev's worker limit)")
    b.add_argument("--kmod", type=_integer(1, 999), help="kmod version (default: the machine's, 30 as in Debian 12)")
    b.add_argument("--jitter", type=_finite(0), default=0.05, help="uevent arrivals spread over this many seconds")
    b.add_argument("--cost-jitter", type=_finite(0, 0.99), default=0.25, help="stage durations vary by this fraction")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (2 on bad input, one line on stderr)."""
    args = _parser().parse_args(argv)
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


class _Parser(argparse.ArgumentParser):
    """argparse with errors as one line, ``vmapsim: error: ...``, exit status 2 (no usage block)."""

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
