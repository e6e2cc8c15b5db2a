"""The options of a sweep's grid (``sweep`` and ``compare``) and the :class:`~vmapsim.sweeps.Grid` they make."""

from __future__ import annotations

import argparse
import concurrent.futures
from typing import Any

from vmapsim import layouts
from vmapsim.checks import NR_CPUS_MAX, parse_number, show
from vmapsim.cli._io import names, optional, progress_bar, workers
from vmapsim.cli._parser import finite, integer, kernel_versions
from vmapsim.errors import InvalidArgument
from vmapsim.loader import METRICS, default_metric, metric_on
from vmapsim.sweeps import MAX_RUNS, Grid, Table, sweep
from vmapsim.workloads import find_machine
from vmapsim.workloads.kmod import KMOD_NEWEST

__all__ = ["cpu_list", "grid", "options", "run"]


def options(p: argparse.ArgumentParser) -> None:
    """Register the grid's options."""
    p.add_argument("--machine", default="intel-server", help="machines, comma-separated: presets or machine files")
    p.add_argument("--cpus", default="255", help="CPU counts: 8,16,32 or ranges 8-64:8, mixed")
    p.add_argument("--kernel", type=kernel_versions, help="kernel versions, comma-separated (default: a machine "
                   "file's release, else the released paths)")  # fmt: skip
    p.add_argument("--pipeline", default="all", help="pipelines, comma-separated, or 'all' (as vmapsim boot: the "
                   "released paths and the proposals; with --kernel, each kernel's own path and the proposals)")
    p.add_argument("--kmod", help="kmod versions, comma-separated ('machine': the machine's; default)")
    p.add_argument("--seeds", type=integer(1, 100_000), default=5, help="seeds per cell")
    p.add_argument("--jitter", type=finite(0), help="uevent arrivals spread over this many seconds (default: each "
                   "machine's calibrated value, else 0.05)")  # fmt: skip
    p.add_argument("--cost-jitter", type=finite(0, 0.99), help="stage durations vary by this fraction (default: "
                   "each machine's calibrated value, else 0.25)")  # fmt: skip
    p.add_argument("--module-align", type=integer(4096, 1 << 30), default=4096, help="MODULE_ALIGN")
    p.add_argument("--layout", help="a layout name in place of the machine's own")
    p.add_argument("--metric", help=f"the metric of the cell table: {', '.join(METRICS)} (default: peak_modules; "
                   "peak_vmalloc where modules share the vmalloc window)")  # fmt: skip
    p.add_argument("--executor", default="local", help="local (a process pool), serial, or dask")
    p.add_argument("--scheduler", help="with --executor dask: a scheduler's address (default: a local cluster)")
    p.add_argument("--workers", type=integer(1, 4096), help="worker processes (default: every usable CPU; dask: 2; "
                   "at most the usable CPUs)")  # fmt: skip
    p.add_argument("--max-runs", type=integer(1), default=MAX_RUNS, help=f"refuse a grid of more runs than this "
                   f"(default: {MAX_RUNS})")  # fmt: skip


def cpu_list(text: str) -> tuple[int, ...]:
    """``8,16,32`` or ranges ``8-64:8`` (start-stop:step, stop included), mixed; each a CPU count from 1 to
    :data:`~vmapsim.checks.NR_CPUS_MAX`, checked before any range is built (so a huge one costs nothing).
    Runtime complexity: O(CPU counts listed), at most O(NR_CPUS_MAX) per range."""
    out: list[int] = []
    for part in text.split(","):
        span, colon, step = part.partition(":")
        lo, dash, hi = span.partition("-")
        if colon and not dash:
            raise InvalidArgument(f"--cpus {show(text)}: {show(part)} is not a CPU count or a range like 8-64:8")
        what = f"--cpus {show(text)}: a CPU count"
        first, last = (parse_number(x, what=what, decimal=True, lo=1, hi=NR_CPUS_MAX) for x in (lo, hi if dash else lo))
        out += range(first, last + 1, parse_number(step if colon else "1", what=f"--cpus {show(text)}: a step",
                                                   decimal=True, lo=1))
    if not out:
        raise InvalidArgument(f"--cpus {text!r}: no CPU counts")
    return tuple(out)


def grid(args: argparse.Namespace) -> tuple[Grid, str]:
    """The Grid the options describe, and the metric of its table (``--metric``, else the first layout's
    :func:`~vmapsim.loader.default_metric`; refused on a layout where it means nothing)."""
    if args.metric is not None and args.metric not in METRICS:
        raise InvalidArgument(f"unknown metric {args.metric!r}: one of {', '.join(METRICS)}")
    if args.executor not in ("local", "serial", "dask"):
        raise InvalidArgument(f"--executor {args.executor!r}: one of local, serial, dask")
    kmods: tuple[int | None, ...] = (None,)
    if args.kmod:
        kmods = tuple(None if k == "machine" else parse_number(k, what=f"--kmod {show(args.kmod)}: a kmod release "
                      "or 'machine'", decimal=True, lo=1, hi=KMOD_NEWEST) for k in args.kmod.split(","))  # fmt: skip
    g = Grid(machines=tuple(args.machine.split(",")), cpus=cpu_list(args.cpus), kernels=names(args.kernel),
                pipelines="all" if args.pipeline == "all" else names(args.pipeline), kmods=kmods, seeds=args.seeds,
                jitter=args.jitter, cost_jitter=args.cost_jitter, module_align=args.module_align,
                layout=args.layout, max_runs=args.max_runs)  # fmt: skip
    windows = [layouts.by_name(g.layout or find_machine(machine).layout) for machine in g.machines]
    chosen = args.metric or default_metric(windows[0])
    for layout in windows:
        metric_on(chosen, layout)
    return g, chosen


def run(args: argparse.Namespace, g: Grid, done: Table | None = None) -> Table:
    """Sweep ``g`` on the executor the options ask for (``done``: rows kept from an earlier sweep), with a
    progress bar on a terminal; a Dask cluster of our own, or a pool, is shut down after."""
    executor: Any = args.executor
    client = cluster = None
    count = workers(args.workers)
    if args.executor == "dask":
        dask = optional("distributed", "--executor dask needs Dask: pip install '.[sweep]'")
        if args.scheduler:
            client = dask.Client(args.scheduler)
        else:
            cluster = dask.LocalCluster(n_workers=count or 2, threads_per_worker=1, processes=True,
                                        dashboard_address=None)  # fmt: skip
            client = dask.Client(cluster)
        executor = client
    elif args.executor == "local" and count:
        executor = concurrent.futures.ProcessPoolExecutor(count)
    try:
        return sweep(g, executor=executor, done=done, progress=progress_bar("sweeping", "run"))
    finally:
        if client is not None:
            client.close()  # a remote scheduler and its workers stay up; a local cluster of ours goes
            if cluster is not None:
                cluster.close()
        elif isinstance(executor, concurrent.futures.Executor):
            executor.shutdown()

