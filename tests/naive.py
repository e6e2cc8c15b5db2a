"""A naive linear-scan free list: the reference the fast FreeTree is held to.

It implements the same interface as vmapsim.freetree.FreeTree with the
obvious O(n) algorithms, so a VmapSpace can run on either.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from vmapsim.errors import InvalidArgument


class NaiveFreeTree:
    def __init__(self, ranges: Iterable[tuple[int, int]] = ()) -> None:
        self.ranges: list[tuple[int, int]] = []
        for s, e in ranges:
            self.insert(s, e)

    @classmethod
    def from_ranges(cls, ranges: Iterable[tuple[int, int]]) -> NaiveFreeTree:
        tree = cls()
        tree.ranges = sorted(ranges)  # callers pass disjoint, non-touching ranges
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

    def find(self, size: int, align: int, vstart: int, vend: int) -> int | None:
        for s, e in self.ranges:
            a = max(s, vstart)
            a = (a + align - 1) // align * align
            if a + size <= e and a + size <= vend:
                return a
        return None

    def alloc(self, size: int, align: int, vstart: int, vend: int) -> int | None:
        a = self.find(size, align, vstart, vend)
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
                return
        raise InvalidArgument("not inside one free range")

    def insert(self, start: int, end: int) -> None:
        if start >= end or any(s < end and start < e for s, e in self.ranges):
            raise InvalidArgument("overlap")
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
