"""VmapSpace: each rule of mm/vmalloc.c, checked on the numbers the kernel would produce."""

from __future__ import annotations

import pytest

from tests.helpers import snapshot
from vmapsim import InvalidArgument, UnknownAddress, VmapAllocationError, VmapSpace, layouts, profiles
from vmapsim.units import MiB

PAGE = 4096
X = layouts.X86_64
VSTART = X.vmalloc.start


def test_new_space_is_one_free_range_over_the_whole_kva() -> None:
    s = VmapSpace(X)
    assert s.areas() == [] and s.free_ranges() == [(1, 2**64 - 1)]
    assert VmapSpace(layouts.i386()).free_ranges() == [(1, 2**32 - 1)]
    s._check()


def test_vmalloc_adds_a_guard_page_and_packs_from_vmalloc_start() -> None:
    s = VmapSpace(X)
    a, b = s.vmalloc(1), s.vmalloc(PAGE + 1)
    assert (a, s.area(a).size) == (VSTART, 2 * PAGE)
    assert (b, s.area(b).size) == (VSTART + 2 * PAGE, 3 * PAGE)
    assert s.area(b).nr_pages == 2 and s.nr_vmalloc_pages == 3


def test_page_array_is_vmalloced_above_512_pages() -> None:
    s = VmapSpace(X)
    a = s.vmalloc(512 * PAGE)  # array = 4096 bytes: kmalloc, no second area
    assert len(s.areas()) == 1 and s.area(a).pages_area is None
    b = s.vmalloc(513 * PAGE)  # array = 4104 bytes: vmalloc(8 KiB) right after, with its guard
    main, array = s.area(b), s.area(b + 514 * PAGE)
    assert main.pages_area == array.start and array.size == 3 * PAGE and array.nested
    assert s.nr_vmalloc_pages == 512 + 513 + 2
    s.vfree(b)  # main area first, then its page array: both lazy
    assert [a.size for a in s.lazy_areas()] == [514 * PAGE, 3 * PAGE]
    assert s.nr_vmalloc_pages == 512
    s._check()


def test_lazy_free_pins_until_the_threshold_then_the_next_allocation_purges() -> None:
    s = VmapSpace(X, cpus=1)  # lazy_max_pages = fls(1) * 8192
    assert s.lazy_max_pages == 8192
    addrs = [s.vmalloc(PAGE) for _ in range(4097)]
    for a in addrs[:4096]:
        s.vfree(a)  # 4096 * 2 pages = 8192: not above the threshold
    assert s.vmalloc(PAGE) == VSTART + 4097 * 2 * PAGE and s.lazy_pages == 8192
    s.vfree(addrs[4096])  # 8194 > 8192: a drain is scheduled ...
    assert s.lazy_pages == 8194 and s.purges == 0
    assert s.vmalloc(PAGE) == VSTART  # ... and runs before the next allocation
    assert s.lazy_pages == 0 and s.purges == 1
    s._check()


@pytest.mark.parametrize("cpus,pages", [(1, 8192), (2, 16384), (8, 32768), (255, 65536), (448, 73728)])
def test_lazy_max_pages_grows_with_fls_of_cpus(cpus: int, pages: int) -> None:
    assert VmapSpace(X, cpus=cpus).lazy_max_pages == pages


def _fill(space: VmapSpace) -> list[int]:
    out = []
    while True:
        try:
            out.append(space.vmalloc(MiB))
        except VmapAllocationError:
            return out


def test_failure_purges_and_retries_once_then_raises_the_kernel_message() -> None:
    s = VmapSpace(layouts.i386(vmalloc=16 * MiB))
    got = _fill(s)
    assert len(got) == 15  # 16 MiB window; 1 MiB + guard each
    s.vfree(got[3])
    assert s.vmalloc(MiB) == got[3]  # the miss purged the lazy area, the retry reused it
    with pytest.raises(VmapAllocationError) as e:
        s.vmalloc(MiB)
    assert e.value.message == "vmap allocation for size 1052672 failed: use vmalloc=<size> to increase size"
    assert e.value.size == MiB + PAGE and str(e.value) == e.value.message


def test_failure_message_of_6_11_names_the_range() -> None:
    s = VmapSpace(layouts.i386(vmalloc=4 * MiB), profile=profiles.LINUX_6_11)
    _fill(s)
    with pytest.raises(VmapAllocationError) as e:
        s.vmalloc(MiB)
    w = s.layout.vmalloc
    assert e.value.message == (
        f"vmalloc_node_range for size 1052672 failed: Address range restricted to {w.start:#x} - {w.end:#x}"
    )


