"""A storm's table: each load path's figures, a verdict against the first, headings, legend and notes.

Every verdict and every note is computed from the load paths' :attr:`~vmapsim.loader.Pipeline.changes`
(what each changes, where it comes from, which syscalls reach it) and from the figures, never from the
paths' names.

>>> from vmapsim.loader import PIPELINES
>>> about(PIPELINES["v6.4"])
'early_mod_check() refuses a duplicate before layout_and_allocate() (064f4536d139)'
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs

from vmapsim.loader import METRICS, ModuleStats, Pipeline, Result
from vmapsim.loader.request import Syscall
from vmapsim.loader.stats import has_stats
from vmapsim.report.documents import WIDTH, human_bytes, plural, wrap

__all__ = ["LEGEND", "Section", "StormRow", "about", "beside", "figures", "heading", "init_module_note", "path_lines",
           "same_sections", "stats_note", "storm_rows", "table"]  # fmt: skip

#: The distribution each kmod version shipped in, for the section headings.
_KMOD_RELEASES = {30: "Debian 12", 34: "Debian 13"}

#: What each column of :func:`table` means (the JSON and CSV name beside a column named otherwise).
LEGEND = """\
columns: loads  load syscalls that reached the kernel (modprobe skips a module already live, so a
                path whose loads finish sooner makes fewer; kread-dedup's -EBUSY stops a device's
                modprobe chain)
         ok, EEXIST, other (other_errors)  what they returned: 6.5's waiters return the first load's
                0; other is -EBUSY, -ETXTBSY or, where an allocation failed, -ENOMEM
         reads  kernel_read_file() buffers: none with init_module(2), where userspace read the file
         peak vmalloc, peak modules (peak_vmalloc, peak_modules)  the most bytes pinned at once in
                each window (busy + lazily freed)
         fails (allocation_failures)  allocations that failed after purge and retry: the window
                ran out
         wasted (wasted_bytes)  CONFIG_MODULE_STATS' "Virtual mem wasted bytes": what failed loads
                allocated, over the boot
         verdict  against the section's first row"""


def about(pipeline: Pipeline) -> str:
    """One line on what a load path does (its :attr:`~vmapsim.loader.Pipeline.summary`, made from its
    kernel's own fixes and its proposal's description and source).  Runtime complexity: O(1).

    >>> from vmapsim.loader import for_kernel
    >>> about(for_kernel("6.12"))
    "6.12's own path: idempotent finit_module() (6.5) after early_mod_check() (6.4)"
    >>> about(for_kernel("6.1", "concurrency-limit:8"))
    "6.1's own path: duplicates refused only by add_unformed_module(); with concurrency-limit:8: at most 8 loads ..."
    """
    return pipeline.summary or pipeline.name


@attrs.frozen
class StormRow:
    """One load path's run in a storm: its figures, and how it compares with the section's first row.

    ``same_as`` names an earlier row with the very same figures (and ``verdict`` says why), ``kmod`` and
    ``syscall`` the userspace that made the requests.
    """

    kmod: int | None
    syscall: Syscall
    pipeline: str
    metrics: Mapping[str, int]
    reads: int
    first_failure: str | None
    same_as: str | None
    verdict: str

    def to_dict(self) -> dict[str, Any]:
        """The row as plain data (None stays None: JSON ``null``).  Runtime complexity: O(metrics)."""
        return {"kmod": self.kmod, "syscall": self.syscall.value, "pipeline": self.pipeline, **self.metrics,
                "reads": self.reads, "first_failure": self.first_failure, "same_as": self.same_as,
                "verdict": self.verdict}  # fmt: skip


def figures(result: Result) -> dict[str, Any]:
    """What a storm's table shows of one run: :meth:`Result.metrics`, the reads, the first failure's message.

    Runtime complexity: O(requests).
    """
    first = result.failures[0].message if result.failures else None
    return {**result.metrics(), "reads": result.reads, "first_failure": first}


def _names(pipeline: Pipeline) -> set[str]:
    return {c.name for c in pipeline.changes}


