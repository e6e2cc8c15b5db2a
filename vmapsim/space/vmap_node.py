"""The 6.9+ per-node size-class pools of freed VAs (``struct vmap_node``'s ``pool[]`` in mm/vmalloc.c).

From 6.9 a purge parks each freed VA of up to ``MAX_VA_SIZE_PAGES`` pages on the
pool of its vmap node and size class instead of returning it to the free tree
(``purge_vmap_node()``); ``node_alloc()`` takes the head of the requesting CPU's
pool first.  :class:`NodePools` is that bookkeeping alone: which ranges sit
where.  The space decides when to call it and accounts the bytes.

>>> p = NodePools(2)
>>> p.put(0, 0x1000, 0x3000)
>>> p.take(0, 0x2000, 0x1000), p.take(0, 0x2000, 0x1000)
(4096, None)
"""

from __future__ import annotations

from collections import deque

import attrs

from vmapsim.profiles import PoolDecay
from vmapsim.units import PAGE_SHIFT

__all__ = ["MAX_VA_SIZE_PAGES", "VMAP_ZONE_SIZE", "NodePools"]

#: Pools hold VAs of up to this many pages, guard included (mm/vmalloc.c, 6.9+).
MAX_VA_SIZE_PAGES = 256
#: Busy-tree sharding granule of the 6.9+ vmap nodes: ``vmap_zone_size`` = 16 pages.
VMAP_ZONE_SIZE = 16 << PAGE_SHIFT


def size_class(size: int) -> int:
    """The pool index of a VA of ``size`` bytes: pages - 1.  Runtime complexity: O(1)."""
    return (size - 1) >> PAGE_SHIFT


@attrs.define(eq=False)
class NodePools:
    """Per node, per size class, a deque of ``(start, end)`` whose head (left) is the LIFO end.

    Runtime complexity: O(1) for :meth:`take` and :meth:`put`; :meth:`decay`
    O(pools + released); :meth:`remove` and :meth:`ranges` O(p) in the pooled VAs.
    """

    nodes: int
    _pools: list[dict[int, deque[tuple[int, int]]]] = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self._pools = [{} for _ in range(self.nodes)]

    def __bool__(self) -> bool:
        """True when there are pools at all (6.9+ with several nodes).  Runtime: O(1)."""
        return self.nodes > 0

    def take(self, node: int, size: int, align: int) -> int | None:
        """``node_pool_del_va()``: the head of the size class if aligned, else rotate it to the tail."""
        pools = self._pools[node]
        idx = size_class(size)
        q = pools.get(idx)
        if not q:
            return None
        s, _e = q[0]
        if s % align:
            q.rotate(-1)
            return None
        q.popleft()
        if not q:
            del pools[idx]
        return s

    def put(self, node: int, start: int, end: int) -> None:
        """Park a freed VA at the head of its size class (``purge_vmap_node()``)."""
        self._pools[node].setdefault(size_class(end - start), deque()).appendleft((start, end))

    def decay(self, node: int, full: bool, rule: PoolDecay) -> list[tuple[int, int]]:
        """``decay_va_pool_node()``: take a quarter (or everything) from each pool's head; return them."""
        released: list[tuple[int, int]] = []
        pools = self._pools[node]
        for idx in list(pools):
            q = pools[idx]
            n = len(q)
            if full:
                k = n
            elif n < 4:
                k = n if rule is PoolDecay.QUARTER_SMALL_ALL else 0
            else:
                k = n >> 2
            released += [q.popleft() for _ in range(k)]
            if not q:
                del pools[idx]
        return released

    def remove(self, start: int, end: int) -> int | None:
        """Take exactly ``[start, end)`` out of whichever pool holds it; its node, or None."""
        for node, pools in enumerate(self._pools):
            q = pools.get(size_class(end - start))
            if q is not None and (start, end) in q:
                q.remove((start, end))
                if not q:
                    del pools[size_class(end - start)]
                return node
        return None

    def ranges(self) -> list[tuple[int, int]]:
        """Every pooled ``(start, end)``, by address."""
        return sorted(r for pools in self._pools for q in pools.values() for r in q)
