"""The allocators before 5.18 (profiles 5.4, 5.11, 5.16): search length, purge order, synchronous drain.

Each expectation is worked out by hand from mm/vmalloc.c of the version (5.10.223's find_vmap_lowest_match(),
__purge_vmap_area_lazy() and free_vmap_area_noflush()), not read off the model.
"""

from __future__ import annotations

import copy

from hypothesis import given
from hypothesis import strategies as st

from vmapsim import VmapSpace, layouts, profiles
from vmapsim.freetree import FreeTree
from vmapsim.units import PAGE_SIZE

P = PAGE_SIZE


def test_up_to_5_15_a_page_aligned_request_misses_an_exact_hole_off_the_descent_path() -> None:
    # Free: [1, 3) (8 KiB), [5, 6) and [16, 32) pages past the window's start, nothing else below page 64.
    # Inserted in that order the rbtree's root is [5, 6), [1, 3) its left child and [16, 32) its right.
    # An 8 KiB request looks for 8 KiB + 4095 bytes up to 5.15: the root's left subtree holds only 8 KiB,
    # so the descent never enters it and the kernel returns page 16; 5.18 looks for 8 KiB and takes page 1.
    got = {}
    for profile in (profiles.LINUX_5_4, profiles.LINUX_5_11, profiles.LINUX_5_16, profiles.LINUX_5_18):
        tree = FreeTree.from_ranges([(1 * P, 3 * P), (5 * P, 6 * P), (16 * P, 32 * P)])
        search = profile.search
        adjust = search is profiles.SearchLength.ALIGN_OVERHEAD
        got[profile.name] = tree.alloc(2 * P, P, 0, 1 << 40, descend=adjust, adjust=adjust) // P  # type: ignore[operator]
    assert got == {"5.4": 16, "5.11": 16, "5.16": 1, "5.18": 1}


def test_up_to_5_10_a_purge_gives_areas_back_newest_first_and_a_full_lazy_list_purges_at_once() -> None:
    lay = layouts.X86_64
    for profile in (profiles.LINUX_5_4, profiles.LINUX_5_11, profiles.LINUX_5_18):
        space = VmapSpace(lay, cpus=1, profile=profile)
        # lazy_max_pages() at one CPU is 32 MiB: two 20 MiB areas pass it
        a = space.vmalloc(20 << 20)
        b = space.vmalloc(20 << 20)
        space.vfree(a)
        assert space.lazy_pages and space.purges == 0
        space.vfree(b)
        if profile.sync_drain:  # try_purge_vmap_area_lazy() in vfree() itself
            # what is left lazy is b's page array (5120 pointers: 10 pages and a guard), vfree()d after b
            assert space.purges == 1 and space.lazy_pages == 11
        else:  # the drain work runs later: before the next allocation
            assert space.purges == 0 and space.lazy_pages > 0
            space.vmalloc(P)
            assert space.purges == 1


@given(st.permutations(range(6)))
def test_the_newest_first_purge_builds_the_tree_of_merging_newest_first(order: list[int]) -> None:
    # Six 2-page areas that never touch, freed lazily in ``order``: 5.10 merges them back newest first, one
    # by one, so the purged space's rbtree is that of a twin given the same ranges back in that order.
    lay = layouts.X86_64
    space = VmapSpace(lay, cpus=1, profile=profiles.LINUX_5_4)
    addrs = [space.alloc_vmap_area(2 * P, vstart=lay.vmalloc.start, vend=lay.vmalloc.end).start for _ in range(12)]
    mine = [addrs[2 * i] for i in range(6)]  # every other one: no two freed ranges touch
    twin = copy.deepcopy(space)
    for i in order:
        space.free_vmap_area(mine[i])
    space.purge()
    for i in reversed(order):
        twin.free_vmap_area(mine[i], lazy=False)  # free_vmap_area(): straight back to the free tree
    assert space.free_ranges() == twin.free_ranges()
    assert _shape(space) == _shape(twin)


def _shape(space: VmapSpace) -> str:
    return space._core.free._kernel.now().shape()  # the kernel's tree the free tree's record rebuilds


def test_5_10_lists_unpurged_areas_newest_first_and_a_snapshot_keeps_that_order() -> None:
    from vmapsim import procfs

    lay = layouts.X86_64
    for profile in (profiles.LINUX_5_4, profiles.LINUX_5_11):
        space = VmapSpace(lay, cpus=1, profile=profile)
        areas = [space.vmalloc(P) for _ in range(4)]
        for a in (areas[3], areas[0], areas[1]):
            space.vfree(a)  # freed out of address order; [0] and [1] touch (a guard page each), and merge in 5.11
        text = procfs.render_vmallocinfo(space)
        unpurged = [int(line.split("-")[0], 16) for line in text.splitlines() if line.endswith("unpurged vm_area")]
        if profile.purge_newest_first:
            assert unpurged == [areas[1], areas[0], areas[3]]  # show_purge_info() walks the llist
        else:
            assert unpurged == [areas[0], areas[3]]  # by address, [0] and [1] as one line
        twin = procfs.restore(procfs.parse_vmallocinfo(text), lay, profile=profile)
        assert procfs.render_vmallocinfo(twin) == text
        space.purge()
        twin.purge()
        assert space.free_ranges() == twin.free_ranges()


def test_up_to_5_15_no_unpurged_line_follows_a_last_area_without_a_vm_struct() -> None:
    from vmapsim import procfs

    lay = layouts.X86_64
    for profile, listed in ((profiles.LINUX_5_4, False), (profiles.LINUX_5_11, False), (profiles.LINUX_5_16, True)):
        space = VmapSpace(lay, cpus=1, profile=profile)
        space.vfree(space.vmalloc(P))
        space.vm_map_ram(1)  # a vmap block: no vm_struct, and the highest busy area
        text = procfs.render_vmallocinfo(space)
        assert text.splitlines()[-1 if not listed else -2].endswith("vm_map_ram"), profile.name
        assert text.endswith("unpurged vm_area\n") is listed, profile.name
