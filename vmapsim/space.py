"""VmapSpace: the kernel's vmap address-space allocator for one machine.

One :class:`~vmapsim.freetree.FreeTree` covers the whole kernel VA
``[1, ULONG_MAX)`` (``vmap_init_free_space()``); the vmalloc and module windows
are ``[vstart, vend)`` constraints on it.  On top of ``alloc_vmap_area()`` sit
the kernel's users, each built as ``mm/vmalloc.c`` builds it: ``vmalloc`` (guard
page, nested page-array vmalloc), ``vmap``, ``ioremap``, ``vm_map_ram`` with
per-CPU vmap blocks, top-down percpu areas, lazy freeing with the
``lazy_max_pages()`` drain, purge-and-retry on failure, and (6.9+ profiles) the
per-node size-class pools.  Facts: ../shared/reference/kernel-vmalloc.md.

>>> from vmapsim import VmapSpace, layouts
>>> space = VmapSpace(layouts.X86_64, cpus=4)
>>> a = space.vmalloc(10_000)
>>> hex(a), space.area(a).size          # 3 pages + guard
('0xffffc90000000000', 16384)
>>> space.vfree(a)
>>> space.usage("vmalloc").lazy         # freed lazily: still pinned
16384
>>> space.purge(); space.usage("vmalloc").pinned
0
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence

import attrs

from vmapsim import profiles
from vmapsim.errors import InvalidArgument, UnknownAddress, VmapAllocationError
from vmapsim.freetree import FreeTree
from vmapsim.layouts import Layout, Region
from vmapsim.units import PAGE_SHIFT, PAGE_SIZE, fls, get_count_order, get_order, is_power_of_2, page_align

__all__ = [
    "VMAP_BLOCK",
    "VMAP_RAM",
    "VM_ALLOC",
    "VM_DMA_COHERENT",
    "VM_FLUSH_RESET_PERMS",
    "VM_IOREMAP",
    "VM_MAP",
    "VM_USERMAP",
    "RegionUsage",
    "VmapArea",
    "VmapBlock",
    "VmapSpace",
]

# vm_struct flags (include/linux/vmalloc.h), same bit values as the kernel.
VM_IOREMAP = 0x1
VM_ALLOC = 0x2
VM_MAP = 0x4
VM_USERMAP = 0x8
VM_DMA_COHERENT = 0x10
VM_FLUSH_RESET_PERMS = 0x100
# vmap_area flags (mm/vmalloc.c, 6.3+).
VMAP_RAM = 0x1
VMAP_BLOCK = 0x2

# Pools hold VAs of up to MAX_VA_SIZE_PAGES pages, guard included (mm/vmalloc.c, 6.9+).
MAX_VA_SIZE_PAGES = 256
# Busy-tree sharding granule of the 6.9+ vmap nodes: vmap_zone_size = 16 pages.
VMAP_ZONE_SIZE = 16 * PAGE_SIZE


@attrs.frozen
class VmapArea:
    """One allocated (or lazily freed) ``vmap_area`` and what its ``vm_struct`` says.

    ``size`` includes the guard page, as ``/proc/vmallocinfo`` shows it.
    ``vm_flags`` is 0 for a bare area (``alloc_vmap_area()``, ``vm_map_ram``);
    ``node`` is the 6.9+ vmap node the area was allocated for (-1: none);
    ``pages_area`` is the start of the nested page-array vmalloc, if any (0:
    one exists but a restored snapshot did not say where); ``nested`` marks
    such a page array.

    >>> VmapArea(0x1000, 0x3000).size
    8192
    """

    start: int
    end: int
    caller: str | None = None
    vm_flags: int = 0
    va_flags: int = 0
    nr_pages: int = 0
    phys: int = 0
    node: int = -1
    pages_area: int | None = None
    nested: bool = False

    @property
    def size(self) -> int:
        """Bytes of VA, guard page included.  Runtime complexity: O(1)."""
        return self.end - self.start


@attrs.define
class VmapBlock:
    """A per-CPU vmap block (``struct vmap_block``): a bump allocator for ``vm_map_ram``.

    ``free`` pages are still unused at the top; ``dirty`` pages were handed out
    and freed again.  Space freed inside a block is never reused.
    """

    start: int
    cpu: int
    free: int
    dirty: int = 0
    #: Live mappings: page offset in the block -> pages (the kernel's ``used_map``).
    live: dict[int, int] = attrs.field(factory=dict)


@attrs.frozen
class RegionUsage:
    """Address-space use of one window, in bytes.

    ``pinned = busy + lazy + pooled`` is what a new allocation cannot use;
    ``peak_pinned`` is its maximum since the space was made or ``reset_peak()``.
    """

    busy: int
    lazy: int
    pooled: int
    free: int
    largest_free: int
    peak_pinned: int

    @property
    def pinned(self) -> int:
        """Busy + lazy + pooled bytes.  Runtime complexity: O(1)."""
        return self.busy + self.lazy + self.pooled


@attrs.define(eq=False)
class VmapSpace:
    """The vmap allocator state of one machine: free tree, busy, lazy and pooled areas.

    ``cpus`` is ``num_online_cpus()`` (it sets ``lazy_max_pages()`` and, on 6.9+
    profiles, the number of vmap nodes); ``nr_cpus_config`` is ``CONFIG_NR_CPUS``
    (it sets the vmap block size; Debian builds 8192); ``auto_purge=False``
    turns off every purge the allocator would start by itself (the lazy drain
    and the purge before a retry), for replaying a kernel trace whose purges are
    events of their own.

    Runtime complexity: allocation and free are O(log n) in the number of free
    ranges (plus, on 6.9+, O(1) pool operations); a purge is O(k log n) for k
    lazy areas.

    >>> from vmapsim import layouts
    >>> VmapSpace(layouts.X86_64, cpus=8).lazy_max_pages
    32768
    """

    layout: Layout
    cpus: int = 1
    profile: profiles.KernelProfile = profiles.DEFAULT
    nr_cpus_config: int = 8192
    auto_purge: bool = True
    _free: FreeTree = attrs.field(init=False)
    _busy: dict[int, VmapArea] = attrs.field(init=False, factory=dict)
    _lazy: dict[int, VmapArea] = attrs.field(init=False, factory=dict)
    _lazy_nr: int = attrs.field(init=False, default=0)
    _lazy_max: int = attrs.field(init=False, default=0)
    _drain_pending: bool = attrs.field(init=False, default=False)
    _pools: list[dict[int, deque[tuple[int, int]]]] = attrs.field(init=False, factory=list)
    _blocks: dict[int, VmapBlock] = attrs.field(init=False, factory=dict)
    # Per-CPU free lists of vmap blocks (vmap_block_queue), only for CPUs that have one.
    _vbq: dict[int, list[VmapBlock]] = attrs.field(init=False, factory=dict)
    _nr_vmalloc_pages: int = attrs.field(init=False, default=0)
    _pinned: dict[str, int] = attrs.field(init=False, factory=dict)
    _peak: dict[str, int] = attrs.field(init=False, factory=dict)
    _regions: tuple[Region, ...] = attrs.field(init=False, factory=tuple)
    #: Number of purges run so far (lazy drains, failure reclaims, explicit purges).
    purges: int = attrs.field(init=False, default=0)

    def __attrs_post_init__(self) -> None:
        if not isinstance(self.cpus, int) or not 1 <= self.cpus <= 1 << 16:
            raise InvalidArgument(f"cpus={self.cpus!r}: expected an integer from 1 to 65536")
        if not isinstance(self.nr_cpus_config, int) or self.nr_cpus_config < self.cpus:
            raise InvalidArgument(f"nr_cpus_config={self.nr_cpus_config!r}: must be an integer >= cpus")
        self._free = FreeTree.from_ranges([(1, self.layout.kva_end)])
        self._lazy_max = fls(self.cpus) * (32 * 1024 * 1024 // PAGE_SIZE)
        self._regions = self.layout.regions
        self._pinned = {r.name: 0 for r in self._regions}
        self._peak = dict(self._pinned)
        self._pools = [{} for _ in range(self.nr_vmap_nodes if self.profile.node_pools else 0)]

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
        """``nr_vmap_nodes`` of 6.9+: ``clamp(cpus, 1, 128)`` (1 on older profiles).

        Runtime complexity: O(1).
        """
        return min(self.cpus, 128) if self.profile.node_pools else 1

    @property
    def vmap_block_pages(self) -> int:
        """``VMAP_BBMAP_BITS``: pages per vmap block, from ``CONFIG_NR_CPUS``.

        Runtime complexity: O(1).

        >>> from vmapsim import layouts
        >>> VmapSpace(layouts.X86_64).vmap_block_pages, VmapSpace(layouts.X86_64, nr_cpus_config=64).vmap_block_pages
        (256, 1024)
        """
        bits_per_long = self.layout.bits
        pages = self.layout.vmalloc_space // PAGE_SIZE
        roundup = 1 << get_count_order(self.nr_cpus_config)
        return min(1024, max(bits_per_long * 2, pages // roundup // 16))

    @property
    def nr_vmalloc_pages(self) -> int:
        """Pages backing ``vmalloc()`` allocations (meminfo ``VmallocUsed``).  Runtime: O(1)."""
        return self._nr_vmalloc_pages

    # ------------------------------------------------------------ core primitive

    def alloc_vmap_area(
        self,
        size: int,
        *,
        align: int = PAGE_SIZE,
        vstart: int,
        vend: int,
        caller: str | None = None,
        cpu: int = 0,
    ) -> VmapArea:
        """``alloc_vmap_area()``: reserve ``size`` bytes (no guard added) in ``[vstart, vend)``.

        The address is the lowest ``a >= vstart`` with ``a % align == 0`` and
        ``[a, a + size)`` inside one free range and ``a + size <= vend``.  On a
        miss the kernel purges every lazy area (and, 6.9+, empties every pool)
        and retries once; a second miss raises :class:`VmapAllocationError`
        carrying the kernel's warning line -- the purge stays done.

        Bad arguments raise :class:`InvalidArgument` and change nothing.
        Runtime complexity: O(log n) amortized.

        >>> from vmapsim import layouts
        >>> s = VmapSpace(layouts.X86_64)
        >>> hex(s.alloc_vmap_area(0x2000, align=0x4000, vstart=0x10001000, vend=0x20000000).start)
        '0x10004000'
        """
        self._check_request(size, align, vstart, vend, cpu)
        return self._alloc(size, align, vstart, vend, cpu=cpu, caller=caller)

    def free_vmap_area(self, addr: int, *, lazy: bool = True) -> None:
        """Free the bare area at ``addr``: lazily (``free_vmap_area_noflush()``) or at once.

        ``lazy=False`` is ``free_vmap_area()``: the range returns to the free tree
        now, without waiting for a purge.  Runtime complexity: O(log n).
        """
        area = self._take_busy(addr, "free_vmap_area")
        if lazy:
            self._free_lazy(area)
        else:
            self._release(area.start, area.end)

    # ------------------------------------------------------------ vmalloc family

    def vmalloc(self, size: int, *, align: int = 1, caller: str | None = None, cpu: int = 0) -> int:
        """``vmalloc()``/``__vmalloc_node()``: PAGE_ALIGN(size) + a guard page in the vmalloc window.

        Above 512 pages (64-bit) the page-pointer array is itself vmalloc'ed,
        right after the main area (``__vmalloc_area_node()``).  Returns the
        address.  Runtime complexity: O(log n).

        >>> from vmapsim import layouts
        >>> s = VmapSpace(layouts.X86_64)
        >>> a = s.vmalloc(4 << 20)
        >>> [x.size for x in s.areas()]          # 1024 pages + guard, then 8 KiB array + guard
        [4198400, 12288]
        """
        w = self.layout.vmalloc
        return self.vmalloc_node_range(size, align=align, start=w.start, end=w.end, caller=caller, cpu=cpu)

    def vmalloc_node_range(
        self,
        size: int,
        *,
        align: int = 1,
        start: int,
        end: int,
        caller: str | None = None,
        flush_reset_perms: bool = False,
        cpu: int = 0,
    ) -> int:
        """``__vmalloc_node_range()``: a vmalloc in any window (``module_alloc()`` uses it).

        ``flush_reset_perms`` sets ``VM_FLUSH_RESET_PERMS``: freeing the area
        then purges every lazy area at once (``vm_reset_perms()``).  If the
        nested page array cannot be allocated, the main area is vfree'd (lazily)
        and :class:`VmapAllocationError` is raised, as the kernel does.
        Runtime complexity: O(log n).
        """
        if not isinstance(size, int) or size <= 0:
            raise InvalidArgument(f"vmalloc size {size!r}: must be a positive integer")
        size = page_align(size)
        self._check_request(size + PAGE_SIZE, align, start, end, cpu)
        flags = VM_ALLOC | (VM_FLUSH_RESET_PERMS if flush_reset_perms else 0)
        nr_pages = size >> PAGE_SHIFT
        area = self._alloc(
            size + PAGE_SIZE, align, start, end, cpu=cpu, caller=caller, vm_flags=flags, nr_pages=nr_pages
        )
        array_size = nr_pages * (self.layout.bits // 8)
        if array_size > PAGE_SIZE:
            w = self.layout.vmalloc
            try:
                pages = self._alloc(
                    page_align(array_size) + PAGE_SIZE,
                    1,
                    w.start,
                    w.end,
                    cpu=cpu,
                    caller=caller,
                    vm_flags=VM_ALLOC,
                    nr_pages=page_align(array_size) >> PAGE_SHIFT,
                    nested=True,
                )
            except VmapAllocationError:
                self._free_lazy(self._busy.pop(area.start))
                raise
            self._nr_vmalloc_pages += pages.nr_pages
            self._busy[area.start] = attrs.evolve(area, pages_area=pages.start)
        self._nr_vmalloc_pages += nr_pages
        return area.start

    def vfree(self, addr: int) -> None:
        """``vfree()``: unmap now, free the range lazily; the page array after it.

        With ``VM_FLUSH_RESET_PERMS`` the free ends in ``vm_unmap_aliases()``,
        which purges every lazy area.  Runtime complexity: O(log n).
        """
        area = self._take_vm(addr, VM_ALLOC, "vfree")
        self._free_lazy(area)
        if area.vm_flags & VM_FLUSH_RESET_PERMS:
            self.vm_unmap_aliases()
        self._nr_vmalloc_pages -= area.nr_pages
        if area.pages_area:  # 0: a restored area whose page array was not identified
            array = self._busy.pop(area.pages_area)
            self._nr_vmalloc_pages -= array.nr_pages
            self._free_lazy(array)

    def alloc_thread_stack(self, *, thread_size: int = 4 * PAGE_SIZE, cpu: int = 0) -> int:
        """A vmapped thread stack (``alloc_thread_stack_node()``): THREAD_SIZE at THREAD_ALIGN.

        x86-64: 16 KiB + guard at 16 KiB alignment.  Free it with :meth:`vfree`.
        Runtime complexity: O(log n).
        """
        return self.vmalloc(thread_size, align=self.layout.thread_align, caller="alloc_thread_stack_node", cpu=cpu)

    def vmap(self, nr_pages: int, *, caller: str | None = None, cpu: int = 0) -> int:
        """``vmap()``: map ``nr_pages`` pages, plus a guard page, in the vmalloc window.

        Runtime complexity: O(log n).
        """
        if not isinstance(nr_pages, int) or nr_pages <= 0:
            raise InvalidArgument(f"vmap of {nr_pages!r} pages: must be a positive integer")
        w = self.layout.vmalloc
        size = (nr_pages << PAGE_SHIFT) + PAGE_SIZE
        self._check_request(size, PAGE_SIZE, w.start, w.end, cpu)
        # vm_struct.nr_pages stays 0: vmap() sets it only for VM_MAP_PUT_PAGES.
        return self._alloc(size, 1, w.start, w.end, cpu=cpu, caller=caller, vm_flags=VM_MAP).start

    def vunmap(self, addr: int) -> None:
        """``vunmap()``: free a vmap'd range lazily.  Runtime complexity: O(log n)."""
        self._free_lazy(self._take_vm(addr, VM_MAP, "vunmap"))

    def ioremap(self, size: int, *, phys: int = 0, caller: str | None = None, cpu: int = 0) -> int:
        """``ioremap()``/``get_vm_area(VM_IOREMAP)``: aligned to the size's power of two.

        ``align = 1 << clamp(get_count_order(PAGE_ALIGN(size)), PAGE_SHIFT,
        IOREMAP_MAX_ORDER)``, computed before the guard page is added.
        Runtime complexity: O(log n).

        >>> from vmapsim import layouts
        >>> s = VmapSpace(layouts.X86_64)
        >>> _ = s.vmalloc(1)
        >>> hex(s.ioremap(0x101000, phys=0xfee00000))   # 1 MiB + 4 KiB -> 2 MiB aligned
        '0xffffc90000200000'
        """
        if not isinstance(size, int) or size <= 0:
            raise InvalidArgument(f"ioremap size {size!r}: must be a positive integer")
        size = page_align(size)
        order = min(max(get_count_order(size), PAGE_SHIFT), self.layout.ioremap_max_order)
        w = self.layout.vmalloc
        self._check_request(size + PAGE_SIZE, 1 << order, w.start, w.end, cpu)
        area = self._alloc(
            size + PAGE_SIZE, 1 << order, w.start, w.end, cpu=cpu, caller=caller, vm_flags=VM_IOREMAP, phys=phys
        )
        return area.start

    def iounmap(self, addr: int) -> None:
        """``iounmap()``: free an ioremap'd range lazily.  Runtime complexity: O(log n)."""
        self._free_lazy(self._take_vm(addr, VM_IOREMAP, "iounmap"))

    # -------------------------------------------------------------- vm_map_ram

    def vm_map_ram(self, count: int, *, cpu: int = 0) -> int:
        """``vm_map_ram()``: up to ``VMAP_MAX_ALLOC`` pages come from this CPU's vmap blocks.

        Small requests are rounded up to a power of two and bump-allocated in a
        block of ``vmap_block_pages`` pages aligned to its own size (no guard);
        larger ones get a bare ``VMAP_RAM`` area with no guard page.
        Runtime complexity: O(b + log n) for b blocks on this CPU's free list.

        >>> from vmapsim import layouts
        >>> s = VmapSpace(layouts.X86_64)
        >>> a, b = s.vm_map_ram(3), s.vm_map_ram(1)
        >>> b - a, len(s.areas())           # 3 pages round up to 4; one 1 MiB block
        (16384, 1)
        """
        if not isinstance(count, int) or count <= 0:
            raise InvalidArgument(f"vm_map_ram of {count!r} pages: must be a positive integer")
        self._check_cpu(cpu)
        w = self.layout.vmalloc
        if count > self.layout.bits:  # VMAP_MAX_ALLOC = BITS_PER_LONG
            self._check_request(count << PAGE_SHIFT, PAGE_SIZE, w.start, w.end, cpu)
            area = self._alloc(count << PAGE_SHIFT, PAGE_SIZE, w.start, w.end, cpu=cpu, va_flags=VMAP_RAM)
            return area.start
        pages = 1 << get_order(count << PAGE_SHIFT)
        for vb in self._vbq.get(cpu, ()):  # vb_alloc(): first block on this CPU's free list with room
            if vb.free >= pages:
                off = self.vmap_block_pages - vb.free
                vb.live[off] = pages
                vb.free -= pages
                if vb.free == 0:
                    self._unqueue(vb)
                return vb.start + (off << PAGE_SHIFT)
        # new_vmap_block(): a whole block, aligned to its size, no guard.
        bsize = self.vmap_block_pages << PAGE_SHIFT
        area = self._alloc(bsize, bsize, w.start, w.end, cpu=cpu, va_flags=VMAP_RAM | VMAP_BLOCK)
        vb = VmapBlock(area.start, cpu, self.vmap_block_pages - pages, live={0: pages})
        self._blocks[area.start] = vb
        self._vbq.setdefault(cpu, []).append(vb)
        return area.start

    def vm_unmap_ram(self, addr: int, count: int) -> None:
        """``vm_unmap_ram()``: give back a ``vm_map_ram`` mapping of ``count`` pages.

        Inside a block the pages only become dirty; the block is freed (lazily)
        once every page in it is dirty (``vb_free()``).
        Runtime complexity: O(log n).
        """
        if not isinstance(count, int) or count <= 0:
            raise InvalidArgument(f"vm_unmap_ram of {count!r} pages: must be a positive integer")
        if count > self.layout.bits:
            area = self._busy.get(addr)
            if area is None or area.va_flags != VMAP_RAM or area.size != count << PAGE_SHIFT:
                raise UnknownAddress(f"vm_unmap_ram({addr:#x}, {count}): no vm_map_ram area of that size there")
            del self._busy[addr]
            self._free_lazy(area)
            return
        bsize = self.vmap_block_pages << PAGE_SHIFT
        vb = self._blocks.get(addr & ~(bsize - 1)) if isinstance(addr, int) else None
        pages = 1 << get_order(count << PAGE_SHIFT)
        off = (addr - vb.start) >> PAGE_SHIFT if vb else -1
        if vb is None or addr % PAGE_SIZE or vb.live.get(off) != pages:
            raise UnknownAddress(f"vm_unmap_ram({addr!r}, {count}): not a live vm_map_ram mapping of that size")
        del vb.live[off]
        vb.dirty += pages
        if vb.dirty == self.vmap_block_pages:  # free_vmap_block()
            del self._blocks[vb.start]
            self._free_lazy(self._busy.pop(vb.start))

    def vm_unmap_aliases(self) -> None:
        """``vm_unmap_aliases()``: release fragmented vmap blocks, then purge every lazy area.

        Up to 6.4 every fragmented block is released; from 6.5 only those with
        fewer than ``VMAP_PURGE_THRESHOLD`` free pages.  6.9+ does not decay
        the pools here.  Runtime complexity: O(k log n) for k lazy areas.
        """
        self._purge_fragmented_blocks(force=not self.profile.fragmented_threshold)
        self._purge(full_decay=False)

    # ----------------------------------------------------------------- percpu

    def pcpu_get_vm_areas(self, offsets: Sequence[int], sizes: Sequence[int], align: int = PAGE_SIZE) -> list[int]:
        """``pcpu_get_vm_areas()``: percpu chunk areas placed top-down from ``VMALLOC_END``.

        All areas keep their relative ``offsets``; there is no guard page.  The
        search walks the free ranges downward from the top of the vmalloc
        window; on a miss it purges once and retries.  Returns the addresses.
        Runtime complexity: O(k log n) for k free ranges visited.

        >>> from vmapsim import layouts
        >>> s = VmapSpace(layouts.X86_64)
        >>> hex(s.pcpu_get_vm_areas([0], [2 << 20], 2 << 20)[0])
        '0xffffe8ffffc00000'
        """
        n = len(offsets)
        if n == 0 or n != len(sizes) or not is_power_of_2(align) or align % PAGE_SIZE:
            raise InvalidArgument(f"pcpu_get_vm_areas(offsets={list(offsets)}, sizes={list(sizes)}, align={align})")
        for i in range(n):
            if offsets[i] % align or sizes[i] % align or sizes[i] <= 0 or offsets[i] < 0:
                raise InvalidArgument(f"percpu area {i}: offset {offsets[i]} / size {sizes[i]} not aligned to {align}")
            for k in range(i + 1, n):
                if offsets[k] < offsets[i] + sizes[i] and offsets[i] < offsets[k] + sizes[k]:
                    raise InvalidArgument(f"percpu areas {i} and {k} overlap")
        self._drain_if_pending()
        base = self._pcpu_find(offsets, sizes, align)
        if base is None and self.auto_purge:
            self._reclaim()
            base = self._pcpu_find(offsets, sizes, align)
        if base is None:
            raise VmapAllocationError(
                f"percpu: pcpu_get_vm_areas of {n} area(s), sizes {list(sizes)}, align {align} failed",
                size=sum(sizes),
                vstart=self.layout.vmalloc.start,
                vend=self.layout.vmalloc.end,
            )
        addrs = []
        for off, size in zip(offsets, sizes, strict=False):
            self._free.clip(base + off, size)
            self._add_busy(VmapArea(base + off, base + off + size, "pcpu_get_vm_areas", VM_ALLOC))
            addrs.append(base + off)
        return addrs

    def pcpu_free_vm_areas(self, addrs: Iterable[int]) -> None:
        """``pcpu_free_vm_areas()``: free percpu areas (lazily).  Runtime complexity: O(k log n)."""
        addrs = list(addrs)
        for a in addrs:
            area = self._busy.get(a)
            if area is None or area.caller != "pcpu_get_vm_areas":
                raise UnknownAddress(f"{a!r} is not a live percpu area")
        for a in addrs:
            self._free_lazy(self._busy.pop(a))

    # ---------------------------------------------------------------- purging

    def purge(self) -> None:
        """Purge every lazy area now (``purge_vmap_area_lazy()`` / ``reclaim_and_purge_vmap_areas()``).

        Fragmented vmap blocks are released and, on 6.9+, every pool is emptied
        back into the free tree.  Runtime complexity: O(k log n).
        """
        self._reclaim()

    # ------------------------------------------------------------ introspection

    def area(self, addr: int) -> VmapArea:
        """The busy area starting at ``addr``; :class:`UnknownAddress` if none.  Runtime: O(1)."""
        try:
            return self._busy[addr]
        except (KeyError, TypeError):
            raise UnknownAddress(f"no busy area starts at {addr!r}") from None

    def areas(self, region: str | Region | None = None) -> list[VmapArea]:
        """Busy areas (in a window, or all), by address.  Runtime complexity: O(n log n)."""
        lo, hi = self._window(region)
        return [self._busy[a] for a in sorted(self._busy) if lo <= a < hi]

    def lazy_areas(self, region: str | Region | None = None) -> list[VmapArea]:
        """Lazily freed areas not yet purged, by address.  Runtime complexity: O(k log k)."""
        lo, hi = self._window(region)
        return [self._lazy[a] for a in sorted(self._lazy) if lo <= a < hi]

    def busy_ranges(self, region: str | Region | None = None) -> list[tuple[int, int]]:
        """``(start, end)`` of busy areas, by address.  Runtime complexity: O(n log n)."""
        return [(a.start, a.end) for a in self.areas(region)]

    def lazy_ranges(self, region: str | Region | None = None) -> list[tuple[int, int]]:
        """``(start, end)`` of lazy areas, by address.  Runtime complexity: O(k log k)."""
        return [(a.start, a.end) for a in self.lazy_areas(region)]

    def pooled_ranges(self, region: str | Region | None = None) -> list[tuple[int, int]]:
        """``(start, end)`` of VAs parked in 6.9+ node pools, by address.  Runtime: O(p log p)."""
        lo, hi = self._window(region)
        return sorted(r for pools in self._pools for q in pools.values() for r in q if lo <= r[0] < hi)

    def free_ranges(self, region: str | Region | None = None) -> list[tuple[int, int]]:
        """Free ranges, clipped to the window when one is given.  Runtime: O(log n + k)."""
        lo, hi = self._window(region)
        return list(self._free.irange(lo, hi))

    def vmap_blocks(self) -> list[VmapBlock]:
        """Live vmap blocks, by address (copies).  Runtime complexity: O(b log b)."""
        return [attrs.evolve(self._blocks[a]) for a in sorted(self._blocks)]

    def usage(self, region: str | Region) -> RegionUsage:
        """Busy/lazy/pooled/free bytes, largest free range and peak pinned of one window.

        Runtime complexity: O(n) in the areas and free ranges of the window.

        >>> from vmapsim import layouts
        >>> s = VmapSpace(layouts.X86_64)
        >>> s.usage("modules").free // (1 << 20)
        1008
        """
        r = region if isinstance(region, Region) else self.layout.region(region)
        lo, hi = r.start, r.end
        busy = sum(a.size for a in self._busy.values() if lo <= a.start < hi)
        lazy = sum(a.size for a in self._lazy.values() if lo <= a.start < hi)
        pooled = sum(e - s for s, e in self.pooled_ranges(r))
        free = list(self._free.irange(lo, hi))
        return RegionUsage(
            busy=busy,
            lazy=lazy,
            pooled=pooled,
            free=sum(e - s for s, e in free),
            largest_free=max((e - s for s, e in free), default=0),
            peak_pinned=self._peak.get(r.name, 0),
        )

    def pinned(self, region: str) -> int:
        """Busy + lazy + pooled bytes of a window, kept incrementally.  Runtime complexity: O(1)."""
        if region not in self._pinned:
            raise InvalidArgument(f"unknown region {region!r}; this layout has {sorted(self._pinned)}")
        return self._pinned[region]

    def peak_pinned(self, region: str) -> int:
        """Highest pinned bytes of a window since creation or :meth:`reset_peak`.  Runtime: O(1)."""
        if region not in self._peak:
            raise InvalidArgument(f"unknown region {region!r}; this layout has {sorted(self._peak)}")
        return self._peak[region]

    def reset_peak(self) -> None:
        """Start peak tracking again from the current pinned bytes.  Runtime complexity: O(1)."""
        self._peak = dict(self._pinned)

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
        if (
            not isinstance(start, int)
            or not isinstance(size, int)
            or size <= 0
            or start % PAGE_SIZE
            or size % PAGE_SIZE
        ):
            raise InvalidArgument(f"reserve({start!r}, {size!r}): page-aligned start and positive size needed")
        self._free.clip(start, size)
        # Only vmalloc-window areas carry a node; which CPU allocated one is not known, so the
        # node addr_to_node() gives stands in for it.
        node = self._node_of(start) if start in self.layout.vmalloc else -1
        area = VmapArea(start, start + size, caller, vm_flags, va_flags, nr_pages, phys, node, pages_area, nested)
        self._add_busy(area)
        if vm_flags & VM_ALLOC:
            self._nr_vmalloc_pages += nr_pages
        if lazy:
            del self._busy[start]
            self._free_lazy(area)
        return area

    # --------------------------------------------------------------- internals
    # _force_busy and _free_any serve vmapsim.trace.replay(), which applies the kernel's choices.

    def _force_busy(self, addr: int, size: int, *, cpu: int) -> bool:
        """Make ``[addr, addr + size)`` busy if the model has it free or pooled; False if not."""
        for pools in self._pools:
            for idx, q in pools.items():
                if (addr, addr + size) in q:
                    q.remove((addr, addr + size))
                    if not q:
                        del pools[idx]
                    self._busy[addr] = VmapArea(addr, addr + size, node=cpu % self.nr_vmap_nodes)
                    return True
        hit = self._free.containing(addr)
        if hit is None or hit[1] < addr + size:
            return False
        self._free.clip(addr, size)
        w = self.layout.vmalloc
        node = cpu % self.nr_vmap_nodes if self._pools and self.nr_vmap_nodes > 1 and addr in w else -1
        self._add_busy(VmapArea(addr, addr + size, node=node))
        return True

    def _free_any(self, addr: int) -> bool:
        """``free_vmap_area_noflush()`` of whatever busy area starts at ``addr``; False if none."""
        area = self._busy.pop(addr, None)
        if area is None:
            return False
        if area.va_flags & VMAP_BLOCK:
            vb = self._blocks.pop(addr)
            if vb in self._vbq.get(vb.cpu, ()):
                self._unqueue(vb)
        if area.vm_flags & VM_ALLOC:
            self._nr_vmalloc_pages -= area.nr_pages
        self._free_lazy(area)
        return True

    def _window(self, region: str | Region | None) -> tuple[int, int]:
        if region is None:
            return 0, 1 << 64
        r = region if isinstance(region, Region) else self.layout.region(region)
        return r.start, r.end

    def _check_cpu(self, cpu: int) -> None:
        if not isinstance(cpu, int) or not 0 <= cpu < self.cpus:
            raise InvalidArgument(f"cpu={cpu!r}: expected 0..{self.cpus - 1}")

    def _check_request(self, size: int, align: int, vstart: int, vend: int, cpu: int) -> None:
        if not isinstance(size, int) or size <= 0 or size % PAGE_SIZE:
            raise InvalidArgument(f"size {size!r}: must be a positive multiple of {PAGE_SIZE}")
        if not isinstance(align, int) or not is_power_of_2(align):
            raise InvalidArgument(f"align {align!r}: must be a power of two")
        if not isinstance(vstart, int) or not isinstance(vend, int) or not 0 <= vstart < vend <= self.layout.kva_end:
            raise InvalidArgument(
                f"window [{vstart!r}, {vend!r}): must satisfy 0 <= vstart < vend <= {self.layout.kva_end:#x}"
            )
        self._check_cpu(cpu)

    def _node_of(self, addr: int) -> int:
        """``addr_to_node_id()``: the 6.9+ busy-tree shard of an address (-1 before 6.9)."""
        n = self.nr_vmap_nodes
        return (addr // VMAP_ZONE_SIZE) % n if self.profile.node_pools and n > 1 else -1

    def _alloc(
        self,
        size: int,
        align: int,
        vstart: int,
        vend: int,
        *,
        cpu: int,
        caller: str | None = None,
        vm_flags: int = 0,
        va_flags: int = 0,
        nr_pages: int = 0,
        phys: int = 0,
        nested: bool = False,
    ) -> VmapArea:
        """``alloc_vmap_area()`` on validated arguments: pools, free tree, purge + retry."""
        self._drain_if_pending()
        node = -1
        addr = None
        w = self.layout.vmalloc
        if self.profile.node_pools and self.nr_vmap_nodes > 1 and vstart == w.start and vend == w.end:
            node = cpu % self.nr_vmap_nodes  # node_alloc(): this CPU's node pool first
            addr = self._pool_take(node, size, align)
        if addr is None:
            addr = self._free.alloc(size, align, vstart, vend)
            if addr is None and self.auto_purge:
                self._reclaim()
                addr = self._free.alloc(size, align, vstart, vend)
            if addr is None:
                raise VmapAllocationError(
                    self.profile.failure_message(size, vstart, vend), size=size, vstart=vstart, vend=vend
                )
            self._account(addr, size)
        area = VmapArea(addr, addr + size, caller, vm_flags, va_flags, nr_pages, phys, node, None, nested)
        self._busy[addr] = area
        return area

    def _add_busy(self, area: VmapArea) -> None:
        self._busy[area.start] = area
        self._account(area.start, area.size)

    def _account(self, addr: int, delta: int) -> None:
        for r in self._regions:
            if r.start <= addr < r.end:
                v = self._pinned[r.name] + delta
                self._pinned[r.name] = v
                if v > self._peak[r.name]:
                    self._peak[r.name] = v
                return

    def _take_busy(self, addr: int, what: str) -> VmapArea:
        area = self._busy.get(addr) if isinstance(addr, int) else None
        if area is None:
            raise UnknownAddress(f"{what}({addr!r}): no busy area starts there (never allocated, or freed already)")
        if area.vm_flags or area.va_flags:
            raise InvalidArgument(
                f"{what}({addr:#x}): the area belongs to a vmalloc/vmap/vm_map_ram user; free it there"
            )
        return self._busy.pop(addr)

    def _take_vm(self, addr: int, flag: int, what: str) -> VmapArea:
        area = self._busy.get(addr) if isinstance(addr, int) else None
        if area is None:
            raise UnknownAddress(f"{what}({addr!r}): no busy area starts there (never allocated, or freed already)")
        if not area.vm_flags & flag or area.nested or area.caller == "pcpu_get_vm_areas":
            raise InvalidArgument(f"{what}({addr:#x}): the area there was not made by the matching call")
        return self._busy.pop(addr)

    def _free_lazy(self, area: VmapArea) -> None:
        """``free_vmap_area_noflush()``: onto the lazy list; schedule a drain past the threshold."""
        self._lazy[area.start] = area
        self._lazy_nr += area.size >> PAGE_SHIFT
        if self._lazy_nr > self._lazy_max and self.auto_purge:
            self._drain_pending = True  # schedule_work(&drain_vmap_work)

    def _release(self, start: int, end: int) -> None:
        self._free.insert(start, end)
        self._account(start, start - end)

    def _drain_if_pending(self) -> None:
        """``drain_vmap_area_work()``, modelled as running before the next allocation."""
        if self._drain_pending:
            self._drain_pending = False
            self._purge(full_decay=False)

    def _reclaim(self) -> None:
        """``reclaim_and_purge_vmap_areas()``: fragmented blocks, then a full purge and pool decay."""
        self._purge_fragmented_blocks(force=True)
        self._purge(full_decay=True)

    def _purge(self, *, full_decay: bool) -> None:
        """``__purge_vmap_area_lazy()``: lazy areas back to the free tree (or 6.9+ pools)."""
        self.purges += 1
        self._drain_pending = False
        lazy = sorted(self._lazy.values(), key=lambda a: a.start)
        self._lazy.clear()
        self._lazy_nr = 0
        if not self._pools:
            for a in lazy:
                self._release(a.start, a.end)
            return
        for node in range(len(self._pools)):
            self._decay_pools(node, full_decay)
        for a in lazy:
            # skip_populate on a full decay; only pool-sized VAs of a known node go to a pool.
            idx = (a.size - 1) >> PAGE_SHIFT
            if a.node >= 0 and not full_decay and idx < MAX_VA_SIZE_PAGES:
                self._pools[a.node].setdefault(idx, deque()).appendleft((a.start, a.end))
            else:
                self._release(a.start, a.end)

    def _decay_pools(self, node: int, full: bool) -> None:
        """``decay_va_pool_node()``: from the head of each pool, a quarter or everything."""
        pools = self._pools[node]
        for idx in list(pools):
            q = pools[idx]
            n = len(q)
            if full:
                k = n
            elif n < 4:
                k = n if self.profile.pool_decay is profiles.PoolDecay.QUARTER_SMALL_ALL else 0
            else:
                k = n >> 2
            for _ in range(k):
                s, e = q.popleft()
                self._release(s, e)
            if not q:
                del pools[idx]

    def _pool_take(self, node: int, size: int, align: int) -> int | None:
        """``node_pool_del_va()``: the pool head if aligned, else rotate it to the tail."""
        idx = (size - 1) >> PAGE_SHIFT
        q = self._pools[node].get(idx)
        if not q:
            return None
        s, _e = q[0]
        if s % align:
            q.rotate(-1)
            return None
        q.popleft()
        if not q:
            del self._pools[node][idx]
        return s

    def _unqueue(self, vb: VmapBlock) -> None:
        queue = self._vbq[vb.cpu]
        queue.remove(vb)
        if not queue:
            del self._vbq[vb.cpu]

    def _purge_fragmented_blocks(self, *, force: bool) -> None:
        """``purge_fragmented_blocks_allcpus()``: free blocks with nothing live but unused room."""
        bits = self.vmap_block_pages
        threshold = bits // 4  # VMAP_PURGE_THRESHOLD (6.5+)
        for cpu_list in list(self._vbq.values()):
            for vb in list(cpu_list):
                if vb.free + vb.dirty == bits and vb.dirty != bits and (force or vb.free < threshold):
                    self._unqueue(vb)
                    del self._blocks[vb.start]
                    self._free_lazy(self._busy.pop(vb.start))

    def _pcpu_find(self, offsets: Sequence[int], sizes: Sequence[int], align: int) -> int | None:
        """The base ``pcpu_get_vm_areas()`` settles on, walking free ranges top-down."""
        w = self.layout.vmalloc
        vm_start = (w.start + align - 1) & ~(align - 1)
        vm_end = w.end & ~(align - 1)
        n = len(offsets)
        last = max(range(n), key=lambda i: (offsets[i], -i))
        last_end = offsets[last] + sizes[last]
        if vm_end - vm_start < last_end:
            return None

        def end_from_reverse(va: tuple[int, int] | None) -> tuple[tuple[int, int] | None, int]:
            # pvm_determine_end_from_reverse(): highest aligned end at or below this range.
            while va is not None:
                addr = min(va[1] & ~(align - 1), vm_end)
                if va[0] < addr:
                    return va, addr
                va = self._free.before(va[0])
            return None, 0

        area = term = last
        start, end = offsets[area], offsets[area] + sizes[area]
        va, top = end_from_reverse(self._free.floor(vm_end))
        base = top - end
        while True:
            if base + last_end < vm_start + last_end or va is None:
                return None
            if base + end > va[1]:
                va, top = end_from_reverse(va)
                base, term = top - end, area
                continue
            if base + start < va[0]:
                va, top = end_from_reverse(self._free.before(va[0]))
                base, term = top - end, area
                continue
            area = (area + n - 1) % n
            if area == term:
                return base
            start, end = offsets[area], offsets[area] + sizes[area]
            va = self._free.floor(base + end)

    def _check(self) -> None:
        """Assert every invariant: the ranges tile the KVA, counters match, blocks agree."""
        self._free._check()
        pieces = [(s, e, "free") for s, e in self._free]
        pieces += [(a.start, a.end, "busy") for a in self._busy.values()]
        pieces += [(a.start, a.end, "lazy") for a in self._lazy.values()]
        pieces += [(s, e, "pool") for s, e in self.pooled_ranges()]
        pieces.sort()
        pos = 1
        for s, e, kind in pieces:
            assert s == pos, f"gap or overlap at {pos:#x} (next {kind} piece at {s:#x})"
            assert e > s
            pos = e
        assert pos == self.layout.kva_end, f"VA ends at {pos:#x}"
        assert self._lazy_nr == sum(a.size for a in self._lazy.values()) >> PAGE_SHIFT
        for r in self._regions:
            assert self._pinned[r.name] == self.usage(r).pinned, r.name
            assert self._peak[r.name] >= self._pinned[r.name]
        for start, vb in self._blocks.items():
            area = self._busy[start]
            assert area.va_flags == VMAP_RAM | VMAP_BLOCK and area.size == self.vmap_block_pages << PAGE_SHIFT
            assert vb.dirty + sum(vb.live.values()) + vb.free == self.vmap_block_pages
            assert (vb in self._vbq.get(vb.cpu, ())) == (vb.free > 0)
        assert all(self._vbq.values())
        assert self._nr_vmalloc_pages == sum(a.nr_pages for a in self._busy.values() if a.vm_flags & VM_ALLOC)
        for a in self._busy.values():
            if a.pages_area:
                assert self._busy[a.pages_area].nested