def _finit_only_over(pipeline: Pipeline, other: Pipeline) -> bool:
    """Whether ``pipeline`` is ``other`` plus changes that only ``finit_module(2)`` reaches."""
    extra = [c for c in pipeline.changes if c.name not in _names(other)]
    return bool(extra) and _names(other) <= _names(pipeline) and all(c.finit_only() for c in extra)


def storm_rows(kmod: int | None, syscall: Syscall | str,
               runs: Sequence[tuple[str, Pipeline, Mapping[str, Any]]]) -> list[StormRow]:  # fmt: skip
    """The rows of one userspace path's section: each run's :func:`figures` and a verdict against the first.

    A run whose figures all equal an earlier one's names that row and says why, from what the two
    paths change: with ``init_module(2)``, changes that only ``finit_module(2)`` reaches never ran;
    a path that only adds changes to the other's had nothing to change on this storm; two different
    changes reached the same outcome (said against the first row).  Runtime complexity: O(runs²).

    >>> base = {"loads": 2, "ok": 1, "eexist": 1, "other_errors": 0, "peak_vmalloc": 8192, "peak_modules": 4096,
    ...         "allocation_failures": 0, "failed_becoming": 0, "failed_load": 1, "wasted_bytes": 4096,
    ...         "reads": 0, "first_failure": None}
    >>> from vmapsim.loader import PIPELINES as P
    >>> rows = storm_rows(30, "init_module", [("v6.3", P["v6.3"], {**base, "wasted_bytes": 8192}),
    ...                                       ("v6.4", P["v6.4"], base), ("v6.5", P["v6.5"], base)])
    >>> [r.verdict for r in rows]  # doctest: +NORMALIZE_WHITESPACE
    ['the baseline', 'waste 50%, peak modules 100%, vmalloc 100% of v6.3',
     '= v6.4: acts on finit_module(2) only; kmod 30 calls init_module(2)']
    """
    syscall = Syscall.of(syscall)
    rows: list[StormRow] = []
    paths: list[Pipeline] = []
    for label, pipeline, fig in runs:
        metrics = {k: int(fig[k]) for k in METRICS}
        i = next((i for i, r in enumerate(rows) if r.metrics == metrics and r.reads == fig["reads"]), None)
        if i is not None:
            verdict = f"= {rows[i].pipeline}: {_why_equal(pipeline, paths[i], i, kmod, syscall, metrics, rows)}"
        elif not rows:
            verdict = "the baseline" + (f": runs out, {plural(metrics['allocation_failures'], 'failed allocation')}"
                                        if metrics["allocation_failures"] else "")  # fmt: skip
        else:
            verdict = _against(metrics, rows[0])
        rows.append(StormRow(kmod, syscall, label, metrics, int(fig["reads"]), fig["first_failure"],
                             rows[i].pipeline if i is not None else None, verdict))  # fmt: skip
        paths.append(pipeline)
    return rows


def _why_equal(pipeline: Pipeline, twin: Pipeline, i: int, kmod: int | None, syscall: Syscall,
               metrics: Mapping[str, int], rows: Sequence[StormRow]) -> str:  # fmt: skip
    if syscall == Syscall.INIT_MODULE and _finit_only_over(pipeline, twin):
        who = f"kmod {kmod}" if kmod is not None else "userspace"
        return f"acts on finit_module(2) only; {who} calls init_module(2)"
    if _names(twin) <= _names(pipeline):
        return "nothing for it to change here"
    if i == 0:
        return "the same figures as the baseline's"
    return f"the same figures by another change; {_against(metrics, rows[0])}"


def _against(metrics: Mapping[str, int], base: StormRow) -> str:
    parts = []
    if metrics["allocation_failures"]:
        parts.append(f"runs out ({plural(metrics['allocation_failures'], 'failed allocation')})")
    for key, name in (("wasted_bytes", "waste"), ("peak_modules", "peak modules"), ("peak_vmalloc", "vmalloc")):
        was = base.metrics[key]
        if not was and not metrics[key] and key != "wasted_bytes":  # no module window of its own (i386)
            continue
        parts.append(f"{name} {_percent(metrics[key] / was)}" if was else f"{name} {human_bytes(metrics[key])}")
    return ", ".join(parts) + f" of {base.pipeline}"