def test_top_page_of_x86_64_vmalloc_window_is_never_handed_out() -> None:
    s = VmapSpace(X)
    top = X.vmalloc.end & ~(PAGE - 1)  # 0xffffe8fffffff000
    a = s.alloc_vmap_area(PAGE, vstart=top - PAGE, vend=X.vmalloc.end)
    assert a.start == top - PAGE
    with pytest.raises(VmapAllocationError):
        s.alloc_vmap_area(PAGE, vstart=top, vend=X.vmalloc.end)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"size": 0},
        {"size": 100},
        {"size": -PAGE},
        {"align": 3 * PAGE},
        {"align": 0},
        {"vstart": 2 * MiB, "vend": MiB},
        {"vend": 2**64},
        {"cpu": 4},
        {"cpu": -1},
    ],
)
def test_bad_arguments_raise_invalid_argument_and_change_nothing(kwargs: dict[str, int]) -> None:
    s = VmapSpace(X, cpus=4)
    s.vmalloc(PAGE)
    before = snapshot(s)
    args = {"size": PAGE, "vstart": MiB, "vend": 64 * MiB} | kwargs
    with pytest.raises(InvalidArgument) as e:
        s.alloc_vmap_area(args.pop("size"), **args)
    assert isinstance(e.value, ValueError)
    assert snapshot(s) == before


def test_bad_frees_raise_typed_errors_and_change_nothing() -> None:
    s = VmapSpace(X)
    a = s.vmalloc(PAGE)
    m = s.vmap(2)
    raw = s.alloc_vmap_area(PAGE, vstart=MiB, vend=2 * MiB).start
    s.vfree(a)
    before = snapshot(s)
    for call in (
        lambda: s.vfree(a),  # twice
        lambda: s.vfree(VSTART + 12345),  # never allocated
        lambda: s.vunmap(a),
        lambda: s.free_vmap_area(a),
        lambda: s.vm_unmap_ram(a, 1),
    ):
        with pytest.raises(UnknownAddress):
            call()
    for call in (lambda: s.vfree(m), lambda: s.iounmap(m), lambda: s.free_vmap_area(m), lambda: s.vunmap(raw),
                 lambda: s.vfree("x")):  # type: ignore[arg-type]  # fmt: skip
        with pytest.raises(InvalidArgument):
            call()
    for call in (lambda: s.vmalloc(0), lambda: s.vmap(0), lambda: s.vm_map_ram(0), lambda: s.ioremap(-1)):
        with pytest.raises(InvalidArgument):
            call()
    assert snapshot(s) == before


def test_free_vmap_area_now_or_lazily() -> None:
    s = VmapSpace(X)
    a = s.alloc_vmap_area(2 * PAGE, vstart=MiB, vend=2 * MiB)
    s.free_vmap_area(a.start)
    assert s.lazy_ranges() == [(MiB, MiB + 2 * PAGE)]
    b = s.alloc_vmap_area(2 * PAGE, vstart=MiB, vend=2 * MiB)
    assert b.start == MiB + 2 * PAGE
    s.free_vmap_area(b.start, lazy=False)
    assert s.lazy_ranges() == [(MiB, MiB + 2 * PAGE)] and s.free_ranges()[0] == (1, MiB)


def test_module_memory_free_purges_every_lazy_area() -> None:
    s = VmapSpace(X)
    a = s.vmalloc(PAGE)
    s.vfree(a)
    m = X.modules
    mod = s.vmalloc_node_range(10 * PAGE, start=m.start, end=m.end, flush_reset_perms=True)
    assert mod == m.start and s.lazy_areas() != []
    s.vfree(mod)  # VM_FLUSH_RESET_PERMS: vm_reset_perms() -> vm_unmap_aliases() purges all
    assert s.lazy_areas() == [] and s.usage("modules").pinned == 0
    assert s.usage("modules").peak_pinned == 11 * PAGE


def test_ioremap_alignment_comes_from_the_size_before_the_guard() -> None:
    s = VmapSpace(X)
    s.vmalloc(1)
    a = s.ioremap(MiB + PAGE, phys=0xFEE00000)
    assert a % (2 * MiB) == 0 and s.area(a).size == MiB + 2 * PAGE and s.area(a).phys == 0xFEE00000
    b = s.ioremap(64 * 1024)  # exact power of two: 64 KiB alignment, not 128 KiB
    assert b % (64 * 1024) == 0 and b == VSTART + 64 * 1024
    s.iounmap(a)
    assert s.lazy_ranges() == [(a, a + MiB + 2 * PAGE)]


def test_ioremap_alignment_is_capped_by_ioremap_max_order() -> None:
    s = VmapSpace(layouts.i386(vmalloc=64 * MiB))
    a = s.ioremap(8 * MiB)
    assert a % (2 * MiB) == 0  # IOREMAP_MAX_ORDER = PMD_SHIFT on x86-32


