"""execmem's ROX cache (mm/execmem.c, 7.3) and module loads through it (x86-64, 6.15+)."""

from __future__ import annotations

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.helpers import snapshot
from vmapsim import InvalidArgument, VmapAllocationError, VmapSpace, layouts, simulate
from vmapsim.execmem import RoxCache
from vmapsim.loader import Request, Result
from vmapsim.loader.costs import CostModel
from vmapsim.loader.kernel import CHUNK_KIND, EXECMEM_FAILURE
from vmapsim.loader.pipelines import for_kernel
from vmapsim.units import PAGE_SIZE, PMD_SIZE, MiB

LAYOUT = layouts.X86_64_NOKASLR
M = LAYOUT.modules


def _chunks_held(space: VmapSpace) -> list[int]:
    return [a.start for a in space.areas() if a.size == PMD_SIZE + PAGE_SIZE and a.start in M]


def _busy_at(space: VmapSpace, addr: int) -> bool:
    return any(a.start == addr for a in space.areas())


@given(st.lists(st.tuples(st.sampled_from(["alloc", "free", "clean"]), st.integers(1, 700)), max_size=60))
def test_any_sequence_keeps_the_cache_tiled_merged_and_inside_its_chunks(ops: list[tuple[str, int]]) -> None:
    space = VmapSpace(LAYOUT)
    cache = RoxCache(space)
    carves: list[int] = []
    for op, n in ops:
        if op == "alloc":
            size = n * PAGE_SIZE
            addr = cache.alloc(size, M.start, M.end)
            if addr is None:
                chunk = cache.populate(size, M.start, M.end)
                cache.add(chunk)
                addr = cache.alloc(size, M.start, M.end)
            assert addr is not None and cache.carved(addr) == size
            carves.append(addr)
        elif op == "free" and carves:
            assert cache.free(carves.pop(n % len(carves)))
        elif op == "clean":
            for chunk in cache.clean():
                assert not _busy_at(space, chunk)  # handed back to vmalloc
        cache._check()
        space._check()
    # every carve lies in a chunk vmalloc still holds, and a chunk with no carve left is cleaned away
    for c in carves:
        chunk = max(s for s in cache.chunks if s <= c)
        assert _busy_at(space, chunk)
    for c in carves:
        assert cache.free(c)
    cache.clean()  # all free again: in a 1.5 GiB window every chunk was a 2 MiB one, and every one goes back
    assert cache.chunks == {} and _chunks_held(space) == []
    cache._check()


def test_a_chunk_is_2_mib_plus_guard_aligned_to_2_mib_and_carves_are_first_fit() -> None:
    space = VmapSpace(LAYOUT)
    space.vmalloc_node_range(PAGE_SIZE, start=M.start, end=M.end)  # the window no longer starts 2 MiB-aligned
    cache = RoxCache(space)
    chunk = cache.populate(5 * PAGE_SIZE, M.start, M.end)
    assert chunk % PMD_SIZE == 0 and space.area(chunk).size == PMD_SIZE + PAGE_SIZE
    cache.add(chunk)
    a, b, c = (cache.alloc(n * PAGE_SIZE, M.start, M.end) for n in (3, 1, 2))
    assert (a, b, c) == (chunk, chunk + 3 * PAGE_SIZE, chunk + 4 * PAGE_SIZE)
    assert cache.free(b) and cache.alloc(PAGE_SIZE, M.start, M.end) == b  # the hole is reused first
    assert not cache.free(chunk + PAGE_SIZE)  # not a carve: execmem_free() would vfree() it


def test_a_window_without_a_2_mib_hole_gets_a_chunk_of_the_exact_size_which_is_never_cleaned() -> None:
    layout = attrs.evolve(LAYOUT, modules=attrs.evolve(M, end=M.start + 3 * MiB))
    space = VmapSpace(layout)
    space.vmalloc_node_range(2 * MiB, start=layout.modules.start, end=layout.modules.end)
    cache = RoxCache(space)
    w = layout.modules
    chunk = cache.populate(8 * PAGE_SIZE, w.start, w.end)
    assert space.area(chunk).size == 9 * PAGE_SIZE
    cache.add(chunk)
    addr = cache.alloc(8 * PAGE_SIZE, w.start, w.end)
    assert addr == chunk and cache.free(addr) and cache.clean() == [] and chunk in cache.chunks


