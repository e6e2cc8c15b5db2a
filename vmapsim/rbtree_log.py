"""The kernel's free-area tree kept as a record of its changes, built only when its shape is asked for.

Only searches that depend on the tree's shape (an alignment beyond a page, or every search up to 5.15) need
:class:`vmapsim.rbtree.RbTree` as the kernel's inserts, erases and in-place moves built it.  A run records
each change in the kernel's order, cheaply, and applies the record when such a search comes, or when it
grows past :data:`LOG_LIMIT`.

>>> t = LoggedTree()
>>> t.insert(0x1000, 0x3000); t.erase(0x1000); len(t.now())
0
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable

from vmapsim.rbtree import RbTree

__all__ = ["LOG_LIMIT", "LoggedTree"]

#: Changes a :class:`LoggedTree` records before it applies them anyway (beyond twice its ranges): far above
#: one storm's (about 14,000 per run of the main job, 530,000 at 4096 CPUs), so only longer histories pay
#: for the tree.  A change takes 32 bytes of the record: 32 MiB at most.
LOG_LIMIT = 1 << 20
# A change as recorded: (_INSERT, start, end, 0), (_ERASE, start, 0, 0), (_MOVE, start, new start, new end).
_INSERT, _ERASE, _MOVE = 0, 1, 2


class LoggedTree:
    """The kernel's tree kept lazily: each change recorded in the kernel's order, applied when asked.

    Only searches aligned beyond a page depend on the tree's shape, as the kernel's inserts, erases and
    in-place moves built it.  Runtime complexity: recording O(1); :meth:`now` O(log n) a change recorded.

    >>> t = LoggedTree()
    >>> t.insert(0, 0x1000); t.insert(0x2000, 0x3000); t.move(0x2000, 0x1800, 0x3000)
    >>> [(n.start, n.end) for n in t.now()]
    [(0, 4096), (6144, 12288)]
    """

    __slots__ = ("_log", "_tree")

    def __init__(self) -> None:
        self._tree = RbTree()
        # Four unsigned 64-bit words a change (addresses are below 2**64): a quarter of a list of tuples.
        self._log = array("Q")

    def insert(self, start: int, end: int) -> None:
        """Record that ``[start, end)`` is linked as a new node.  Runtime complexity: O(1)."""
        self._log.extend((_INSERT, start, end, 0))

    def insert_all(self, pairs: Iterable[tuple[int, int]]) -> None:
        """Record each ``(start, end)`` linked in turn.  Runtime complexity: O(n)."""
        for s, e in pairs:
            self._log.extend((_INSERT, s, e, 0))

    def erase(self, start: int) -> None:
        """Record that the node starting at ``start`` is unlinked.  Runtime complexity: O(1)."""
        self._log.extend((_ERASE, start, 0, 0))

    def move(self, start: int, new_start: int, new_end: int) -> None:
        """Record that the node starting at ``start`` now spans ``[new_start, new_end)``.  Runtime: O(1)."""
        self._log.extend((_MOVE, start, new_start, new_end))

    def bound(self, ranges: int) -> None:
        """Apply the record if it holds over ``LOG_LIMIT + 2 * ranges`` changes.  Runtime: amortized O(log n)."""
        if len(self._log) > 4 * (LOG_LIMIT + 2 * ranges):
            self.now()

    def now(self) -> RbTree:
        """The kernel's tree as of now: the recorded changes applied in order.  Runtime: O(log n) each."""
        tree = self._tree
        words = iter(self._log)
        for op, a, b, c in zip(words, words, words, words, strict=True):
            if op == _INSERT:
                tree.insert(a, b)
            elif op == _ERASE:
                tree.erase(tree.find(a))
            else:
                tree.resize(tree.find(a), b, c)
        del self._log[:]
        return tree

    def lowest_fit(self, size: int, align: int, vstart: int, vend: int, *, adjust: bool = True) -> int | None:
        """:meth:`RbTree.lowest_fit` on the tree as of now.  Runtime complexity: O(log n) after :meth:`now`.

        >>> t = LoggedTree()
        >>> t.insert(0x10000, 0x20000); t.insert(0x1000, 0x4000)
        >>> hex(t.lowest_fit(0x2000, 0x2000, 0, 1 << 32))
        '0x10000'
        """
        return self.now().lowest_fit(size, align, vstart, vend, adjust=adjust)
