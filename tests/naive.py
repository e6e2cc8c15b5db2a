"""A naive linear-scan free list: the reference the fast FreeTree is held to.

It implements the same interface as vmapsim.freetree.FreeTree with the
obvious O(n) algorithms, so a VmapSpace can run on either.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from vmapsim.errors import InvalidArgument
from vmapsim.rbtree import RbTree


class NaiveFreeTree:
    # Beside the list, the kernel's rbtree, changed eagerly by the kernel's operations as read off the
    # list's before and after (so FreeTree's logging of them is checked against a second derivation).

    def __init__(self, ranges: Iterable[tuple[int, int]] = ()) -> None:
        self.ranges: list[tuple[int, int]] = []
        self.rb = RbTree()
        for s, e in ranges:
            self.insert(s, e)

    @classmethod
    def from_ranges(cls, ranges: Iterable[tuple[int, int]]) -> NaiveFreeTree:
        tree = cls()
        tree.ranges = sorted(ranges)  # callers pass disjoint, non-touching ranges
        for s, e in tree.ranges:
            tree.rb.insert(s, e)
        tree._check()
        return tree

    def __len__(self) -> int:
        return len(self.ranges)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return iter(list(self.ranges))

    def irange(self, lo: int, hi: int) -> Iterator[tuple[int, int]]:
        for s, e in self.ranges:
            if s < hi and e > lo:
                yield (max(s, lo), min(e, hi))

    def largest(self, lo: int = 0, hi: int | None = None) -> int:
        return max((e - s for s, e in self.irange(lo, hi if hi is not None else 1 << 64)), default=0)

    def find(
        self, size: int, align: int, vstart: int, vend: int, *, descend: bool = False, adjust: bool = True
    ) -> int | None:
        if descend:
            node = self.rb.lowest_match(size, align, vstart, adjust=adjust)
            if node is None:
                return None
            a = (max(node.start, vstart) + align - 1) // align * align
            return a if a + size <= vend else None
        for s, e in self.ranges:
            a = max(s, vstart)
            a = (a + align - 1) // align * align
            if a + size <= e and a + size <= vend:
                return a
        return None

    def alloc(
        self, size: int, align: int, vstart: int, vend: int, *, descend: bool = False, adjust: bool = True
    ) -> int | None:
        a = self.find(size, align, vstart, vend, descend=descend, adjust=adjust)
        if a is not None:
            self.clip(a, size)
        return a

    def containing(self, addr: int) -> tuple[int, int] | None:
        for s, e in self.ranges:
            if s <= addr < e:
                return (s, e)
        return None

    def floor(self, addr: int) -> tuple[int, int] | None:
        best = None
        for s, e in self.ranges:
            if s <= addr:
                best = (s, e)
        return best

    def before(self, start: int) -> tuple[int, int] | None:
        return self.floor(start - 1) if start > 0 else None

    def clip(self, addr: int, size: int) -> None:
        for i, (s, e) in enumerate(self.ranges):
            if s <= addr and addr + size <= e and size > 0:
                pieces = [(s, addr)] if s < addr else []
                pieces += [(addr + size, e)] if addr + size < e else []
                self.ranges[i : i + 1] = pieces
                node = self.rb.find(s)
                if not pieces:
                    self.rb.erase(node)
                elif len(pieces) == 1:
                    self.rb.resize(node, *pieces[0])
                else:  # the node keeps the part above; the part below is a new node
                    self.rb.resize(node, *pieces[1])
                    self.rb.insert(*pieces[0])
                return
        raise InvalidArgument("not inside one free range")

    def insert(self, start: int, end: int) -> None:
        if start >= end or any(s < end and start < e for s, e in self.ranges):
            raise InvalidArgument("overlap")
        prev = next((r for r in self.ranges if r[1] == start), None)
        after = next((r for r in self.ranges if r[0] == end), None)
        if after is not None:
            self.rb.resize(self.rb.find(after[0]), start, after[1])
            if prev is not None:
                self.rb.erase(self.rb.find(start))
                self.rb.resize(self.rb.find(prev[0]), prev[0], after[1])
        elif prev is not None:
            self.rb.resize(self.rb.find(prev[0]), prev[0], end)
        else:
            self.rb.insert(start, end)
        self.ranges.append((start, end))
        self.ranges.sort()
        merged: list[tuple[int, int]] = []
        for s, e in self.ranges:
            if merged and merged[-1][1] == s:
                merged[-1] = (merged[-1][0], e)
            else:
                merged.append((s, e))
        self.ranges = merged

    def _check(self) -> None:
        for (_, e), (s2, _) in zip(self.ranges, self.ranges[1:], strict=False):
            assert e < s2
        self.rb._check()
        assert [(n.start, n.end) for n in self.rb] == self.ranges
