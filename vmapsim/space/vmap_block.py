"""Per-CPU vmap blocks: the bump allocator behind small ``vm_map_ram()`` mappings (mm/vmalloc.c).

``vb_alloc()`` hands out power-of-two page runs from the first block on this CPU's
free list (``vmap_block_queue``) with room; ``new_vmap_block()`` allocates a whole
block, aligned to its own size and without a guard page.  ``vb_free()`` only marks
pages dirty: space freed inside a block is never reused, and the block goes once
every page is dirty.  :class:`VmapBlocks` is the bookkeeping; the space allocates
and frees the blocks' areas.

>>> b = VmapBlocks(256)
>>> b.add(0x200000, cpu=0, pages=4)
>>> hex(b.take(0, 2))
'0x204000'
"""

from __future__ import annotations

import attrs

from vmapsim.units import PAGE_SHIFT

__all__ = ["VmapBlock", "VmapBlocks"]


@attrs.define
class VmapBlock:
    """A per-CPU vmap block (``struct vmap_block``): a bump allocator for ``vm_map_ram``.

    ``free`` pages are still unused at the top; ``dirty`` pages were handed out
    and freed again.  Space freed inside a block is never reused.

    >>> VmapBlock(0x200000, cpu=1, free=252).dirty
    0
    """

    start: int
    cpu: int
    free: int
    dirty: int = 0
    #: Live mappings: page offset in the block -> pages (the kernel's ``used_map``).
    live: dict[int, int] = attrs.field(factory=dict)


@attrs.define(eq=False)
class VmapBlocks:
    """Every live block by start, and per CPU the free list of blocks with room left.

    ``pages`` is ``VMAP_BBMAP_BITS``, the pages per block.
    Runtime complexity: :meth:`take` O(b) for b blocks on the CPU's free list;
    :meth:`give` O(b); :meth:`fragmented` O(total blocks).
    """

    pages: int
    _blocks: dict[int, VmapBlock] = attrs.field(init=False, factory=dict)
    # Per-CPU free lists (vmap_block_queue), only for CPUs that have a block with room.
    _vbq: dict[int, list[VmapBlock]] = attrs.field(init=False, factory=dict)

    @property
    def count(self) -> int:
        """Live blocks.  Runtime complexity: O(1)."""
        return len(self._blocks)

    def take(self, cpu: int, pages: int) -> int | None:
        """``vb_alloc()``: ``pages`` pages from the first block of ``cpu`` with room; None if none has."""
        for vb in self._vbq.get(cpu, ()):
            if vb.free >= pages:
                off = self.pages - vb.free
                vb.live[off] = pages
                vb.free -= pages
                if vb.free == 0:
                    self._unqueue(vb)
                return vb.start + (off << PAGE_SHIFT)
        return None

    def add(self, start: int, *, cpu: int, pages: int) -> None:
        """``new_vmap_block()``: a new block at ``start`` whose first ``pages`` pages are handed out."""
        vb = VmapBlock(start, cpu, self.pages - pages, live={0: pages})
        self._blocks[start] = vb
        self._vbq.setdefault(cpu, []).append(vb)

    def is_live(self, addr: object, pages: int) -> bool:
        """True when ``addr`` is a live mapping of ``pages`` pages in some block."""
        vb = self._block_of(addr)
        if vb is None or not isinstance(addr, int) or addr & ((1 << PAGE_SHIFT) - 1):
            return False
        return vb.live.get((addr - vb.start) >> PAGE_SHIFT) == pages

    def give(self, addr: int, pages: int) -> int | None:
        """``vb_free()`` of a live mapping (see :meth:`is_live`): the block's start once all dirty, else None."""
        vb = self._block_of(addr)
        assert vb is not None
        del vb.live[(addr - vb.start) >> PAGE_SHIFT]
        vb.dirty += pages
        if vb.dirty != self.pages:
            return None
        del self._blocks[vb.start]  # free_vmap_block(): it has no room, so it is on no free list
        return vb.start

    def drop(self, start: int) -> None:
        """Forget the block at ``start`` whatever it holds (its area was freed behind its back)."""
        vb = self._blocks.pop(start)
        if vb in self._vbq.get(vb.cpu, ()):
            self._unqueue(vb)

    def fragmented(self, *, force: bool) -> list[int]:
        """``purge_fragmented_blocks_allcpus()``: drop blocks with nothing live but unused room; their starts.

        Without ``force`` only blocks with fewer than ``VMAP_PURGE_THRESHOLD``
        (a quarter of the block) free pages go (6.5+).
        """
        bits = self.pages
        threshold = bits // 4
        out = []
        for cpu_list in list(self._vbq.values()):
            for vb in list(cpu_list):
                if vb.free + vb.dirty == bits and vb.dirty != bits and (force or vb.free < threshold):
                    self._unqueue(vb)
                    del self._blocks[vb.start]
                    out.append(vb.start)
        return out

    def blocks(self) -> list[VmapBlock]:
        """Live blocks, by address (copies)."""
        return [attrs.evolve(self._blocks[a]) for a in sorted(self._blocks)]

    def __contains__(self, start: object) -> bool:
        """True when a block starts at ``start``.  Runtime complexity: O(1)."""
        return start in self._blocks

    def _block_of(self, addr: object) -> VmapBlock | None:
        if not isinstance(addr, int):
            return None
        return self._blocks.get(addr & ~((self.pages << PAGE_SHIFT) - 1))

    def _unqueue(self, vb: VmapBlock) -> None:
        queue = self._vbq[vb.cpu]
        queue.remove(vb)
        if not queue:
            del self._vbq[vb.cpu]

    def _check(self) -> None:
        """Assert the block invariants (for tests): pages add up, free lists hold exactly those with room."""
        for vb in self._blocks.values():
            assert vb.dirty + sum(vb.live.values()) + vb.free == self.pages
            assert (vb in self._vbq.get(vb.cpu, ())) == (vb.free > 0)
        assert all(self._vbq.values())
        assert all(vb is self._blocks.get(vb.start) for q in self._vbq.values() for vb in q)
