"""Address-sorted ranges in chunks, with a max-tree over each chunk's largest range.

The storage under :class:`vmapsim.freetree.FreeTree` (which gives the ranges their meaning: lowest fit,
clip, coalescing).  Ranges live in address-sorted chunks of at most ``2 * LOAD`` entries, as in
sortedcontainers; each chunk keeps an upper bound on its largest range, and a max-tree over those bounds
answers "the next chunk that may hold a range of at least N bytes" in O(log n).  The steps that keep the
chunks in shape (split, merge, even out, rebuild) are this module's; callers read and write the lists
directly and report each change through :meth:`Chunks.grew`, :meth:`Chunks.set_max`,
:meth:`Chunks.insert_at` and :meth:`Chunks.delete_at`.

>>> c = Chunks.loaded([(0, 10), (20, 50)])
>>> c.locate(25), c.next_chunk(0, 30), c.next_chunk(0, 31)
((0, 1), 0, -1)
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence

import attrs

__all__ = ["LOAD", "Chunks"]

#: Target chunk length; a chunk splits above ``2 * LOAD`` and merges below ``LOAD // 4``.
LOAD = 32


@attrs.define(eq=False)
class Chunks:
    """Ranges as start and size in address-sorted chunks, each chunk's bound, and the max-tree over them.

    Each range is its start and its size (its end is their sum): searches read sizes, and two lists
    instead of three mean fewer int objects to chase through memory at a million ranges.

    Runtime complexity: :meth:`locate` O(log n); :meth:`insert_at`, :meth:`delete_at` and :meth:`grew`
    O(log n) amortized; :meth:`next_chunk` O(log n) (after a rebuild, O(n / LOAD), when chunks were added
    or removed since the last search).

    >>> c = Chunks.loaded([(0, 10)])
    >>> c.insert_at(0, 1, 20, 5)
    >>> c.starts, c.sizes, c.count
    ([[0, 20]], [[10, 5]], 2)
    """

    #: Each chunk's range starts, by address.
    starts: list[list[int]] = attrs.field(factory=list, init=False)
    #: Each chunk's range sizes, beside :attr:`starts`.
    sizes: list[list[int]] = attrs.field(factory=list, init=False)
    #: Each chunk's first start (bisected to find a chunk).
    firsts: list[int] = attrs.field(factory=list, init=False)
    #: An upper bound on each chunk's largest range: raised at once when a range grows, lowered
    #: lazily when a search finds the chunk has nothing that big (shrinking stays O(1)).
    bounds: list[int] = attrs.field(factory=list, init=False)
    #: The number of ranges.
    count: int = attrs.field(default=0, init=False)
    # A max-tree over bounds in one list: leaves at _cap + c, node i = max(2i, 2i + 1), padding -1.
    _tree: list[int] = attrs.field(factory=lambda: [-1, -1], init=False)
    _cap: int = attrs.field(default=1, init=False)
    _dirty: bool = attrs.field(default=False, init=False)

    @classmethod
    def loaded(cls, pairs: Sequence[tuple[int, int]]) -> Chunks:
        """Chunks holding sorted, disjoint, non-empty ``(start, end)`` pairs (the caller checked them).

        Runtime complexity: O(n).

        >>> Chunks.loaded([(0, 4), (8, 9)]).bounds
        [4]
        """
        out = cls()
        for k in range(0, len(pairs), LOAD):
            part = pairs[k : k + LOAD]
            out.starts.append([s for s, _ in part])
            out.sizes.append([e - s for s, e in part])
            out.firsts.append(part[0][0])
        out.bounds = [max(sz) for sz in out.sizes]
        out.count = len(pairs)
        out._dirty = True
        return out

    def locate(self, addr: int) -> tuple[int, int] | None:
        """(chunk, index) of the last range starting at or below ``addr``, or None.

        Runtime complexity: O(log n).
        """
        c = bisect_right(self.firsts, addr) - 1
        if c < 0:
            return None
        return c, bisect_right(self.starts[c], addr) - 1

    def insert_at(self, c: int, j: int, start: int, size: int) -> None:
        """Put a range at index ``j`` of chunk ``c`` (an empty store: its first chunk).

        The caller keeps the order and then calls :meth:`settle`.  Runtime complexity: O(LOAD) plus
        O(log n) when the chunk's bound rises.
        """
        if not self.starts:
            self._new_chunk(0, [start], [size])
            self.count = 1
            return
        self.starts[c].insert(j, start)
        self.sizes[c].insert(j, 0)
        self.count += 1
        if j == 0:
            self.firsts[c] = start
        self.grew(c, j, size)

    def settle(self, c: int) -> None:
        """Even out chunk ``c`` if it overflowed.  Runtime complexity: O(LOAD), O(n / LOAD) at worst."""
        if len(self.starts[c]) > 2 * LOAD:
            self._split(c)

    def delete_at(self, c: int, j: int) -> None:
        """Remove range ``j`` of chunk ``c``, keeping chunks in shape.  Runtime complexity: as :meth:`settle`."""
        st, sz = self.starts[c], self.sizes[c]
        removed = sz[j]
        del st[j], sz[j]
        self.count -= 1
        if not st:
            for lst in (self.starts, self.sizes, self.firsts, self.bounds):
                del lst[c]
            self._dirty = True
            return
        if j == 0:
            self.firsts[c] = st[0]
        if removed == self.bounds[c]:
            self.set_max(c, max(sz))
        if len(st) < LOAD // 4 and len(self.starts) > 1:
            self._merge(c)

    def grew(self, c: int, j: int, size: int) -> None:
        """Range (c, j) now has ``size`` bytes: record it and raise the chunk bound if needed.

        Runtime complexity: O(log n).
        """
        self.sizes[c][j] = size
        if size > self.bounds[c]:
            self.bounds[c] = size
            if not self._dirty:
                # Raising a leaf: its ancestors only ever rise to it, and stop at the first that is as big.
                tree = self._tree
                i = self._cap + c
                while i and tree[i] < size:
                    tree[i] = size
                    i >>= 1

    def set_max(self, c: int, value: int) -> None:
        """Chunk ``c``'s bound is now ``value`` (at least its largest range).  Runtime complexity: O(log n)."""
        self.bounds[c] = value
        if self._dirty:
            return
        tree = self._tree
        i = self._cap + c
        tree[i] = value
        i >>= 1
        while i:
            a, b = tree[2 * i], tree[2 * i + 1]
            v = a if a > b else b
            if tree[i] == v:
                break
            tree[i] = v
            i >>= 1

    def next_chunk(self, c: int, size: int) -> int:
        """Smallest chunk index >= c whose bound is >= size, or -1.  Runtime complexity: O(log n)."""
        if self._dirty:
            self._rebuild()
        tree, cap = self._tree, self._cap
        if c >= cap:
            return -1
        i = cap + c
        while tree[i] < size:
            while i & 1:  # a right child: climb until a left child
                i >>= 1
            if not i:
                return -1  # climbed past the root
            i += 1  # its right sibling covers the next chunks
        while i < cap:
            i <<= 1
            if tree[i] < size:
                i += 1
        return i - cap

    def check(self) -> None:
        """Assert the storage's invariants (for tests): lists agree, bounds hold, the max-tree is right."""
        if self._dirty:
            self._rebuild()
        assert len(self.starts) == len(self.sizes) == len(self.firsts) == len(self.bounds)
        assert all(bound >= max(sz) for bound, sz in zip(self.bounds, self.sizes, strict=True))
        tree, cap = self._tree, self._cap
        assert tree[cap : cap + len(self.bounds)] == self.bounds and len(self.bounds) <= cap
        assert all(tree[i] == max(tree[2 * i], tree[2 * i + 1]) for i in range(1, cap))
        for st, sz, first in zip(self.starts, self.sizes, self.firsts, strict=True):
            assert st and len(st) == len(sz) <= 2 * LOAD
            assert first == st[0]
        assert sum(map(len, self.starts)) == self.count

    # ----------------------------------------------------------------- internals

    def _new_chunk(self, c: int, st: list[int], sz: list[int]) -> None:
        self.starts.insert(c, st)
        self.sizes.insert(c, sz)
        self.firsts.insert(c, st[0])
        self.bounds.insert(c, max(sz))
        self._dirty = True

    def _split(self, c: int) -> None:
        """Chunk c overflowed: even it out with a neighbour that has room, else cut it in two.

        Moving ranges between neighbours changes two leaves of the max-tree (O(log n)); only
        a new chunk shifts the positions after it and costs a rebuild, which this makes rare.
        """
        n = len(self.starts[c])
        for d in (c + 1, c - 1):
            if 0 <= d < len(self.starts) and len(self.starts[d]) <= 2 * LOAD - LOAD // 2:
                self._even(min(c, d), max(c, d), (n - len(self.starts[d])) // 2 * (1 if d > c else -1))
                return
        st, sz = self.starts[c], self.sizes[c]
        half = n // 2
        self._new_chunk(c + 1, st[half:], sz[half:])
        del st[half:], sz[half:]
        self.bounds[c] = max(sz)

    def _merge(self, c: int) -> None:
        """Chunk c ran low: borrow from a neighbour with plenty, else fold it into one."""
        d = c - 1 if c > 0 else c + 1
        lo, hi = min(c, d), max(c, d)
        if len(self.starts[d]) >= LOAD // 2:
            k = (len(self.starts[d]) - len(self.starts[c])) // 2
            self._even(lo, hi, k if d == lo else -k)
            return
        self.starts[lo] += self.starts[hi]
        self.sizes[lo] += self.sizes[hi]
        bounds = self.bounds
        bounds[lo] = max(bounds[lo], bounds[hi])
        for lst in (self.starts, self.sizes, self.firsts, bounds):
            del lst[hi]
        self._dirty = True
        if len(self.starts[lo]) > 2 * LOAD:
            self._split(lo)

    def _even(self, lo: int, hi: int, k: int) -> None:
        """Move the last k ranges of chunk lo to the front of chunk hi (k < 0: the first -k of hi back)."""
        for lst in (self.starts, self.sizes):
            a, b = lst[lo], lst[hi]
            if k > 0:
                b[:0] = a[-k:]
                del a[-k:]
            else:
                a += b[:-k]
                del b[:-k]
        self.firsts[hi] = self.starts[hi][0]
        self.set_max(lo, max(self.sizes[lo]))
        self.set_max(hi, max(self.sizes[hi]))

    def _rebuild(self) -> None:
        cap = 1
        while cap < len(self.bounds):
            cap <<= 1
        tree = [-1] * (2 * cap)
        tree[cap : cap + len(self.bounds)] = self.bounds
        lo = cap
        while lo > 1:
            hi, lo = lo, lo >> 1
            tree[lo:hi] = map(max, tree[2 * lo : 2 * hi : 2], tree[2 * lo + 1 : 2 * hi : 2])
        self._tree, self._cap, self._dirty = tree, cap, False
