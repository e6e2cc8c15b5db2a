"""The ``vmap_area`` allocator core of mm/vmalloc.c: free tree, busy tree, lazy list, purge, pools.

:class:`VmapAreas` is what ``alloc_vmap_area()``, ``free_vmap_area_noflush()``,
``__purge_vmap_area_lazy()`` and ``reclaim_and_purge_vmap_areas()`` share: the
free tree over the whole kernel VA (``free_vmap_area_root``), busy areas by
start (``vmap_area_root``: a dict, and their starts in a ``SortedList`` brought up
to date when an address-ordered question is asked), lazily freed ones
(``purge_vmap_area_root``), the ``vmap_lazy_nr`` count and its drain, the 6.9+
node pools and the vmap blocks a reclaim releases, and pinned bytes per window
kept incrementally.  Its methods take validated arguments; the public checks
live in :class:`~vmapsim.space.VmapSpace`, which builds the kernel's users on it.

>>> from vmapsim import layouts, profiles
>>> core = VmapAreas(layouts.X86_64, cpus=1, profile=profiles.DEFAULT, block_pages=256)
>>> a = core.alloc(8192, 1, 0x10000000, 0x20000000, cpu=0)
>>> core.free_lazy(core.unlink(a.start)); core.lazy_pages
2
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable

import attrs
from sortedcontainers import SortedList

from vmapsim import profiles
from vmapsim.checks import integer
from vmapsim.errors import InvalidArgument, VmapAllocationError
from vmapsim.freetree import FreeTree
from vmapsim.layouts import Layout, Region
from vmapsim.space.area import VmapArea
from vmapsim.space.vmap_block import VmapBlocks
from vmapsim.space.vmap_node import MAX_VA_SIZE_PAGES, VMAP_ZONE_SIZE, NodePools, size_class
from vmapsim.units import PAGE_SHIFT, PAGE_SIZE, fls, is_power_of_2

_ALIGN_OVERHEAD = profiles.SearchLength.ALIGN_OVERHEAD
_SIZE = profiles.SearchLength.SIZE

__all__ = ["VmapAreas"]


def _start(area: VmapArea) -> int:
    return area.start


def _coalesced(ranges: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """Address-sorted ranges with touching ones joined, as merging them into a tree of their own leaves them."""
    out: list[tuple[int, int]] = []
    for s, e in ranges:
        if out and out[-1][1] == s:
            out[-1] = (out[-1][0], e)
        else:
            out.append((s, e))
    return out


@attrs.define(eq=False)
class VmapAreas:
    """Free, busy, lazy and pooled ranges of one kernel VA, and the purges that move them.

    Runtime complexity: :meth:`alloc`, :meth:`unlink` and :meth:`free_lazy` are
    O(log n); a purge is O(k log n) for k lazy areas.
    """

    layout: Layout
    cpus: int
    profile: profiles.KernelProfile
    block_pages: int
    auto_purge: bool = True
    #: The free tree (``free_vmap_area_root``).
    free: FreeTree = attrs.field(init=False)
    #: The per-CPU vmap blocks (bookkeeping; their areas are busy areas here).
    blocks: VmapBlocks = attrs.field(init=False)
    #: The distinct windows of the layout, vmalloc first.
    regions: tuple[Region, ...] = attrs.field(init=False)
    #: Purges run so far (lazy drains, failure reclaims, explicit purges).
    purges: int = attrs.field(init=False, default=0)
    #: Pages backing vmalloc() allocations (``nr_vmalloc_pages``, meminfo's VmallocUsed).
    vmalloc_pages: int = attrs.field(init=False, default=0)
    _busy: dict[int, VmapArea] = attrs.field(init=False, factory=dict)  # start -> VmapArea
    # The busy starts in address order, behind by the starts in _touched (made busy or not since): a run
    # allocates and frees hundreds of thousands of areas and asks for address order a few times.
    _starts: SortedList = attrs.field(init=False, factory=SortedList)
    _touched: set[int] = attrs.field(init=False, factory=set)
    # start -> VmapArea; a purge takes them all, so address order is made only when read.
    _lazy: dict[int, VmapArea] = attrs.field(init=False, factory=dict)
    _lazy_nr: int = attrs.field(init=False, default=0)
    _lazy_max: int = attrs.field(init=False, default=0)
    _drain_pending: bool = attrs.field(init=False, default=False)
    _pools: NodePools = attrs.field(init=False)
    # Pinned and peak bytes per window, in ``regions`` order.
    _pinned: list[int] = attrs.field(init=False, factory=list)
    _peak: list[int] = attrs.field(init=False, factory=list)
    _index: dict[str, int] = attrs.field(init=False, factory=dict)
    _spans: tuple[tuple[int, int], ...] = attrs.field(init=False, default=())  # each region's [start, end)
    # Fixed for the space's life, read by every allocation: whether there are node pools, whether every
    # search adds the alignment overhead (up to 5.15).
    _pooled: bool = attrs.field(init=False, default=False)
    _overhead: bool = attrs.field(init=False, default=False)
    #: ``ULONG_MAX`` of the layout (a property there), read by every allocation's checks.
    kva_end: int = attrs.field(init=False, default=0)

    def __attrs_post_init__(self) -> None:
        self.kva_end = self.layout.kva_end
        self.free = FreeTree.from_ranges([(1, self.kva_end)])
        self.blocks = VmapBlocks(self.block_pages)
        self.regions = self.layout.regions
        self._index = {r.name: i for i, r in enumerate(self.regions)}
        self._spans = tuple((r.start, r.end) for r in self.regions)
        self._pinned = [0] * len(self.regions)
        self._peak = [0] * len(self.regions)
        self._lazy_max = fls(self.cpus) * (32 * 1024 * 1024 // PAGE_SIZE)
        # One node has no pools to speak of: node_alloc() is bypassed and every VA goes back to the tree.
        self._pools = NodePools(self.nr_vmap_nodes if self.nr_vmap_nodes > 1 else 0)
        self._pooled = bool(self._pools)
        self._overhead = self.profile.search is _ALIGN_OVERHEAD

    # ------------------------------------------------------------- parameters

    @property
    def lazy_max_pages(self) -> int:
        """``lazy_max_pages()``: ``fls(cpus) * 32 MiB / PAGE_SIZE``.  Runtime complexity: O(1)."""
        return self._lazy_max

    @property
    def lazy_pages(self) -> int:
        """``vmap_lazy_nr``: lazily freed pages, guards included.  Runtime complexity: O(1)."""
        return self._lazy_nr

    @property
    def nr_vmap_nodes(self) -> int:
        """``nr_vmap_nodes`` of 6.9+: ``clamp(cpus, 1, 128)`` (1 on older profiles).  Runtime: O(1)."""
        return min(self.cpus, 128) if self.profile.node_pools else 1

    # ------------------------------------------------------------ argument checks

    def check_cpu(self, cpu: int) -> None:
        """:class:`InvalidArgument` unless ``cpu`` is an online CPU.  Runtime complexity: O(1)."""
        if type(cpu) is not int or not 0 <= cpu < self.cpus:
            integer("cpu", cpu, 0, self.cpus - 1)

    def check_request(self, size: int, align: int, vstart: int, vend: int, cpu: int) -> None:
        """The argument checks of ``alloc_vmap_area()``.  Runtime complexity: O(1)."""
        kva_end = self.kva_end
        if (type(size) is int and type(align) is int and type(vstart) is int and type(vend) is int
                and type(cpu) is int and 0 < size <= kva_end and not size % PAGE_SIZE and 0 < align <= kva_end
                and not align & (align - 1) and 0 <= vstart < vend <= kva_end and 0 <= cpu < self.cpus):
            return  # every check passes: the one test, in one expression, of nearly every call
        integer("size", size, 1, kva_end)
        if size % PAGE_SIZE:
            raise InvalidArgument(f"size={size}: must be a multiple of {PAGE_SIZE}")
        if not is_power_of_2(integer("align", align, 1, kva_end)):
            raise InvalidArgument(f"align={align}: must be a power of two")
        integer("vstart", vstart, 0, kva_end)
        integer("vend", vend, 0, kva_end)
        if vstart >= vend:
            raise InvalidArgument(f"window [{vstart:#x}, {vend:#x}): vstart must be below vend")
        self.check_cpu(cpu)

    def region_index(self, region: str) -> int:
        """Position of a window in :attr:`regions`; :class:`InvalidArgument` if unknown.  Runtime: O(1)."""
        i = self._index.get(region) if isinstance(region, str) else None
        if i is None:
            raise InvalidArgument(f"unknown region {region!r}; this layout has {sorted(self._index)}")
        return i

    # ------------------------------------------------------------ the primitive

    def alloc(
        self, size: int, align: int, vstart: int, vend: int, *, cpu: int, caller: str | None = None,
        vm_flags: int = 0, va_flags: int = 0, nr_pages: int = 0, phys: int = 0, nested: bool = False,
    ) -> VmapArea:  # fmt: skip
        """``alloc_vmap_area()`` on checked arguments: node pool (6.9+), free tree, purge + retry.

        A second miss raises :class:`VmapAllocationError` with the profile's
        warning line; the purge before the retry stays done.  Runtime: O(log n).
        """
        if self._drain_pending:
            self.drain_if_pending()
        node = -1
        addr = None
        if self._pooled and vstart == self.layout.vmalloc.start and vend == self.layout.vmalloc.end:
            node = cpu % self.nr_vmap_nodes  # node_alloc(): this CPU's node pool first
            addr = self._pools.take(node, size, align)
        if addr is None:
            if align <= PAGE_SIZE and not self._overhead:  # nearly every request: the lowest fit, whatever the shape
                descend, adjust = False, False
            else:
                descend, adjust = self._descent(size, align, vstart, vend)
            addr = self.free.alloc(size, align, vstart, vend, descend=descend, adjust=adjust)
            if addr is None and self.auto_purge:
                self.reclaim()
                addr = self.free.alloc(size, align, vstart, vend, descend=descend, adjust=adjust)
            if addr is None:
                raise VmapAllocationError(
                    self.profile.failure_message(size, vstart, vend), size=size, vstart=vstart, vend=vend
                )
            self._account(addr, size)
        area = VmapArea(addr, addr + size, caller, vm_flags, va_flags, nr_pages, phys, node, None, nested)
        self._busy[addr] = area
        self._touched.add(addr)
        return area

    def _descent(self, size: int, align: int, vstart: int, vend: int) -> tuple[bool, bool]:
        """(whether the answer depends on the tree's shape, whether the length is ``size + align - 1``).

        Only a search whose length exceeds what it must fit can miss a lowest fit off its path: every
        request up to 5.15 (``find_vmap_lowest_match()`` adds the alignment overhead to all), none of
        5.16-5.17's page-aligned ones, and from 5.18 ``__alloc_vmap_area()``'s ``adjust_search_size``: an
        alignment above a page in a window longer than the size.  With the length ``size`` (5.16-5.17) an
        aligned request descends too: it may be given a higher range than the lowest fit.
        """
        search = self.profile.search
        if search is _ALIGN_OVERHEAD:
            return True, True
        if search is _SIZE:
            return align > PAGE_SIZE, False
        return align > PAGE_SIZE and vend - vstart != size, True

    def insert(self, area: VmapArea) -> None:
        """Make ``area`` busy; its range must already be out of the free tree.  Runtime: O(log n)."""
        self._busy[area.start] = area
        self._touched.add(area.start)
        self._account(area.start, area.size)

    def get(self, addr: object) -> VmapArea | None:
        """The busy area starting at ``addr``, or None.  Runtime complexity: O(1)."""
        return self._busy.get(addr) if isinstance(addr, int) else None

    def relink(self, area: VmapArea) -> None:
        """Replace the busy area starting where ``area`` starts (same range).  Runtime: O(1)."""
        self._busy[area.start] = area

    def unlink(self, addr: int) -> VmapArea:
        """``find_unlink_vmap_area()``: take the busy area at ``addr`` out of the busy tree.  O(log n)."""
        area = self._busy.pop(addr)
        self._touched.add(addr)
        return area

    def free_lazy(self, area: VmapArea) -> None:
        """``free_vmap_area_noflush()``: onto the lazy tree; schedule a drain past ``lazy_max_pages``."""
        self._lazy[area.start] = area
        self._lazy_nr += (area.end - area.start) >> PAGE_SHIFT
        if self._lazy_nr > self._lazy_max and self.auto_purge:
            if self.profile.sync_drain:
                self.purge(full_decay=False)  # try_purge_vmap_area_lazy() in the freeing context (≤ 5.17)
            else:
                self._drain_pending = True  # schedule_work(&drain_vmap_work)

    def release(self, area: VmapArea) -> None:
        """``free_vmap_area()``: the range goes back to the free tree at once.  Runtime: O(log n)."""
        self._release(area.start, area.end)

    # ---------------------------------------------------------------- purging

    def drain_if_pending(self) -> None:
        """``drain_vmap_area_work()``, modelled as running before the next allocation."""
        if self._drain_pending:
            self._drain_pending = False
            self.purge(full_decay=False)

    def reclaim(self) -> None:
        """``reclaim_and_purge_vmap_areas()``: fragmented blocks, then a full purge and pool decay."""
        self.purge_fragmented_blocks(force=True)
        self.purge(full_decay=True)

    def purge(self, *, full_decay: bool) -> None:
        """``__purge_vmap_area_lazy()``: lazy areas back to the free tree (or the 6.9+ pools), merged in the
        kernel's order, which shapes its rbtree.

        Up to 6.8 the lazy areas already sit coalesced in the purge tree and go back by address.  From 6.9
        each node first decays its pools (``decay_va_pool_node()``: the decayed areas coalesced in a local
        tree, then merged by address), then each node's lazy areas, by address, go to its pools or onto a
        local list at its head, which ``reclaim_list_global()`` merges: highest address first.  Nodes are
        purged one after the other (the kernel uses helpers only past twice ``lazy_max_pages()``, when
        their order is a race).  Runtime complexity: O(k log n) for k areas.
        """
        self.purges += 1
        self._drain_pending = False
        taken = list(self._lazy.values())  # in the order they were freed
        self._lazy.clear()
        self._lazy_nr = 0
        if self.profile.purge_newest_first:
            # ≤ 5.10: llist_del_all() takes vmap_purge_list whole, newest first, and each area is merged alone
            for a in reversed(taken):
                self._release(a.start, a.end)
            return
        if not self._pooled:
            if len(taken) == 1:  # half the purges of a load storm: a VM_FLUSH_RESET_PERMS vfree()'s own area
                a = taken[0]
                self._release(a.start, a.end)
                return
            ranges = sorted([(a.start, a.end) for a in taken])  # by address: no two areas start alike
            # one node from 6.9: its lazy list, highest address first
            for s, e in _coalesced(ranges) if self.profile.coalesce_lazy else reversed(ranges):
                self._release(s, e)
            return
        lazy = sorted(taken, key=_start)
        for node in range(self._pools.nodes):
            for s, e in _coalesced(sorted(self._pools.decay(node, full_decay, self.profile.pool_decay))):
                self._release(s, e)
        back: list[list[tuple[int, int]]] = [[] for _ in range(self._pools.nodes)]
        for a in lazy:
            # skip_populate on a full decay; only pool-sized VAs of a known node go to a pool.
            if a.node >= 0 and not full_decay and size_class(a.size) < MAX_VA_SIZE_PAGES:
                self._pools.put(a.node, a.start, a.end)
            else:  # on its node's lazy list: the allocating CPU's, else addr_to_node()'s (another window)
                back[a.node if a.node >= 0 else self.node_of(a.start)].append((a.start, a.end))
        for ranges in back:
            for s, e in reversed(ranges):
                self._release(s, e)

    def purge_fragmented_blocks(self, *, force: bool) -> None:
        """``purge_fragmented_blocks_allcpus()``: free blocks with nothing live but unused room."""
        if not self.blocks.count:
            return  # no vmap block at all (no vm_map_ram() yet): every load's purges
        for start in self.blocks.fragmented(force=force):
            self.free_lazy(self.unlink(start))

    # ------------------------------------------------------------ introspection

    def find(self, addr: int) -> VmapArea | None:
        """``find_vmap_area()``: the busy area containing ``addr``, or None.  Runtime: O(log n)."""
        start = next(self._ordered().irange(maximum=addr, reverse=True), None)
        if start is None:
            return None
        area = self._busy[start]
        return area if addr < area.end else None

    def busy(self, lo: int = 0, hi: int = 1 << 64) -> list[VmapArea]:
        """Busy areas starting in ``[lo, hi)``, by address.  Runtime complexity: O(log n + k)."""
        return [self._busy[a] for a in self._ordered().irange(lo, hi, inclusive=(True, False))]

    def lazy(self, lo: int = 0, hi: int = 1 << 64) -> list[VmapArea]:
        """Lazy areas starting in ``[lo, hi)``, by address.  Runtime complexity: O(k log k)."""
        return sorted((a for a in self._lazy.values() if lo <= a.start < hi), key=_start)

    def lazy_as_freed(self) -> list[VmapArea]:
        """Lazy areas in the order they were freed, oldest first.  Runtime complexity: O(k)."""
        return list(self._lazy.values())

    def pooled(self, lo: int = 0, hi: int = 1 << 64) -> list[tuple[int, int]]:
        """Pooled ranges starting in ``[lo, hi)``, by address.  Runtime complexity: O(p log p)."""
        return [r for r in self._pools.ranges() if lo <= r[0] < hi]

    def pinned(self, i: int) -> int:
        """Pinned bytes of window ``i`` (see :meth:`region_index`).  Runtime complexity: O(1)."""
        return self._pinned[i]

    def peak(self, i: int) -> int:
        """Peak pinned bytes of window ``i``.  Runtime complexity: O(1)."""
        return self._peak[i]

    def pinned_all(self) -> tuple[int, ...]:
        """Pinned bytes of every window, in :attr:`regions` order.  Runtime complexity: O(windows)."""
        return tuple(self._pinned)

    def pinned_reader(self) -> Callable[[], tuple[int, ...]]:
        """:meth:`pinned_all` as a call made in C (``tuple`` of the counters), for a caller that samples after
        every change.  Runtime complexity: O(1); each call O(windows)."""
        return functools.partial(tuple, self._pinned)

    def area_reader(self) -> Callable[[int], VmapArea | None]:
        """:meth:`get` for an ``int`` address, as a call made in C (the busy dict's own ``get``).
        Runtime complexity: O(1)."""
        return self._busy.get

    def reset_peak(self) -> None:
        """Start peak tracking again from the current pinned bytes.  Runtime complexity: O(1)."""
        self._peak = list(self._pinned)

    def node_of(self, addr: int) -> int:
        """``addr_to_node_id()``: the 6.9+ busy-tree shard of an address (-1 before 6.9)."""
        n = self.nr_vmap_nodes
        return (addr // VMAP_ZONE_SIZE) % n if self.profile.node_pools and n > 1 else -1

    # ------------------------------------------------------------------ replay

    def take_exactly(self, addr: int, size: int, *, cpu: int) -> bool:
        """Make ``[addr, addr + size)`` busy from the free tree or a 6.9+ pool; False if neither has it."""
        if self._pooled and size_class(size) < MAX_VA_SIZE_PAGES and self._pools.remove(addr, addr + size) is not None:
            self._busy[addr] = VmapArea(addr, addr + size, node=cpu % self.nr_vmap_nodes)
            self._touched.add(addr)
            return True
        hit = self.free.containing(addr)
        if hit is None or hit[1] < addr + size:
            return False
        self.free.clip(addr, size)
        node = cpu % self.nr_vmap_nodes if self._pooled and addr in self.layout.vmalloc else -1
        self.insert(VmapArea(addr, addr + size, node=node))
        return True

    # --------------------------------------------------------------- internals

    def _ordered(self) -> SortedList:
        """The busy starts in address order, brought up to date.  Runtime: O(k log n) for k changes since."""
        starts, busy = self._starts, self._busy
        for start in self._touched:
            if start in busy:
                if start not in starts:
                    starts.add(start)
            elif start in starts:
                starts.remove(start)
        self._touched.clear()
        return starts

    def _account(self, addr: int, delta: int) -> None:
        for i, (lo, hi) in enumerate(self._spans):
            if lo <= addr < hi:
                v = self._pinned[i] + delta
                self._pinned[i] = v
                if v > self._peak[i]:
                    self._peak[i] = v
                return

    def _release(self, start: int, end: int) -> None:
        self.free.insert(start, end)
        self._account(start, start - end)

    def _check(self) -> None:
        """Assert every invariant: the ranges tile the KVA, every area is page aligned, counters match a recount."""
        self.free._check()
        self.blocks._check()
        pieces = [(s, e, "free") for s, e in self.free]
        pieces += [(a.start, a.end, "busy") for a in self._busy.values()]
        pieces += [(a.start, a.end, "lazy") for a in self._lazy.values()]
        pieces += [(s, e, "pool") for s, e in self._pools.ranges()]
        pieces.sort()
        pos = 1
        for s, e, kind in pieces:
            assert s == pos, f"gap or overlap at {pos:#x} (next {kind} piece at {s:#x})"
            assert e > s
            # every vmap area is page aligned and page sized (alloc_vmap_area(), mm/vmalloc.c, 5.18 to 7.3)
            assert kind == "free" or not (s | e) % PAGE_SIZE, f"{kind} piece [{s:#x}, {e:#x}) is not page aligned"
            pos = e
        assert pos == self.layout.kva_end, f"VA ends at {pos:#x}"
        assert all(k == a.start for k, a in self._busy.items()) and all(k == a.start for k, a in self._lazy.items())
        assert list(self._ordered()) == sorted(self._busy)
        assert self._lazy_nr == sum(a.size for a in self._lazy.values()) >> PAGE_SHIFT
        for i, r in enumerate(self.regions):
            pinned = sum(a.size for a in self.busy(r.start, r.end)) + sum(a.size for a in self.lazy(r.start, r.end))
            pinned += sum(e - s for s, e in self.pooled(r.start, r.end))
            assert self._pinned[i] == pinned, r.name
            assert self._peak[i] >= self._pinned[i]
