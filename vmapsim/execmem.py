"""execmem's cache of read-only executable huge pages: where x86-64 module text lives from 6.15.

Since 6.10 module memory comes from ``execmem_alloc()`` (``mm/execmem.c``). On
x86-64 from 6.15 (64f6a4e10c05 "x86: re-enable EXECMEM_ROX support"; the first
attempt, 5185e7f9f3bd in 6.13-rc1, was disabled before 6.13 by a9bbe3413331),
``execmem_arch_setup()`` (``arch/x86/mm/init.c``) gives the text ranges
``EXECMEM_ROX_CACHE`` when the CPU has PSE and ``STRICT_MODULE_RWX`` is set. Their
allocations are then carved from 2 MiB chunks that execmem vmallocs once with
``VM_ALLOW_HUGE_VMAP`` and keeps, while data still gets one vmalloc area each.

:class:`RoxCache` is ``struct execmem_cache`` as 7.3 has it: the ``free_areas`` and
``busy_areas`` trees over the chunks it populated, first-fit by address
(``execmem_cache_alloc_locked()``), merged on free (``execmem_cache_add_locked()``),
and a clean-up that hands every wholly free, 2 MiB-aligned chunk back to vmalloc
(``execmem_cache_clean()``).

>>> from vmapsim import VmapSpace, layouts
>>> space = VmapSpace(layouts.X86_64_NOKASLR)
>>> cache = RoxCache(space)
>>> m = space.layout.modules
>>> cache.alloc(8192, m.start, m.end) is None          # empty: the caller populates
True
>>> chunk = cache.populate(8192, m.start, m.end, cpu=0)
>>> cache.add(chunk)
>>> a = cache.alloc(8192, m.start, m.end)
>>> a == chunk, space.area(chunk).size                # one 2 MiB + guard area for many carves
(True, 2101248)
>>> cache.free(a), cache.clean() == [chunk]           # wholly free again: back to vmalloc
(True, True)
"""

from __future__ import annotations

import itertools

import attrs
from sortedcontainers import SortedDict

from vmapsim.checks import address, integer
from vmapsim.errors import InvalidArgument, UnknownAddress, VmapAllocationError
from vmapsim.space import VmapSpace
from vmapsim.units import PAGE_SIZE, PMD_SIZE, page_align

__all__ = ["CHUNK_CALLER", "RoxCache"]

#: The caller ``/proc/vmallocinfo`` shows for a chunk (``execmem_cache_populate_alloc()`` inlined, 7.3).
CHUNK_CALLER = "execmem_alloc"


