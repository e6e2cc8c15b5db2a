"""``vmapsim sweep``: a grid of machines × CPUs × kernels × pipelines × kmods × seeds, and the spread."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from vmapsim import layouts, report
from vmapsim.cli import _grid, _options, _storm
from vmapsim.cli._io import note, read, writable, write
from vmapsim.loader import metric
from vmapsim.sweeps import Table
from vmapsim.sweeps.table import MAX_TABLE_BYTES
from vmapsim.workloads import find_machine

__all__ = ["add", "run"]


def add(sub: Any) -> None:
    """Register ``vmapsim sweep`` and its options."""
    sw = sub.add_parser("sweep", help="a grid of machines × CPUs × kernels × pipelines × kmods × seeds; the spread")
    _grid.options(sw)
    _options.output(sw, csv="one row per run")
    sw.add_argument("--parquet", metavar="FILE", help="also write every run's row to this Parquet file (needs "
                    "pyarrow)")  # fmt: skip
    _options.figure(sw, plot="peak and wasted bytes against CPUs per load path and kmod",
                    series="a row per load path, metric and CPU count (machine, kernel, pipeline, kmod, cpus, "
                    "metric, median, min, max)")  # fmt: skip
    sw.add_argument("--resume", metavar="FILE", help="a JSON file of rows (sweep --json -o FILE): runs already in it "
                    "are kept, and it is rewritten at the end")  # fmt: skip
    sw.set_defaults(run=run)


def run(args: argparse.Namespace) -> str:
    """Run the grid on the executor asked for; write the files; the cell table, or the rows."""
    if args.plot:
        from vmapsim.plot import plot_path

        plot_path(args.plot)  # a bad name is refused before the runs
    for path in (args.parquet, args.resume, args.series):
        if path:
            writable(path)
    grid, chosen = _grid.grid(args)
    notes = grid.notes()
    resuming = args.resume and Path(args.resume).exists()
    done = Table.from_json(read(args.resume, MAX_TABLE_BYTES), source=args.resume) if resuming else None
    if done is not None:
        grid.check_resume(done, args.resume)  # before any run, naming the file
    table = _grid.run(args, grid, done)
    params = {**grid.parameters(), "executor": args.executor}
    if args.resume:
        write(args.resume, table.to_json(params, notes).encode())
    if args.parquet:
        table.to_parquet(args.parquet)
    if args.series:
        write(args.series, report.csv_text(report.sweep_series(table.rows)).encode())
    if args.plot:
        from vmapsim.plot import sweep_curves

        window = layouts.by_name(grid.layout or find_machine(grid.machines[0]).layout).modules.size
        kmods = dict.fromkeys(str(grid.kmod_of(p.machine, p.kmod)) for p in grid.points())
        points = {(p.machine, p.kernel, p.pipeline): p for p in grid.points()}.values()
        seeds = grid.seed_list()
        seeded = f"seeds {seeds[0]}–{seeds[-1]} (median, min–max)" if len(seeds) > 1 else f"seed {seeds[0]}"
        sweep_curves(table.rows, args.plot, window=window, title=f"udev coldplug of {', '.join(grid.machines)}: "
                     f"kmod {' and '.join(kmods)}, {seeded}\n"
                     f"{_storm.kernels(p.scenario().run.path for p in points)}")  # fmt: skip
    note(*notes)
    if args.json:
        return table.to_json(params, notes)
    if args.csv:
        return table.to_csv()
    value = _options.amounts(args, metric(chosen).unit)

    cells = table.cells(chosen)
    shown = [(c, [value(c["min"]), value(c["median"]), value(c["max"]),
                  f"{value(c['mean'])} ± {value((c['ci95'][1] - c['ci95'][0]) / 2)}"]) for c in cells]  # fmt: skip
    wm = max(7, *(len(c["machine"]) for c in cells))
    wp = max(8, *(len(c["pipeline"]) for c in cells))
    wv = max(6, *(len(v) for _, vs in shown for v in vs[:3]))
    ws = max(10, *(len(vs[3]) for _, vs in shown))
    lines = [
        *report.wrap(f"sweep of {report.plural(len(grid), 'run')} ({', '.join(grid.machines)}; CPUs "
                     f"{', '.join(map(str, grid.cpus))}; {report.plural(len(grid.seed_list()), 'seed')} each), "
                     f"{chosen} per cell: min / median / max, mean and its 95% interval", "# ", "#   "),
        f"{'machine':{wm}} {'cpus':>4} {'kmod':>4} {'pipeline':{wp}} {'min':>{wv}} {'median':>{wv}} {'max':>{wv}} "
        f"{'mean ± 95%':>{ws}}",
    ]  # fmt: skip
    for c, (lo, mid, hi, mean) in shown:
        lines.append(f"{c['machine']:{wm}} {c['cpus']:4d} {grid.kmod_of(c['machine'], c['kmod']):4d} "
                     f"{c['pipeline']:{wp}} {lo:>{wv}} {mid:>{wv}} {hi:>{wv}} {mean:>{ws}}")  # fmt: skip
    return "\n".join(lines) + "\n"