def _percent(ratio: float) -> str:
    return "<1%" if 0 < ratio < 0.005 else f"{ratio:.0%}"


@attrs.frozen
class Section:
    """One userspace path's part of a storm: kmod's version, the syscall it made, whether the modules
    were compressed, the rows and the load paths they ran."""

    kmod: int | None
    syscall: Syscall
    compressed: bool
    rows: tuple[StormRow, ...]
    paths: tuple[Pipeline, ...]


def heading(section: Section) -> str:
    """How kmod handed modules to the kernel in ``section``, as its heading.  Runtime complexity: O(1).

    >>> heading(Section(30, Syscall.FINIT_MODULE, False, (), ()))
    'kmod 30 (Debian 12): modprobe passes the uncompressed module file to finit_module(2)'
    """
    where = f" ({_KMOD_RELEASES[section.kmod]})" if section.kmod in _KMOD_RELEASES else ""
    if section.syscall == Syscall.INIT_MODULE:
        how = "decompresses each module itself and calls init_module(2)"
    elif section.compressed:
        how = "passes the compressed file to finit_module(2)"
    else:
        how = "passes the uncompressed module file to finit_module(2)"
    return f"kmod {section.kmod}{where}: modprobe {how}"


def table(rows: Sequence[StormRow], width: int, size: Callable[[int], str], *, wide: bool = False,
          shared: bool = False) -> list[str]:  # fmt: skip
    """The lines of a storm's table: a header, then a row (and its first failure) per load path, each
    row's verdict inline when ``wide``, else beneath the table, so that no line is wider than
    :data:`~vmapsim.report.WIDTH` (a verdict wraps).  ``shared``: modules load in the vmalloc window
    (:attr:`~vmapsim.layouts.Layout.shared_modules`), so their column says so.  Runtime complexity: O(rows).
    """
    lines = [f"{'pipeline':{width}} {'loads':>6} {'ok':>5} {'EEXIST':>6} {'other':>5} {'reads':>5} "
             f"{'peak vmalloc':>12} {'peak modules':>12} {'fails':>5} {'wasted':>10}"
             + ("  verdict" if wide else "")]  # fmt: skip
    for row in rows:
        m = row.metrics
        modules = "in vmalloc" if shared else size(m["peak_modules"])
        lines.append(f"{row.pipeline:{width}} {m['loads']:6d} {m['ok']:5d} {m['eexist']:6d} {m['other_errors']:5d} "
                     f"{row.reads:5d} {size(m['peak_vmalloc']):>12} {modules:>12} "
                     f"{m['allocation_failures']:5d} {size(m['wasted_bytes']):>10}"
                     + (f"  {row.verdict}" if wide else ""))  # fmt: skip
        if row.first_failure:
            text = f"first failure: {row.first_failure}"
            lines += [f"{'':{width}} {text}"] if wide else wrap(text, " " * (width + 1), " " * (width + 3))
    if not wide:
        lines.append("verdicts:")
        for row in rows:
            lines += wrap(row.verdict, f"  {row.pipeline:{width}} ", " " * (width + 3))
    return lines


def path_lines(paths: Mapping[str, Pipeline], width: int, *, wide: bool = False) -> list[str]:
    """The legend's ``pipelines:`` block: each load path's label and :func:`about` (wrapped to
    :data:`~vmapsim.report.WIDTH` unless ``wide``).  Runtime complexity: O(paths)."""
    out = ["pipelines:"]
    for name, path in paths.items():
        first = f"         {name:{width}} "
        out += [first + about(path)] if wide else wrap(about(path), first, " " * (width + 10))
    return out


