"""``vmapsim worst``: search a coldplug's arrival times, stage durations and tie-breaks for its worst case."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import tempfile
import time
from collections.abc import Iterator
from typing import Any

import attrs

from vmapsim import report
from vmapsim.cli import _options
from vmapsim.cli._io import duration, note, progress_bar, writable, write
from vmapsim.cli._parser import finite, integer
from vmapsim.errors import InvalidArgument
from vmapsim.explore import STRATEGIES, Space, worst_case
from vmapsim.loader import METRICS, default_metric, metric, metric_on

__all__ = ["LARGE_BUDGET", "add", "run"]

#: From this many schedules on, ``worst`` states the search's estimated time before it starts.
LARGE_BUDGET = 1000


def add(sub: Any) -> None:
    """Register ``vmapsim worst`` and its options."""
    wc = sub.add_parser("worst", help="search arrival times, stage durations and tie-breaks for a storm's worst case")
    _options.coldplug(wc, one_path=True)
    wc.add_argument("--metric", help=f"what to maximise: {', '.join(METRICS)} (default: peak_modules; peak_vmalloc "
                    "where modules share the vmalloc window)")  # fmt: skip
    wc.add_argument("--strategy", default="guided", help="guided, random, pct or exhaustive")
    wc.add_argument("--budget", type=integer(1, 10**6), default=100, help="schedules to run")
    wc.add_argument("--goal", type=finite(-1e300), help="stop at the first schedule whose metric reaches this")
    wc.add_argument("--span", type=finite(0), help="arrivals within this many seconds (default: the uevents' own)")
    wc.add_argument("--slots", type=integer(1, 1 << 16), help="arrivals on a grid of this many instants")
    wc.add_argument("--no-ties", action="store_true", help="do not search the tie-breaks (FIFO)")
    wc.add_argument("--save", metavar="FILE", help="write the worst schedule to this file (JSON)")
    _options.output(wc, csv="the best value after each of the marked evaluations")
    wc.set_defaults(run=run)


@contextlib.contextmanager
def _hypothesis_storage(strategy: str) -> Iterator[None]:
    """Hypothesis' storage in a directory of the guided search's own, removed after it.

    Hypothesis keeps a cache of the constants in the program's local modules under ``.hypothesis`` in the
    current directory; the command should leave no such directory where it was run.  A user's
    ``HYPOTHESIS_STORAGE_DIRECTORY`` is left to Hypothesis, as are the other strategies (no Hypothesis).
    Afterwards Hypothesis' default applies again (a home set by a program calling :func:`main` is not kept).
    """
    if strategy != "guided" or os.environ.get("HYPOTHESIS_STORAGE_DIRECTORY"):
        yield
        return
    from hypothesis.configuration import set_hypothesis_home_dir

    with tempfile.TemporaryDirectory(prefix="vmapsim-hypothesis-") as home:
        set_hypothesis_home_dir(home)
        try:
            yield
        finally:
            set_hypothesis_home_dir(None)


def _plain(x: float) -> int | float:
    """A figure as JSON holds it: whole numbers without a fractional part (as the CSV prints them)."""
    return int(x) if x == int(x) else x


def run(args: argparse.Namespace) -> str:
    """Search the coldplug's schedules; the best-so-far table, JSON, and the schedule saved."""
    if args.metric is not None:
        metric(args.metric)  # an unknown name is refused before the search
    if args.save:
        writable(args.save)
    if args.strategy not in STRATEGIES:
        raise InvalidArgument(f"unknown strategy {args.strategy!r}: one of {', '.join(STRATEGIES)}")
    if (args.pipeline is not None and "," in args.pipeline) or (args.kernel is not None and "," in args.kernel):
        raise InvalidArgument("worst searches one load path: give one --kernel and at most one --pipeline")
    s = _options.scenario(args, kernel=args.kernel, pipeline=args.pipeline)
    if args.pipeline is None and s.run.kernel is None:  # no kernel: 6.3's path, the storm before the fixes
        s = attrs.evolve(s, pipeline="v6.3")
    chosen = metric_on(args.metric or default_metric(s.run.layout), s.run.layout)
    notes = list(s.notes)
    if args.stats and (old := report.stats_note([s.run.path])):
        notes.append(old)
    note(*notes)
    machine, jobs, label = s.machine, s.jobs(), s.run.path.name
    assert machine is not None  # a coldplug's
    kmod = s.kmod if s.kmod is not None else machine.kmod
    space = Space(span=args.span, slots=args.slots, bound=s.run.costs.jitter, ties=not args.no_ties)
    if args.budget >= LARGE_BUDGET:  # one run, timed, says what the search will cost before it starts
        started = time.monotonic()
        s.simulate()
        each = time.monotonic() - started
        note(f"--budget {args.budget}: about {duration(each * args.budget)} ({each:.2g} s a schedule, as this "
             "coldplug's run took); a smaller --budget, or --goal, stops sooner")  # fmt: skip
    bar = progress_bar("searching", "schedule")
    with _hypothesis_storage(args.strategy):
        w = worst_case(jobs, s.run, metric=chosen, budget=args.budget, strategy=args.strategy, space=space,
                       seed=args.seed, goal=args.goal, progress=lambda d, t, _: bar(d, t))  # fmt: skip

    value = _options.amounts(args, chosen.unit)
    if args.save:
        write(args.save, (w.schedule.to_json() + "\n").encode())
    seeded = w.values[0]  # worst_case() runs the seeded run first
    best = w.best_so_far()
    marks = sorted({n for n in (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000) if n < len(best)} | {len(best)})
    if args.json:
        v = sorted(w.values)
        params = {"machine": machine.name, "cpus": s.run.cpus, "catalog": args.catalog or s.catalog_name,
                  "catalog_kernel": s.catalog_used.kernel, "kernel": s.run.kernel, "pipeline": label, "kmod": kmod,
                  "images": list(args.image),
                  "metric": w.metric, "strategy": w.strategy, "seed": args.seed, "budget": args.budget,
                  "goal": args.goal, "span": args.span, "slots": args.slots, "ties": not args.no_ties,
                  "jitter": s.arrivals, "cost_jitter": s.run.costs.jitter, "layout": s.run.layout.name,
                  "module_align": args.module_align}  # fmt: skip
        data = {"worst": _plain(w.value), "seeded_run": _plain(seeded), "evaluations": w.evaluations,
                "first": w.first, "hits": w.hits, "min": _plain(v[0]), "median": _plain(statistics.median(v)),
                "allocation_failures": len(w.result.failures),
                "best_so_far": {str(n): _plain(best[n - 1]) for n in marks},
                "schedule": json.loads(w.schedule.to_json())}  # fmt: skip
        if args.stats:
            data["stats"] = {**w.result.stats.to_dict(), "text": w.result.stats.render()}
        return report.json_text("worst", params, data, notes)
    if args.csv:
        return report.csv_text([{"evaluations": n, "metric": w.metric,
                                 "best_so_far": report.amount(best[n - 1], chosen.unit, raw=True)} for n in marks])
    lines = [
        *report.wrap(f"worst {w.metric} of the udev coldplug of {machine.name} with "
                     f"{report.plural(s.run.cpus, 'CPU')}, {label}, kmod {kmod}, "
                     f"{report.plural(len(jobs), 'uevent')} with modules; {w.strategy} search, budget {args.budget}, "
                     f"seed {args.seed}",
                     "# ", "#   "),
        f"{'evaluations':>11} {'best so far':>14}",
        *(f"{n:11d} {value(best[n - 1]):>14}" for n in marks),
        *report.wrap(w.summary(value), "", "  "),
        f"the seeded run (--seed {args.seed}): {value(seeded)}; the worst: {value(w.value)}"
        + (f", {report.plural(len(w.result.failures), 'allocation failure')}" if w.result.failures else ""),
    ]
    if args.save:
        lines.append(f"saved to {args.save}: replay with vmapsim boot --schedule {args.save} and the same options")
    if args.stats:
        lines.append(f"\n# /sys/kernel/debug/modules/stats of the worst schedule\n{w.result.stats.render()}")
    return "\n".join(lines) + "\n"
