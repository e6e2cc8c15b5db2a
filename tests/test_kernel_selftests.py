"""The scenarios of the kernel's lib/test_vmalloc.c, asserting what the kernel's allocator would do.

test_vmalloc.c only checks that allocations succeed; here each scenario also
checks the addresses the allocator hands out, worked out from the rules in
mm/vmalloc.c (lowest fit, guard page, lazy free, lazy_max_pages drain).
"""

from __future__ import annotations

import random

import pytest

from vmapsim import VmapAllocationError, VmapSpace, layouts
from vmapsim.units import MiB

PAGE = 4096
X = layouts.X86_64
VSTART = X.vmalloc.start


def test_fix_size_alloc_cycles_through_the_window_once_per_drain() -> None:
    # fix_size_alloc_test: vmalloc(nr_pages) + vfree in a loop, on one CPU.
    s = VmapSpace(X, cpus=1)
    nr_pages = 3
    area = (nr_pages + 1) * PAGE
    # A drain is scheduled once lazy pages exceed 8192 and runs before the next allocation.
    frees_per_cycle = s.lazy_max_pages // (nr_pages + 1) + 1
    addrs = []
    for _ in range(3 * frees_per_cycle):
        a = s.vmalloc(nr_pages * PAGE)
        addrs.append(a)
        s.vfree(a)
    assert addrs[:frees_per_cycle] == [VSTART + i * area for i in range(frees_per_cycle)]
    assert addrs[frees_per_cycle] == VSTART and addrs[2 * frees_per_cycle] == VSTART
    assert s.purges == 2
    s._check()


def test_full_fit_refills_the_8k_holes_exactly() -> None:
    # full_fit_alloc_test: junk_length pairs of one-page vmallocs, free every junk one,
    # then vmalloc(PAGE_SIZE) fits each 8 KiB hole exactly (FL_FIT_TYPE).
    s = VmapSpace(X, cpus=1)
    junk_length = s.lazy_max_pages
    ptrs, junk = [], []
    for _ in range(junk_length):
        ptrs.append(s.vmalloc(PAGE))
        junk.append(s.vmalloc(PAGE))
    for j in junk:
        s.vfree(j)
    assert len(s.free_ranges("vmalloc")) == 1  # the holes are still lazy: only the tail is free
    got = [s.vmalloc(PAGE) for _ in range(10)]
    assert got == junk[:10]  # the drain ran first, then each request took the lowest hole
    # junk_length holes opened (the last one merged into the free tail), 10 of them filled exactly
    assert len(s.free_ranges("vmalloc")) == junk_length - 10
    s._check()


def test_long_busy_list_then_churn() -> None:
    # long_busy_list_alloc_test: 15000 live one-page vmallocs, then vmalloc(100 pages) + vmalloc(1 page).
    s = VmapSpace(X, cpus=1)
    for _ in range(15000):
        s.vmalloc(PAGE)
    first = VSTART + 15000 * 2 * PAGE
    seen = set()
    for _ in range(200):
        a, b = s.vmalloc(100 * PAGE), s.vmalloc(PAGE)
        assert (a, b - a) == (first + (a - first), 101 * PAGE)
        seen.add(a)
        s.vfree(a)
        s.vfree(b)
    # 103 lazy pages per round: the drain at 8192 pages brings the pair back to the start of the free space.
    assert min(seen) == first and len(seen) == 8192 // 103 + 1
    s._check()


def test_random_size_alloc_matches_the_naive_scan() -> None:
    # random_size_alloc_test with a reproducible stream of sizes.
    from tests.naive import NaiveFreeTree

    rng = random.Random(20230413)
    fast = VmapSpace(X, cpus=2)
    slow = VmapSpace(X, cpus=2)
    # a differential test swaps the private core's free tree for the naive scan
    slow._core.free = NaiveFreeTree([(1, X.kva_end)])  # type: ignore[assignment]
    live: list[int] = []
    for _ in range(3000):
        size = rng.randint(1, 100) * PAGE
        a = fast.vmalloc(size)
        assert slow.vmalloc(size) == a
        live.append(a)
        if rng.random() < 0.6:
            victim = live.pop(rng.randrange(len(live)))
            fast.vfree(victim)
            slow.vfree(victim)
    assert fast.free_ranges() == slow.free_ranges()
    fast._check()


