"""The event engine beside SimPy on the same toy: 1000 tasks, each sleeping 100 times.

    pip install simpy && python benchmarks/bench_engine.py [--tasks 1000] [--steps 100] [--repeat 5]

Each task yields a delay drawn up front from a seeded list (so both engines see
the same times and the heap does real work); events/s counts resumptions.
SimPy is a benchmark-only dependency: vmapsim never imports it.  Prints a
Markdown table with the ratio; speed lives here, never in the tests.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vmapsim.engine import Delay, Engine


def delays(tasks: int, steps: int, kind: str) -> list[list[float]]:
    """``constant``: every task sleeps 1.0 each time (SimPy's classic toy); ``varied``: 4 lengths, seeded."""
    rng = random.Random(0)
    if kind == "constant":
        return [[1.0] * steps for _ in range(tasks)]
    return [[rng.choice((0.5, 1.0, 1.5, 2.0)) for _ in range(steps)] for _ in range(tasks)]


def run_vmapsim(plan: list[list[float]]) -> float:
    eng = Engine()

    def task(ds: list[float]):  # type: ignore[no-untyped-def]
        for d in ds:
            yield Delay(d)

    for ds in plan:
        eng.spawn(task(ds))
    eng.run()
    return eng.now


def run_simpy(plan: list[list[float]]) -> float:
    import simpy

    env = simpy.Environment()

    def task(ds: list[float]):  # type: ignore[no-untyped-def]
        for d in ds:
            yield env.timeout(d)

    for ds in plan:
        env.process(task(ds))
    env.run()
    return float(env.now)


def best(fn: Callable[[list[list[float]]], float], plan: list[list[float]], repeat: int) -> tuple[float, float]:
    times = []
    end = 0.0
    for _ in range(repeat):
        t0 = time.perf_counter()
        end = fn(plan)
        times.append(time.perf_counter() - t0)
    return min(times), end


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", type=int, default=1000)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--repeat", type=int, default=5, help="runs per engine; the best is reported")
    args = p.parse_args()
    events = args.tasks * args.steps
    print(f"| delays | {args.tasks} tasks × {args.steps} | vmapsim events/s | SimPy events/s | vmapsim / SimPy |")
    print("|---|---|---:|---:|---:|")
    for kind in ("constant", "varied"):
        plan = delays(args.tasks, args.steps, kind)
        ours, end_ours = best(run_vmapsim, plan, args.repeat)
        theirs, end_simpy = best(run_simpy, plan, args.repeat)
        assert end_ours == end_simpy, (end_ours, end_simpy)  # the same simulation, the same last instant
        print(f"| {kind} | best of {args.repeat} | {events / ours:,.0f} | {events / theirs:,.0f} | "
              f"{theirs / ours:.2f}x |")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
