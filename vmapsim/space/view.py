"""What can be read of a vmap space, and set on it from outside: windows, areas, usage, snapshots, traces.

:class:`VmapState` holds the allocator core (:class:`~vmapsim.space.vmap_area.VmapAreas`)
of one machine with its parameters, and answers every question about it -- the
areas in a window, their usage and peaks, the area containing an address
(``find_vmap_area()``) -- plus the two ways state arrives from a real machine:
:meth:`~VmapState.reserve` (a ``/proc/vmallocinfo`` snapshot) and the
``replay_*`` methods (the kernel's own choices from a trace).
:class:`~vmapsim.space.VmapSpace` adds the kernel's allocating users on top.

>>> from vmapsim import VmapSpace, layouts
>>> s = VmapSpace(layouts.X86_64)
>>> s.reserve(0xffffc90000004000, 8192).size, [a.start for a in s.areas("vmalloc")] == [0xffffc90000004000]
(8192, True)
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Iterator

import attrs

from vmapsim import layouts, profiles
from vmapsim.checks import CPUS_LIMIT, address, flag, integer, show, text
from vmapsim.errors import InvalidArgument, UnknownAddress
from vmapsim.layouts import Layout, Region
from vmapsim.space.area import VM_ALLOC, VMAP_BLOCK, VMAP_RAM, RegionUsage, VmapArea
from vmapsim.space.vmap_area import VmapAreas
from vmapsim.space.vmap_block import VmapBlock
from vmapsim.units import PAGE_SHIFT, PAGE_SIZE, get_count_order

__all__ = ["VmapState"]


def _layout(value: Layout | str) -> Layout:
    """A layout, or a layout's name (``"x86_64"``), as users name them."""
    if isinstance(value, str):
        return layouts.by_name(value)
    if not isinstance(value, Layout):
        raise InvalidArgument(f"layout={show(value)}: expected a Layout or a layout's name")
    return value


def _profile(value: profiles.KernelProfile | str) -> profiles.KernelProfile:
    """A profile, or a kernel version (``"6.12"``) to pick one for."""
    if isinstance(value, str):
        return profiles.for_version(value)
    if not isinstance(value, profiles.KernelProfile):
        raise InvalidArgument(f"profile={show(value)}: expected a KernelProfile or a kernel version")
    return value