def test_a_failed_populate_leaves_cache_and_space_as_they_were() -> None:
    layout = attrs.evolve(LAYOUT, modules=attrs.evolve(M, end=M.start + 64 * PAGE_SIZE))
    space = VmapSpace(layout)
    cache = RoxCache(space)
    before = snapshot(space)
    with pytest.raises(VmapAllocationError):
        cache.populate(64 * PAGE_SIZE, layout.modules.start, layout.modules.end)
    # alloc_vmap_area() purges the lazy areas before it gives up (there are none here): only the count of
    # purges attempted (the last field) may move
    assert snapshot(space)[:-1] == before[:-1] and cache.chunks == {}
    cache._check()


@pytest.mark.parametrize("bad", [0, -1, "x", 1.5, None])
def test_bad_sizes_are_refused_by_name(bad: object) -> None:
    cache = RoxCache(VmapSpace(LAYOUT))
    with pytest.raises(InvalidArgument, match="size"):
        cache.alloc(bad, M.start, M.end)  # type: ignore[arg-type]


def test_adding_what_is_not_a_fresh_chunk_is_refused() -> None:
    space = VmapSpace(LAYOUT)
    cache = RoxCache(space)
    chunk = cache.populate(PAGE_SIZE, M.start, M.end)
    cache.add(chunk)
    with pytest.raises(InvalidArgument, match="already"):
        cache.add(chunk)
    with pytest.raises(InvalidArgument, match="no vmalloc area"):
        cache.add(chunk + PAGE_SIZE)
    cache._check()


def _load(kernel: str, n: int, costs: CostModel | None = None) -> Result:
    reqs = [Request("dm_mod", cpu=c) for c in range(n)]
    return simulate(reqs, kernel=kernel, cpus=max(n, 1), catalog="debian-6.12-amd64", layout=LAYOUT,
                    costs=costs or CostModel())  # fmt: skip


def test_on_7_3_module_text_is_carved_from_a_chunk_and_data_gets_areas_of_its_own() -> None:
    r = _load("7.3", 1)
    (o,) = r.outcomes
    module = {a.kind: a for a in o.allocations if a.region == "modules" and a.kind != CHUNK_KIND}
    (chunk,) = [a for a in o.allocations if a.kind == CHUNK_KIND]  # recorded on the load that populated it
    assert chunk.addr == M.start and chunk.size == PMD_SIZE + PAGE_SIZE and chunk.freed is None
    text, init_text = module["text"], module["init_text"]
    assert text.addr == M.start and text.size % PAGE_SIZE == 0  # a carve: no guard page
    assert text.addr < init_text.addr < text.addr + PMD_SIZE  # both from the one chunk
    for kind in ("data", "rodata", "ro_after_init", "init_data"):
        assert module[kind].addr >= M.start + PMD_SIZE + PAGE_SIZE  # separate vmalloc areas above the chunk
    # the chunk pins 2 MiB + guard of the module window, whatever the text size
    data = sum(a.size for k, a in module.items() if k not in ("text", "init_text"))
    assert r.peak_pinned["modules"] == PMD_SIZE + PAGE_SIZE + data


def test_6_12_has_execmem_without_the_cache() -> None:
    assert not for_kernel("6.14").rox_cache and for_kernel("6.15").rox_cache
    r = _load("6.12", 1)
    assert r.peak_pinned["modules"] < PMD_SIZE


def test_arm64_has_no_rox_cache_even_on_7_3() -> None:
    r = simulate([Request("act_simple")], kernel="7.3", catalog="debian-6.12-arm64", layout=layouts.ARM64_48)
    assert r.peak_pinned["modules"] < PMD_SIZE


