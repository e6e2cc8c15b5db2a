"""The loader: kernel variants and proposals on real modules, held to the kernel's own numbers."""

from __future__ import annotations

import re

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers import console_section
from vmapsim import InvalidArgument, layouts, procfs, profiles, simulate, trace
from vmapsim.engine import Drawn, Seeded
from vmapsim.loader import PIPELINES, Request, concurrency_limit
from vmapsim.loader import run as loader_run
from vmapsim.loader.costs import CostModel
from vmapsim.modules import Catalog
from vmapsim.units import KiB

CAT = Catalog.builtin("debian-6.12-amd64")
LOCKSTEP = CostModel(lockstep=True)
ENOMEM, EBUSY, EEXIST, ETXTBSY, ENODEV = 12, 16, 17, 26, 19


def _kasan_module() -> object:
    # David Hildenbrand's module: a 2.4 MiB core area (2498560 bytes with its guard) and a 308 KiB init area.
    base = CAT["kvm_intel"]
    return attrs.evolve(base, name="big_kasan", legacy=(2494464, 311296), memory=(2494464, 0, 0, 0, 311296, 0, 0))


@pytest.mark.parametrize("pipeline", sorted(PIPELINES))
@pytest.mark.parametrize("cpus", [224, 448])
def test_448_kasan_duplicates_exhaust_the_module_window_only_before_6_4(pipeline: str, cpus: int) -> None:
    mod = _kasan_module()
    reqs = [Request(mod, cpu=c) for c in range(cpus)]  # type: ignore[arg-type]
    r = simulate(reqs, pipeline=pipeline, cpus=cpus, costs=LOCKSTEP, module_align=32 * KiB)
    exhausted = pipeline == "v6.3" and cpus == 448
    assert bool(r.failures) is exhausted
    if exhausted:
        assert r.failures[0].message == "vmap allocation for size 2498560 failed: use vmalloc=<size> to increase size"
        assert sum(o.ret == -ENOMEM for o in r.outcomes) == len({f.request for f in r.failures})
        assert r.peak_pinned["modules"] > 0.95 * layouts.X86_64.modules.size  # the rest is MODULE_ALIGN padding
    else:
        assert {o.ret for o in r.outcomes} <= {0, -EEXIST, -EBUSY, -ETXTBSY}
    assert sum(o.ret == 0 for o in r.outcomes) >= 1 and r.leaks() == []


def test_counters_and_text_computed_by_hand() -> None:
    msr = CAT["msr"]  # .ko.xz: F = 4528, D = 21702, signature 302 → len = 21400
    assert (msr.file_size, msr.decompressed_size, msr.signature_size) == (4528, 21702, 302)
    r = simulate([Request("msr", cpu=c) for c in range(3)], pipeline="v6.4", cpus=3, catalog=CAT, costs=LOCKSTEP)
    assert [o.ret for o in r.outcomes] == [0, -EEXIST, -EEXIST]
    s = r.stats
    # two "Becoming" duplicates: each len + compressed_len = 21400 + 4528 = 25928
    assert (s.failed_becoming, s.invalid_becoming_bytes, s.failed_load_modules) == (2, 51856, 0)
    # msr's module memory: text 4096 + data 4096 + rodata 4096 + init_text 4096 + init_data 4096
    assert (s.modcount, s.total_mod_size, s.total_text_size) == (1, 20480, 8192)
    assert s.render() == (
        "         Mods ever loaded\t1\n"
        "     Mods failed on kread\t0\n"
        "Mods failed on decompress\t0\n"
        "  Mods failed on becoming\t2\n"
        "      Mods failed on load\t0\n"
        "        Total module size\t20480\n"
        "      Total mod text size\t8192\n"
        "       Failed kread bytes\t0\n"
        "  Failed decompress bytes\t0\n"
        "    Failed becoming bytes\t51856\n"
        "        Failed kmod bytes\t0\n"
        " Virtual mem wasted bytes\t51856\n"
        "         Average mod size\t20480\n"
        "    Average mod text size\t8192\n"
        "  Avg fail becoming bytes\t25928\n"
        "Duplicate failed modules:\n"
        "              Module-name\t How-many-times\t                   Reason\n"
        "                      msr\t              2\t                 Becoming\n"
    )
    old = simulate([Request("msr", cpu=c) for c in range(3)], pipeline="v6.3", cpus=3, catalog=CAT, costs=LOCKSTEP)
    # up to 6.3 both duplicates are caught after layout: "Load", 2 * len + compressed_len each
    assert (old.stats.failed_load_modules, old.stats.invalid_mod_bytes) == (2, 2 * (2 * 21400 + 4528))
    assert old.stats.duplicates == {"msr": [2, 2]}


