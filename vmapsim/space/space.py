"""VmapSpace: the kernel's vmap address-space allocator for one machine (mm/vmalloc.c).

The allocator core (:class:`~vmapsim.space.vmap_area.VmapAreas`) covers the whole
kernel VA ``[1, ULONG_MAX)`` (``vmap_init_free_space()``); the vmalloc and module
windows are ``[vstart, vend)`` constraints on it.  On top of ``alloc_vmap_area()`` sit the kernel's users, each built as
``mm/vmalloc.c`` builds it: ``vmalloc`` (guard page, nested page-array vmalloc),
``vmap``, ``ioremap``, ``vm_map_ram`` with per-CPU vmap blocks
(:mod:`vmapsim.space.vmap_block`), top-down percpu areas
(:mod:`vmapsim.space.percpu`), lazy freeing with the ``lazy_max_pages()`` drain,
purge-and-retry on failure, and (6.9+ profiles) the per-node size-class pools
(:mod:`vmapsim.space.vmap_node`).

>>> from vmapsim import VmapSpace, layouts
>>> space = VmapSpace(layouts.X86_64, cpus=4)
>>> a = space.vmalloc(10_000)
>>> hex(a), space.area(a).size          # 3 pages + guard
('0xffffc90000000000', 16384)
>>> space.find_area(a + 5000).start == a
True
>>> space.vfree(a)
>>> space.usage("vmalloc").lazy         # freed lazily: still pinned
16384
>>> space.purge(); space.usage("vmalloc").pinned
0
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import attrs

from vmapsim.checks import address, flag, integer, show, text
from vmapsim.errors import InvalidArgument, UnknownAddress, VmapAllocationError
from vmapsim.space import percpu
from vmapsim.space.area import (
    VM_ALLOC,
    VM_FLUSH_RESET_PERMS,
    VM_IOREMAP,
    VM_MAP,
    VMAP_BLOCK,
    VMAP_RAM,
    VmapArea,
)
from vmapsim.space.view import VmapState
from vmapsim.space.vmap_area import VmapAreas
from vmapsim.units import PAGE_SHIFT, PAGE_SIZE, PMD_SIZE, get_count_order, get_order, page_align

__all__ = ["VmapSpace"]


@attrs.define(eq=False)
class VmapSpace(VmapState):
    """The vmap allocator of one machine: ``alloc_vmap_area()`` and the kernel's users built on it.

    ``cpus`` is ``num_online_cpus()`` (it sets ``lazy_max_pages()`` and, on 6.9+
    profiles, the number of vmap nodes); ``nr_cpus_config`` is ``CONFIG_NR_CPUS``
    (it sets the vmap block size; Debian builds 8192); ``auto_purge=False``
    turns off every purge the allocator would start by itself (the lazy drain
    and the purge before a retry), for replaying a kernel trace whose purges are
    events of their own.  Reading the space (areas, usage, peaks, snapshots,
    replay) is :class:`~vmapsim.space.view.VmapState`'s.

    Runtime complexity: allocation and free are O(log n) in the number of free
    ranges and busy areas (plus, on 6.9+, O(1) pool operations); a purge is
    O(k log n) for k lazy areas.

    >>> from vmapsim import layouts
    >>> VmapSpace(layouts.X86_64, cpus=8).lazy_max_pages
    32768
    """

    # The allocator core VmapState builds, which the users below drive. It is the space package's
    # own: modules outside it go through the public methods (area(), pinned_per_region()...).
    _core: VmapAreas = attrs.field(init=False)

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
        self._core.check_request(size, align, vstart, vend, cpu)
        text("caller", caller, optional=True)
        return self._core.alloc(size, align, vstart, vend, cpu=cpu, caller=caller)

    def free_vmap_area(self, addr: int, *, lazy: bool = True) -> None:
        """Free the bare area at ``addr``: lazily (``free_vmap_area_noflush()``) or at once.

        ``lazy=False`` is ``free_vmap_area()``: the range returns to the free tree
        now, without waiting for a purge.  Runtime complexity: O(log n).
        """
        area = self._core.get(address("addr", addr))
        flag("lazy", lazy)
        if area is None:
            raise UnknownAddress(f"free_vmap_area({addr:#x}): no busy area starts there (never allocated, or freed)")
        if area.vm_flags or area.va_flags or area.percpu:
            raise InvalidArgument(
                f"free_vmap_area({addr:#x}): the area belongs to a vmalloc/vmap/vm_map_ram user; free it there"
            )
        self._core.unlink(addr)
        if lazy:
            self._core.free_lazy(area)
        else:
            self._core.release(area)

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
        huge: bool = False,
        cpu: int = 0,
    ) -> int:
        """``__vmalloc_node_range()``: a vmalloc in any window (``module_alloc()`` uses it).

        ``flush_reset_perms`` sets ``VM_FLUSH_RESET_PERMS``: freeing the area
        then purges every lazy area at once (``vm_reset_perms()``).  ``huge``
        sets ``VM_ALLOW_HUGE_VMAP`` (5.18+): a request of at least ``PMD_SIZE``
        is rounded up to and aligned on ``PMD_SIZE`` (x86-64's
        ``arch_vmap_pmd_supported()`` with PSE), and if no such hole exists it
        is retried with small pages and the caller's alignment (7.3
        ``__vmalloc_node_range_noprof()``).  If the nested page array cannot be
        allocated, the main area is vfree'd (lazily) and
        :class:`VmapAllocationError` is raised, as the kernel does.
        Runtime complexity: O(log n).

        >>> from vmapsim import VmapSpace, layouts
        >>> s = VmapSpace(layouts.X86_64_NOKASLR)
        >>> m = s.layout.modules
        >>> a = s.vmalloc_node_range(3 << 20, start=m.start, end=m.end, huge=True)
        >>> a % (2 << 20), s.area(a).size == (4 << 20) + 4096
        (0, True)
        """
        if type(size) is not int or not 0 < size <= self._core.kva_end:
            integer("size", size, 1, self._core.kva_end)
        size = (size + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1)  # page_align(), inline: every load's vmalloc
        if flush_reset_perms is not True and flush_reset_perms is not False:
            flag("flush_reset_perms", flush_reset_perms)
        if huge is not True and huge is not False:
            flag("huge", huge)
        flags = VM_ALLOC | (VM_FLUSH_RESET_PERMS if flush_reset_perms else 0)
        area = None
        if huge and size >= PMD_SIZE:
            try:
                pmd = -(-size // PMD_SIZE) * PMD_SIZE
                area = self._get_vm_area(pmd, max(align, PMD_SIZE), start, end, vm_flags=flags, caller=caller,
                                         cpu=cpu, nr_pages=pmd >> PAGE_SHIFT)  # fmt: skip
                size = pmd
            except VmapAllocationError:
                area = None  # the kernel retries with PAGE_SHIFT and the original alignment
        nr_pages = size >> PAGE_SHIFT
        if area is None:
            area = self._get_vm_area(size, align, start, end, vm_flags=flags, caller=caller, cpu=cpu,
                                     nr_pages=nr_pages)  # fmt: skip
        array_bytes = nr_pages * (self.layout.bits // 8)
        if array_bytes > PAGE_SIZE:  # the page-pointer array needs more than a page
            array_size = page_align(array_bytes)
            w = self.layout.vmalloc
            try:
                pages = self._get_vm_area(array_size, 1, w.start, w.end, vm_flags=VM_ALLOC, caller=caller, cpu=cpu,
                                          nr_pages=array_size >> PAGE_SHIFT, nested=True)  # fmt: skip
            except VmapAllocationError:
                self._core.free_lazy(self._core.unlink(area.start))
                raise
            self._core.vmalloc_pages += pages.nr_pages
            self._core.relink(attrs.evolve(area, pages_area=pages.start))
        self._core.vmalloc_pages += nr_pages
        return area.start

    def vfree(self, addr: int) -> None:
        """``vfree()``: unmap now, free the range lazily; the page array after it.

        With ``VM_FLUSH_RESET_PERMS`` the free ends in ``vm_unmap_aliases()``,
        which purges every lazy area.  Runtime complexity: O(log n).
        """
        area = self._vm_at(addr, VM_ALLOC, "vfree")
        if area.pages_area and self._core.get(area.pages_area) is None:
            raise InvalidArgument(f"vfree({addr:#x}): its page array at {area.pages_area:#x} is not busy")
        self._core.free_lazy(self._core.unlink(addr))
        if area.vm_flags & VM_FLUSH_RESET_PERMS:
            self.vm_unmap_aliases()
        self._core.vmalloc_pages -= area.nr_pages
        if area.pages_area:  # 0: a restored area whose page array was not identified
            array = self._core.unlink(area.pages_area)
            self._core.vmalloc_pages -= array.nr_pages
            self._core.free_lazy(array)

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
        integer("nr_pages", nr_pages, 1, self.layout.kva_end >> PAGE_SHIFT)
        w = self.layout.vmalloc
        # vm_struct.nr_pages stays 0: vmap() sets it only for VM_MAP_PUT_PAGES.
        return self._get_vm_area(nr_pages << PAGE_SHIFT, 1, w.start, w.end, vm_flags=VM_MAP, caller=caller,
                                 cpu=cpu).start  # fmt: skip

    def vunmap(self, addr: int) -> None:
        """``vunmap()``: free a vmap'd range lazily.  Runtime complexity: O(log n)."""
        self._core.free_lazy(self._take_vm(addr, VM_MAP, "vunmap"))

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
        size = page_align(integer("size", size, 1, self.layout.kva_end))
        address("phys", phys)
        order = min(max(get_count_order(size), PAGE_SHIFT), self.layout.ioremap_max_order)
        w = self.layout.vmalloc
        return self._get_vm_area(size, 1 << order, w.start, w.end, vm_flags=VM_IOREMAP, caller=caller, cpu=cpu,
                                 phys=phys).start  # fmt: skip

    def iounmap(self, addr: int) -> None:
        """``iounmap()``: free an ioremap'd range lazily.  Runtime complexity: O(log n)."""
        self._core.free_lazy(self._take_vm(addr, VM_IOREMAP, "iounmap"))

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
        integer("count", count, 1, self.layout.kva_end >> PAGE_SHIFT)
        self._core.check_cpu(cpu)
        w = self.layout.vmalloc
        if count > self.layout.bits:  # VMAP_MAX_ALLOC = BITS_PER_LONG
            self._core.check_request(count << PAGE_SHIFT, PAGE_SIZE, w.start, w.end, cpu)
            return self._core.alloc(count << PAGE_SHIFT, PAGE_SIZE, w.start, w.end, cpu=cpu, va_flags=VMAP_RAM).start
        pages = 1 << get_order(count << PAGE_SHIFT)
        addr = self._core.blocks.take(cpu, pages)
        if addr is None:  # new_vmap_block(): a whole block, aligned to its size, no guard
            bsize = self.vmap_block_pages << PAGE_SHIFT
            addr = self._core.alloc(bsize, bsize, w.start, w.end, cpu=cpu, va_flags=VMAP_RAM | VMAP_BLOCK).start
            self._core.blocks.add(addr, cpu=cpu, pages=pages)
        return addr

    def vm_unmap_ram(self, addr: int, count: int) -> None:
        """``vm_unmap_ram()``: give back a ``vm_map_ram`` mapping of ``count`` pages.

        Inside a block the pages only become dirty; the block is freed (lazily)
        once every page in it is dirty (``vb_free()``).
        Runtime complexity: O(log n).
        """
        address("addr", addr)
        integer("count", count, 1, self.layout.kva_end >> PAGE_SHIFT)
        if count > self.layout.bits:
            area = self._core.get(addr)
            if area is None or area.va_flags != VMAP_RAM or area.size != count << PAGE_SHIFT:
                raise UnknownAddress(f"vm_unmap_ram({addr:#x}, {count}): no vm_map_ram area of that size there")
            self._core.free_lazy(self._core.unlink(addr))
            return
        pages = 1 << get_order(count << PAGE_SHIFT)
        if not self._core.blocks.is_live(addr, pages):
            raise UnknownAddress(f"vm_unmap_ram({addr:#x}, {count}): not a live vm_map_ram mapping of that size")
        block = self._core.blocks.give(addr, pages)
        if block is not None:  # free_vmap_block()
            self._core.free_lazy(self._core.unlink(block))

    def vm_unmap_aliases(self) -> None:
        """``vm_unmap_aliases()``: release fragmented vmap blocks, then purge every lazy area.

        Up to 6.4 every fragmented block is released; from 6.5 only those with
        fewer than ``VMAP_PURGE_THRESHOLD`` free pages.  6.9+ does not decay
        the pools here.  Runtime complexity: O(k log n) for k lazy areas.
        """
        self._core.purge_fragmented_blocks(force=not self.profile.fragmented_threshold)
        self._core.purge(full_decay=False)

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
        percpu.check_areas(offsets, sizes, align)
        self._core.drain_if_pending()
        w = self.layout.vmalloc
        base = percpu.find_base(self._core.free, w.start, w.end, offsets, sizes, align)
        if base is None and self.auto_purge:
            self._core.reclaim()
            base = percpu.find_base(self._core.free, w.start, w.end, offsets, sizes, align)
        if base is None:
            raise VmapAllocationError(
                f"percpu: pcpu_get_vm_areas of {len(offsets)} area(s), sizes {list(sizes)}, align {align} failed",
                size=sum(sizes),
                vstart=w.start,
                vend=w.end,
            )
        addrs = []
        for off, size in zip(offsets, sizes, strict=True):
            self._core.free.clip(base + off, size)
            self._core.insert(VmapArea(base + off, base + off + size, "pcpu_get_vm_areas", VM_ALLOC, percpu=True))
            addrs.append(base + off)
        return addrs

    def pcpu_free_vm_areas(self, addrs: Iterable[int]) -> None:
        """``pcpu_free_vm_areas()``: free percpu areas (lazily).  Runtime complexity: O(k log n)."""
        if isinstance(addrs, str | bytes) or not isinstance(addrs, Iterable):
            raise InvalidArgument(f"addrs={show(addrs)}: expected addresses")
        addrs = [address(f"addrs[{i}]", a) for i, a in enumerate(addrs)]
        if len(set(addrs)) != len(addrs):
            raise InvalidArgument("pcpu_free_vm_areas(): an area is named twice")
        for a in addrs:
            area = self._core.get(a)
            if area is None or not area.percpu:
                raise UnknownAddress(f"{a:#x} is not a live percpu area")
        for a in addrs:
            self._core.free_lazy(self._core.unlink(a))

    # ---------------------------------------------------------------- purging

    def purge(self) -> None:
        """Purge every lazy area now (``purge_vmap_area_lazy()`` / ``reclaim_and_purge_vmap_areas()``).

        Fragmented vmap blocks are released and, on 6.9+, every pool is emptied
        back into the free tree.  Runtime complexity: O(k log n).
        """
        self._core.reclaim()

    def _get_vm_area(
        self, size: int, align: int, start: int, end: int, *, vm_flags: int, caller: str | None, cpu: int,
        nr_pages: int = 0, phys: int = 0, nested: bool = False,
    ) -> VmapArea:  # fmt: skip
        """``__get_vm_area_node()``: the one place a guard page is added, then ``alloc_vmap_area()``."""
        size += PAGE_SIZE  # no VM_NO_GUARD user is modelled
        self._core.check_request(size, align, start, end, cpu)
        if caller is not None and type(caller) is not str:
            text("caller", caller, optional=True)
        return self._core.alloc(size, align, start, end, cpu=cpu, caller=caller, vm_flags=vm_flags,
                                nr_pages=nr_pages, phys=phys, nested=nested)  # fmt: skip

    def _take_vm(self, addr: int, flag: int, what: str) -> VmapArea:
        self._vm_at(addr, flag, what)
        return self._core.unlink(addr)

    def _vm_at(self, addr: int, flag: int, what: str) -> VmapArea:
        """The busy area ``what`` (vfree, vunmap, iounmap) frees at ``addr``, made by the call of ``flag``."""
        area = self._core.get(addr)
        if area is None:
            address("addr", addr)
            raise UnknownAddress(f"{what}({addr:#x}): no busy area starts there (never allocated, or freed already)")
        if not area.vm_flags & flag or area.nested or area.percpu:
            raise InvalidArgument(f"{what}({addr:#x}): the area there was not made by the matching call")
        return area

    def _check(self) -> None:
        """Assert every invariant: the ranges tile the KVA, counters match, blocks agree."""
        core = self._core
        core._check()
        for vb in core.blocks.blocks():
            area = core.get(vb.start)
            assert area is not None and area.va_flags == VMAP_RAM | VMAP_BLOCK
            assert area.size == self.vmap_block_pages << PAGE_SHIFT
        busy = core.busy()
        assert all(a.start in core.blocks for a in busy if a.va_flags & VMAP_BLOCK), "a block area without its block"
        assert self._core.vmalloc_pages == sum(a.nr_pages for a in busy if a.vm_flags & VM_ALLOC)
        for a in busy:
            if a.pages_area:
                array = core.get(a.pages_area)
                assert array is not None and array.nested
