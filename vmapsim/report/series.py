"""The numbers behind the figures, as rows a CSV holds (no matplotlib here).

:mod:`vmapsim.plot` draws from these functions, and ``boot --series FILE`` / ``sweep --series FILE``
write the very same rows with :func:`~vmapsim.report.csv_text`, so a figure and its CSV cannot disagree:

* :func:`pinned_series` -- each run's pinned bytes per window over time (``boot --plot``);
* :func:`sweep_series` -- a sweep's seed median, min and max per cell and metric (``sweep --plot``);
* :func:`histogram_series` -- power-of-two histograms of each caller's allocation sizes and lifetimes
  (``boot --plot-histograms``).

>>> from vmapsim import Request, simulate
>>> r = simulate([Request("loop", cpu=c) for c in range(2)], pipeline="v6.4", catalog="debian-6.12-amd64", cpus=2)
>>> rows = pinned_series({34: {"v6.4": r}})
>>> list(rows[0]) == list(PINNED_COLUMNS), sorted({row["window"] for row in rows})
(True, ['modules', 'vmalloc'])
"""

from __future__ import annotations

import bisect
import math
import statistics
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from vmapsim.errors import InvalidArgument
from vmapsim.layouts import Layout
from vmapsim.loader import METRICS, Result
from vmapsim.loader.result import AllocationKind

__all__ = ["CALLERS", "HISTOGRAM_COLUMNS", "PINNED_COLUMNS", "SWEEP_COLUMNS", "SWEEP_METRICS", "Runs", "by_kmod",
           "histogram_series", "pinned_series", "sweep_series"]  # fmt: skip

T = TypeVar("T")
#: Runs as a figure takes them: label (a load path's name) -> Result, or kmod -> such a mapping.
Runs = Mapping[str, Result] | Mapping[int | None, Mapping[str, Result]]

#: :func:`pinned_series`' columns.  ``busy_bytes`` are the areas loads hold (from each allocation's
#: record); ``lazy_or_pooled_bytes`` the rest of ``pinned_bytes``: freed but not yet purged, or parked
#: in a 6.9+ node pool.
PINNED_COLUMNS = ("kmod", "pipeline", "window", "time_ms", "pinned_bytes", "busy_bytes", "lazy_or_pooled_bytes")
#: The metrics a sweep's figure draws and its series holds, by default.
SWEEP_METRICS = ("peak_modules", "wasted_bytes")
#: :func:`sweep_series`' columns (``kernel`` and ``kmod`` empty where the sweep's row has None: the
#: released path, the machine's kmod).
SWEEP_COLUMNS = ("machine", "kernel", "pipeline", "kmod", "cpus", "metric", "median", "min", "max")
#: :func:`histogram_series`' columns: a bucket is ``[low, high)`` of ``quantity`` (``size_bytes`` or
#: ``lifetime_us``); ``held_at_end`` counts the caller's areas never freed (low and high empty).
HISTOGRAM_COLUMNS = ("kmod", "pipeline", "caller", "quantity", "low", "high", "count")

#: Who asked for each kind of area, by the kernel function (module memory of either generation is one
#: caller: ``module_alloc()`` before 6.4, ``execmem_alloc()`` per memory type since).
CALLERS: dict[AllocationKind, str] = {
    AllocationKind.KERNEL_READ_FILE: "kernel_read_file",
    AllocationKind.COPY_MODULE_FROM_USER: "copy_module_from_user",
    AllocationKind.MODULE_DECOMPRESS: "module_decompress",
    AllocationKind.VMAP: "vmap",
    **{k: "module_memory" for k in (AllocationKind.TEXT, AllocationKind.DATA, AllocationKind.RODATA,
                                    AllocationKind.RO_AFTER_INIT, AllocationKind.INIT_TEXT, AllocationKind.INIT_DATA,
                                    AllocationKind.INIT_RODATA, AllocationKind.CORE, AllocationKind.INIT)},
    AllocationKind.EXECMEM_CHUNK: "execmem_chunk",
}  # fmt: skip


