"""``vmapsim boot``: the udev coldplug storm on a machine, every load path side by side."""

from __future__ import annotations

import argparse
from typing import Any

from vmapsim import report
from vmapsim.cli import _options, _storm
from vmapsim.cli._io import label, note, read, writable, write
from vmapsim.loader import ModuleStats
from vmapsim.scenario import storm

__all__ = ["add", "run"]


def add(sub: Any) -> None:
    """Register ``vmapsim boot`` and its options."""
    b = sub.add_parser("boot", help="the udev coldplug storm on a machine, every pipeline side by side",
                       description="The udev coldplug of a machine (a preset, a machine file from 'vmapsim machine "
                       "capture', or a modalias list) under each kernel's load path and each proposal, for the "
                       "machine's kmod and the other generation: calls, returns, reads, peak pinned bytes per "
                       "window, failed allocations and CONFIG_MODULE_STATS' waste, with a verdict per row.")
    _options.coldplug(b)
    b.add_argument("--schedule", metavar="FILE", help="replay a schedule file (vmapsim worst --save): arrivals, "
                   "durations, tie-breaks ('-': standard input)")  # fmt: skip
    b.add_argument("--vmallocinfo", action="store_true", help="print /proc/vmallocinfo at each run's peak")
    b.add_argument("--real-stats", metavar="FILE", help="a real machine's /sys/kernel/debug/modules/stats ('-': "
                   "standard input), printed beside each simulated run's (boot the same machine: --machine FILE from "
                   "vmapsim machine capture)")
    _options.figure(b, plot="pinned bytes over time per window and kmod, and the module window at each run's peak",
                    series="a row per change of each run's pinned bytes in each window (kmod, pipeline, window, "
                    "time_ms, pinned_bytes, busy_bytes, lazy_or_pooled_bytes)")  # fmt: skip
    b.add_argument("--plot-histograms", metavar="FILE", help="write histograms of allocation sizes and lifetimes "
                   "per caller (kernel_read_file, vmap, module memory...) to this .png, .svg or .pdf, a row per kmod "
                   "and caller (needs matplotlib)")  # fmt: skip
    b.add_argument("--histogram-series", metavar="FILE", help="write what --plot-histograms draws to this CSV file: "
                   "a row per non-empty bucket (kmod, pipeline, caller, quantity, low, high, count); needs no "
                   "matplotlib")  # fmt: skip
    _options.output(b, csv="one row per run", wide=True)
    b.set_defaults(run=run)


