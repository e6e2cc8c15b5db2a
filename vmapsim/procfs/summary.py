"""A real machine's /proc/vmallocinfo summed up: by caller and kind, lazily freed bytes, window fill, and
where the next allocations would go."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable

import attrs

from vmapsim.checks import show
from vmapsim.errors import InvalidArgument, VmapAllocationError
from vmapsim.layouts import Layout
from vmapsim.procfs.vmallocinfo import VmallocInfoRecord, restore
from vmapsim.space import VmapSpace

__all__ = ["NEXT_SIZES", "VmallocInfoSummary", "summarize_vmallocinfo"]



@attrs.frozen
class VmallocInfoSummary:
    """What a /proc/vmallocinfo says, summed: by caller and kind, the lazily freed bytes, each window's fill.

    ``callers`` and ``kinds`` are ``(name, areas, bytes)`` rows, most bytes first (sizes as the file
    counts them: with their guard pages); ``lazy_bytes`` are the ``unpurged vm_area`` lines' (freed, not
    yet purged) against ``lazy_max_bytes``, the ``lazy_max_pages()`` at which the kernel purges
    (``mm/vmalloc.c``: ``fls(num_online_cpus()) * 32 MiB``).  With real pointers, ``windows`` is each
    window's ``(name, size, pinned bytes, largest free ranges as (start, end))`` and ``next`` what the
    next ``vmalloc()`` of each size in :data:`NEXT_SIZES` and a module-window allocation would get
    (``None``: it would fail); with hashed ones both are empty and ``hashed`` is True.
    """

    areas: int
    total_bytes: int
    callers: tuple[tuple[str, int, int], ...]
    kinds: tuple[tuple[str, int, int], ...]
    lazy_bytes: int
    lazy_max_bytes: int
    hashed: bool
    windows: tuple[tuple[str, int, int, tuple[tuple[int, int], ...]], ...] = ()
    next: tuple[tuple[str, int, int | None], ...] = ()


#: The sizes :func:`summarize_vmallocinfo` asks "where would the next allocation go" for.
NEXT_SIZES = (4096, 2 << 20)


def _function(caller: str | None) -> str:
    """``load_module+0x1a2/0x2b0 [mod]`` -> ``load_module [mod]``: a caller without its offsets."""
    if not caller:
        return "(none)"
    name, _, rest = caller.partition(" ")
    return name.split("+", 1)[0] + (f" {rest}" if rest else "")


def _kind(r: VmallocInfoRecord) -> str:
    if r.kind != "vm":
        return r.kind
    return next((w for w in ("vmalloc", "ioremap", "vmap", "user", "dma-coherent") if w in r.flags), "vm")


def summarize_vmallocinfo(records: Iterable[VmallocInfoRecord], layout: Layout, *, cpus: int = 1,
                          largest: int = 5) -> VmallocInfoSummary:  # fmt: skip
    """Sum a real machine's /proc/vmallocinfo (hashed pointers or real ones).

    ``cpus`` is the machine's online CPUs (``lazy_max_pages()`` depends on it); ``largest`` how many
    free ranges per window to list.  With real pointers the snapshot is rebuilt (:func:`restore`) to
    find the free ranges and the next allocations' addresses.  Runtime complexity: O(n log n).

    >>> from vmapsim import VmapSpace, layouts
    >>> from vmapsim.procfs import parse_vmallocinfo, render_vmallocinfo
    >>> s = VmapSpace(layouts.X86_64, cpus=4)
    >>> a = s.vmalloc(8192, caller="f+0x1/0x2"); s.vfree(s.vmalloc(3 << 20, caller="g+0x3/0x9"))
    >>> summary = summarize_vmallocinfo(parse_vmallocinfo(render_vmallocinfo(s)), layouts.X86_64, cpus=4)
    >>> summary.callers, summary.lazy_bytes, summary.lazy_max_bytes >> 20, hex(summary.next[0][2])
    ((('f', 1, 12288),), 3162112, 96, '0xffffc90000307000')
    """
    records = list(records)
    if not isinstance(largest, int) or isinstance(largest, bool) or not 0 <= largest <= 1000:
        raise InvalidArgument(f"largest={show(largest)}: expected a count from 0 to 1000")
    space = VmapSpace(layout, cpus=cpus)  # checks cpus; lazy_max_pages() for that many CPUs
    groups: dict[str, dict[str, list[int]]] = {"callers": {}, "kinds": {}}
    lazy = 0
    for r in records:
        if r.kind == "unpurged":
            lazy += r.size
            continue
        for group, key in (("callers", _function(r.caller)), ("kinds", _kind(r))):
            row = groups[group].setdefault(key, [0, 0])
            row[0] += 1
            row[1] += r.size

    def rows(group: str) -> tuple[tuple[str, int, int], ...]:
        return tuple(sorted(((k, n, b) for k, (n, b) in groups[group].items()), key=lambda t: (-t[2], t[0])))

    hashed = any(r.start is None for r in records)
    windows: list[tuple[str, int, int, tuple[tuple[int, int], ...]]] = []
    nxt: list[tuple[str, int, int | None]] = []
    if records and not hashed:
        space = restore(records, layout, cpus=cpus)
        for region in layout.regions:
            free = sorted(space.free_ranges(region), key=lambda se: (se[0] - se[1], se[0]))[:largest]
            windows.append((region.name, region.size, space.usage(region).pinned, tuple(free)))
        for size in NEXT_SIZES:
            nxt.append(("vmalloc", size, _try(functools.partial(space.vmalloc, size))))
        m = layout.modules
        nxt.append(("modules", 4096, _try(lambda: space.vmalloc_node_range(4096, start=m.start, end=m.end))))
    return VmallocInfoSummary(len(records), sum(r.size for r in records), rows("callers"), rows("kinds"), lazy,
                              space.lazy_max_pages * 4096, hashed, tuple(windows), tuple(nxt))  # fmt: skip


def _try(alloc: Callable[[], int]) -> int | None:
    try:
        return alloc()
    except VmapAllocationError:
        return None
