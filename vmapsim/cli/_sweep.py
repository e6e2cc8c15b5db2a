"""``vmapsim sweep``: a grid of machines × CPUs × kernels × pipelines × kmods × seeds, and the spread."""

from __future__ import annotations

import argparse
import concurrent.futures
from pathlib import Path
from typing import Any

from vmapsim import layouts, report
from vmapsim.cli import _grid, _storm
from vmapsim.cli._io import note, optional, progress_bar, read, writable, write
from vmapsim.cli._parser import integer
from vmapsim.errors import InvalidArgument
from vmapsim.sweeps import Table, sweep
from vmapsim.workloads import find_machine

__all__ = ["add", "run"]


def add(sub: Any) -> None:
    """Register ``vmapsim sweep`` and its options."""
    sw = sub.add_parser("sweep", help="a grid of machines × CPUs × kernels × pipelines × kmods × seeds; the spread")
    _grid.options(sw)
    sw.add_argument("--executor", default="local", help="local (a process pool), serial, or dask")
    sw.add_argument("--scheduler", help="with --executor dask: a scheduler's address (default: a local cluster)")
    sw.add_argument("--workers", type=integer(1, 4096), help="worker processes (default: every CPU; dask: 2)")
    sw.add_argument("--csv", help="write every run's row to this CSV file")
    sw.add_argument("--json", help="write every run's row to this JSON file")
    sw.add_argument("--parquet", help="write every run's row to this Parquet file (needs pyarrow)")
    sw.add_argument("--plot", help="write peak and wasted bytes against CPUs to this image (needs matplotlib)")
    sw.add_argument("--series", metavar="FILE", help="write what --plot draws to this CSV file: a row per load path, "
                    "metric and CPU count (machine, kernel, pipeline, kmod, cpus, metric, median, min, max); needs no "
                    "matplotlib")  # fmt: skip
    sw.add_argument("--resume", help="a JSON file of rows: runs already in it are kept, and it is rewritten at the end")
    sw.set_defaults(run=run)


def run(args: argparse.Namespace) -> str:
    """Run the grid on the executor asked for; write the files; the cell table."""
    if args.plot:
        from vmapsim.plot import plot_path

        plot_path(args.plot)  # a bad name is refused before the runs
    if args.series:
        writable(args.series)
    grid = _grid.grid(args)
    note(*grid.notes())
    resuming = args.resume and Path(args.resume).exists()
    done = Table.from_json(read(args.resume), source=args.resume) if resuming else None
    executor: Any = args.executor
    client = cluster = None
    if args.executor == "dask":
        dask = optional("distributed", "--executor dask needs Dask: pip install 'vmapsim[sweep]'")
        if args.scheduler:
            client = dask.Client(args.scheduler)
        else:
            cluster = dask.LocalCluster(n_workers=args.workers or 2, threads_per_worker=1, processes=True,
                                        dashboard_address=None)  # fmt: skip
            client = dask.Client(cluster)
        executor = client
    elif args.executor not in ("local", "serial"):
        raise InvalidArgument(f"--executor {args.executor!r}: one of local, serial, dask")
    elif args.executor == "local" and args.workers:
        executor = concurrent.futures.ProcessPoolExecutor(args.workers)
    try:
        table = sweep(grid, executor=executor, done=done, progress=progress_bar("sweeping", "run"))
    finally:
        if client is not None:
            client.close()  # a remote scheduler and its workers stay up; a local cluster of ours goes
            if cluster is not None:
                cluster.close()
        elif isinstance(executor, concurrent.futures.Executor):
            executor.shutdown()
    for path in (args.json, args.resume):
        if path:
            write(path, table.to_json({**_grid.parameters(grid), "executor": args.executor}).encode())
    if args.csv:
        write(args.csv, table.to_csv().encode())
    if args.parquet:
        table.to_parquet(args.parquet)
    if args.series:
        write(args.series, report.csv_text(report.sweep_series(table.rows)).encode())
    if args.plot:
        from vmapsim.plot import sweep_curves

        window = layouts.by_name(grid.layout or find_machine(grid.machines[0]).layout).modules.size
        cells = dict.fromkeys((p.machine, p.kmod) for p in grid.points())  # a machine file is read once
        kmods = dict.fromkeys(str(find_machine(m).kmod if k is None else k) for m, k in cells)
        points = {(p.machine, p.kernel, p.pipeline): p for p in grid.points()}.values()
        seeds = grid.seed_list()
        seeded = f"seeds {seeds[0]}–{seeds[-1]} (median, min–max)" if len(seeds) > 1 else f"seed {seeds[0]}"
        sweep_curves(table.rows, args.plot, window=window, title=f"udev coldplug of {', '.join(grid.machines)}: "
                     f"kmod {' and '.join(kmods)}, {seeded}\n"
                     f"{_storm.kernels(p.scenario().run.path for p in points)}")  # fmt: skip
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