def test_thread_stacks_are_16k_aligned_with_a_guard() -> None:
    s = VmapSpace(X)
    s.vmalloc(1)
    stacks = [s.alloc_thread_stack() for _ in range(3)]
    assert [a - VSTART for a in stacks] == [0x4000, 0xC000, 0x14000]
    assert all(s.area(a).size == 5 * PAGE for a in stacks)


def test_vm_map_ram_uses_per_cpu_blocks_sized_by_nr_cpus() -> None:
    s = VmapSpace(X, cpus=2)  # CONFIG_NR_CPUS=8192 -> 256-page (1 MiB) blocks
    assert s.vmap_block_pages == 256
    a = s.vm_map_ram(3)  # rounded up to 4 pages
    b = s.vm_map_ram(1)
    c = s.vm_map_ram(1, cpu=1)  # another CPU: another block
    assert (a, b) == (VSTART, VSTART + 4 * PAGE) and c == VSTART + MiB
    assert [x.size for x in s.areas()] == [MiB, MiB]
    big = s.vm_map_ram(65)  # above VMAP_MAX_ALLOC: a bare area, no guard
    assert s.area(big).size == 65 * PAGE and big == VSTART + 2 * MiB
    s.vm_unmap_ram(a, 3)
    assert len(s.vmap_blocks()) == 2  # block 0 still has b live
    with pytest.raises(UnknownAddress):
        s.vm_unmap_ram(a, 3)
    s.vm_unmap_ram(big, 65)
    assert s.lazy_ranges() == [(big, big + 65 * PAGE)]
    s._check()


