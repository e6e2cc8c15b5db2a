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

from vmapsim.errors import InvalidArgument
from vmapsim.rbtree import RbTree

__all__ = ["FreeTree"]

#: Target chunk length; a chunk splits above ``2 * LOAD`` and merges below ``LOAD // 4``.
LOAD = 32
# What the log records of a change to the kernel's tree.
INSERT, ERASE, MOVE = 0, 1, 2
#: Changes logged before the kernel's tree is brought up to date anyway (beyond twice the ranges): far
#: above one storm's (about 14,000 per run of the main job), so only long histories pay for the tree.
LOG_LIMIT = 1 << 17


@attrs.define(eq=False)
class _Chunks:
    """The storage under :class:`FreeTree`: ranges in address-sorted chunks, each chunk's bound on its
    largest range, and the max-tree over those bounds, with the steps that keep them in shape (split,
    merge, even out, rebuild).  What the ranges mean (lowest fit, clip, coalescing) is :class:`FreeTree`'s.
    """

    # Each range as its start and its size (its end is their sum): the search reads sizes, and two
    # lists instead of three mean fewer int objects to chase through memory at a million ranges.
    _starts: list[list[int]] = attrs.field(factory=list, init=False)
    _sizes: list[list[int]] = attrs.field(factory=list, init=False)
    _firsts: list[int] = attrs.field(factory=list, init=False)
    # An upper bound on each chunk's largest range: raised at once when a range grows, lowered
    # lazily when a search finds the chunk has nothing that big (shrinking stays O(1)).
    _cmax: list[int] = attrs.field(factory=list, init=False)
    # A max-tree over _cmax in one list: leaves at _cap + c, node i = max(2i, 2i + 1), padding -1.
    _tree: list[int] = attrs.field(factory=lambda: [-1, -1], init=False)
    _cap: int = attrs.field(default=1, init=False)
    _dirty: bool = attrs.field(default=False, init=False)
    _len: int = attrs.field(default=0, init=False)
    # The kernel's rbtree, built only when an aligned search needs its shape, and the changes since it was
    # last brought up to date: (INSERT, start, end, 0), (ERASE, start, 0, 0), (MOVE, start, new start, new end).
    _shadow: RbTree = attrs.field(factory=RbTree, init=False)
    _log: list[tuple[int, int, int, int]] = attrs.field(factory=list, init=False)

    def _locate(self, addr: int) -> tuple[int, int] | None:
        """(chunk, index) of the last range starting at or below ``addr``."""
        c = bisect_right(self._firsts, addr) - 1
        if c < 0:
            return None
        return c, bisect_right(self._starts[c], addr) - 1

    def _delete_at(self, c: int, j: int) -> None:
        st, sz = self._starts[c], self._sizes[c]
        removed = sz[j]
        del st[j], sz[j]
        self._len -= 1
        if not st:
            for lst in (self._starts, self._sizes, self._firsts, self._cmax):
                del lst[c]
            self._dirty = True
            return
        if j == 0:
            self._firsts[c] = st[0]
        if removed == self._cmax[c]:
            self._set_max(c, max(sz))
        if len(st) < LOAD // 4 and len(self._starts) > 1:
            self._merge(c)

    def _new_chunk(self, c: int, st: list[int], sz: list[int]) -> None:
        self._starts.insert(c, st)
        self._sizes.insert(c, sz)
        self._firsts.insert(c, st[0])
        self._cmax.insert(c, max(sz))
        self._dirty = True

    def _split(self, c: int) -> None:
        """Chunk c overflowed: even it out with a neighbour that has room, else cut it in two.

        Moving ranges between neighbours changes two leaves of the max-tree (O(log n)); only
        a new chunk shifts the positions after it and costs a rebuild, which this makes rare.
        """
        n = len(self._starts[c])
        for d in (c + 1, c - 1):
            if 0 <= d < len(self._starts) and len(self._starts[d]) <= 2 * LOAD - LOAD // 2:
                self._even(min(c, d), max(c, d), (n - len(self._starts[d])) // 2 * (1 if d > c else -1))
                return
        st, sz = self._starts[c], self._sizes[c]
        half = n // 2
        self._new_chunk(c + 1, st[half:], sz[half:])
        del st[half:], sz[half:]
        self._cmax[c] = max(sz)

    def _merge(self, c: int) -> None:
        """Chunk c ran low: borrow from a neighbour with plenty, else fold it into one."""
        d = c - 1 if c > 0 else c + 1
        lo, hi = min(c, d), max(c, d)
        if len(self._starts[d]) >= LOAD // 2:
            k = (len(self._starts[d]) - len(self._starts[c])) // 2
            self._even(lo, hi, k if d == lo else -k)
            return
        self._starts[lo] += self._starts[hi]
        self._sizes[lo] += self._sizes[hi]
        cmax = self._cmax
        cmax[lo] = max(cmax[lo], cmax[hi])
        for lst in (self._starts, self._sizes, self._firsts, cmax):
            del lst[hi]
        self._dirty = True
        if len(self._starts[lo]) > 2 * LOAD:
            self._split(lo)

    def _even(self, lo: int, hi: int, k: int) -> None:
        """Move the last k ranges of chunk lo to the front of chunk hi (k < 0: the first -k of hi back)."""
        for lst in (self._starts, self._sizes):
            a, b = lst[lo], lst[hi]
            if k > 0:
                b[:0] = a[-k:]
                del a[-k:]
            else:
                a += b[:-k]
                del b[:-k]
        self._firsts[hi] = self._starts[hi][0]
        self._set_max(lo, max(self._sizes[lo]))
        self._set_max(hi, max(self._sizes[hi]))

    def _grew(self, c: int, j: int, size: int) -> None:
        """Range (c, j) now has ``size`` bytes: record it and raise the chunk bound if needed."""
        self._sizes[c][j] = size
        if size > self._cmax[c]:
            self._cmax[c] = size
            if not self._dirty:
                # Raising a leaf: its ancestors only ever rise to it, and stop at the first that is as big.
                tree = self._tree
                i = self._cap + c
                while i and tree[i] < size:
                    tree[i] = size
                    i >>= 1

    def _set_max(self, c: int, value: int) -> None:
        self._cmax[c] = value
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

    def _rebuild(self) -> None:
        cap = 1
        while cap < len(self._cmax):
            cap <<= 1
        tree = [-1] * (2 * cap)
        tree[cap : cap + len(self._cmax)] = self._cmax
        lo = cap
        while lo > 1:
            hi, lo = lo, lo >> 1
            tree[lo:hi] = map(max, tree[2 * lo : 2 * hi : 2], tree[2 * lo + 1 : 2 * hi : 2])
        self._tree, self._cap, self._dirty = tree, cap, False

    def _next_chunk(self, c: int, size: int) -> int:
        """Smallest chunk index >= c whose largest range is >= size, or -1."""
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


@attrs.define(eq=False)
class FreeTree(_Chunks):
    """Free ``[start, end)`` ranges with lowest-fit search and coalescing insert.

    Runtime complexity: ``alloc``, ``clip``, ``insert`` and ``containing`` are
    O(log n) plus a scan of at most one chunk; iteration is O(n).

    >>> t = FreeTree.from_ranges([(0, 100), (200, 300)])
    >>> len(t), t.largest()
    (2, 100)
    """

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
            for k in range(0, len(pairs), LOAD):
                part = pairs[k : k + LOAD]
                tree._starts.append([s for s, _ in part])
                tree._sizes.append([e - s for s, e in part])
                tree._firsts.append(part[0][0])
            tree._cmax = [max(sz) for sz in tree._sizes]
            tree._len = len(pairs)
            tree._dirty = True
            # vmap_init_free_space(): the free areas inserted from the root, by address
            tree._log = [(INSERT, s, e, 0) for s, e in pairs]
        else:
            for s, e in pairs:
                tree.insert(s, e)
        return tree

    # ------------------------------------------------------------------ queries

    def __len__(self) -> int:
        """Number of free ranges.  Runtime complexity: O(1)."""
        return self._len

    def __iter__(self) -> Iterator[tuple[int, int]]:
        """Every free range as ``(start, end)``, by address.  Runtime complexity: O(n)."""
        for st, sz in zip(self._starts, self._sizes, strict=False):
            for s, z in zip(st, sz, strict=False):
                yield (s, s + z)

    def irange(self, lo: int, hi: int) -> Iterator[tuple[int, int]]:
        """Free ranges overlapping ``[lo, hi)``, clipped to it, by address.

        Runtime complexity: O(log n + k) for k ranges reported.

        >>> list(FreeTree.from_ranges([(0, 10), (20, 30)]).irange(5, 25))
        [(5, 10), (20, 25)]
        """
        c0 = max(bisect_right(self._firsts, lo) - 1, 0)
        j0 = max(bisect_right(self._starts[c0], lo) - 1, 0) if self._starts else 0
        for c in range(c0, len(self._starts)):
            st, sz = self._starts[c], self._sizes[c]
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
            return max((max(sz) for sz in self._sizes), default=0)
        return max((e - s for s, e in self.irange(lo, hi if hi is not None else 1 << 64)), default=0)

    def containing(self, addr: int) -> tuple[int, int] | None:
        """The free range holding ``addr``, or None.  Runtime complexity: O(log n)."""
        loc = self._locate(addr)
        if loc is None:
            return None
        c, j = loc
        s = self._starts[c][j]
        e = s + self._sizes[c][j]
        return (s, e) if e > addr else None

    def floor(self, addr: int) -> tuple[int, int] | None:
        """The last free range starting at or below ``addr`` (``pvm_find_va_enclose_addr()``).

        Runtime complexity: O(log n).
        """
        loc = self._locate(addr)
        if loc is None:
            return None
        c, j = loc
        s = self._starts[c][j]
        return (s, s + self._sizes[c][j])

    def before(self, start: int) -> tuple[int, int] | None:
        """The free range just below the one starting at ``start`` (``rb_prev``), or None.

        Runtime complexity: O(log n).
        """
        return self.floor(start - 1) if start > 0 else None

    def find(self, size: int, align: int, vstart: int, vend: int, *, descend: bool = False) -> int | None:
        """The address :meth:`alloc` would return, or None; changes nothing.

        Runtime complexity: O(log n) plus the scan of the chunks that hold a
        large-enough but misaligned range.

        >>> FreeTree.from_ranges([(0x1000, 0x2000), (0x3000, 0x8000)]).find(0x2000, 0x4000, 0, 1 << 32)
        16384
        """
        if descend:
            return self._descent(size, align, vstart, vend)
        hit = self._search(size, align, vstart, vend)
        return None if hit is None else hit[2]

    # ---------------------------------------------------------------- mutations

    def alloc(self, size: int, align: int, vstart: int, vend: int, *, descend: bool = False) -> int | None:
        """Find the kernel's fit and take it out of the tree; None (tree unchanged) if none.

        Without ``descend``, the lowest fit.  With it, what ``find_vmap_lowest_match()`` returns for the
        adjusted length ``size + align - 1`` on the kernel's tree, whose shape the log rebuilds, then
        ``__alloc_vmap_area()``'s ``vend`` check.  Runtime complexity: O(log n) amortized, as :meth:`find`;
        with ``descend``, O(log n) per change since the last such search, done then.

        >>> t = FreeTree.from_ranges([(0x100000, 0x200000)])
        >>> t.clip(0x103000, 0x1000)  # [0x100000, 0x103000) holds 8 KiB at 8 KiB alignment, not 8 KiB + 8 KiB - 1
        >>> hex(t.find(0x2000, 0x2000, 0, 1 << 32)), hex(t.alloc(0x2000, 0x2000, 0, 1 << 32, descend=True))
        ('0x100000', '0x104000')
        """
        if descend:
            a = self._descent(size, align, vstart, vend)
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
        loc = self._locate(addr)
        if size <= 0 or loc is None or self._starts[loc[0]][loc[1]] + self._sizes[loc[0]][loc[1]] < addr + size:
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
        starts, sizes = self._starts, self._sizes
        if not starts:
            self._new_chunk(0, [start], [end - start])
            self._len = 1
            self._log.append((INSERT, start, end, 0))
            return
        c = bisect_right(self._firsts, start) - 1
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
        log = self._log
        if len(log) > LOG_LIMIT + 2 * self._len:
            self._tree_now()  # a long history with no aligned search: its memory stays bounded
        if prev_end == start:
            prev_start = starts[c][j]
            if next_start == end:
                next_end = end + sizes[nc][nj]
                log += [(MOVE, end, start, next_end), (ERASE, start, 0, 0), (MOVE, prev_start, prev_start, next_end)]
                # Extend prev over next first: deleting next may merge chunks and move (c, j).
                self._grew(c, j, next_end - prev_start)
                self._delete_at(nc, nj)
            else:
                log.append((MOVE, prev_start, prev_start, end))
                self._grew(c, j, end - prev_start)
        elif next_start == end:
            log.append((MOVE, end, start, end + sizes[nc][nj]))
            starts[nc][nj] = start
            if nj == 0:
                self._firsts[nc] = start
            self._grew(nc, nj, sizes[nc][nj] + end - start)
        else:
            log.append((INSERT, start, end, 0))
            j += 1
            starts[c].insert(j, start)
            sizes[c].insert(j, 0)
            self._len += 1
            if j == 0:
                self._firsts[c] = start
            self._grew(c, j, end - start)
            if len(starts[c]) > 2 * LOAD:
                self._split(c)

    # ----------------------------------------------------------------- internals

    def _search(self, size: int, align: int, vstart: int, vend: int) -> tuple[int, int, int] | None:
        """(chunk, index, address) of the lowest fit, or None."""
        if not self._starts:
            return None
        starts, sizes, cmax = self._starts, self._sizes, self._cmax
        mask = align - 1
        c = bisect_right(self._firsts, vstart) - 1
        if c < 0:
            c, j = 0, 0
        else:
            j = bisect_right(starts[c], vstart) - 1
            if starts[c][j] + sizes[c][j] <= vstart:
                j += 1
        while True:
            if cmax[c] >= size:
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
                if exact < cmax[c]:
                    self._set_max(c, exact)  # the bound was stale: tighten it
            c = self._next_chunk(c + 1, size)
            if c < 0:
                return None
            j = 0

    def _clip_at(self, c: int, j: int, a: int, size: int) -> None:
        """Apply one of the kernel's four fit types to range (c, j) (``va_clip()``)."""
        st, sz = self._starts[c], self._sizes[c]
        s, z = st[j], sz[j]
        log = self._log
        if len(log) > LOG_LIMIT + 2 * self._len:
            self._tree_now()
        if a == s and size == z:  # FL_FIT_TYPE: the range disappears
            log.append((ERASE, s, 0, 0))
            self._delete_at(c, j)
            return
        if a == s:  # LE_FIT_TYPE
            log.append((MOVE, s, a + size, s + z))
            st[j] = a + size
            sz[j] = z - size
            if j == 0:
                self._firsts[c] = a + size
        elif a + size == s + z:  # RE_FIT_TYPE
            log.append((MOVE, s, s, a))
            sz[j] = a - s
        else:  # NE_FIT_TYPE: split in two; the node keeps the part above, a new one takes the part below
            log += [(MOVE, s, a + size, s + z), (INSERT, s, a, 0)]
            sz[j] = a - s
            st.insert(j + 1, a + size)
            sz.insert(j + 1, s + z - a - size)
            self._len += 1
        if z == self._cmax[c] and 2 * size > z:
            # The chunk's largest range lost over half its size: tighten the bound now (cheap and
            # usually final); small bites, like those off a free tail, leave it loose.
            self._set_max(c, max(sz))
        if len(st) > 2 * LOAD:
            self._split(c)

    def _descent(self, size: int, align: int, vstart: int, vend: int) -> int | None:
        """``__alloc_vmap_area()`` with the search length adjusted: the kernel's node, then its checks."""
        node = self._tree_now().lowest_match(size, align, vstart, adjust=True)
        if node is None:
            return None
        a = -(-(node.start if node.start > vstart else vstart) // align) * align
        return None if a + size > vend else a

    def _tree_now(self) -> RbTree:
        """The kernel's tree as of now: the logged changes applied in order.  Runtime: O(log n) each."""
        tree, log = self._shadow, self._log
        for op, a, b, c in log:
            if op == INSERT:
                tree.insert(a, b)
            elif op == ERASE:
                tree.erase(tree.find(a))
            else:
                tree.resize(tree.find(a), b, c)
        log.clear()
        return tree

    def _check(self) -> None:
        """Assert every invariant (for tests): sorted, non-empty, never adjacent, sums right."""
        if self._dirty:
            self._rebuild()
        prev_end = -1
        count = 0
        assert len(self._starts) == len(self._sizes) == len(self._firsts) == len(self._cmax)
        assert all(bound >= max(sz) for bound, sz in zip(self._cmax, self._sizes, strict=True))
        tree, cap = self._tree, self._cap
        assert tree[cap : cap + len(self._cmax)] == self._cmax and len(self._cmax) <= cap
        assert all(tree[i] == max(tree[2 * i], tree[2 * i + 1]) for i in range(1, cap))
        for st, sz, first in zip(self._starts, self._sizes, self._firsts, strict=False):
            assert st and len(st) == len(sz) <= 2 * LOAD
            assert first == st[0]
            for s, z in zip(st, sz, strict=False):
                assert z > 0, (s, z)
                assert s > prev_end, f"ranges touch or overlap at {s:#x}"
                prev_end = s + z
                count += 1
        assert count == self._len
        shadow = self._tree_now()  # the log rebuilds the kernel's tree over the very same ranges
        shadow._check()
        assert [(n.start, n.end) for n in shadow] == list(self)