def test_v6_5_concurrent_loads_of_one_inode_read_once_serial_ones_read_again() -> None:
    reqs = [Request("kvm_intel", cpu=c) for c in range(16)] + [Request("kvm_intel", time=5.0)]
    r = simulate(reqs, pipeline="v6.5", cpus=16, catalog=CAT)
    assert r.reads == 2 and [o.ret for o in r.outcomes] == [0] * 16 + [-EEXIST]
    assert all(o.allocations == () for o in r.outcomes[1:16])  # waiters allocate nothing
    other_file = simulate([Request("kvm_intel", cpu=c, inode=f"copy{c}") for c in range(4)], pipeline="v6.5",
                          cpus=4, catalog=CAT, costs=LOCKSTEP)  # fmt: skip
    assert other_file.reads == 4  # different inodes are not deduplicated


def test_page_list_makes_no_vmalloc_for_duplicates() -> None:
    r = simulate([Request("kvm_intel", cpu=c) for c in range(8)], pipeline="page-list", cpus=8, catalog=CAT,
                 costs=LOCKSTEP)  # fmt: skip
    assert [o.ret for o in r.outcomes] == [0] + [-EEXIST] * 7
    assert all(o.allocations == () for o in r.outcomes[1:])
    assert next(a.kind for a in r.outcomes[0].allocations) == "vmap"  # one vmap, after the existence check


def test_read_time_proposals_fail_concurrent_readers_early() -> None:
    reqs = [Request("kvm_intel", cpu=c) for c in range(4)]
    dedup = simulate(reqs, pipeline="kread-dedup", cpus=4, catalog=CAT, costs=LOCKSTEP)
    assert [o.ret for o in dedup.outcomes] == [0, -EBUSY, -EBUSY, -EBUSY] and dedup.reads == 1
    assert dedup.stats.failed_kreads == 3
    deny = simulate(reqs, pipeline="exclusive-deny", cpus=4, catalog=CAT, costs=LOCKSTEP)
    assert [o.ret for o in deny.outcomes] == [0, -ETXTBSY, -ETXTBSY, -ETXTBSY]
    later = simulate([*reqs[:1], Request("kvm_intel", time=0.5)], pipeline="exclusive-deny", catalog=CAT)
    assert [o.ret for o in later.outcomes] == [0, -EEXIST]  # deny only lasts while the file is read


def test_concurrency_limit_bounds_loads_in_flight() -> None:
    mods = ["kvm", "loop", "xfs", "msr", "nvme", "e1000e"]
    r = simulate([Request(m, cpu=i) for i, m in enumerate(mods)], pipeline=concurrency_limit(2), cpus=6,
                 catalog=CAT, costs=LOCKSTEP)  # fmt: skip
    spans = [(next(t for t, stage in o.timeline if stage == "read"), o.end) for o in r.outcomes]
    for t, _ in spans:
        assert sum(s <= t < e for s, e in spans) <= 2
    assert all(o.ret == 0 for o in r.outcomes)
    with pytest.raises(InvalidArgument):
        concurrency_limit(0)