def test_fix_align_alloc_gets_32k_aligned_six_page_areas() -> None:
    # fix_align_alloc_test: __vmalloc_node(5 pages, THREAD_ALIGN << 1).
    s = VmapSpace(X)
    align = X.thread_align << 1
    addrs = [s.vmalloc(5 * PAGE, align=align) for _ in range(50)]
    assert all(a % align == 0 and s.area(a).size == 6 * PAGE for a in addrs)
    assert addrs[:3] == [VSTART, VSTART + 0x8000, VSTART + 0x10000]  # each 24 KiB area rounds up to the next 32 KiB


def test_random_size_align_alloc_always_succeeds_aligned() -> None:
    # random_size_align_alloc_test: align = 1 << (rnd % 23), size = (rnd % 10 + 1) pages.
    rng = random.Random(7)
    s = VmapSpace(X)
    for _ in range(2000):
        rnd = rng.randrange(256)
        align, size = 1 << (rnd % 23), (rnd % 10 + 1) * PAGE
        a = s.vmalloc(size, align=align)
        assert a % align == 0
        s.vfree(a)
    s._check()


def test_align_shift_alloc_fails_once_the_alignment_leaves_the_window() -> None:
    # align_shift_alloc_test: __vmalloc_node(PAGE_SIZE, 1UL << i) + vfree for i in 0..63 until the first
    # failure, which the test expects ("This test case is supposed to be failed").
    s = VmapSpace(X)
    first_failure = None
    for i in range(64):
        try:
            a = s.vmalloc(PAGE, align=1 << i)
        except VmapAllocationError as e:
            assert e.message == "vmap allocation for size 8192 failed: use vmalloc=<size> to increase size"
            first_failure = i
            break
        assert a % (1 << i) == 0
        s.vfree(a)
    # ALIGN(0xffffc90000000000, 2**45) = 0xffffe00000000000 is inside the window (after the retry purged
    # the lazily freed 2**43-aligned area there); ALIGN(..., 2**46) wraps past 2**64.
    assert first_failure == 46
    assert s.lazy_ranges() == [] and s.purges >= 1  # the failed request's retry purged everything


def test_pcpu_alloc_places_chunks_top_down_and_refills_the_highest_hole() -> None:
    # pcpu_alloc_test exercises pcpu_get_vm_areas(): chunks from the top of the vmalloc window.
    s = VmapSpace(X, cpus=4)
    unit = 2 * MiB
    chunks = [s.pcpu_get_vm_areas([0, 2 * unit], [unit, unit], unit) for _ in range(8)]
    top = X.vmalloc.end & ~(unit - 1)
    # each two-area chunk interleaves with the one above it: the second area drops into the hole above
    assert [c[1] for c in chunks][:2] == [top - unit, top - 2 * unit]
    assert all(c[1] - c[0] == 2 * unit for c in chunks)
    s.pcpu_free_vm_areas(chunks[3])
    s.purge()
    assert s.pcpu_get_vm_areas([0, 2 * unit], [unit, unit], unit) == chunks[3]
    s._check()


@pytest.mark.parametrize("cpus", [1, 16, 448])
def test_vm_map_ram_test_churn_pins_whole_blocks(cpus: int) -> None:
    # vm_map_ram_test: vm_map_ram(nr_pages) + vm_unmap_ram in a loop on one CPU.
    s = VmapSpace(X, cpus=cpus)
    bits = s.vmap_block_pages
    for _ in range(bits * 3):
        a = s.vm_map_ram(1)
        s.vm_unmap_ram(a, 1)
    # every block filled completely is freed (lazily); one 1 MiB block is freed per 256 maps
    assert s.vmap_blocks() == [] and len(s.lazy_areas()) == 3
    assert all(x.size == bits * PAGE for x in s.lazy_areas())