@attrs.define(eq=False)
class VmapState:
    """One machine's vmap space, read and restored: parameters, introspection, snapshots, replay.

    ``cpus`` is ``num_online_cpus()``; ``nr_cpus_config`` is ``CONFIG_NR_CPUS``
    (it sizes the vmap blocks); ``auto_purge=False`` turns off the purges the
    allocator starts by itself.  The allocator core
    (:class:`~vmapsim.space.vmap_area.VmapAreas`) is private to the space package:
    other modules read and change a space through these methods.
    Runtime complexity: as each method says.

    >>> from vmapsim import layouts
    >>> VmapState(layouts.X86_64, cpus=8).lazy_max_pages
    32768
    """

    layout: Layout = attrs.field(converter=_layout)
    cpus: int = 1
    profile: profiles.KernelProfile = attrs.field(default=profiles.DEFAULT, converter=_profile)
    nr_cpus_config: int = 8192
    _auto_purge: bool = attrs.field(default=True, alias="auto_purge")
    # The allocator core: free tree, busy and lazy areas, pools, purges.
    _core: VmapAreas = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        # CONFIG_NR_CPUS is at most NR_CPUS_MAX in Kconfig; a larger one must be asked for explicitly.
        integer("nr_cpus_config", self.nr_cpus_config, 1, CPUS_LIMIT)
        integer("cpus", self.cpus, 1, self.nr_cpus_config)
        flag("auto_purge", self._auto_purge)
        self._core = VmapAreas(self.layout, self.cpus, self.profile, self.vmap_block_pages, self._auto_purge)

    # ------------------------------------------------------------- parameters

    @property
    def auto_purge(self) -> bool:
        """Whether the allocator starts purges by itself (lazy drain, purge before a retry).  Runtime: O(1)."""
        return self._core.auto_purge

    @auto_purge.setter
    def auto_purge(self, value: bool) -> None:
        self._core.auto_purge = flag("auto_purge", value)  # as the constructor: True or False only

    @property
    def regions(self) -> tuple[Region, ...]:
        """The distinct windows of the layout, vmalloc first (``layout.regions``).  Runtime: O(1)."""
        return self._core.regions

    @property
    def purges(self) -> int:
        """Number of purges run so far (lazy drains, failure reclaims, explicit purges).  Runtime: O(1)."""
        return self._core.purges

    @property
    def lazy_max_pages(self) -> int:
        """``lazy_max_pages()``: ``fls(cpus) * 32 MiB / PAGE_SIZE``.  Runtime complexity: O(1)."""
        return self._core.lazy_max_pages

    @property
    def lazy_pages(self) -> int:
        """``vmap_lazy_nr``: lazily freed pages, guards included.  Runtime complexity: O(1)."""
        return self._core.lazy_pages

    @property
    def nr_vmap_nodes(self) -> int:
        """``nr_vmap_nodes`` of 6.9+: ``clamp(cpus, 1, 128)`` (1 on older profiles).

        Runtime complexity: O(1).
        """
        return self._core.nr_vmap_nodes

    @property
    def vmap_block_pages(self) -> int:
        """``VMAP_BBMAP_BITS``: pages per vmap block, from ``CONFIG_NR_CPUS``.

        Runtime complexity: O(1).

        >>> from vmapsim import VmapSpace, layouts
        >>> VmapSpace(layouts.X86_64).vmap_block_pages, VmapSpace(layouts.X86_64, nr_cpus_config=64).vmap_block_pages
        (256, 1024)
        """
        pages = self.layout.vmalloc_space // PAGE_SIZE
        roundup = 1 << get_count_order(self.nr_cpus_config)
        return min(1024, max(self.layout.bits * 2, pages // roundup // 16))

    @property
    def nr_vmalloc_pages(self) -> int:
        """Pages backing ``vmalloc()`` allocations (meminfo ``VmallocUsed``).  Runtime: O(1)."""
        return self._core.vmalloc_pages
    # ------------------------------------------------------------ introspection

    def area(self, addr: int) -> VmapArea:
        """The busy area starting at ``addr``; :class:`UnknownAddress` if none.  Runtime: O(1)."""
        area = self._core.get(address("addr", addr))
        if area is None:
            raise UnknownAddress(f"no busy area starts at {addr:#x}")
        return area

    def find_area(self, addr: int) -> VmapArea | None:
        """``find_vmap_area()``: the busy area containing ``addr`` (guard included), or None.

        Runtime complexity: O(log n).

        >>> from vmapsim import VmapSpace, layouts
        >>> s = VmapSpace(layouts.X86_64)
        >>> a = s.vmalloc(8192)
        >>> s.find_area(a + 8192).size, s.find_area(a + 12288)      # the guard page; past it
        (12288, None)
        """
        return self._core.find(address("addr", addr))

    def areas(self, region: str | Region | None = None) -> list[VmapArea]:
        """Busy areas (in a window, or all), by address.  Runtime complexity: O(log n + k)."""
        return self._core.busy(*self._window(region))

    def lazy_areas(self, region: str | Region | None = None) -> list[VmapArea]:
        """Lazily freed areas not yet purged, by address.  Runtime complexity: O(log k + m)."""
        return self._core.lazy(*self._window(region))

    def lazy_areas_as_freed(self) -> list[VmapArea]:
        """Lazily freed areas not yet purged, oldest free first (up to 5.10 the kernel's ``vmap_purge_list``
        holds them newest first).  Runtime complexity: O(k)."""
        return self._core.lazy_as_freed()

    def busy_ranges(self, region: str | Region | None = None) -> list[tuple[int, int]]:
        """``(start, end)`` of busy areas, by address.  Runtime complexity: O(log n + k)."""
        return [(a.start, a.end) for a in self.areas(region)]

    def lazy_ranges(self, region: str | Region | None = None) -> list[tuple[int, int]]:
        """``(start, end)`` of lazy areas, by address.  Runtime complexity: O(log k + m)."""
        return [(a.start, a.end) for a in self.lazy_areas(region)]

    def pooled_ranges(self, region: str | Region | None = None) -> list[tuple[int, int]]:
        """``(start, end)`` of VAs parked in 6.9+ node pools, by address.  Runtime: O(p log p)."""
        return self._core.pooled(*self._window(region))

    def free_ranges(self, region: str | Region | None = None) -> list[tuple[int, int]]:
        """Free ranges, clipped to the window when one is given.  Runtime: O(log n + k)."""
        lo, hi = self._window(region)
        return list(self._core.free.irange(lo, hi))

    def vmap_blocks(self) -> list[VmapBlock]:
        """Live vmap blocks, by address (copies).  Runtime complexity: O(b log b)."""
        return self._core.blocks.blocks()

    def usage(self, region: str | Region) -> RegionUsage:
        """Busy/lazy/pooled/free bytes, largest free range and peak pinned of one window.

        Runtime complexity: O(log n + k) in the areas and free ranges of the window.

        >>> from vmapsim import VmapSpace, layouts
        >>> s = VmapSpace(layouts.X86_64)
        >>> s.usage("modules").free // (1 << 20)
        1008
        """
        r = region if isinstance(region, Region) else self.layout.region(region)
        free = list(self._core.free.irange(r.start, r.end))
        names = [w.name for w in self.regions]
        return RegionUsage(
            busy=sum(a.size for a in self.areas(r)),
            lazy=sum(a.size for a in self.lazy_areas(r)),
            pooled=sum(e - s for s, e in self.pooled_ranges(r)),
            free=sum(e - s for s, e in free),
            largest_free=max((e - s for s, e in free), default=0),
            peak_pinned=self._core.peak(names.index(r.name)) if r.name in names else 0,
        )

    def pinned(self, region: str) -> int:
        """Busy + lazy + pooled bytes of a window, kept incrementally.  Runtime complexity: O(1)."""
        return self._core.pinned(self._core.region_index(region))

    def pinned_per_region(self) -> tuple[int, ...]:
        """Pinned bytes of every window, in :attr:`regions` order.  Runtime complexity: O(windows)."""
        return self._core.pinned_all()

    def area_reader(self) -> Callable[[int], VmapArea | None]:
        """A function of an ``int`` address giving the busy area that starts there, or None: :meth:`area`
        without its check, for a caller that looks up each area it has just allocated.  Runtime complexity: O(1).

        >>> from vmapsim import layouts
        >>> VmapState(layouts.X86_64).area_reader()(0x1000) is None
        True
        """
        return self._core.area_reader()

    def pinned_reader(self) -> Callable[[], tuple[int, ...]]:
        """The function :meth:`pinned_per_region` calls, for a caller that samples after every change (a
        run samples after each allocation and free).  Runtime complexity: O(1).

        >>> from vmapsim import layouts
        >>> VmapState(layouts.X86_64).pinned_reader()()
        (0, 0)
        """
        return self._core.pinned_reader()

    def peak_pinned(self, region: str) -> int:
        """Highest pinned bytes of a window since creation or :meth:`reset_peak`.  Runtime: O(1)."""
        return self._core.peak(self._core.region_index(region))

    def reset_peak(self) -> None:
        """Start peak tracking again from the current pinned bytes.  Runtime complexity: O(1)."""
        self._core.reset_peak()

    def reserve(
        self,
        start: int,
        size: int,
        *,
        caller: str | None = None,
        vm_flags: int = VM_ALLOC,
        va_flags: int = 0,
        nr_pages: int = 0,
        phys: int = 0,
        lazy: bool = False,
        pages_area: int | None = None,
        nested: bool = False,
    ) -> VmapArea:
        """Mark a known range busy (or lazy), as boot-time ``vmlist`` entries are.

        Used to rebuild a space from a /proc/vmallocinfo snapshot.  The range
        must lie inside one free range, else :class:`InvalidArgument` and no
        change.  ``pages_area``/``nested`` link a vmalloc to its page-array
        vmalloc (``pages_area=0``: the array exists but was not identified).
        Runtime complexity: O(log n).
        """
        _page_range("reserve", start, size)
        text("caller", caller, optional=True)
        integer("vm_flags", vm_flags, 0, (1 << 64) - 1)
        integer("va_flags", va_flags, 0, VMAP_RAM | VMAP_BLOCK)
        integer("nr_pages", nr_pages, 0, size >> PAGE_SHIFT)
        address("phys", phys)
        flag("lazy", lazy)
        flag("nested", nested)
        if pages_area:
            array = self._core.get(address("pages_area", pages_area))
            if array is None or not array.nested or lazy:
                raise InvalidArgument(f"pages_area={pages_area:#x}: not a busy page-array area (reserve it first,"
                                      " with nested=True; a lazy area has none)")  # fmt: skip
        elif pages_area is not None:
            integer("pages_area", pages_area, 0, 0)
        if lazy and nr_pages:
            raise InvalidArgument(f"reserve({start:#x}, lazy=True, nr_pages={nr_pages}): a lazy area backs no pages")
        self._core.free.clip(start, size)
        # Only vmalloc-window areas carry a node; which CPU allocated one is not known, so the
        # node addr_to_node() gives stands in for it.
        node = self._core.node_of(start) if start in self.layout.vmalloc else -1
        area = VmapArea(start, start + size, caller, vm_flags, va_flags, nr_pages, phys, node, pages_area, nested)
        self._core.insert(area)
        if vm_flags & VM_ALLOC:
            self._core.vmalloc_pages += nr_pages
        if lazy:
            self._core.unlink(start)
            self._core.free_lazy(area)
        return area

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """All of the block or none of it: an exception inside restores the space as it was.

        For a sequence of calls that must not half-happen (replaying a trace).
        Runtime complexity: O(n) to copy the space on entry.

        >>> from vmapsim import VmapSpace, layouts
        >>> s = VmapSpace(layouts.X86_64)
        >>> try:
        ...     with s.transaction():
        ...         _ = s.vmalloc(4096)
        ...         s.vfree(12345)
        ... except Exception as e:
        ...     print(type(e).__name__, len(s.areas()))
        UnknownAddress 0
        """
        saved = copy.deepcopy(self)
        try:
            yield
        except BaseException:
            for f in attrs.fields(type(self)):
                setattr(self, f.name, getattr(saved, f.name))
            raise

    # ------------------------------------------------------ replaying a trace
    # The kernel's own choices, applied as they were traced (vmapsim.trace.replay).

    def replay_alloc(self, addr: int, size: int, *, cpu: int) -> bool:
        """Make exactly ``[addr, addr + size)`` busy, as the kernel's ``alloc_vmap_area()`` did.

        The range may come from the free tree or, 6.9+, from a node pool; False
        (and no change) if the model holds it neither free nor pooled.  A start or size that is not
        page aligned is :class:`InvalidArgument`: no vmap area the kernel makes is one.
        Runtime complexity: O(log n), O(p) when it comes from a pool.
        """
        self._core.check_cpu(cpu)
        _page_range("replay_alloc", addr, size)
        return self._core.take_exactly(addr, size, cpu=cpu)

    def replay_free(self, addr: int) -> bool:
        """``free_vmap_area_noflush()`` of whatever busy area starts at ``addr``; False if none.

        Runtime complexity: O(log n).
        """
        area = self._core.get(address("addr", addr))
        if area is None:
            return False
        self._core.unlink(addr)
        if area.va_flags & VMAP_BLOCK:
            self._core.blocks.drop(addr)
        if area.vm_flags & VM_ALLOC:
            self._core.vmalloc_pages -= area.nr_pages
        self._core.free_lazy(area)
        return True

    def replay_purge(self, *, full_decay: bool) -> None:
        """``__purge_vmap_area_lazy()``: lazy areas back; ``full_decay`` empties the 6.9+ pools too.

        Runtime complexity: O(k log n).
        """
        self._core.purge(full_decay=flag("full_decay", full_decay))

    # --------------------------------------------------------------- internals

    def _window(self, region: str | Region | None) -> tuple[int, int]:
        if region is None:
            return 0, 1 << 64
        r = region if isinstance(region, Region) else self.layout.region(region)
        return r.start, r.end


def _page_range(call: str, start: object, size: object) -> None:
    """Refuse a range that is no vmap area: every one is page aligned and page sized, as
    ``alloc_vmap_area()`` (mm/vmalloc.c) returns -EINVAL (5.18+; BUG() before) for a size with ``offset_in_page(size)``
    and every vmalloc-family caller passes a ``PAGE_ALIGN()``ed size and an ``align`` of at least PAGE_SIZE."""
    at, n = address("start", start), integer("size", size, 1, 1 << 64)
    if at % PAGE_SIZE or n % PAGE_SIZE:
        raise InvalidArgument(f"{call}({at:#x}, {n:#x}): start and size must be page-aligned")
