"""The free tree: free ranges of the kernel VA, sorted by address, never adjacent.

This is the model of ``free_vmap_area_root``/``free_vmap_area_list`` in
``mm/vmalloc.c``.  The kernel keeps an augmented rbtree whose nodes carry
``subtree_max_size``; here the ranges live in address-sorted chunks of at most
``2 * LOAD`` entries (as in sortedcontainers), each chunk knows its largest
range, and a max-tree over the chunk maxima answers "the next chunk holding a
range of at least N bytes" in O(log n).  So:

* :meth:`FreeTree.alloc` is ``find_vmap_lowest_match()`` + ``va_clip()``:
  the lowest address ``a >= vstart`` with ``a % align == 0`` and
  ``[a, a + size)`` inside one free range, subject to ``a + size <= vend``;
* :meth:`FreeTree.insert` is ``merge_or_add_vmap_area()``: it coalesces with
  both neighbours, so two free ranges never touch.

For ``align > PAGE_SIZE`` the kernel descends with the search length
``size + align - 1``: the range it returns, or whether it finds one, depends
on the rbtree's shape.  So every change is also logged as the kernel makes it
to its tree (which node is inserted, erased or moved, in its order), and an
aligned search (``descend=True``) first replays the log into
:class:`vmapsim.rbtree.RbTree` -- the kernel's tree, shape included -- and
walks it as ``find_vmap_lowest_match()`` does.  Searches that need no
adjustment (all the others) return the lowest fit, as the kernel's descent
does for them whatever the shape, without building the tree.

>>> t = FreeTree.from_ranges([(0x1000, 0x9000)])
>>> hex(t.alloc(0x2000, 0x1000, 0x1000, 0x9000))
'0x1000'
>>> t.insert(0x1000, 0x3000)
>>> list(t)
[(4096, 36864)]
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Iterator

import attrs

from vmapsim.chunks import Chunks
from vmapsim.errors import InvalidArgument
from vmapsim.rbtree_log import LoggedTree

__all__ = ["FreeTree"]

# How many changes go by between two checks of the log's bound (a log may outgrow its bound by three
# entries a change, at most, meanwhile).
_CHECK_EVERY = 1024


@attrs.define(eq=False)
class FreeTree:
    """Free ``[start, end)`` ranges with lowest-fit search and coalescing insert.

    Runtime complexity: ``alloc``, ``clip``, ``insert`` and ``containing`` are
    O(log n) plus a scan of at most one chunk; iteration is O(n).

    >>> t = FreeTree.from_ranges([(0, 100), (200, 300)])
    >>> len(t), t.largest()
    (2, 100)
    """

    # The ranges, and the kernel's tree over the same ranges as its changes made it (its shape is built
    # only when an aligned search needs it).
    _ranges: Chunks = attrs.field(factory=Chunks, init=False)
    _kernel: LoggedTree = attrs.field(factory=LoggedTree, init=False)
    # Changes left before the log's bound is checked again: a count, not a call, at every change.
    _unchecked: int = attrs.field(default=_CHECK_EVERY, init=False)

    @classmethod
    def from_ranges(cls, ranges: Iterable[tuple[int, int]]) -> FreeTree:
        """Build a tree from ``(start, end)`` pairs in any order (coalesced as inserted).

        Sorted, non-touching input is bulk-loaded in O(n).

        >>> list(FreeTree.from_ranges([(5, 9), (0, 5)]))
        [(0, 9)]
        """
        tree = cls()
        pairs = sorted(ranges)
        for s, e in pairs:
            if s >= e:
                raise InvalidArgument(f"free range [{s:#x}, {e:#x}) is empty or reversed")
        if all(pairs[i][1] < pairs[i + 1][0] for i in range(len(pairs) - 1)):
            tree._ranges = Chunks.loaded(pairs)
            # vmap_init_free_space(): the free areas inserted from the root, by address
            tree._kernel.insert_all(pairs)
        else:
            for s, e in pairs:
                tree.insert(s, e)
        return tree

    # ------------------------------------------------------------------ queries

    def __len__(self) -> int:
        """Number of free ranges.  Runtime complexity: O(1)."""
        return self._ranges.count

    def __iter__(self) -> Iterator[tuple[int, int]]:
        """Every free range as ``(start, end)``, by address.  Runtime complexity: O(n)."""
        for st, sz in zip(self._ranges.starts, self._ranges.sizes, strict=False):
            for s, z in zip(st, sz, strict=False):
                yield (s, s + z)

    def irange(self, lo: int, hi: int) -> Iterator[tuple[int, int]]:
        """Free ranges overlapping ``[lo, hi)``, clipped to it, by address.

        Runtime complexity: O(log n + k) for k ranges reported.

        >>> list(FreeTree.from_ranges([(0, 10), (20, 30)]).irange(5, 25))
        [(5, 10), (20, 25)]
        """
        starts, sizes = self._ranges.starts, self._ranges.sizes
        c0 = max(bisect_right(self._ranges.firsts, lo) - 1, 0)
        j0 = max(bisect_right(starts[c0], lo) - 1, 0) if starts else 0
        for c in range(c0, len(starts)):
            st, sz = starts[c], sizes[c]
            for j in range(j0 if c == c0 else 0, len(st)):
                s = st[j]
                e = s + sz[j]
                if s >= hi:
                    return
                if e > lo:
                    yield (max(s, lo), min(e, hi))

    def largest(self, lo: int = 0, hi: int | None = None) -> int:
        """Size of the largest free range (clipped to ``[lo, hi)`` when given), 0 if none.

        Runtime complexity: O(1) over the whole tree, O(log n + k) for a window.
        """
        if hi is None and lo == 0:
            return max((max(sz) for sz in self._ranges.sizes), default=0)
        return max((e - s for s, e in self.irange(lo, hi if hi is not None else 1 << 64)), default=0)

    def containing(self, addr: int) -> tuple[int, int] | None:
        """The free range holding ``addr``, or None.  Runtime complexity: O(log n)."""
        found = self.floor(addr)
        return found if found is not None and found[1] > addr else None

    def floor(self, addr: int) -> tuple[int, int] | None:
        """The last free range starting at or below ``addr`` (``pvm_find_va_enclose_addr()``).

        Runtime complexity: O(log n).
        """
        loc = self._ranges.locate(addr)
        if loc is None:
            return None
        c, j = loc
        s = self._ranges.starts[c][j]
        return (s, s + self._ranges.sizes[c][j])

    def before(self, start: int) -> tuple[int, int] | None:
        """The free range just below the one starting at ``start`` (``rb_prev``), or None.

        Runtime complexity: O(log n).
        """
        return self.floor(start - 1) if start > 0 else None

    def find(
        self, size: int, align: int, vstart: int, vend: int, *, descend: bool = False, adjust: bool = True
    ) -> int | None:
        """The address :meth:`alloc` would return, or None; changes nothing.

        Runtime complexity: O(log n) plus the scan of the chunks that hold a
        large-enough but misaligned range.

        >>> FreeTree.from_ranges([(0x1000, 0x2000), (0x3000, 0x8000)]).find(0x2000, 0x4000, 0, 1 << 32)
        16384
        """
        if descend:
            return self._kernel.lowest_fit(size, align, vstart, vend, adjust=adjust)
        hit = self._search(size, align, vstart, vend)
        return None if hit is None else hit[2]

    # ---------------------------------------------------------------- mutations

    def alloc(
        self, size: int, align: int, vstart: int, vend: int, *, descend: bool = False, adjust: bool = True
    ) -> int | None:
        """Find the kernel's fit and take it out of the tree; None (tree unchanged) if none.

        Without ``descend``, the lowest fit.  With it, what ``find_vmap_lowest_match()`` returns on the
        kernel's tree, whose shape the log rebuilds, for the length ``size + align - 1`` (``adjust``) or
        ``size``, then ``__alloc_vmap_area()``'s ``vend`` check.  Runtime complexity: O(log n) amortized, as
        :meth:`find`; with ``descend``, O(log n) per change since the last such search, done then.

        >>> t = FreeTree.from_ranges([(0x100000, 0x200000)])
        >>> t.clip(0x103000, 0x1000)  # [0x100000, 0x103000) holds 8 KiB at 8 KiB alignment, not 8 KiB + 8 KiB - 1
        >>> hex(t.find(0x2000, 0x2000, 0, 1 << 32)), hex(t.alloc(0x2000, 0x2000, 0, 1 << 32, descend=True))
        ('0x100000', '0x104000')
        """
        if descend:
            a = self._kernel.lowest_fit(size, align, vstart, vend, adjust=adjust)
            if a is not None:
                self.clip(a, size)
            return a
        hit = self._search(size, align, vstart, vend)
        if hit is None:
            return None
        c, j, a = hit
        self._clip_at(c, j, a, size)
        return a

    def clip(self, addr: int, size: int) -> None:
        """Take ``[addr, addr + size)`` out of the one free range that holds it (``va_clip()``).

        Raises :class:`InvalidArgument` (tree unchanged) when no single free range
        holds it.  Runtime complexity: O(log n).
        """
        r = self._ranges
        loc = r.locate(addr)
        if size <= 0 or loc is None or r.starts[loc[0]][loc[1]] + r.sizes[loc[0]][loc[1]] < addr + size:
            raise InvalidArgument(f"[{addr:#x}, {addr + size:#x}) is not inside one free range")
        self._clip_at(loc[0], loc[1], addr, size)

    def insert(self, start: int, end: int) -> None:
        """Give ``[start, end)`` back, merging with touching neighbours (``merge_or_add_vmap_area()``).

        Raises :class:`InvalidArgument` (tree unchanged) if it overlaps a free
        range -- the kernel WARNs "vmalloc bug" and drops it.
        Runtime complexity: O(log n).
        """
        if start >= end:
            raise InvalidArgument(f"free range [{start:#x}, {end:#x}) is empty or reversed")
        r, kernel = self._ranges, self._kernel
        starts, sizes = r.starts, r.sizes
        if not starts:
            r.insert_at(0, 0, start, end - start)
            kernel.insert(start, end)
            return
        c = bisect_right(r.firsts, start) - 1
        if c < 0:
            c, j = 0, -1
        else:
            j = bisect_right(starts[c], start) - 1
        # Neighbours: prev at (c, j) when j >= 0; next at (c, j + 1) or the next chunk's head.
        prev_end = starts[c][j] + sizes[c][j] if j >= 0 else -1
        if prev_end > start:
            raise InvalidArgument(f"[{start:#x}, {end:#x}) overlaps free range at {starts[c][j]:#x}")
        nc, nj = (c, j + 1) if j + 1 < len(starts[c]) else (c + 1, 0)
        next_start = starts[nc][nj] if nc < len(starts) else -1
        if next_start != -1 and next_start < end:
            raise InvalidArgument(f"[{start:#x}, {end:#x}) overlaps free range at {next_start:#x}")
        # merge_or_add_vmap_area(): next takes the range first; if prev touches it too, next is unlinked
        # and prev extended over both; a range touching neither is linked as a new node.
        self._unchecked -= 1
        if not self._unchecked:  # a long history with no aligned search: its memory stays bounded
            self._bound()
        if prev_end == start:
            prev_start = starts[c][j]
            if next_start == end:
                next_end = end + sizes[nc][nj]
                kernel.move(end, start, next_end)
                kernel.erase(start)
                kernel.move(prev_start, prev_start, next_end)
                # Extend prev over next first: deleting next may merge chunks and move (c, j).
                r.grew(c, j, next_end - prev_start)
                r.delete_at(nc, nj)
            else:
                kernel.move(prev_start, prev_start, end)
                r.grew(c, j, end - prev_start)
        elif next_start == end:
            kernel.move(end, start, end + sizes[nc][nj])
            starts[nc][nj] = start
            if nj == 0:
                r.firsts[nc] = start
            r.grew(nc, nj, sizes[nc][nj] + end - start)
        else:
            kernel.insert(start, end)
            r.insert_at(c, j + 1, start, end - start)
            r.settle(c)

    # ----------------------------------------------------------------- internals

    def _bound(self) -> None:
        """Apply the log if it outgrew its bound; the next check ``_CHECK_EVERY`` changes on."""
        self._unchecked = _CHECK_EVERY
        self._kernel.bound(self._ranges.count)

    def _search(self, size: int, align: int, vstart: int, vend: int) -> tuple[int, int, int] | None:
        """(chunk, index, address) of the lowest fit, or None."""
        r = self._ranges
        if not r.starts:
            return None
        starts, sizes, bounds = r.starts, r.sizes, r.bounds
        mask = align - 1
        c = bisect_right(r.firsts, vstart) - 1
        if c < 0:
            c, j = 0, 0
        else:
            j = bisect_right(starts[c], vstart) - 1
            if starts[c][j] + sizes[c][j] <= vstart:
                j += 1
        while True:
            if bounds[c] >= size:
                sz = sizes[c]
                st = starts[c]
                for k in range(j, len(sz)):
                    if sz[k] >= size:
                        s = st[k]
                        a = ((s if s > vstart else vstart) + mask) & ~mask
                        if a + size > vend:
                            # Every later range starts higher: nothing can fit below vend.
                            return None
                        if a + size <= s + sz[k]:
                            return c, k, a
                exact = max(sz)
                if exact < bounds[c]:
                    r.set_max(c, exact)  # the bound was stale: tighten it
            c = r.next_chunk(c + 1, size)
            if c < 0:
                return None
            j = 0

    def _clip_at(self, c: int, j: int, a: int, size: int) -> None:
        """Apply one of the kernel's four fit types to range (c, j) (``va_clip()``)."""
        r, kernel = self._ranges, self._kernel
        st, sz = r.starts[c], r.sizes[c]
        s, z = st[j], sz[j]
        self._unchecked -= 1
        if not self._unchecked:  # a long history with no aligned search: its memory stays bounded
            self._bound()
        if a == s and size == z:  # FL_FIT_TYPE: the range disappears
            kernel.erase(s)
            r.delete_at(c, j)
            return
        if a == s:  # LE_FIT_TYPE
            kernel.move(s, a + size, s + z)
            st[j] = a + size
            sz[j] = z - size
            if j == 0:
                r.firsts[c] = a + size
        elif a + size == s + z:  # RE_FIT_TYPE
            kernel.move(s, s, a)
            sz[j] = a - s
        else:  # NE_FIT_TYPE: split in two; the node keeps the part above, a new one takes the part below
            kernel.move(s, a + size, s + z)
            kernel.insert(s, a)
            sz[j] = a - s
            r.insert_at(c, j + 1, a + size, s + z - a - size)
        if z == r.bounds[c] and 2 * size > z:
            # The chunk's largest range lost over half its size: tighten the bound now (cheap and
            # usually final); small bites, like those off a free tail, leave it loose.
            r.set_max(c, max(sz))
        if a != s and a + size != s + z:  # NE_FIT_TYPE added a range: the chunk may have overflowed
            r.settle(c)

    def _check(self) -> None:
        """Assert every invariant (for tests): sorted, non-empty, never adjacent, sums right."""
        self._ranges.check()
        prev_end = -1
        for s, e in self:
            assert e > s, (s, e)
            assert s > prev_end, f"ranges touch or overlap at {s:#x}"
            prev_end = e
        shadow = self._kernel.now()  # the log rebuilds the kernel's tree over the very same ranges
        shadow._check()
        assert [(n.start, n.end) for n in shadow] == list(self)