def by_kmod(runs: Mapping[str, T] | Mapping[int | None, Mapping[str, T]]) -> dict[int | None, Mapping[str, T]]:
    """``runs`` as kmod -> label -> value (a Result, or the space at its peak); a flat label -> value
    mapping is one kmod, None.  :class:`InvalidArgument` when there is no run.  Runtime complexity: O(kmods).

    >>> by_kmod({"v6.4": 1}), by_kmod({30: {"v6.4": 1}})
    ({None: {'v6.4': 1}}, {30: {'v6.4': 1}})
    >>> by_kmod({})
    Traceback (most recent call last):
    vmapsim.errors.InvalidArgument: no runs to draw
    """
    nested = isinstance(next(iter(runs.values()), None), Mapping)
    out: dict[int | None, Mapping[str, T]] = dict(runs) if nested else {None: runs}  # type: ignore[arg-type, dict-item]
    if not runs or not all(out.values()):
        raise InvalidArgument("no runs to draw")
    return out


def _windows(runs: Mapping[int | None, Mapping[str, Result]], layout: Layout | None) -> list[str]:
    if layout is None:
        space = next(iter(next(iter(runs.values())).values())).space
        if space is None:
            raise InvalidArgument("a Result read back from plain data has no space: pass layout=")
        layout = space.layout
    return [r.name for r in layout.regions]


def pinned_series(results: Runs, layout: Layout | None = None) -> list[dict[str, Any]]:
    """Each run's pinned bytes per window over time, one row (:data:`PINNED_COLUMNS`) per change.

    A run's :attr:`~vmapsim.loader.Result.pinned_over_time` samples every window at every allocation and
    free; a window's row is kept where its pinned or busy bytes change, and at the run's last instant,
    so a step drawn through the rows (each value holding until the next row) is the run's curve.  Rows
    are grouped by run (kmod, then label, in the mapping's order), then window (``layout``'s order,
    default the first result's space's), in time order.  Runtime complexity: O(samples × windows +
    allocations log allocations).

    >>> from vmapsim import Request, simulate
    >>> r = simulate([Request("loop", cpu=c) for c in range(4)], pipeline="v6.3", catalog="debian-6.12-amd64", cpus=4)
    >>> rows = [row for row in pinned_series({"v6.3": r}) if row["window"] == "modules"]
    >>> max(row["pinned_bytes"] for row in rows) == r.peak_pinned["modules"]
    True
    >>> all(row["busy_bytes"] + row["lazy_or_pooled_bytes"] == row["pinned_bytes"] for row in rows)
    True
    """
    runs = by_kmod(results)
    windows = _windows(runs, layout)
    out: list[dict[str, Any]] = []
    for kmod, column in runs.items():
        for label, r in column.items():
            held = _held(r, windows)
            last = len(r.pinned_over_time) - 1
            for i, window in enumerate(windows):
                times, totals = held[window]
                previous: tuple[int, int] | None = None
                for n, (t, values) in enumerate(r.pinned_over_time):
                    # busy at t: every allocation and free up to t (a sample is the state after its instant)
                    k = bisect.bisect_right(times, t)
                    point = (values[i], totals[k - 1] if k else 0)
                    if point != previous or n == last:
                        out.append({"kmod": kmod, "pipeline": label, "window": window, "time_ms": t * 1000,
                                    "pinned_bytes": point[0], "busy_bytes": point[1],
                                    "lazy_or_pooled_bytes": point[0] - point[1]})  # fmt: skip
                        previous = point
    return out


def _held(r: Result, windows: Sequence[str]) -> dict[str, tuple[list[float], list[int]]]:
    """Per window, the instants an area of the run was allocated or freed, and the bytes held after each."""
    events: dict[str, list[tuple[float, int]]] = {w: [] for w in windows}
    for o in r.outcomes:
        for a in o.allocations:
            events[a.region].append((a.allocated, a.size))
            if a.freed is not None:
                events[a.region].append((a.freed, -a.size))
    out = {}
    for w, evs in events.items():
        evs.sort()
        times: list[float] = []
        totals: list[int] = []
        total = 0
        for t, delta in evs:
            total += delta
            if times and times[-1] == t:
                totals[-1] = total
            else:
                times.append(t)
                totals.append(total)
        out[w] = (times, totals)
    return out


