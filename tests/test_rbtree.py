"""The kernel's free-area rbtree: invariants under any history, and the descent against a reference.

The reference below walks an explicit tree recursively, computing every subtree's largest range by brute
force rather than trusting the augmented ``max``: the kernel's rules (go left while the left subtree holds
the search length and ``vstart`` is below the node; check the node; go right while the right subtree holds
it; else climb back to the first right subtree worth searching, moving ``vstart`` past its parent) written
a second way. For requests that need no adjustment the descent must return the lowest fit, which a linear
scan gives.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from vmapsim.rbtree import Node, RbTree

PAGE = 4096


def _subtree_max(n: Node | None) -> int:
    return 0 if n is None else max(n.end - n.start, _subtree_max(n.left), _subtree_max(n.right))


def _fits(n: Node, size: int, align: int, vstart: int) -> bool:
    a = -(-max(n.start, vstart) // align) * align
    return a >= vstart and a + size <= n.end


def reference(tree: RbTree, size: int, align: int, vstart: int, adjust: bool) -> Node | None:
    """The descent with a stack of ancestors in place of parent pointers and subtree sizes counted by brute
    force in place of the augmented ``max``."""
    length = size + align - 1 if adjust else size
    path: list[Node] = []
    n = tree.root
    while n is not None:
        if _subtree_max(n.left) >= length and vstart < n.start:
            path.append(n)
            n = n.left
            continue
        if _fits(n, size, align, vstart):
            return n
        if _subtree_max(n.right) >= length:
            path.append(n)
            n = n.right
            continue
        n = None
        while path:
            a = path.pop()
            if _fits(a, size, align, vstart):
                return a
            if _subtree_max(a.right) >= length and vstart <= a.start:
                vstart = a.start + 1
                path.append(a)
                n = a.right
                break
    return None


_OPS = st.lists(st.tuples(st.sampled_from(["insert", "erase", "shrink"]), st.integers(0, 200), st.integers(1, 8)),
                max_size=120)  # fmt: skip


def _build(ops: list[tuple[str, int, int]]) -> RbTree:
    """A tree grown by inserts of page ranges, erases and in-place shrinks, checked after every step."""
    t = RbTree()
    for op, slot, pages in ops:
        start = slot * 16 * PAGE
        if op == "insert":
            try:
                t.insert(start, start + pages * PAGE)
            except Exception:
                continue  # overlaps: refused, and the tree is unchanged
        elif len(t):
            nodes = list(t)
            n = nodes[slot % len(nodes)]
            if op == "erase":
                t.erase(n)
            elif n.end - n.start > PAGE:
                t.resize(n, n.start + PAGE, n.end)
        t._check()
    return t


@given(_OPS)
def test_any_history_keeps_the_red_black_and_augment_invariants(ops: list[tuple[str, int, int]]) -> None:
    _build(ops)


@given(_OPS, st.integers(1, 8), st.sampled_from([PAGE, 2 * PAGE, 4 * PAGE, 8 * PAGE, 512 * PAGE]),
       st.integers(0, 210 * 16), st.booleans())  # fmt: skip
def test_the_descent_is_the_reference(ops: list[tuple[str, int, int]], pages: int, align: int, vstart_pages: int,
                                      adjust: bool) -> None:  # fmt: skip
    t = _build(ops)
    size, vstart = pages * PAGE, vstart_pages * PAGE
    got = t.lowest_match(size, align, vstart, adjust=adjust)
    want = reference(t, size, align, vstart, adjust)
    assert got is want
    if got is not None:
        assert _fits(got, size, align, vstart)
    if not adjust:  # the search length is the size: the lowest fit, whatever the shape
        assert got is next((n for n in t if _fits(n, size, align, vstart)), None)


def test_an_aligned_request_misses_a_fitting_range_off_the_path() -> None:
    t = RbTree()
    big = t.insert(0x100000, 0x200000)
    t.insert(0x1000, 0x4000)  # 12 KiB: holds 8 KiB at 8 KiB alignment (0x2000), but not 8 KiB + 8 KiB - 1
    assert t.lowest_match(0x2000, 0x2000, 0, adjust=True) is big
    assert t.lowest_match(0x2000, 0x2000, 0, adjust=False).start == 0x1000  # type: ignore[union-attr]
    t._check()
    t = RbTree()
    t.insert(0x10000, 0x11000)  # the root: 4 KiB, too small
    t.insert(0x1000, 0x4000)  # its left child, which fits but is not on the path
    assert t.lowest_match(0x2000, 0x2000, 0, adjust=True) is None  # the kernel finds nothing: purge, retry, fail