@attrs.define(eq=False)
class RoxCache:
    """``struct execmem_cache``: free and busy ranges inside the 2 MiB chunks execmem populated.

    ``chunks`` maps each populated chunk's start to its size without the guard
    page.  A chunk restored from a snapshot is not known here: what of it is
    free cannot be read from ``/proc/vmallocinfo``, so it is taken as busy.

    Runtime complexity: O(f) for :meth:`alloc` and :meth:`clean` over the f free
    ranges (few: carves are packed first-fit), O(log f) for :meth:`add` and
    :meth:`free`.
    """

    space: VmapSpace
    chunks: dict[int, int] = attrs.field(factory=dict)
    _free: SortedDict[int, int] = attrs.field(factory=SortedDict, init=False)  # start -> end (exclusive)
    _busy: dict[int, int] = attrs.field(factory=dict, init=False)  # start -> size

    def alloc(self, size: int, start: int, end: int) -> int | None:
        """``execmem_cache_alloc_locked()``: the lowest free range that holds ``size`` within ``[start, end)``.

        None when no range does (the caller then populates a chunk).

        >>> from vmapsim import VmapSpace, layouts
        >>> RoxCache(VmapSpace(layouts.X86_64)).alloc(4096, 0, 1 << 64) is None
        True
        """
        size = page_align(integer("size", size, 1, self.space.layout.kva_end))
        lo: int
        hi: int
        for lo, hi in self._free.items():
            # within_range(): the range's start inside the window and the carve ending below its end
            if hi - lo >= size and start <= lo and lo + size < end:
                del self._free[lo]
                if hi - lo > size:
                    self._free[lo + size] = hi
                self._busy[lo] = size
                return lo
        return None

    def populate(self, size: int, start: int, end: int, *, align: int = PAGE_SIZE, cpu: int = 0) -> int:
        """``execmem_cache_populate_alloc()``'s vmalloc: a new chunk, not yet in the cache (see :meth:`add`).

        ``round_up(size, PMD_SIZE)`` with ``VM_ALLOW_HUGE_VMAP`` (so 2 MiB-aligned
        with a guard page), else exactly ``size``; the kernel fills it with
        ``int3`` and makes it ROX before adding it, outside the cache's mutex,
        which is why concurrent misses each populate a chunk of their own.
        Raises :class:`VmapAllocationError` when neither fits.

        >>> from vmapsim import VmapSpace, layouts
        >>> s = VmapSpace(layouts.X86_64_NOKASLR)
        >>> c = RoxCache(s)
        >>> hex(c.populate(4096, s.layout.modules.start, s.layout.modules.end)), c.chunks
        ('0xffffffffa0000000', {})
        """
        size = page_align(integer("size", size, 1, self.space.layout.kva_end))
        want = -(-size // PMD_SIZE) * PMD_SIZE
        try:
            return self.space.vmalloc_node_range(want, align=align, start=start, end=end, caller=CHUNK_CALLER,
                                                 huge=True, cpu=cpu)  # fmt: skip
        except VmapAllocationError:
            if want == size:
                raise
        return self.space.vmalloc_node_range(size, align=align, start=start, end=end, caller=CHUNK_CALLER,
                                             huge=True, cpu=cpu)  # fmt: skip

    def add(self, chunk: int) -> None:
        """``execmem_cache_add_locked()`` of a chunk :meth:`populate` made: all of it free, merged with neighbours.

        >>> from vmapsim import VmapSpace, layouts
        >>> RoxCache(VmapSpace(layouts.X86_64)).add(0x1000)
        Traceback (most recent call last):
        vmapsim.errors.InvalidArgument: add(0x1000): no vmalloc area starts there
        """
        try:
            area = self.space.area(address("chunk", chunk))
        except UnknownAddress:
            raise InvalidArgument(f"add({chunk:#x}): no vmalloc area starts there") from None
        if chunk in self.chunks:
            raise InvalidArgument(f"add({chunk:#x}): that chunk is in the cache already")
        self.chunks[chunk] = area.size - PAGE_SIZE
        self._insert(chunk, chunk + area.size - PAGE_SIZE)

    def free(self, addr: int) -> bool:
        """``execmem_cache_free()``: give a carve back, merged with its free neighbours; False if not a carve.

        A False answer is the kernel's cue to ``vfree()`` the address instead
        (``execmem_free()``).
        """
        size = self._busy.pop(address("addr", addr), None)
        if size is None:
            return False
        self._insert(addr, addr + size)
        return True

    def clean(self) -> list[int]:
        """``execmem_cache_clean()``: vfree every chunk that is wholly free and 2 MiB-aligned; their starts.

        The kernel queues it after every cache free; chunks of the small-page
        fallback never qualify and stay in the cache.
        """
        gone = [lo for lo, hi in self._free.items()
                if self.chunks.get(lo) == hi - lo and lo % PMD_SIZE == 0 and (hi - lo) % PMD_SIZE == 0]  # fmt: skip
        for lo in gone:
            del self._free[lo]
            del self.chunks[lo]
            self.space.vfree(lo)
        return gone

    def carved(self, addr: int) -> int | None:
        """The size of the carve at ``addr``, or None if none starts there.  Runtime complexity: O(1)."""
        return self._busy.get(addr)

    def _insert(self, lo: int, hi: int) -> None:
        i = self._free.bisect_left(lo)
        if i and self._free.peekitem(i - 1)[1] == lo:  # the free range just below ends here
            lo = self._free.peekitem(i - 1)[0]
        if hi in self._free:  # the free range just above starts here
            hi = self._free.pop(hi)
        self._free[lo] = hi

    def _check(self) -> None:
        """Assert every invariant: free ranges disjoint and merged, carves disjoint from them, inside chunks."""
        prev = None
        for lo, hi in self._free.items():
            assert lo < hi and lo % PAGE_SIZE == 0 and hi % PAGE_SIZE == 0
            assert prev is None or prev < lo, "free ranges overlap or touch without being merged"
            prev = hi
        spans = sorted([*self._free.items(), *((a, a + n) for a, n in self._busy.items())])
        for (_, a_hi), (b_lo, _) in itertools.pairwise(spans):
            assert a_hi <= b_lo, "a carve overlaps a free range or another carve"
        for lo, hi in spans:
            assert any(c <= lo and hi <= c + n for c, n in self.chunks.items()), "a range outside every chunk"
        for c, n in self.chunks.items():
            assert self.space.area(c).size == n + PAGE_SIZE
            inside = sum(hi - lo for lo, hi in spans if c <= lo < c + n)
            assert inside == n, "a chunk not tiled by its free ranges and carves"