def run(args: argparse.Namespace) -> str:
    """Run the coldplug under every load path asked for; the table, JSON or CSV."""
    if args.plot or args.plot_histograms:
        from vmapsim.plot import plot_path

        for image in filter(None, (args.plot, args.plot_histograms)):
            plot_path(image)  # a bad name is refused before minutes of simulation
    for path in (args.series, args.histogram_series):
        if path:
            writable(path)
    # read before the runs, as the other inputs are: a bad file (or a second '-') fails at once
    real = ModuleStats.parse(read(args.real_stats), source=label(args.real_stats)) if args.real_stats else None
    base = _options.base(args)
    scenarios = storm(base, _options.kernels(args), _options.pipelines(args))
    machine, cpus, layout = base.machine, base.run.cpus, base.run.layout
    assert machine is not None  # a coldplug's
    counts = sorted({len(s.jobs()) for s in scenarios})  # each kernel's own catalog may match other devices
    uevents = counts[-1]
    drawn = args.plot or args.plot_histograms or args.series or args.histogram_series  # each needs the Results
    done = _storm.run_all(scenarios, uevents, text=args.vmallocinfo, space=bool(args.plot), result=bool(drawn))
    parts = _storm.sections(scenarios, done)
    rows = [r for part in parts for r in part.rows]
    kmods = list(dict.fromkeys(part.kmod for part in parts))
    extras: list[dict[str, Any]] = []
    for _, peak in done:
        extra: dict[str, Any] = {}
        if args.stats:
            extra["stats"] = {**peak["stats"].to_dict(), "text": peak["stats"].render()}
        if args.vmallocinfo:
            extra["vmallocinfo"] = {k: peak[k] for k in ("window", "time", "text")}
        extras.append(extra)
    notes = _storm.notes(scenarios, parts, stats=args.stats, schedule=args.schedule)
    note(*notes)  # on stderr whatever the output; the JSON holds them too, the text those that explain rows
    timing = f"schedule {label(args.schedule)}" if args.schedule else f"seed {args.seed}"
    if drawn:
        runs: dict[int | None, dict[str, Any]] = {}
        peaks: dict[int | None, dict[str, Any]] = {}
        for s, (_, peak) in zip(scenarios, done, strict=True):
            runs.setdefault(s.kmod, {})[s.run.path.name] = peak["result"]
            if args.plot:
                peaks.setdefault(s.kmod, {})[s.run.path.name] = peak["space"]
        if args.series:
            write(args.series, report.csv_text(report.pinned_series(runs, layout)).encode())
        if args.histogram_series:
            write(args.histogram_series, report.csv_text(report.histogram_series(runs)).encode())
        title = (f"udev coldplug of {machine.name}: {report.plural(cpus, 'CPU')}, kmod "
                 f"{' and '.join(map(str, kmods))}, {timing}\n"
                 f"{_storm.kernels(_storm.paths(scenarios).values())}; modules of {_storm.catalogs(scenarios)}")
        if args.plot:
            from vmapsim.plot import pinned_over_time

            pinned_over_time(runs, args.plot, at_peak=peaks, layout=layout, title=title)
        if args.plot_histograms:
            from vmapsim.plot import allocation_histograms

            allocation_histograms(runs, args.plot_histograms, title=f"{title}\nallocations per caller over the "
                                  "boot: power-of-two buckets")  # fmt: skip
    if args.json or args.csv:
        params = {"machine": machine.name, "cpus": cpus, "ram": machine.ram, "udev_workers": base.run.workers,
                  "catalog": args.catalog or scenarios[0].catalog_name, "catalog_kernel": _storm.catalogs(scenarios),
                  "kernel": args.kernel or base.run.kernel, "pipelines": list(_storm.paths(scenarios)), "kmods": kmods,
                  "seed": args.seed, "jitter": base.arrivals, "cost_jitter": base.run.costs.jitter,
                  "layout": layout.name, "module_align": args.module_align, "images": list(args.image),
                  "schedule": args.schedule,
                  "uevents": uevents, "real_stats": args.real_stats}  # fmt: skip
        data = [{**row.to_dict(), **extra} for row, extra in zip(rows, extras, strict=True)]
        if args.json:
            real_doc = {"real_stats": real.to_dict()} if real else {}
            return report.json_text("boot", params, {"windows": {r.name: r.size for r in layout.regions},
                                                     "runs": data, **real_doc}, notes)  # fmt: skip
        if args.vmallocinfo:
            note("CSV has no room for /proc/vmallocinfo text: use --json for it")
        nested = ("pipelines", "kmods", "stats", "vmallocinfo")
        flat = [{**{k: v for k, v in {**params, **d}.items() if k not in nested}, **_storm.stats_columns(d)}
                for d in data]  # fmt: skip
        return report.csv_text(flat)
    size, w = _options.sizes(args), _storm.width(scenarios)
    events = "–".join(map(str, counts[:: len(counts) - 1 or 1]))  # a range where kernels' catalogs differ
    header = (f"udev coldplug of {machine.name}: {report.plural(cpus, 'CPU')}, {machine.ram >> 30} GiB RAM "
              f"({base.run.workers} udev workers), {_storm.catalogs(scenarios)}, {events} uevent"
              f"{'' if events == '1' else 's'} with modules, {timing}")  # fmt: skip
    lines = [*_storm.lines(header, args.wide, "# ", "#   "),
             f"# {layout.name}: modules window {size(layout.modules.size)}, vmalloc window "
             f"{size(layout.vmalloc.size)}"]  # fmt: skip
    for part in parts:
        lines += ["", *_storm.lines(report.heading(part), args.wide, "", "  "),
                  *report.table(part.rows, w, size, wide=args.wide, shared=layout.shared_modules)]
    if real is not None:
        first = [(r.pipeline, d[1]["stats"]) for r, d in zip(rows, done, strict=True) if r.kmod == kmods[0]]
        lines += ["", *report.beside(real, label(args.real_stats), first, kmods[0], size=size, wide=args.wide)]
    lines += ["", report.LEGEND, *report.path_lines(_storm.paths(scenarios), w, wide=args.wide)]
    lines += _storm.footnotes(scenarios, notes, args.wide)
    for row, extra in zip(rows, extras, strict=True):
        if "stats" in extra:
            lines.append(f"\n# /sys/kernel/debug/modules/stats after {row.pipeline}, kmod {row.kmod}\n"
                         f"{extra['stats']['text']}".rstrip("\n"))  # fmt: skip
        if "vmallocinfo" in extra:
            v = extra["vmallocinfo"]
            lines.append(f"\n# /proc/vmallocinfo of {row.pipeline}, kmod {row.kmod}, at the {v['window']} window's "
                         f"peak ({v['time'] * 1000:.3f} ms)\n{v['text']}".rstrip("\n"))  # fmt: skip
    return "\n".join(lines) + "\n"
