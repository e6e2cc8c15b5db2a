"""What ``boot`` and ``load`` share: run a storm's scenarios (forked where worth it), group them into
sections, and lay out the text, JSON and CSV views the report code draws."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import attrs

from vmapsim import procfs, report
from vmapsim.cli._io import fork_map, label, progress_bar
from vmapsim.loader import Pipeline
from vmapsim.report import Section
from vmapsim.scenario import Scenario, distinct

__all__ = ["catalogs", "footnotes", "kernels", "lines", "notes", "paths", "run_all", "sections",
           "stats_columns", "width"]


def _evaluate(task: tuple[Scenario, bool, bool, bool]) -> tuple[dict[str, Any], dict[str, Any]]:
    """One scenario's run (and, when asked, its rerun to the peak): its figures, its stats and, for a
    figure or its series, the Result (without its space) and the space at the peak; the figures alone
    travel cheaply."""
    s, want_text, want_space, want_result = task
    r = s.simulate()
    peak: dict[str, Any] = {"stats": r.stats, "result": attrs.evolve(r, space=None) if want_result else None}
    if want_text or want_space:
        # Runs are deterministic: rerun up to the instant the window peaked to see the space then.
        window = "modules" if "modules" in r.peak_time else "vmalloc"
        at = r.peak_time.get(window, 0.0)
        space = s.simulate(until=at).space
        assert space is not None  # simulate() always returns its space
        peak |= {"window": window, "time": at, "space": space if want_space else None,
                 "text": procfs.render_vmallocinfo(space) if want_text else None}  # fmt: skip
    return report.figures(r), peak


def run_all(scenarios: Sequence[Scenario], jobs: int, *, text: bool = False, space: bool = False,
            result: bool = False) -> list[Any]:  # fmt: skip
    """Each scenario's (figures, peak) in order, the peak with the ``result`` and the ``space`` there when
    asked; ``jobs`` is one run's job count (whether forking pays)."""
    for s in scenarios:  # each workload's jobs built once, here: forked workers inherit them
        s.jobs()
    firsts = distinct(scenarios)  # a run its jobs cannot tell from an earlier one's is that one's
    # the longest first, so that no worker is left with a long run at the end: paths without 6.4's early
    # check allocate every duplicate's module memory
    own = sorted(set(firsts), key=lambda i: (scenarios[i].run.path.early_check, i))
    results = fork_map(_evaluate, [(scenarios[i], text, space, result) for i in own], progress_bar("simulating", "run"),
                       work=jobs * len(own))  # fmt: skip
    done = dict(zip(own, results, strict=True))
    out = []
    for s, i in zip(scenarios, firsts, strict=True):
        figures, peak = done[i]
        if peak["result"] is not None:
            peak = {**peak, "result": attrs.evolve(peak["result"], pipeline=s.run.path.name)}
        out.append((dict(figures), peak))
    return out


def sections(scenarios: Sequence[Scenario], done: Sequence[Any], *, by_files: bool = True) -> list[Section]:
    """The storm's sections, in the scenarios' order: one per kmod and what it did with the files (the
    syscall, and whether they were compressed: kernels on catalogs of their own may differ), each with its
    rows and verdicts.  Without ``by_files`` (``load``: the syscall is the user's) one section per kmod."""
    keys = [(s.kmod, s.syscall, s.compressed if by_files else None) for s in scenarios]
    out = []
    for key in dict.fromkeys(keys):
        kmod, syscall = key[0], key[1]
        mine = [(s, d) for s, d, k in zip(scenarios, done, keys, strict=True) if k == key]
        compressed = mine[0][0].compressed
        runs = [(s.run.path.name, s.run.path, d[0]) for s, d in mine]
        out.append(Section(kmod, syscall, compressed, tuple(report.storm_rows(kmod, syscall, runs)),
                           tuple(s.run.path for s, _ in mine)))  # fmt: skip
    return out


def width(scenarios: Sequence[Scenario]) -> int:
    """The pipeline column's width."""
    return max(18, *(len(s.run.path.name) for s in scenarios))


def paths(scenarios: Sequence[Scenario]) -> dict[str, Any]:
    """Each distinct load path by its label, in order."""
    return {s.run.path.name: s.run.path for s in scenarios}


def notes(scenarios: Sequence[Scenario], parts: Sequence[Section], *, stats: bool = False,
          schedule: str | None = None) -> list[str]:  # fmt: skip
    """The footnotes: kernels run on another release's catalog, init_module(2) sections, equal sections,
    a layout whose modules share the vmalloc window, ``stats`` of kernels without CONFIG_MODULE_STATS,
    and what a replayed ``schedule`` (its file) fixes."""
    said = [n for s in scenarios for n in s.notes]
    if schedule:
        said.append(f"replaying the schedule {label(schedule)} (vmapsim worst --save): its arrivals, stage "
                    f"durations and tie-breaks replace the seed's; a schedule fixes one storm's jobs, so only kmod "
                    f"{scenarios[0].kmod} runs (give worst's own options, --kmod included)")  # fmt: skip
    layout = scenarios[0].run.layout
    if layout.shared_modules:
        said.append(f"modules load in the vmalloc window on {layout.name} (MODULES_VADDR is VMALLOC_START): "
                    "their peak is part of peak vmalloc, and peak_modules is 0")  # fmt: skip
    if stats and (n := report.stats_note([s.run.path for s in scenarios])):
        said.append(n)
    said += [n for s in parts if (n := report.init_module_note(s, parts))]
    return list(dict.fromkeys(said + report.same_sections(parts)))


def footnotes(scenarios: Sequence[Scenario], notes: Sequence[str], wide: bool) -> list[str]:
    """The table's last lines: each of ``notes`` but the scenarios' own (which went to stderr, when they were
    resolved), wrapped unless ``wide``."""
    own = {n for s in scenarios for n in s.notes}
    return [line for n in notes if n not in own for line in lines(n, wide, "note: ", "      ")]


def stats_columns(run: dict[str, Any]) -> dict[str, Any]:
    """A run's CONFIG_MODULE_STATS counters as CSV columns (``stats_<counter>``; not the duplicates table)."""
    stats = run.get("stats", {})
    return {f"stats_{k}": v for k, v in stats.items() if isinstance(v, int)}


def catalogs(scenarios: Sequence[Scenario]) -> str:
    """The catalogs the scenarios run on, by kernel release."""
    return " and ".join(dict.fromkeys(s.catalog_used.kernel for s in scenarios))


def lines(text: str, wide: bool, first: str, indent: str) -> list[str]:
    """``text`` after ``first`` on one line (``--wide``) or wrapped to :data:`~vmapsim.report.WIDTH`."""
    return [first + text] if wide else report.wrap(text, first, indent)


def kernels(paths: Iterable[Pipeline]) -> str:
    """The kernels of the load paths, for a figure's title: ``kernels 6.3, 6.4 and proposals on 6.4``."""
    paths = list(paths)
    own = list(dict.fromkeys(p.kernel for p in paths if p.proposal is None))
    proposed = ", ".join(dict.fromkeys(p.kernel for p in paths if p.proposal is not None))
    said = [f"kernel{'s' * (len(own) > 1)} {', '.join(own)}"] if own else []
    return " and ".join(said + ([f"proposals on {proposed}"] if proposed else []))


