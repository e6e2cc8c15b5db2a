"""The kernel's free-area tree as the kernel builds it: a red-black tree augmented with ``subtree_max_size``.

``free_vmap_area_root`` in ``mm/vmalloc.c`` is an rbtree of free ranges sorted by address; each node also
carries the largest free range in its subtree (``RB_DECLARE_CALLBACKS_MAX``), which lets
``find_vmap_lowest_match()`` descend to a fitting range in O(log n).  For a request aligned beyond a page
the descent looks for ``size + align - 1`` bytes, so which range it returns -- or whether it finds one at
all -- depends on the tree's *shape*.  This module rebuilds that shape: insertion and erasure rebalance
exactly as ``lib/rbtree.c`` does (``__rb_insert()``, ``__rb_erase_augmented()``, ``____rb_erase_color()``:
the same cases, rotations, colour flips and choice of the successor), so the same operations in the same
order give the same tree, and :meth:`RbTree.lowest_match` walks it as ``find_vmap_lowest_match()`` does.

>>> t = RbTree()
>>> for start in (0x1000, 0x5000, 0x9000):
...     _ = t.insert(start, start + 0x2000)
>>> t.shape()
'20480:28672:b:8192 4096:12288:r:8192 . . 36864:45056:r:8192 . .'
>>> t.lowest_match(0x1000, 0x4000, 0, adjust=True) is None  # it looks for 0x4fff bytes: no range has them
True
"""

from __future__ import annotations

from collections.abc import Iterator

from vmapsim.errors import InvalidArgument

__all__ = ["Node", "RbTree"]


class Node:
    """One free range ``[start, end)``: a ``struct vmap_area`` in the free tree.

    ``max`` is ``subtree_max_size``: the largest ``end - start`` in the subtree rooted here.
    """

    __slots__ = ("end", "kids", "max", "parent", "red", "start")

    def __init__(self, start: int, end: int) -> None:
        self.start = start
        self.end = end
        # [rb_left, rb_right]: indexed by side, so each mirrored pair of lib/rbtree.c's cases is one code path
        self.kids: list[Node | None] = [None, None]
        self.parent: Node | None = None
        self.red = True  # rb_link_node() links a red node
        self.max = end - start

    @property
    def left(self) -> Node | None:
        """``rb_left``: the subtree of lower ranges."""
        return self.kids[0]

    @property
    def right(self) -> Node | None:
        """``rb_right``: the subtree of higher ranges."""
        return self.kids[1]

    def __repr__(self) -> str:
        return f"Node({self.start:#x}, {self.end:#x}, {'red' if self.red else 'black'}, max={self.max:#x})"


def _compute(n: Node) -> int:
    """``RBCOMPUTE``: the node's own size or its children's largest, whichever is larger."""
    m = n.end - n.start
    left, right = n.kids
    if left is not None and left.max > m:
        m = left.max
    if right is not None and right.max > m:
        m = right.max
    return m