def stats_note(paths: Sequence[Pipeline]) -> str | None:
    """For load paths of kernels before 6.4, which have no ``CONFIG_MODULE_STATS``: what their counters
    are (what 6.4's would count on the same run).  Runtime complexity: O(paths)."""
    old = list(dict.fromkeys(p.name for p in paths if not has_stats(p.kernel)))
    if not old:
        return None
    return (f"CONFIG_MODULE_STATS came with 6.4 (df3e764d8e5c): {', '.join(old)} had no "
            "/sys/kernel/debug/modules/stats; their stats and wasted bytes are what 6.4's counters would count")


def init_module_note(section: Section, others: Sequence[Section]) -> str | None:
    """For a section whose kmod calls ``init_module(2)``: which rows' changes only ``finit_module(2)``
    reaches (a row that adds only such changes to an earlier row's), and where to see them act.
    Runtime complexity: O(rows²).
    """
    if section.syscall != Syscall.INIT_MODULE or section.kmod is None:  # no kmod: the rows' verdicts say it
        return None
    acting = [r.pipeline for k, (r, p) in enumerate(zip(section.rows, section.paths, strict=True))
              if any(_finit_only_over(p, q) for q in section.paths[:k])]  # fmt: skip
    if not acting:
        return None
    names = ", ".join(acting[:-1]) + f" and {acting[-1]}" if len(acting) > 1 else acting[0]
    finit = next((s for s in others if s.syscall == Syscall.FINIT_MODULE), None)
    see = f"; the kmod {finit.kmod} rows show them" if finit is not None else ": try --kmod 34"
    verb = "act" if len(acting) > 1 else "acts"
    return (f"kmod {section.kmod} decompresses modules in userspace and calls init_module(2): {names} {verb} on "
            f"finit_module(2) and cannot help it{see}")  # fmt: skip


def same_sections(sections: Sequence[Section]) -> list[str]:
    """A note for each section whose rows equal an earlier section's, saying why (both kmods made the same
    syscall with the same files).  Runtime complexity: O(sections² · rows)."""
    notes = []
    for k, s in enumerate(sections):
        twin = next((t for t in sections[:k] if [(r.metrics, r.reads) for r in t.rows] ==
                     [(r.metrics, r.reads) for r in s.rows]), None)  # fmt: skip
        if twin is not None and twin.syscall == s.syscall:
            why = "" if s.compressed else " (these modules are not compressed: kmod < 31 has nothing to decompress)"
            notes.append(f"the kmod {s.kmod} rows equal the kmod {twin.kmod} rows: both call {s.syscall}(2) with "
                         f"the same files{why}")  # fmt: skip
    return notes


def beside(real: ModuleStats, source: str, runs: Sequence[tuple[str, ModuleStats]], kmod: int | None, *,
           size: Callable[[int], str] = human_bytes, wide: bool = False) -> list[str]:  # fmt: skip
    """A real machine's CONFIG_MODULE_STATS counters beside each simulated run's, as table lines: byte
    counters as ``size`` writes them, and unless ``wide`` as many runs per block as fit
    :data:`~vmapsim.report.WIDTH` (the real machine's column first in each).

    Runtime complexity: O(runs · counters).
    """
    def shown(label: str, value: int) -> str:
        return size(value) if "bytes" in label or "size" in label else str(value)

    columns = [("real", [(k, shown(k, v)) for k, v in real.counters()]),
               *((p, [(k, shown(k, v)) for k, v in s.counters()]) for p, s in runs)]  # fmt: skip
    w = max(10, *(len(p) for p, _ in columns), *(len(v) for _, col in columns for _, v in col))
    per = len(columns) - 1 if wide else max(1, (WIDTH - 25) // (w + 1) - 1)
    out = [f"# /sys/kernel/debug/modules/stats: {source} beside the simulated boot (kmod {kmod})"]
    for k in range(1, len(columns), per):
        block = [columns[0], *columns[k:k + per]]
        out += ([""] if k > 1 else []) + [f"{'':25}" + "".join(f" {p:>{w}}" for p, _ in block)]
        out += [f"{label:>25}" + "".join(f" {col[i][1]:>{w}}" for _, col in block)
                for i, (label, _) in enumerate(columns[0][1])]  # fmt: skip
    return out
