"""The worst-case search compared across strategies: the tables of docs/explore.md.

    python benchmarks/bench_explore.py small     # two enumerable instances: evaluations to the true maximum
    python benchmarks/bench_explore.py kasan     # 448 CPUs and a 2.4 MiB KASAN module on 6.3
    python benchmarks/bench_explore.py udev      # intel-server's udev storm at 255 CPUs on 6.3
    python benchmarks/bench_explore.py fixes     # every pipeline on the default machine: seeded vs worst

Each prints a Markdown table. Searches are deterministic for their seed, so the tables are too.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time

import attrs

from vmapsim import simulate, worst_case
from vmapsim.explore import Space
from vmapsim.loader import Request, Run
from vmapsim.loader.costs import CostModel
from vmapsim.modules import Catalog
from vmapsim.workloads import PRESETS, udev_boot, udev_workers

CAT = Catalog.builtin("debian-6.12-amd64")
STRATEGIES = ("random", "pct", "guided")


# Two enumerable instances, 729 schedules each: arrivals on a 3-instant grid, exact costs
SMALL = {
    "two modules on each of three CPUs": ([Request(m, cpu=c) for c in range(3) for m in ("loop", "dm_mod")], 3),
    "three modules on each of two CPUs": ([Request(m, cpu=c) for c in range(2) for m in ("loop", "dm_mod", "xfs")], 2),
}


def small(seeds: int) -> None:
    """Each enumerable instance: the exhaustive maximum, and the median evaluations each strategy needs to it.

    The strategies run without the seeded run as their first evaluation (``baseline=False``): here it is
    the all-at-once schedule, which would hide what each strategy finds by itself.
    """
    space = Space(slots=3, bound=0, ties=False)
    for title, (jobs, cpus) in SMALL.items():
        print(f"\n{title}\n")
        print("| kernel | metric | exhaustive maximum | schedules reaching it | " + " | ".join(STRATEGIES) + " |")
        print("|---|---|---:|---:|" + "---:|" * len(STRATEGIES))
        for kernel, metric in [("6.3", "peak_modules"), ("6.3", "wasted_bytes"), ("6.4", "peak_modules"),
                               ("6.4", "wasted_bytes"), ("6.4", "failed_becoming"), ("6.4", "failed_load"),
                               ("6.5", "peak_modules")]:  # fmt: skip
            ex = worst_case(jobs, kernel=kernel, cpus=cpus, catalog=CAT, metric=metric, budget=729,
                            strategy="exhaustive", space=space)  # fmt: skip
            cells = []
            for strategy in STRATEGIES:
                firsts = []
                for seed in range(seeds):
                    w = worst_case(jobs, kernel=kernel, cpus=cpus, catalog=CAT, metric=metric, budget=729,
                                   strategy=strategy, space=space, seed=seed, baseline=False)  # fmt: skip
                    firsts.append(w.first if w.value == ex.value else 730)
                median = statistics.median(firsts)
                cells.append(f"{median:g}" if median <= 729 else "not in 729")
            print(f"| {kernel} | {metric} | {ex.value:.0f} | {ex.hits} of {ex.evaluations} | " + " | ".join(cells)
                  + " |", flush=True)  # fmt: skip


def _row(label: str, w: object, elapsed: float) -> str:
    failures = len(w.result.failures)  # type: ignore[attr-defined]
    return (f"| {label} | {w.evaluations} | {w.value / 2**20:.1f} MiB | {w.first} | "  # type: ignore[attr-defined]
            f"{failures} | {elapsed:.0f} s |")  # fmt: skip


def kasan() -> None:
    """448 CPUs each asking for the 2.4 MiB KASAN module, uevents within 50 ms, 6.3, timed costs ±25%."""
    mod = attrs.evolve(CAT["kvm_intel"], name="big_kasan", legacy=(2494464, 311296),
                       memory=(2494464, 0, 0, 0, 311296, 0, 0))  # fmt: skip
    rng = random.Random(0)
    jobs = [Request(mod, cpu=c, time=rng.random() * 0.05) for c in range(448)]
    run = Run(kernel="6.3", cpus=448, costs=CostModel(jitter=0.25), module_align=32768)
    seeded = [simulate(jobs, attrs.evolve(run, seed=s)) for s in range(20)]
    print(f"seeded runs (20 seeds): peak {min(r.peak_pinned['modules'] for r in seeded) / 2**20:.1f}–"
          f"{max(r.peak_pinned['modules'] for r in seeded) / 2**20:.1f} MiB, "
          f"{sum(bool(r.failures) for r in seeded)} with a failure\n")  # fmt: skip
    _compare(jobs, run)


def udev() -> None:
    """intel-server's coldplug (Debian 12 userspace) at 255 CPUs on 6.3, as `vmapsim boot` runs it."""
    m = PRESETS["intel-server"]
    cat = Catalog.builtin(m.catalog)
    jobs = udev_boot(cat, m, 255, seed=0, jitter=0.05)
    run = Run(kernel="6.3", cpus=255, catalog=cat, costs=CostModel(jitter=0.25), workers=udev_workers(255, m.ram))
    seeded = [simulate(jobs, attrs.evolve(run, seed=s)).peak_pinned["modules"] for s in range(20)]
    print(f"seeded runs (20 seeds): peak {min(seeded) / 2**20:.1f}–{max(seeded) / 2**20:.1f} MiB\n")
    _compare(jobs, run)


def _compare(jobs: list[object], run: Run) -> None:
    print("| strategy | evaluations | worst peak (module window) | found at | allocation failures | time |")
    print("|---|---:|---:|---:|---:|---:|")
    for strategy, budget in [("random", 1000), ("random", 200), ("pct", 200), ("guided", 200)]:
        t = time.perf_counter()
        w = worst_case(jobs, run, budget=budget, strategy=strategy)  # type: ignore[arg-type]
        print(_row(strategy, w, time.perf_counter() - t), flush=True)


def fixes(budget: int) -> None:
    """`vmapsim boot`'s default machine and every pipeline: the seeded run's peak next to the worst found."""
    m = PRESETS["intel-server"]
    cat = Catalog.builtin(m.catalog)
    for kmod in (30, 34):
        jobs = udev_boot(cat, m, 255, seed=0, jitter=0.05, kmod=kmod)
        print(f"\nkmod {kmod}\n\n| pipeline | seeded peak | worst peak found | worst / seeded | worst failures |")
        print("|---|---:|---:|---:|---:|")
        for name in ("v6.3", "v6.4", "v6.5", "kread-dedup", "page-list", "exclusive-deny", "concurrency-limit"):
            run = Run(name, cpus=255, catalog=cat, costs=CostModel(jitter=0.25), workers=udev_workers(255, m.ram))
            seeded = simulate(jobs, run).peak_pinned["modules"]
            w = worst_case(jobs, run, budget=budget, strategy="guided")
            print(f"| {name} | {seeded / 2**20:.1f} MiB | {w.value / 2**20:.1f} MiB | {w.value / seeded:.2f} | "
                  f"{len(w.result.failures)} |", flush=True)  # fmt: skip


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("table", choices=["small", "kasan", "udev", "fixes"])
    p.add_argument("--seeds", type=int, default=10, help="seeds per strategy on the small instances")
    p.add_argument("--budget", type=int, default=50, help="guided budget per pipeline (fixes)")
    args = p.parse_args()
    if args.table == "small":
        small(args.seeds)
    elif args.table == "kasan":
        kasan()
    elif args.table == "udev":
        udev()
    else:
        fixes(args.budget)
    return 0


if __name__ == "__main__":
    sys.exit(main())