def _aligned(value: int, align: int) -> int:
    return -(-value // align) * align


class RbTree:
    """An augmented red-black tree of disjoint ranges, rebalanced as ``lib/rbtree.c`` rebalances.

    Runtime complexity: O(log n) for :meth:`insert`, :meth:`erase`, :meth:`resize`, :meth:`find` and
    :meth:`lowest_match` (its roll-back climbs at most the height twice).
    """

    __slots__ = ("_nodes", "root")

    def __init__(self) -> None:
        self.root: Node | None = None
        # start -> node: the kernel reaches a free area by its pointer; a log names it by its start
        self._nodes: dict[int, Node] = {}

    def __len__(self) -> int:
        """The number of ranges.  Runtime complexity: O(1)."""
        return len(self._nodes)

    def __iter__(self) -> Iterator[Node]:
        """The nodes in address order.  Runtime complexity: O(n)."""
        stack: list[Node] = []
        n = self.root
        while stack or n is not None:
            while n is not None:
                stack.append(n)
                n = n.kids[0]
            n = stack.pop()
            yield n
            n = n.kids[1]

    # ------------------------------------------------------------ lookup

    def find(self, start: int) -> Node:
        """The node whose range starts at ``start``; :class:`InvalidArgument` if none does.

        Runtime complexity: O(1).
        """
        n = self._nodes.get(start)
        if n is None:
            raise InvalidArgument(f"no free range starts at {start:#x}")
        return n

    def lowest_match(self, size: int, align: int, vstart: int, *, adjust: bool) -> Node | None:
        """``find_vmap_lowest_match()`` (mm/vmalloc.c, 5.13+): the node the kernel's descent returns for
        ``size`` bytes at ``align`` from ``vstart``, or None where it finds none.

        ``adjust`` is ``adjust_search_size``: the descent then follows subtrees holding ``size + align - 1``
        bytes, so a smaller range that still fits the aligned request is found only if it lies on the path
        (the nodes checked on the way down, then on the climb back).  ``__alloc_vmap_area()`` passes False
        for ``align <= PAGE_SIZE`` and when the window is exactly ``size`` long.  Runtime: O(log n).

        >>> t = RbTree()
        >>> _ = t.insert(0x10000, 0x20000); _ = t.insert(0x1000, 0x4000)
        >>> hex(t.lowest_match(0x2000, 0x2000, 0, adjust=True).start)  # 0x1000 could hold it; not on the path
        '0x10000'
        >>> hex(t.lowest_match(0x2000, 0x2000, 0, adjust=False).start)
        '0x1000'
        """
        length = size + align - 1 if adjust else size
        n = self.root
        while n is not None:
            left, right = n.kids
            if left is not None and left.max >= length and vstart < n.start:
                n = left
                continue
            if _fits(n, size, align, vstart):
                return n
            if right is not None and right.max >= length:
                n = right
                continue
            # Roll back to the first right subtree still worth searching: the "vstart" restriction or an
            # alignment overhead above a page can make the left descent miss.
            while True:
                up = n.parent
                if up is None:
                    return None
                n = up
                if _fits(n, size, align, vstart):
                    return n
                right = n.kids[1]
                if right is not None and right.max >= length and vstart <= n.start:
                    vstart = n.start + 1  # never enter the subtree just searched again
                    n = right
                    break
        return None

    def lowest_fit(self, size: int, align: int, vstart: int, vend: int, *, adjust: bool) -> int | None:
        """``__alloc_vmap_area()``: the address it returns, or None: the kernel's node (:meth:`lowest_match`),
        aligned up from ``vstart``, then the ``vend`` check.  Runtime complexity: O(log n).

        >>> t = RbTree()
        >>> _ = t.insert(0x10000, 0x20000); _ = t.insert(0x1000, 0x4000)
        >>> hex(t.lowest_fit(0x2000, 0x2000, 0, 1 << 32, adjust=True))
        '0x10000'
        """
        node = self.lowest_match(size, align, vstart, adjust=adjust)
        if node is None:
            return None
        a = _aligned(node.start if node.start > vstart else vstart, align)
        return None if a + size > vend else a

    # ------------------------------------------------------------ changes

    def insert(self, start: int, end: int) -> Node:
        """Link a new range where the address descent from the root ends (``find_va_links()``), then
        rebalance (``rb_insert_augmented()``) and propagate the sizes up (``augment_tree_propagate_from()``).

        :class:`InvalidArgument` if it overlaps a range of the tree.  Runtime complexity: O(log n).
        """
        node = Node(start, end)
        parent = None
        n = self.root
        side = 0
        while n is not None:
            parent = n
            if end <= n.start:
                side = 0
            elif start >= n.end:
                side = 1
            else:
                raise InvalidArgument(f"[{start:#x}, {end:#x}) overlaps the free range [{n.start:#x}, {n.end:#x})")
            n = n.kids[side]
        node.parent = parent
        if parent is None:
            self.root = node
        else:
            parent.kids[side] = node
        self._nodes[start] = node
        self._insert_color(node)
        # __link_va() zeroes the new node's subtree_max_size after rb_insert_augmented(), so the propagation,
        # which stops at the first node whose maximum holds, starts with it
        node.max = 0
        self._propagate(node)
        return node

    def erase(self, node: Node) -> None:
        """Unlink ``node`` (``rb_erase_augmented()``).  Runtime complexity: O(log n)."""
        rebalance = self._erase(node)
        if rebalance is not None:
            self._erase_color(rebalance)
        node.kids = [None, None]
        node.parent = None
        del self._nodes[node.start]

    def resize(self, node: Node, start: int, end: int) -> None:
        """Change ``node``'s range in place, as ``adjust_va_to_fit_type()`` and ``merge_or_add_vmap_area()``
        move a free area's ends, then propagate the sizes up.  The caller keeps the order of ranges.

        Runtime complexity: O(log n).
        """
        if start != node.start:
            del self._nodes[node.start]
            self._nodes[start] = node
        node.start, node.end = start, end
        self._propagate(node)

    # ------------------------------------------------------------ lib/rbtree.c

    def _propagate(self, n: Node | None) -> None:
        """``RB_DECLARE_CALLBACKS_MAX``'s propagate: up to the first node whose maximum holds (the ones
        above it hold too)."""
        while n is not None:
            m = _compute(n)
            if m == n.max:
                return
            n.max = m
            n = n.parent

    def _rotate_set_parents(self, old: Node, new: Node, red: bool) -> None:
        """``__rb_rotate_set_parents()``: ``new`` takes ``old``'s place and colour; ``old`` goes under it."""
        parent = old.parent
        new.parent, new.red = parent, old.red
        old.parent, old.red = new, red
        self._change_child(old, new, parent)

    def _change_child(self, old: Node, new: Node | None, parent: Node | None) -> None:
        if parent is None:
            self.root = new
        else:
            parent.kids[parent.kids[1] is old] = new

    @staticmethod
    def _rotated(old: Node, new: Node) -> None:
        """The augment's rotate callback: ``new`` now roots ``old``'s former subtree."""
        new.max = old.max
        old.max = _compute(old)

    def _insert_color(self, node: Node) -> None:
        """``__rb_insert()``: restore the red-black rules above a red leaf; ``d`` is the parent's side."""
        parent = node.parent
        while True:
            if parent is None:
                node.red = False
                return
            if not parent.red:
                return
            gparent = parent.parent
            assert gparent is not None  # a red node is never the root
            d = 1 if parent is gparent.kids[1] else 0
            uncle = gparent.kids[1 - d]
            if uncle is not None and uncle.red:  # case 1: recolour and go up
                uncle.red = parent.red = False
                node = gparent
                parent = node.parent
                node.red = True
                continue
            if node is parent.kids[1 - d]:  # case 2: rotate at parent, towards d
                tmp = node.kids[d]
                parent.kids[1 - d] = tmp
                node.kids[d] = parent
                if tmp is not None:
                    tmp.parent, tmp.red = parent, False
                parent.parent, parent.red = node, True
                self._rotated(parent, node)
                parent = node
            tmp = parent.kids[1 - d]  # case 3: rotate at gparent, away from d
            gparent.kids[d] = tmp
            parent.kids[1 - d] = gparent
            if tmp is not None:
                tmp.parent, tmp.red = gparent, False
            self._rotate_set_parents(gparent, parent, True)
            self._rotated(gparent, parent)
            return

    def _erase(self, node: Node) -> Node | None:
        """``__rb_erase_augmented()``: unlink ``node``; the parent to rebalance from, or None."""
        tmp, child = node.kids
        rebalance: Node | None
        if tmp is None:  # at most one child, the right one
            parent = node.parent
            self._change_child(node, child, parent)
            if child is not None:
                child.parent, child.red = parent, node.red
                rebalance = None
            else:
                rebalance = parent if not node.red else None
            top = parent
        elif child is None:  # only a left child
            parent = node.parent
            tmp.parent, tmp.red = parent, node.red
            self._change_child(node, tmp, parent)
            rebalance = None
            top = parent
        else:  # two children: the successor takes the node's place and colour
            successor = child
            tmp = child.kids[0]
            if tmp is None:  # the successor is the right child
                parent = successor
                child2 = successor.kids[1]
                successor.max = node.max
            else:  # the successor is the leftmost under the right child
                while True:
                    parent, successor = successor, tmp
                    tmp = tmp.kids[0]
                    if tmp is None:
                        break
                child2 = successor.kids[1]
                parent.kids[0] = child2
                successor.kids[1] = child
                child.parent = successor
                successor.max = node.max
                self._propagate_to(parent, successor)
            left = node.kids[0]
            assert left is not None  # this branch is the node with two children
            successor.kids[0] = left
            left.parent = successor
            self._change_child(node, successor, node.parent)
            if child2 is not None:
                child2.parent, child2.red = parent, False
                rebalance = None
            else:
                rebalance = parent if not successor.red else None
            successor.parent, successor.red = node.parent, node.red
            top = successor
        self._propagate(top)
        return rebalance

    @staticmethod
    def _propagate_to(n: Node | None, stop: Node) -> None:
        while n is not None and n is not stop:
            m = _compute(n)
            if m == n.max:
                return
            n.max = m
            n = n.parent

    def _erase_color(self, parent: Node) -> None:
        """``____rb_erase_color()``: restore the black heights after a black leaf left ``parent``; ``d`` is
        the side of the short path (on the first pass ``node`` is None: the side the leaf left)."""
        node: Node | None = None
        while True:
            d = 1 if node is parent.kids[1] else 0
            sibling = parent.kids[1 - d]
            assert sibling is not None
            if sibling.red:  # case 1: rotate at parent, towards d
                tmp1 = sibling.kids[d]
                assert tmp1 is not None
                parent.kids[1 - d] = tmp1
                sibling.kids[d] = parent
                tmp1.parent, tmp1.red = parent, False
                self._rotate_set_parents(parent, sibling, True)
                self._rotated(parent, sibling)
                sibling = tmp1
            tmp1 = sibling.kids[1 - d]
            if tmp1 is None or not tmp1.red:
                tmp2 = sibling.kids[d]
                if tmp2 is None or not tmp2.red:  # case 2: recolour the sibling
                    sibling.parent, sibling.red = parent, True
                    if parent.red:
                        parent.red = False
                    else:
                        node, up = parent, parent.parent
                        if up is not None:
                            parent = up
                            continue
                    return
                tmp1 = tmp2.kids[1 - d]  # case 3: rotate at sibling, away from d
                sibling.kids[d] = tmp1
                tmp2.kids[1 - d] = sibling
                parent.kids[1 - d] = tmp2
                if tmp1 is not None:
                    tmp1.parent, tmp1.red = sibling, False
                self._rotated(sibling, tmp2)
                tmp1, sibling = sibling, tmp2
            tmp2 = sibling.kids[d]  # case 4: rotate at parent, towards d, and recolour
            parent.kids[1 - d] = tmp2
            sibling.kids[d] = parent
            tmp1.parent, tmp1.red = sibling, False
            if tmp2 is not None:
                tmp2.parent = parent
            self._rotate_set_parents(parent, sibling, False)
            self._rotated(parent, sibling)
            return

    # ------------------------------------------------------------ views

    def shape(self) -> str:
        """The tree in preorder, each node ``start:end:colour:subtree_max`` and each empty child ``.``.

        Runtime complexity: O(n).
        """
        out: list[str] = []
        stack: list[Node | None] = [self.root]
        while stack:
            n = stack.pop()
            if n is None:
                out.append(".")
                continue
            out.append(f"{n.start}:{n.end}:{'r' if n.red else 'b'}:{n.max}")
            stack.append(n.kids[1])
            stack.append(n.kids[0])
        return " ".join(out)

    def _check(self) -> None:
        """Assert the red-black, order, parent and augment invariants.  Runtime complexity: O(n)."""

        def walk(n: Node | None, parent: Node | None, lo: int, hi: int) -> int:
            if n is None:
                return 1
            assert n.parent is parent and lo <= n.start < n.end <= hi, n
            assert not (n.red and parent is not None and parent.red), n
            assert n.max == _compute(n), n
            black = walk(n.kids[0], n, lo, n.start)
            assert black == walk(n.kids[1], n, n.end, hi), n
            return black + (not n.red)

        assert self.root is None or not self.root.red
        walk(self.root, None, 0, 1 << 65)
        assert sorted(self._nodes) == [n.start for n in self] and all(self._nodes[n.start] is n for n in self)


def _fits(n: Node, size: int, align: int, vstart: int) -> bool:
    """``is_within_this_va()``: the aligned start at or above ``vstart`` leaves ``size`` bytes in ``n``."""
    a = _aligned(n.start if n.start > vstart else vstart, align)
    return a >= vstart and a + size <= n.end
