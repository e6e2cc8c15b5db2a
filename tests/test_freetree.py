"""FreeTree: lowest-fit search and coalescing, held to the naive linear scan."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, consumes, invariant, rule

from tests.naive import NaiveFreeTree
from vmapsim import InvalidArgument
from vmapsim import chunks as chunks_mod
from vmapsim.freetree import FreeTree

PAGE = 4096


def test_exact_fit_removes_range_and_insert_coalesces_both_sides() -> None:
    t = FreeTree.from_ranges([(0, 10 * PAGE)])
    a = t.alloc(2 * PAGE, PAGE, 0, 10 * PAGE)
    b = t.alloc(3 * PAGE, PAGE, 0, 10 * PAGE)
    assert (a, b) == (0, 2 * PAGE)
    t.insert(0, 2 * PAGE)
    assert list(t) == [(0, 2 * PAGE), (5 * PAGE, 10 * PAGE)]
    t.insert(2 * PAGE, 5 * PAGE)  # touches both neighbours: one range again
    assert list(t) == [(0, 10 * PAGE)]
    t._check()


def test_lowest_fit_skips_holes_that_are_too_small_or_misaligned() -> None:
    t = FreeTree.from_ranges([(PAGE, 2 * PAGE), (3 * PAGE, 5 * PAGE), (8 * PAGE, 16 * PAGE)])
    assert t.find(2 * PAGE, PAGE, 0, 1 << 40) == 3 * PAGE
    assert t.find(2 * PAGE, 4 * PAGE, 0, 1 << 40) == 8 * PAGE
    assert t.find(PAGE, PAGE, 4 * PAGE, 1 << 40) == 4 * PAGE  # vstart inside a range
    assert t.find(8 * PAGE, PAGE, 0, 15 * PAGE) is None  # vend too low
    assert t.find(8 * PAGE, PAGE, 0, 16 * PAGE) == 8 * PAGE  # may end exactly at vend


def test_huge_alignment_fails_instead_of_wrapping() -> None:
    t = FreeTree.from_ranges([(1, 2**64 - 1)])
    assert t.find(PAGE, 1 << 63, 0xFFFFC90000000000, 0xFFFFE8FFFFFFFFFF) is None
    assert t.find(PAGE, 1 << 40, 0xFFFFC90000000000, 0xFFFFE8FFFFFFFFFF) == 0xFFFFC90000000000


def test_bad_insert_and_clip_change_nothing() -> None:
    t = FreeTree.from_ranges([(0, 4 * PAGE), (8 * PAGE, 12 * PAGE)])
    before = list(t)
    for start, end in [(PAGE, 2 * PAGE), (3 * PAGE, 9 * PAGE), (7 * PAGE, 8 * PAGE + 1), (5, 5)]:
        with pytest.raises(InvalidArgument):
            t.insert(start, end)
    with pytest.raises(InvalidArgument):
        t.clip(3 * PAGE, 2 * PAGE)  # crosses the end of a free range
    with pytest.raises(InvalidArgument):
        FreeTree.from_ranges([(5, 1)])
    assert list(t) == before
    t._check()


def test_window_queries() -> None:
    t = FreeTree.from_ranges([(0, 10), (20, 30), (40, 100)])
    assert list(t.irange(5, 45)) == [(5, 10), (20, 30), (40, 45)]
    assert t.largest() == 60 and t.largest(0, 45) == 10
    assert t.containing(25) == (20, 30) and t.containing(35) is None
    assert t.floor(35) == (20, 30) and t.before(40) == (20, 30) and t.before(0) is None


def test_bulk_load_matches_incremental_build() -> None:
    ranges = [(i * 3 * PAGE, i * 3 * PAGE + PAGE) for i in range(2000)]
    bulk = FreeTree.from_ranges(ranges)
    inc = FreeTree()
    for s, e in reversed(ranges):
        inc.insert(s, e)
    bulk._check()
    inc._check()
    assert list(bulk) == list(inc) == ranges
    assert bulk.find(2 * PAGE, PAGE, 0, 1 << 40) is None


@st.composite
def requests(draw: st.DrawFn) -> tuple[int, int, int, int]:
    size = draw(st.integers(1, 12)) * PAGE
    align = 1 << draw(st.integers(12, 16))
    vstart = draw(st.sampled_from([0, 0, 5 * PAGE, 100 * PAGE]))
    vend = draw(st.sampled_from([1 << 24, 1 << 24, 300 * PAGE]))
    return size, align, vstart, vend


class FreeTreeVsNaive(RuleBasedStateMachine):
    """Every alloc and free on FreeTree gives what the naive linear scan gives."""

    busy = Bundle("busy")

    def __init__(self) -> None:
        super().__init__()
        self.tree = FreeTree.from_ranges([(0, 1 << 24)])
        self.naive = NaiveFreeTree([(0, 1 << 24)])

    @rule(target=busy, req=requests())
    def alloc(self, req: tuple[int, int, int, int]) -> object:
        got, want = self.tree.alloc(*req), self.naive.alloc(*req)
        assert got == want
        return (got, req[0]) if got is not None else None

    @rule(item=consumes(busy))
    def free(self, item: tuple[int, int] | None) -> None:
        if item is not None:
            self.tree.insert(item[0], item[0] + item[1])
            self.naive.insert(item[0], item[0] + item[1])

    @rule(data=st.data())
    def freeing_free_space_is_rejected(self, data: st.DataObject) -> None:
        ranges = list(self.tree)
        if ranges:
            s, e = data.draw(st.sampled_from(ranges))
            lo = data.draw(st.integers(max(s - 4 * PAGE, 0), e - 1))
            with pytest.raises(InvalidArgument):
                self.tree.insert(lo, max(lo + 1, s + 1))

    @invariant()
    def same_ranges(self) -> None:
        self.tree._check()
        assert list(self.tree) == self.naive.ranges
        assert len(self.tree) == len(self.naive)


@pytest.fixture(autouse=True)
def _small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    # Tiny chunks make splits, merges and the chunk max-tree work hard on small inputs.
    monkeypatch.setattr(chunks_mod, "LOAD", 4)


def test_state_machine() -> None:
    FreeTreeVsNaive.TestCase().runTest()


@given(st.lists(st.tuples(st.integers(0, 500), st.integers(1, 8)), max_size=120), requests())
def test_find_equals_naive_on_any_hole_pattern(holes: list[tuple[int, int]], req: tuple[int, int, int, int]) -> None:
    ranges = sorted({(p * PAGE, (p + n) * PAGE) for p, n in holes})
    merged: list[tuple[int, int]] = []
    for s, e in ranges:
        if merged and merged[-1][1] >= s:
            merged[-1] = (merged[-1][0], max(e, merged[-1][1]))
        else:
            merged.append((s, e))
    tree = FreeTree.from_ranges(merged)
    tree._check()
    assert tree.find(*req) == NaiveFreeTree(merged).find(*req)


@pytest.mark.parametrize("seed", range(3))
def test_stress_churn_over_many_chunks_matches_naive(seed: int) -> None:
    """Thousands of ranges: chunks split, even out with neighbours, merge and vanish; answers stay the naive ones."""
    rng = random.Random(seed)
    page, pos, holes, busy = 4096, 1 << 30, [], []
    for k in range(3000):
        hole, used = rng.randint(1, 12) * page, rng.randint(1, 12) * page
        if k % 8 == 0:
            holes.append((pos, pos + hole))
        else:  # a hole given back later, one page clear of the next: the range count grows
            busy.append((pos, hole))
        pos += hole + used
    holes.append((pos, 1 << 50))
    tree, naive = FreeTree.from_ranges(holes), NaiveFreeTree.from_ranges(holes)
    for i in range(2500):
        if rng.random() < (0.8 if i < 1500 else 0.2) and busy:
            start, size = busy.pop(rng.randrange(len(busy)))
            tree.insert(start, start + size)
            naive.insert(start, start + size)
        else:
            size, align = rng.randint(1, 12) * page, page << rng.choice([0, 0, 0, 2, 5])
            vstart = rng.choice([1 << 30, pos // 2])
            got = tree.alloc(size, align, vstart, 1 << 50)
            assert got == naive.alloc(size, align, vstart, 1 << 50)
            if got is not None:
                busy.append((got, size))
        if i % 250 == 0:
            tree._check()
    tree._check()
    assert list(tree) == list(naive)