def test_failing_init_gives_enodev_then_ebusy_to_waiters() -> None:
    reqs = [Request("kvm_intel", cpu=c, init_errno=ENODEV, inode=f"i{c}") for c in range(3)]
    r = simulate(reqs, pipeline="v6.4", cpus=3, catalog=CAT, costs=LOCKSTEP)
    assert [o.ret for o in r.outcomes] == [-ENODEV, -EBUSY, -EBUSY]
    assert r.stats.modcount == 0 and r.live == () and r.leaks() == []


def test_init_module_is_never_deduplicated() -> None:
    reqs = [Request("kvm_intel", cpu=c, syscall="init_module") for c in range(4)]
    r = simulate(reqs, pipeline="v6.5", cpus=4, catalog=CAT, costs=LOCKSTEP)
    assert [o.ret for o in r.outcomes] == [0, -EEXIST, -EEXIST, -EEXIST]
    sizes = [a.size for o in r.outcomes for a in o.allocations if a.kind == "copy_module_from_user"]
    assert sizes == [CAT["kvm_intel"].decompressed_size // 4096 * 4096 + 8192] * 4


def _mixed(cpus: int) -> list[Request]:
    reqs = []
    for c in range(cpus):
        reqs.append(Request("kvm_intel", cpu=c, time=0.001 * (c % 3)))
        reqs.append(Request("kvm", cpu=c, time=0.0005 * c))
        reqs.append(Request("loop", cpu=c, syscall="init_module" if c % 2 else "finit_module"))
        reqs.append(Request("msr", cpu=c, init_errno=ENODEV if c == 0 else 0, inode=f"msr{c % 2}"))
    return reqs


@pytest.mark.parametrize("pipeline", sorted(PIPELINES))
def test_no_leaks_and_one_live_copy_per_module(pipeline: str) -> None:
    r = simulate(_mixed(6), pipeline=pipeline, cpus=6, catalog=CAT, scheduler=Seeded(3))
    assert r.leaks() == []
    for name in ("kvm_intel", "kvm", "loop"):
        assert sum(o.ret == 0 and o.module == name for o in r.outcomes) >= 1
        assert name in r.live
    held = [a for o in r.outcomes for a in o.allocations if a.freed is None]
    assert {a.region for a in held} == {"modules"}  # only module memory of LIVE modules is left
    live_core = sum(
        sum(n for t, n in CAT[m].allocations("module_memory" if pipeline != "v6.3" else "module_layout")
            if not t.startswith("init")) + 4096 * 0 for m in r.live
    )  # fmt: skip
    assert sum(a.size for a in held) >= live_core


@pytest.mark.parametrize("pipeline", ["v6.3", "v6.5", "page-list"])
def test_same_inputs_and_seed_give_the_same_result(pipeline: str) -> None:
    runs = [simulate(_mixed(5), pipeline=pipeline, cpus=5, catalog=CAT, scheduler=Seeded(11)) for _ in range(2)]
    assert runs[0] == runs[1]
    other = simulate(_mixed(5), pipeline=pipeline, cpus=5, catalog=CAT, scheduler=Seeded(12), seed=1)
    assert other.outcomes != runs[0].outcomes  # the seed really changes something (KASLR offset)


@settings(max_examples=40, deadline=None)
@given(st.data(), st.sampled_from(sorted(PIPELINES)), st.integers(2, 6))
def test_any_interleaving_keeps_one_winner_and_no_leak(data: st.DataObject, pipeline: str, n: int) -> None:
    sched = Drawn(lambda k: data.draw(st.integers(0, k - 1)))
    reqs = [Request("kvm_intel", cpu=c, time=data.draw(st.sampled_from([0.0, 0.001, 0.004]))) for c in range(n)]
    r = simulate(reqs, pipeline=pipeline, cpus=n, catalog=CAT, scheduler=sched)
    wins = [o for o in r.outcomes if o.ret == 0]
    if pipeline == "v6.5":
        assert {o.ret for o in r.outcomes} <= {0, -EEXIST}
    else:
        assert len(wins) == 1
    assert r.live == ("kvm_intel",) and r.leaks() == []


def test_one_real_load_makes_the_allocations_a_real_6_12_kernel_made() -> None:
    # tests/data/qemu-6.12-1cpu.txt: Debian's 6.12 kernel loading ansi_cprng.ko.xz first (nokaslr, 1 CPU)
    text = (__import__("pathlib").Path(__file__).parent / "data" / "qemu-6.12-1cpu.txt").read_text()
    snap = procfs.parse_vmallocinfo(console_section(text, "vmallocinfo-start"))
    space = procfs.restore(snap, layouts.X86_64_LA57, profile=profiles.LINUX_6_11)
    events = trace.parse_trace(console_section(text, "trace"))
    r = simulate([Request("ansi_cprng")], pipeline="v6.5", layout=layouts.X86_64_LA57, catalog=CAT, space=space,
                 load_offset=0)  # fmt: skip
    ours = r.outcomes[0].allocations
    kernel = [e for e in events if e.kind == "alloc"][: len(ours)]
    assert [(a.size, a.addr) for a in ours] == [(e.size, e.addr) for e in kernel]
    assert [e.vstart for e in kernel][:3] == [layouts.X86_64_LA57.vmalloc.start] * 3
    assert [a.kind for a in ours] == ["kernel_read_file", "module_decompress", "vmap", "text", "data", "rodata",
                                      "init_text", "init_data"]  # fmt: skip
    # frees, in the kernel's order: the xz dictionary before the vmap, the read buffer right after it
    first = [e for e in events if e.kind in ("alloc", "free")][:5]
    assert [(e.kind, e.addr) for e in first] == [
        ("alloc", ours[0].addr), ("alloc", ours[1].addr), ("free", ours[1].addr), ("alloc", ours[2].addr),
        ("free", ours[0].addr),
    ]  # fmt: skip
    assert ours[1].freed <= ours[2].allocated and ours[0].freed == ours[2].allocated  # type: ignore[operator]
    assert ours[2].freed is not None and ours[2].freed < r.outcomes[0].end  # the copy goes before init ends
    assert all(a.freed is not None for a in ours if a.kind.startswith("init"))  # do_free_init()


def test_bad_requests_are_typed_errors() -> None:
    with pytest.raises(InvalidArgument, match="unknown pipeline 'v9'"):
        simulate([], pipeline="v9")
    with pytest.raises(InvalidArgument, match="no module 'nope'"):
        simulate([Request("nope")], catalog=CAT)
    with pytest.raises(InvalidArgument, match="CPU 4"):
        simulate([Request("msr", cpu=4)], cpus=4, catalog=CAT)
    assert simulate([Request("msr")]).outcomes[0].module == "msr"  # no catalog: the default kernel's
    with pytest.raises(InvalidArgument, match="syscall"):
        simulate([Request("msr", syscall="insmod")], catalog=CAT)


def test_simulate_takes_the_keywords_its_docstring_lists() -> None:
    doc = simulate.__doc__ or ""
    listed = set(re.findall(r"^    \* ``(\w+)`` \(", doc, re.MULTILINE))
    assert listed == {f.name for f in attrs.fields(loader_run.Run) if f.init}
    for resolved in ("path", "module_catalog", "notes"):  # a Run resolves these itself: no keywords
        with pytest.raises(InvalidArgument, match=f"no option '{resolved}'.*a Run has catalog, costs, cpus, kernel,"):
            simulate([], **{resolved: None})


def test_rerunning_until_the_peak_instant_shows_the_peak() -> None:
    reqs = [Request("kvm_intel", cpu=c, time=0.0001 * c) for c in range(8)]
    full = simulate(reqs, pipeline="v6.3", cpus=8, catalog=CAT)
    at = simulate(reqs, pipeline="v6.3", cpus=8, catalog=CAT, until=full.peak_time["modules"])
    assert at.space.pinned("modules") == full.peak_pinned["modules"] > at.space.pinned("modules") - 1
    assert full.space.pinned("modules") < full.peak_pinned["modules"]  # the end state is not the peak
