"""The kernel's free-area rbtree: invariants under any history, and the descent against a reference.

The reference below walks an explicit tree recursively, computing every subtree's largest range by brute
force rather than trusting the augmented ``max``: the kernel's rules (go left while the left subtree holds
the search length and ``vstart`` is below the node; check the node; go right while the right subtree holds
it; else climb back to the first right subtree worth searching, moving ``vstart`` past its parent) written
a second way. For requests that need no adjustment the descent must return the lowest fit, which a linear
scan gives.
"""

from __future__ import annotations

import json
import lzma
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from vmapsim.freetree import FreeTree
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


def _merge(t: RbTree, start: int, end: int) -> None:
    """``merge_or_add_vmap_area()`` on the tree alone: next takes the range, then prev takes both (next
    unlinked), or a new node; as FreeTree logs it."""
    nodes = list(t)
    prev = next((n for n in nodes if n.end == start), None)
    after = next((n for n in nodes if n.start == end), None)
    if after is not None:
        t.resize(after, start, after.end)
        if prev is not None:
            t.erase(after)
            t.resize(prev, prev.start, after.end)
    elif prev is not None:
        t.resize(prev, prev.start, end)
    else:
        t.insert(start, end)


def test_every_shape_is_the_one_the_kernels_lib_rbtree_builds() -> None:
    # tests/data/rbtree-oracle.json.xz: the trees the kernel's own lib/rbtree.c (6.12.117, compiled in
    # userspace by tests/oracle/) built for 40 seeded histories, one dump after each operation, colours and
    # subtree_max_size included (tests/oracle/make_fixture.py regenerates it).
    cases = json.loads(lzma.decompress((Path(__file__).parent / "data" / "rbtree-oracle.json.xz").read_bytes()))
    ops = 0
    for case in cases:
        t = RbTree()
        for op, dump in zip(case["ops"], case["dumps"], strict=True):
            name, *args = op
            if name == "insert":
                t.insert(*args)
            elif name == "erase":
                t.erase(t.find(args[0]))
            elif name == "set":
                t.resize(t.find(args[0]), *args[1:])
            else:
                _merge(t, *args)
            assert t.shape() == dump, (op, ops)
            ops += 1
    assert len(cases) == 40 and ops > 3000


def _as_free_tree_calls(ops: list[list[Any]]) -> list[tuple[int, tuple[str, int, int]]] | None:
    """The fixture's history as FreeTree calls, each with the index of the dump it must match: frees are
    merges, allocations are clips (a whole range erased, a left or right piece a move, a middle piece a
    move of the node then an insert below it); None if the history holds anything else."""
    ranges: dict[int, int] = {}
    calls: list[tuple[int, tuple[str, int, int]]] = []
    i = 0
    while i < len(ops):
        name, *args = ops[i]
        if name in ("merge", "insert"):
            s, e = args
            if name == "insert" and (s in ranges.values() or e in ranges):
                return None  # linked beside a neighbour: not what merge_or_add_vmap_area() does
            calls.append((i, ("insert", s, e)))
            prev = next((p for p, pe in ranges.items() if pe == s), None)
            nxt = ranges.pop(e, None)
            if prev is not None:
                ranges[prev] = nxt if nxt is not None else e
            else:
                ranges[s] = nxt if nxt is not None else e
        elif name == "erase":
            s = args[0]
            calls.append((i, ("clip", s, ranges.pop(s) - s)))
        else:
            s, ns, ne = args
            e = ranges.pop(s)
            if ns == s and ne < e:
                calls.append((i, ("clip", ne, e - ne)))
                ranges[s] = ne
            elif ns > s and ne == e and i + 1 < len(ops) and ops[i + 1][:2] == ["insert", s]:
                a = ops[i + 1][2]
                calls.append((i + 1, ("clip", a, ns - a)))
                ranges[s], ranges[ns] = a, e
                i += 1
            elif ns > s and ne == e:
                calls.append((i, ("clip", s, ns - s)))
                ranges[ns] = e
            else:
                return None
        i += 1
    return calls


def test_the_free_tree_logs_the_kernels_operations() -> None:
    # The fixture's allocate-and-free histories through FreeTree: its log, replayed, builds the kernel's trees.
    cases = json.loads(lzma.decompress((Path(__file__).parent / "data" / "rbtree-oracle.json.xz").read_bytes()))
    checked = 0
    for case in cases:
        calls = _as_free_tree_calls(case["ops"])
        if calls is None:
            continue
        f = FreeTree()
        for i, (call, a, b) in calls:
            f.insert(a, b) if call == "insert" else f.clip(a, b)
            assert f._kernel.now().shape() == case["dumps"][i], (i, call, a, b)
            checked += 1
    assert checked > 1000
