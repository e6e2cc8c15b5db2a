"""``vmapsim compare``: two or more load paths on one grid: differences, ratios, and where each runs out."""

from __future__ import annotations

import argparse
import math
from typing import Any

from vmapsim import checks, report
from vmapsim.cli import _grid
from vmapsim.cli._io import note, progress_bar
from vmapsim.cli._parser import integer
from vmapsim.errors import InvalidArgument
from vmapsim.sweeps import compare, exhaustion_cpus, sweep

__all__ = ["add", "run"]


def add(sub: Any) -> None:
    """Register ``vmapsim compare`` and its options."""
    cp = sub.add_parser("compare", help="two or more kernels or pipelines on one grid: differences, ratios, exhaustion")
    _grid.options(cp)
    cp.add_argument("--executor", default="local", help="local (a process pool) or serial")
    cp.add_argument("--exhaustion", type=integer(1, checks.NR_CPUS_MAX),
                    help="also bisect, up to this many CPUs, for the fewest at which each path runs out of a window")
    fmt = cp.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="machine-readable JSON instead of the table")
    fmt.add_argument("--csv", action="store_true", help="machine-readable CSV instead of the table")
    cp.set_defaults(run=run)


def run(args: argparse.Namespace) -> str:
    """Sweep the grid, compare each load path with the first; the table, JSON or CSV."""
    grid = _grid.grid(args)
    notes = grid.notes()
    points = {(p.machine, p.kernel, p.pipeline, p.kmod): p for p in grid.points()}  # one per path and kmod
    if len({p.label for p in points.values()}) < 2:
        raise InvalidArgument("compare needs two or more load paths: give several --kernel or --pipeline values")
    executor = "serial" if args.executor == "serial" else None
    table = sweep(grid, executor=executor, progress=progress_bar("sweeping", "run"))
    rows = compare(table, args.metric)
    exhausted = []
    for p in points.values() if args.exhaustion else ():
        n = exhaustion_cpus(p.machine, kernel=p.kernel, pipeline=p.pipeline, kmod=p.kmod, seeds=len(grid.seed_list()),
                            hi=args.exhaustion, jitter=grid.jitter, cost_jitter=grid.cost_jitter,
                            module_align=grid.module_align, layout=grid.layout)  # fmt: skip
        exhausted.append({"machine": p.machine, "kmod": p.kmod, "kernel": p.kernel, "pipeline": p.pipeline,
                          "label": p.label, "cpus": n})  # fmt: skip
    if args.json:
        finite = [{**c, "ratio": c["ratio"] if math.isfinite(c["ratio"]) else None} for c in rows]  # JSON has no inf
        return report.json_text("compare", {**_grid.parameters(grid), "metric": args.metric,
                                            "exhaustion": args.exhaustion}, {"rows": finite, "exhaustion": exhausted},
                                [*notes, "ratio null: the baseline's median is 0"])  # fmt: skip
    note(*notes)
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