def test_concurrent_misses_each_populate_a_chunk_and_the_spare_chunks_go_back_after_a_free() -> None:
    # init_module() duplicates on 6.15+ that reach layout together (all past the early check) each miss the
    # empty cache and populate a chunk outside its mutex; each then carves the lowest free range, so every
    # carve lands in the first chunk and the others sit wholly free until a carve is freed and
    # execmem_cache_clean() hands them back to vmalloc
    reqs = [Request("dm_mod", cpu=c, syscall="init_module") for c in range(4)]
    r = simulate(reqs, kernel="7.3", cpus=4, catalog="debian-6.12-amd64", layout=LAYOUT,
                 costs=CostModel(rox_fill=2e-5))  # fmt: skip
    texts = [a.addr for o in r.outcomes for a in o.allocations if a.kind == "text"]
    assert len(texts) == 4 and all(M.start <= t < M.start + PMD_SIZE for t in texts)
    assert sorted(o.ret for o in r.outcomes) == [-17, -17, -17, 0]
    assert r.peak_pinned["modules"] > 4 * PMD_SIZE
    assert _chunks_held(r.space) == [M.start] and not r.leaks()


def test_without_populate_time_duplicates_share_the_first_chunk() -> None:
    reqs = [Request("dm_mod", cpu=c, syscall="init_module") for c in range(4)]
    r = simulate(reqs, kernel="7.3", cpus=4, catalog="debian-6.12-amd64", layout=LAYOUT)
    texts = [a.addr for o in r.outcomes for a in o.allocations if a.kind == "text"]
    assert texts and all(M.start <= t < M.start + PMD_SIZE for t in texts)


def test_a_module_window_too_small_for_text_reports_execmem_and_keeps_nothing() -> None:
    layout = attrs.evolve(LAYOUT, modules=attrs.evolve(M, end=M.start + 16 * PAGE_SIZE))
    r = simulate([Request("dm_mod")], kernel="7.3", catalog="debian-6.12-amd64", layout=layout)
    (o,) = r.outcomes
    assert o.ret == -12 and [f.message for f in r.failures] == [EXECMEM_FAILURE]
    assert all(a.freed is not None for a in o.allocations)


@pytest.mark.parametrize(
    "fixture,version,areas,modules",
    [
        ("qemu-7.3-1cpu.txt.xz", "7.3", 33, 5),
        ("qemu-6.12deb13-1cpu.txt.xz", "6.12deb13", 58, 7),
        # eight on 7.3, irqbypass and failover among them: their .static_call_sites are ro_after_init from
        # 6.16, so each makes one more module-window area (30 of the 54 are in that window)
        ("qemu-7.3-1cpu-8mods.txt.xz", "7.3", 54, 8),
    ],
)
def test_debian_13_loads_are_predicted_from_the_boot_snapshot(fixture: str, version: str, areas: int,
                                                              modules: int) -> None:  # fmt: skip
    # modules loaded one after another on Debian 13's kernels under QEMU (one CPU): backports' 7.3.4 and
    # trixie's 6.12.117. From the boot snapshot, the model must make the kernel's vmap areas in the kernel's
    # order, each of the kernel's size in the kernel's window (on 7.3 one ROX chunk of 2 MiB + guard among
    # them), and put every module's text where /proc/modules says the kernel put it
    from tests.helpers import console_log
    from tests.realkernel import harness

    kernel, model, bases = harness.predict(console_log(fixture), version)
    assert len(kernel) == areas and model == kernel
    chunks = sum(size == PMD_SIZE + PAGE_SIZE for size, _ in kernel)
    assert chunks == (1 if version == "7.3" else 0)  # the first load's chunk, shared by every later one
    assert len(bases) == modules and all(real == predicted for real, predicted in bases.values()), bases


def test_debian_13_userspace_presets_boot_their_own_kernels_through_finit_module() -> None:
    # kmod 34 hands compressed modules to finit_module(), so a udev storm on Debian 13 takes 6.5's idempotent
    # path: one read per module, whatever the CPU count; on the backports' 7.3, module text sits in ROX chunks
    from vmapsim.modules import Catalog
    from vmapsim.workloads import PRESETS, udev_boot

    for name, kernel in (("intel-server-trixie", "6.12"), ("intel-server-trixie-backports", "7.3")):
        machine = PRESETS[name]
        cat = Catalog.builtin(machine.catalog)
        jobs = udev_boot(cat, machine, 16)
        r = simulate(jobs, cpus=16, catalog=cat)
        assert r.pipeline == kernel and r.failures == ()
        loaded = {o.module for o in r.outcomes if o.ret == 0}
        assert r.reads == len(loaded)
        chunks = [a for o in r.outcomes for a in o.allocations if a.kind == CHUNK_KIND]
        assert bool(chunks) == (kernel == "7.3")
