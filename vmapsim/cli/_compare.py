"""``vmapsim compare``: two or more load paths on one grid: differences, ratios, and where each runs out."""

from __future__ import annotations

import argparse
from typing import Any

from vmapsim import checks, report
from vmapsim.cli import _grid, _options
from vmapsim.cli._io import note
from vmapsim.cli._parser import integer
from vmapsim.errors import InvalidArgument
from vmapsim.loader import metric
from vmapsim.sweeps import compare, exhaustion_cpus

__all__ = ["add", "run"]

#: What the text, CSV and JSON say where a ratio means nothing.
_NO_RATIO = "ratio n/a (null in JSON, empty in CSV): the baseline's median is 0"


def add(sub: Any) -> None:
    """Register ``vmapsim compare`` and its options."""
    cp = sub.add_parser("compare", help="two or more kernels or pipelines on one grid: differences, ratios, exhaustion")
    _grid.options(cp)
    cp.add_argument("--exhaustion", type=integer(1, checks.NR_CPUS_MAX),
                    help="also bisect, up to this many CPUs, for the fewest at which each path runs out of a window")
    _options.output(cp, csv="one row per cell and load path")
    cp.set_defaults(run=run)


def run(args: argparse.Namespace) -> str:
    """Sweep the grid, compare each load path with the first; the table, JSON or CSV."""
    grid, chosen = _grid.grid(args)
    notes = grid.notes()
    points = {(p.machine, p.kernel, p.pipeline, p.kmod): p for p in grid.points()}  # one per path and kmod
    if len({p.label for p in points.values()}) < 2:
        raise InvalidArgument("compare needs two or more load paths: give several --kernel or --pipeline values")
    table = _grid.run(args, grid)
    rows = compare(table, chosen)
    exhausted: list[dict[str, Any]] = []
    for p in points.values() if args.exhaustion else ():
        n = exhaustion_cpus(p.machine, kernel=p.kernel, pipeline=p.pipeline, kmod=p.kmod, seeds=len(grid.seed_list()),
                            hi=args.exhaustion, jitter=grid.jitter, cost_jitter=grid.cost_jitter,
                            module_align=grid.module_align, layout=grid.layout)  # fmt: skip
        exhausted.append({"machine": p.machine, "kmod": p.kmod, "kernel": p.kernel, "pipeline": p.pipeline,
                          "label": p.label, "cpus": n})  # fmt: skip
    if any(c["ratio"] is None for c in rows):
        notes.append(_NO_RATIO)
    note(*notes)
    if args.json:
        return report.json_text("compare", {**grid.parameters(), "metric": chosen,
                                            "exhaustion": args.exhaustion}, {"rows": rows, "exhaustion": exhausted},
                                notes)  # fmt: skip
    if args.csv:  # one row per cell and load path; with --exhaustion, each path's CPU count in its own column
        at = {(e["machine"], e["kmod"], e["label"]): e["cpus"] for e in exhausted}
        return report.csv_text([{**c, **({"exhaustion_cpus": at.get((c["machine"], c["kmod"], c["pipeline"]))}
                                        if args.exhaustion else {})} for c in rows])  # fmt: skip
    value = _options.amounts(args, metric(chosen).unit)

    shown = [(c, value(c["baseline_median"]), value(c["median"]),
              ("+" if c["difference"] > 0 else "") + value(c["difference"])) for c in rows]  # fmt: skip
    wm = max(7, *(len(c["machine"]) for c in rows))
    wp = max(8, *(len(c["pipeline"]) for c in rows), *(len(c["baseline"]) + 11 for c in rows))
    wv = max(10, *(len(v) for _, *vs in shown for v in vs))
    lines = [
        *report.wrap(f"{chosen}: each load path's median over {report.plural(len(grid.seed_list()), 'seed')} "
                     "beside the baseline's (each cell's first load path)", "# ", "#   "),
        f"{'machine':{wm}} {'cpus':>4} {'kmod':>4} {'pipeline':{wp}} {'median':>{wv}} {'difference':>{wv}} "
        f"{'ratio':>6}",
    ]  # fmt: skip
    cell = None
    for c, base, median, difference in shown:
        kmod = grid.kmod_of(str(c["machine"]), c["kmod"])
        key = (c["machine"], c["cpus"], kmod)
        lead = f"{c['machine']:{wm}} {c['cpus']:4d} {kmod:4d}"
        if key != cell:  # the baseline's own median, once per cell
            lines.append(f"{lead} {c['baseline'] + ' (baseline)':{wp}} {base:>{wv}}")
            cell = key
        ratio = "n/a" if c["ratio"] is None else f"{c['ratio']:.3f}"
        lines.append(f"{lead} {c['pipeline']:{wp}} {median:>{wv}} {difference:>{wv}} {ratio:>6}")
    if args.exhaustion:
        lines += ["", *report.wrap(f"where a window starts to run out (up to {args.exhaustion} CPUs), found by "
                                   "bisection: that many CPUs fail, one fewer does not", "# ", "#   ")]  # fmt: skip
        lines += [f"{e['machine']:{wm}} kmod {grid.kmod_of(e['machine'], e['kmod']):4d} {e['label']:{wp}} "
                  f"{e['cpus'] or 'none':>6}" for e in exhausted]  # fmt: skip
    return "\n".join(lines) + "\n"
