"""The figures of a run, in one registry: name, meaning, unit, and how each is measured on a Result.

Every command and every library function that names a figure takes these names and no other spelling:
:meth:`~vmapsim.loader.Result.metrics`, ``vmapsim boot``'s table, sweeps and their cells, ``compare``,
and the worst-case search (``vmapsim worst --metric``).

>>> METRICS["wasted_bytes"].meaning
"CONFIG_MODULE_STATS' Virtual mem wasted bytes: what failed loads allocated"
>>> metric("peak_modules").unit, list(METRICS)[:3]
('bytes', ['loads', 'ok', 'eexist'])
"""

from __future__ import annotations

import collections
import operator
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import attrs

from vmapsim.checks import show
from vmapsim.errors import InvalidArgument
from vmapsim.layouts import Layout
from vmapsim.loader.errno import EEXIST
from vmapsim.loader.stats import ModuleStats

__all__ = ["METRICS", "Measured", "Metric", "default_metric", "metric", "metric_on"]


class Measured(Protocol):
    """What the registry's metrics read of a run: a :class:`~vmapsim.loader.Result` is one (the registry
    sits below it, so that :meth:`~vmapsim.loader.Result.metrics` can use it)."""

    @property
    def outcomes(self) -> Sequence[Any]:
        """Each load's outcome (its ``ret``)."""

    @property
    def failures(self) -> Sequence[Any]:
        """The allocations that failed."""

    @property
    def stats(self) -> ModuleStats:
        """``CONFIG_MODULE_STATS``."""

    @property
    def peak_pinned(self) -> Mapping[str, int]:
        """Peak pinned bytes per window."""


@attrs.frozen
class Metric:
    """A named number of a :class:`~vmapsim.loader.Result`: what it means, its unit, and ``measure``."""

    name: str
    meaning: str
    unit: str
    measure: Callable[[Any], int | float] = attrs.field(eq=False, repr=False)


def _returned(ret: int | None) -> Callable[[Measured], int]:
    def measure(r: Measured) -> int:
        counts = collections.Counter(map(_RET, r.outcomes))
        if ret is None:  # anything but 0 and -EEXIST
            return len(r.outcomes) - counts[0] - counts[-EEXIST]
        return counts[ret]

    return measure


_RET = operator.attrgetter("ret")


def _peak(window: str) -> Callable[[Measured], int]:
    return lambda r: r.peak_pinned.get(window, 0)


#: Every metric, by name, in the order a row shows them.
METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
        Metric("loads", "load syscalls that reached the kernel", "calls", lambda r: len(r.outcomes)),
        Metric("ok", "loads that returned 0", "calls", _returned(0)),
        Metric("eexist", "loads that returned -EEXIST", "calls", _returned(-EEXIST)),
        Metric("other_errors", "loads that returned another errno (-EBUSY, -ETXTBSY...)", "calls", _returned(None)),
        Metric("peak_vmalloc", "the most bytes pinned at once in the vmalloc window (busy, lazily freed, pooled)",
               "bytes", _peak("vmalloc")),
        Metric("peak_modules", "the most bytes pinned at once in the module window (busy, lazily freed, pooled)",
               "bytes", _peak("modules")),
        Metric("allocation_failures", "allocations that failed after purge and retry: a window ran out",
               "allocations", lambda r: len(r.failures)),
        Metric("failed_becoming", "duplicates refused in early_mod_check() (stats: Mods failed on becoming)",
               "loads", lambda r: r.stats.failed_becoming),
        Metric("failed_load", "duplicates refused in add_unformed_module() (stats: Mods failed on load)",
               "loads", lambda r: r.stats.failed_load_modules),
        Metric("wasted_bytes", "CONFIG_MODULE_STATS' Virtual mem wasted bytes: what failed loads allocated",
               "bytes", lambda r: r.stats.wasted_bytes),
    )
}  # fmt: skip


def metric(name: str | Metric | Callable[[Any], float]) -> Metric:
    """The metric ``name`` names, a :class:`Metric` as it is, or a function of a Result as a custom metric;
    :class:`InvalidArgument` naming anything else.  Runtime complexity: O(1).

    >>> metric("wasted").name
    Traceback (most recent call last):
    vmapsim.errors.InvalidArgument: unknown metric 'wasted': one of loads, ok, eexist, ...
    """
    if isinstance(name, Metric):
        return name
    if isinstance(name, str):
        if name not in METRICS:
            raise InvalidArgument(f"unknown metric {name!r}: one of {', '.join(METRICS)}")
        return METRICS[name]
    if callable(name):
        return Metric(getattr(name, "__name__", "custom"), "a function of the Result", "", name)
    raise InvalidArgument(f"metric={show(name)}: expected a metric's name, a Metric or a function of a Result")


def metric_on(name: str | Metric | Callable[[Any], float], layout: Layout) -> Metric:
    """:func:`metric`, refused (:class:`InvalidArgument`) where it means nothing on ``layout``:
    ``peak_modules`` where modules load in the vmalloc window (i386: no module window of its own, so
    it is 0 in every run).  Runtime complexity: O(1).

    >>> from vmapsim.layouts import i386
    >>> metric_on("peak_modules", i386()).name
    Traceback (most recent call last):
    vmapsim.errors.InvalidArgument: metric peak_modules means nothing on i386: modules share the vmalloc window ...
    """
    chosen = metric(name)
    if chosen.name == "peak_modules" and layout.shared_modules:
        raise InvalidArgument(f"metric peak_modules means nothing on {layout.name}: modules share the vmalloc "
                              "window there (use peak_vmalloc)")  # fmt: skip
    return chosen


def default_metric(layout: Layout) -> str:
    """The metric a search or a sweep's table shows unless told: the module window's peak, or the vmalloc
    window's where modules load in it (:func:`metric_on` refuses ``peak_modules`` there).

    Runtime complexity: O(1).

    >>> from vmapsim.layouts import X86_64, i386
    >>> default_metric(X86_64), default_metric(i386())
    ('peak_modules', 'peak_vmalloc')
    """
    return "peak_vmalloc" if layout.shared_modules else "peak_modules"