def test_full_vmap_block_is_freed_when_every_page_is_dirty() -> None:
    s = VmapSpace(X, nr_cpus_config=4096)  # 512-page blocks
    bits = s.vmap_block_pages
    assert bits == 512
    addrs = [s.vm_map_ram(64) for _ in range(bits // 64)]
    assert len(s.vmap_blocks()) == 1 and s.vmap_blocks()[0].free == 0
    for a in addrs:
        s.vm_unmap_ram(a, 64)
    assert s.vmap_blocks() == [] and s.lazy_ranges() == [(VSTART, VSTART + bits * PAGE)]


@pytest.mark.parametrize("profile,released", [(profiles.LINUX_6_3, True), (profiles.LINUX_6_5, False)])
def test_fragmented_block_release_by_vm_unmap_aliases(profile: profiles.KernelProfile, released: bool) -> None:
    s = VmapSpace(X, profile=profile)
    a = s.vm_map_ram(8)
    s.vm_unmap_ram(a, 8)  # nothing live, 248 pages unused: fragmented, free >= VMAP_PURGE_THRESHOLD
    s.vm_unmap_aliases()
    assert (s.vmap_blocks() == []) is released
    s.purge()  # the failure-path reclaim always releases it
    assert s.vmap_blocks() == [] and s.areas() == []


def test_percpu_areas_are_placed_top_down_and_keep_their_offsets() -> None:
    s = VmapSpace(X)
    unit = 2 * MiB
    first = s.pcpu_get_vm_areas([0, 4 * unit], [2 * unit, unit], unit)
    top = X.vmalloc.end & ~(unit - 1)
    assert first == [top - 5 * unit, top - unit]
    # The last area drops into the hole between the first chunk's areas; the first area does not
    # fit below it, so the base moves down until both fit: the chunks interleave, as in the kernel.
    second = s.pcpu_get_vm_areas([0, 4 * unit], [2 * unit, unit], unit)
    assert second == [top - 7 * unit, top - 3 * unit]
    s.pcpu_free_vm_areas(first)
    assert len(s.lazy_areas()) == 2
    s._check()


def test_percpu_fills_the_highest_hole_that_fits() -> None:
    s = VmapSpace(X)
    unit = 2 * MiB
    chunks = [s.pcpu_get_vm_areas([0], [unit], unit)[0] for _ in range(4)]
    s.pcpu_free_vm_areas([chunks[1]])
    s.purge()
    assert s.pcpu_get_vm_areas([0], [unit], unit) == [chunks[1]]
    with pytest.raises(InvalidArgument):
        s.pcpu_get_vm_areas([0, unit // 2], [unit, unit], unit)


def test_region_usage_and_peak() -> None:
    s = VmapSpace(X)
    m = X.modules
    a = s.vmalloc_node_range(PAGE * 9, start=m.start, end=m.end)
    b = s.vmalloc_node_range(PAGE * 9, start=m.start, end=m.end)
    s.vfree(a)
    u = s.usage("modules")
    assert (u.busy, u.lazy, u.pinned, u.peak_pinned) == (10 * PAGE, 10 * PAGE, 20 * PAGE, 20 * PAGE)
    assert u.free == m.size - 20 * PAGE and u.largest_free == m.size - 20 * PAGE
    s.purge()
    s.vfree(b)
    s.purge()
    assert s.pinned("modules") == 0 and s.peak_pinned("modules") == 20 * PAGE
    s.reset_peak()
    assert s.peak_pinned("modules") == 0
    with pytest.raises(InvalidArgument):
        s.usage("bogus")
    with pytest.raises(InvalidArgument):
        s.pinned("bogus")


def test_node_pools_6_9_are_lifo_per_cpu_node_and_decay() -> None:
    s = VmapSpace(X, cpus=4, profile=profiles.LINUX_6_9)
    assert s.nr_vmap_nodes == 4
    addrs = [s.vmalloc(PAGE, cpu=0) for _ in range(3)]
    for a in addrs:
        s.vfree(a)
    s.vm_unmap_aliases()  # an ordinary purge: lazy VAs go to cpu 0's node pool
    assert s.pooled_ranges() == [(a, a + 2 * PAGE) for a in addrs]
    assert s.usage("vmalloc").pinned == 6 * PAGE  # pooled space is pinned
    assert s.vmalloc(PAGE, cpu=1) == VSTART + 6 * PAGE  # another node: the free tree
    assert s.vmalloc(PAGE, cpu=0) == addrs[2]  # LIFO: the highest purged VA first
    s.vm_unmap_aliases()  # 6.9: a pool shorter than 4 decays completely
    assert s.pooled_ranges() == []


def test_node_pools_6_16_keep_small_pools_and_full_reclaim_empties_them() -> None:
    s = VmapSpace(X, cpus=4, profile=profiles.LINUX_6_16)
    addrs = [s.vmalloc(PAGE, cpu=0) for _ in range(3)]
    for a in addrs:
        s.vfree(a)
    s.vm_unmap_aliases()
    s.vm_unmap_aliases()
    assert len(s.pooled_ranges()) == 3
    s.purge()  # reclaim_and_purge_vmap_areas(): full decay
    assert s.pooled_ranges() == [] and s.usage("vmalloc").pinned == 0


def test_node_pools_skip_misaligned_heads_and_other_windows() -> None:
    s = VmapSpace(X, cpus=2, profile=profiles.LINUX_6_11)
    s.vmalloc(PAGE, cpu=0)
    a = s.vmalloc(3 * PAGE, cpu=0)  # 4 pages with guard, at an address not 16 KiB aligned
    s.vfree(a)
    s.vm_unmap_aliases()
    assert s.pooled_ranges() == [(a, a + 4 * PAGE)]
    st = s.alloc_thread_stack(cpu=0)  # 16 KiB aligned: the pool head does not fit, falls back
    assert st % (4 * PAGE) == 0 and st != a and s.pooled_ranges() == [(a, a + 4 * PAGE)]
    assert s.vmalloc(3 * PAGE, cpu=0) == a
    one = VmapSpace(X, cpus=1, profile=profiles.LINUX_6_11)
    assert one.nr_vmap_nodes == 1 and one.pooled_ranges() == []


def test_reserve_rebuilds_known_areas() -> None:
    s = VmapSpace(X)
    s.reserve(VSTART, 3 * PAGE, caller="early", nr_pages=2)
    s.reserve(VSTART + 3 * PAGE, 2 * PAGE, vm_flags=0, lazy=True)
    assert s.vmalloc(1) == VSTART + 5 * PAGE and s.lazy_pages == 2
    before = snapshot(s)
    with pytest.raises(InvalidArgument):
        s.reserve(VSTART + PAGE, PAGE)
    with pytest.raises(InvalidArgument):
        s.reserve(VSTART + 1, PAGE)
    assert snapshot(s) == before


def test_constructor_rejects_bad_cpus() -> None:
    for cpus in (0, -1, 1 << 17):
        with pytest.raises(InvalidArgument):
            VmapSpace(X, cpus=cpus)
    with pytest.raises(InvalidArgument):
        VmapSpace(X, cpus=64, nr_cpus_config=32)


def test_restored_module_areas_never_enter_node_pools() -> None:
    s = VmapSpace(X, cpus=4, profile=profiles.LINUX_6_11)
    s.reserve(X.modules.start, 2 * PAGE, lazy=True)
    s.reserve(VSTART, 2 * PAGE, lazy=True)
    s.vm_unmap_aliases()
    assert s.pooled_ranges() == [(VSTART, VSTART + 2 * PAGE)]  # the vmalloc-window one is pooled
    assert s.usage("modules").pinned == 0
