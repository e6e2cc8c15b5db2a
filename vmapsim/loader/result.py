"""What a run produced: per-request outcomes, failures, stats, peaks (the values simulate() returns).

>>> AllocationFailure(0.5, 3, 8192, "text", "vmap allocation ... failed").request
3
"""

from __future__ import annotations

import attrs

from vmapsim.loader.request import Request
from vmapsim.loader.stats import ModuleStats
from vmapsim.space import VmapSpace

__all__ = ["Allocation", "AllocationFailure", "AllocationRecord", "Outcome", "Result"]

# Memory types (both loader generations) that stay allocated while the module is loaded.
_CORE_KINDS = ("text", "data", "rodata", "ro_after_init", "core")


@attrs.define
class Allocation:
    """One vmap area a load holds while it runs: what for, where, how big (guard included), when.

    ``freed`` is set when the area goes; :meth:`record` is its frozen form for the result.
    """

    kind: str
    addr: int
    size: int
    region: str
    allocated: float
    freed: float | None = None

    def record(self) -> AllocationRecord:
        """The frozen :class:`AllocationRecord` of this area.  Runtime complexity: O(1)."""
        return AllocationRecord(self.kind, self.addr, self.size, self.region, self.allocated, self.freed)


@attrs.frozen
class AllocationRecord:
    """One area a request held: ``kind`` (e.g. ``kernel_read_file``, ``vmap``, ``text``), address, size with guard.

    >>> AllocationRecord("text", 0xffffffffc0000000, 8192, "modules", 0.0, None).region
    'modules'
    """

    kind: str
    addr: int
    size: int
    region: str
    allocated: float
    freed: float | None


@attrs.frozen
class AllocationFailure:
    """An allocation that failed after purge and retry: when, for which request, and the kernel's warning."""

    time: float
    request: int
    size: int
    kind: str
    message: str


@attrs.frozen
class Outcome:
    """What one request got: the syscall's return (0 or -errno), its span, its areas and its stage timeline."""

    request: Request
    module: str
    ret: int
    start: float
    end: float
    allocations: tuple[AllocationRecord, ...]
    timeline: tuple[tuple[float, str], ...]


@attrs.frozen
class Result:
    """Everything a run produced; equal inputs and seed give an equal Result.

    ``peak_pinned`` is the true figure per window (busy + lazy + pooled bytes at
    their highest); ``stats`` is what CONFIG_MODULE_STATS would report;
    ``space`` is the final address space (not compared).
    """

    pipeline: str
    outcomes: tuple[Outcome, ...]
    failures: tuple[AllocationFailure, ...]
    stats: ModuleStats
    peak_pinned: dict[str, int]
    live: tuple[str, ...]
    space: VmapSpace = attrs.field(eq=False, repr=False)
    #: (time, pinned bytes per window in ``space.regions`` order) after each change.
    pinned_over_time: tuple[tuple[float, tuple[int, ...]], ...] = attrs.field(default=(), eq=False, repr=False)
    #: window -> the instant its pinned bytes first reached their peak (rerun with ``until`` to see it).
    peak_time: dict[str, float] = attrs.field(factory=dict, eq=False, repr=False)

    @property
    def reads(self) -> int:
        """How many requests made a read buffer (``kernel_read_file``).  Runtime complexity: O(n)."""
        return sum(any(a.kind == "kernel_read_file" for a in o.allocations) for o in self.outcomes)

    def leaks(self) -> list[AllocationRecord]:
        """Areas still held after the run that no LIVE module owns (should be empty).  Runtime: O(n)."""
        out = []
        for o in self.outcomes:
            for a in o.allocations:
                owned = a.region == "modules" or a.kind in _CORE_KINDS
                cache = a.kind == "execmem_chunk"  # a ROX chunk is execmem's cache's, whichever load populated it
                if a.freed is None and not cache and not (o.ret == 0 and o.module in self.live and owned):
                    out.append(a)
        return out
