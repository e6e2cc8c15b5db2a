"""Sweeps: executors against serial, the per-run overhead, and the curves of docs/sweep.md.

    python benchmarks/bench_sweep.py executors   # a 400-run grid: serial, 2 processes, a 2-worker LocalCluster
    python benchmarks/bench_sweep.py curves      # R3: wasted bytes against CPUs, before and after 6.4
    python benchmarks/bench_sweep.py exhaustion  # where each path runs out (bisection), big-machine presets

Run on an otherwise idle machine: the executor table is wall-clock time.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import statistics
import sys
import time

from vmapsim.sweeps import Grid, Point, exhaustion_cpus, run_point, sweep

#: 8 CPU counts × 5 pipelines × 10 seeds on the qemu-kvm preset.
GRID_400 = Grid(machines=("qemu-kvm",), cpus=(8, 16, 24, 32, 40, 48, 56, 64),
                pipelines=("v6.3", "v6.4", "v6.5", "kread-dedup", "page-list"), seeds=10)  # fmt: skip


def executors() -> None:
    import distributed

    rows = []
    t = time.perf_counter()
    serial = sweep(GRID_400, executor="serial")
    base = time.perf_counter() - t
    rows.append(("serial (this process)", base, True))
    with concurrent.futures.ProcessPoolExecutor(2) as pool:
        t = time.perf_counter()
        same = sweep(GRID_400, executor=pool) == serial
        rows.append(("process pool, 2 workers", time.perf_counter() - t, same))
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
    with cluster, distributed.Client(cluster) as client:
        t = time.perf_counter()
        same = sweep(GRID_400, executor=client) == serial
        rows.append(("Dask LocalCluster, 2 workers", time.perf_counter() - t, same))
    print(f"{len(GRID_400)} runs\n\n| executor | wall time | speed-up | identical to serial |\n|---|---:|---:|---|")
    for name, seconds, same in rows:
        print(f"| {name} | {seconds:.1f} s | {base / seconds:.2f}× | {'yes' if same else 'NO'} |")
    # per-run overhead of the executor path: one 255-CPU boot alone vs through a 1-worker pool
    point = Point("intel-server", 255, None, "v6.3", None, 0)
    alone = statistics.median(_timed(lambda: run_point(point)) for _ in range(3))
    with concurrent.futures.ProcessPoolExecutor(1) as pool:
        pool.submit(run_point, point).result()  # the worker has loaded its catalog
        through = statistics.median(_timed(lambda: pool.submit(run_point, point).result()) for _ in range(3))
    print(f"\none 255-CPU boot: {alone:.3f} s alone, {through:.3f} s through a process pool: overhead "
          f"{(through - alone) / alone * 100:+.1f}%")  # fmt: skip
    print(f"a 10,000-run grid of such boots: {10_000 * alone / 3600:.1f} h of one core, "
          f"{10_000 * alone / 3600 / 2:.1f} h on this 2-core machine, {10_000 * alone / 3600 / 64 * 60:.0f} min "
          f"on 64 Dask workers")  # fmt: skip


def _timed(fn: object) -> float:
    t = time.perf_counter()
    fn()  # type: ignore[operator]
    return time.perf_counter() - t


def curves() -> None:
    grid = Grid(machines=("intel-server",), cpus=(16, 32, 64, 128, 255), pipelines=("v6.3", "v6.4"), seeds=5)
    table = sweep(grid)
    print("| CPUs | v6.3 wasted (median) | v6.4 wasted (median) | v6.4 / v6.3 | v6.3 seed spread (min–max) |")
    print("|---:|---:|---:|---:|---:|")
    cells = {(c["cpus"], c["pipeline"]): c for c in table.cells("wasted_bytes")}
    for cpus in grid.cpus:
        a, b = cells[cpus, "v6.3"], cells[cpus, "v6.4"]
        print(f"| {cpus} | {a['median'] / 2**20:.0f} MiB | {b['median'] / 2**20:.0f} MiB | "
              f"{b['median'] / a['median']:.2f} | {a['min'] / 2**20:.0f}–{a['max'] / 2**20:.0f} MiB |")  # fmt: skip


EXHAUSTION_PIPELINES = ("v6.3", "v6.4", "v6.5", "kread-dedup", "page-list", "exclusive-deny", "concurrency-limit")


def exhaustion() -> None:
    # kmod 30 (Debian 12: init_module) and kmod 34 (Debian 13: finit_module of the compressed file) on the
    # big Intel preset, the other big-machine presets with their own kmod, then i386's 120 MiB window
    rows = [("intel-server", 30, None), ("intel-server", 34, None), ("amd-server", None, None),
            ("arm64-server", None, None), ("intel-server-trixie-backports", None, None),
            ("intel-server", 30, "i386"), ("intel-server", 34, "i386")]  # fmt: skip
    print("| machine | kmod | window | " + " | ".join(EXHAUSTION_PIPELINES) + " | time |")
    print("|---|---:|---|" + "---:|" * (len(EXHAUSTION_PIPELINES) + 1), flush=True)
    for machine, kmod, layout in rows:
        t = time.perf_counter()
        cells = []
        for pipeline in EXHAUSTION_PIPELINES:
            n = exhaustion_cpus(machine, pipeline=pipeline, kmod=kmod, hi=4096, layout=layout)
            cells.append(str(n) if n else "none")
        shown = kmod if kmod is not None else "preset's"
        print(f"| {machine} | {shown} | {layout or 'own'} | " + " | ".join(cells) +
              f" | {time.perf_counter() - t:.0f} s |", flush=True)  # fmt: skip


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("table", choices=["executors", "curves", "exhaustion"])
    {"executors": executors, "curves": curves, "exhaustion": exhaustion}[p.parse_args().table]()
    return 0


if __name__ == "__main__":
    sys.exit(main())