def sweep_series(rows: Sequence[Mapping[str, Any]],
                 metrics: Sequence[str] = SWEEP_METRICS) -> list[dict[str, Any]]:  # fmt: skip
    """A sweep's points: per curve (machine, kernel, pipeline, kmod), metric and CPU count, the seeds'
    median, min and max, one row each (:data:`SWEEP_COLUMNS`); curves in the rows' order, then metrics
    in ``metrics``' order, CPUs ascending.  ``rows`` are a sweep's (:class:`vmapsim.sweeps.Table`
    ``.rows``).  Runtime complexity: O(rows × metrics log rows).

    >>> rows = [{"machine": "m", "kernel": None, "pipeline": "v6.4", "kmod": None, "cpus": c, "seed": s,
    ...          "peak_modules": c * 100 + s} for c in (8, 4) for s in range(3)]
    >>> [(p["cpus"], p["median"], p["min"], p["max"]) for p in sweep_series(rows, ["peak_modules"])]
    [(4, 401, 400, 402), (8, 801, 800, 802)]
    """
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise InvalidArgument(f"unknown metric {unknown[0]!r}: one of {', '.join(METRICS)}")
    curves: dict[tuple[Any, ...], dict[int, list[Mapping[str, Any]]]] = {}
    for row in rows:
        key = tuple(row[k] for k in ("machine", "kernel", "pipeline", "kmod"))
        curves.setdefault(key, {}).setdefault(int(row["cpus"]), []).append(row)
    out = []
    for (machine, kernel, pipeline, kmod), by_cpus in curves.items():
        for m in metrics:
            for cpus in sorted(by_cpus):
                values = [r[m] for r in by_cpus[cpus]]
                out.append({"machine": machine, "kernel": kernel, "pipeline": pipeline, "kmod": kmod, "cpus": cpus,
                            "metric": m, "median": statistics.median(values), "min": min(values),
                            "max": max(values)})  # fmt: skip
    return out


def histogram_series(results: Runs) -> list[dict[str, Any]]:
    """Each run's allocations per caller (:data:`CALLERS`) in power-of-two buckets, as bpftrace's
    ``hist()`` counts them: sizes in bytes (guard page included) and, of the areas freed, lifetimes in
    microseconds from allocation to free (under 1 µs in ``[0, 1)``); a ``held_at_end`` row counts the
    areas never freed.  One row per non-empty bucket (:data:`HISTOGRAM_COLUMNS`): runs in the mapping's
    order, callers in :data:`CALLERS`' order, buckets ascending.  Runtime complexity: O(allocations log
    allocations).

    >>> from vmapsim import Request, simulate
    >>> r = simulate([Request("loop", cpu=c) for c in range(2)], pipeline="v6.3", catalog="debian-6.12-amd64", cpus=2)
    >>> sizes = [h for h in histogram_series({"v6.3": r}) if h["quantity"] == "size_bytes"]
    >>> sorted({h["caller"] for h in sizes}), all(h["high"] == 2 * h["low"] for h in sizes)
    (['kernel_read_file', 'module_decompress', 'module_memory', 'vmap'], True)
    """
    order = list(dict.fromkeys(CALLERS.values()))
    out: list[dict[str, Any]] = []
    for kmod, column in by_kmod(results).items():
        for label, r in column.items():
            counts: dict[tuple[int, str, int, int | None], int] = {}
            for o in r.outcomes:
                for a in o.allocations:
                    caller = order.index(CALLERS[a.kind])
                    size = 1 << (a.size.bit_length() - 1)
                    for key in ((caller, "size_bytes", size, 2 * size), (caller, *_lifetime(a.allocated, a.freed))):
                        counts[key] = counts.get(key, 0) + 1
            quantities = ("size_bytes", "lifetime_us", "held_at_end")
            for caller, quantity, low, high in sorted(counts, key=lambda k: (k[0], quantities.index(k[1]), k[2])):
                out.append({"kmod": kmod, "pipeline": label, "caller": order[caller], "quantity": quantity,
                            "low": None if quantity == "held_at_end" else low, "high": high,
                            "count": counts[caller, quantity, low, high]})  # fmt: skip
    return out


def _lifetime(allocated: float, freed: float | None) -> tuple[str, int, int | None]:
    """An area's lifetime bucket: (``lifetime_us``, low, high), or (``held_at_end``, 0, None) never freed."""
    if freed is None:
        return "held_at_end", 0, None
    us = (freed - allocated) * 1e6
    if us < 1:
        return "lifetime_us", 0, 1
    low = 1 << math.floor(math.log2(us))
    return "lifetime_us", low, 2 * low
