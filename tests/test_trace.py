"""trace: parse the kernel's own vmalloc trace and replay it; held to traces of real kernels.

tests/data/qemu-*.txt are console logs of Debian's 6.12 and 6.1 kernels booted under QEMU
(TCG, -cpu max, nokaslr) loading seven modules, made by tests/realkernel/capture.py.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.helpers import console_log, console_section
from vmapsim import InvalidArgument, ParseError, VmapSpace, layouts, procfs, profiles, trace

DATA = Path(__file__).parent / "data"


@pytest.mark.parametrize(
    "fixture,version,cpus,allocs",
    [
        ("qemu-6.12-1cpu.txt", "6.12", 1, 60),
        ("qemu-6.1-1cpu.txt", "6.1", 1, 21),
        ("qemu-6.12-4cpu.txt", "6.12", 4, 68),
        # four finit_module(dm_mod) at once on 6.1, traced by kprobes: two allocations that overlapped were
        # served in the other order than they returned (listed by return, one of 14 disagreed)
        ("qemu-6.1-4cpu-dup-dm-mod.txt.xz", "6.1", 4, 14),
        # 32 at once on 32 CPUs: whole chains traced at one clock tick, listed by CPU, served in another
        # order (each allocation that entered before another returned and took what vmapsim offers it is
        # replayed first, again until the offer is the traced address)
        ("qemu-6.1-32cpu-dup-dm-mod.txt.xz", "6.1", 32, 126),
        # Debian 13 backports' 7.3.4: module text from execmem's 2 MiB cache, the allocator core unchanged
        ("qemu-7.3-1cpu.txt.xz", "7.3", 1, 34),
        # Debian 13's own 6.12.117+deb13 (trixie), the same seven modules
        ("qemu-6.12deb13-1cpu.txt.xz", "6.12", 1, 63),
        # Debian 11's 5.10.262 (4-level paging), traced by kprobes: ten loads one by one (two refused with
        # -ENOENT after their module memory was allocated), then 2, 4 and 8 finit_module(dm_mod) at once
        ("qemu-5.10-1cpu.txt.xz", "5.10", 1, 32),
        ("qemu-5.10-2cpu-dup-dm-mod.txt.xz", "5.10", 2, 8),
        ("qemu-5.10-4cpu-dup-dm-mod.txt.xz", "5.10", 4, 14),
        ("qemu-5.10-8cpu-dup-dm-mod.txt.xz", "5.10", 8, 31),
    ],
)
def test_replay_of_a_real_kernel_agrees_on_every_address(fixture: str, version: str, cpus: int, allocs: int) -> None:
    text = console_log(fixture)
    snapshot = procfs.parse_vmallocinfo(console_section(text, "vmallocinfo-start"))
    space = procfs.restore(snapshot, _layout(version), cpus=cpus, profile=profiles.for_version(version))
    events = trace.parse_trace(console_section(text, "trace"))
    report = trace.replay(events, space)
    assert report.allocs == allocs
    assert report.disagreements == () and report.unknown_frees == ()
    assert report.summary().startswith(f"{allocs}/{allocs} allocations agree (100.0%)")
    assert space.auto_purge  # restored after the replay
    space._check()


def _layout(version: str) -> layouts.Layout:
    # QEMU's -cpu max boots into 5-level paging; Debian's 5.10 is built without CONFIG_X86_5LEVEL
    return layouts.X86_64 if version == "5.10" else layouts.X86_64_LA57


def test_a_real_5_10_kernel_looks_for_size_plus_align_minus_one_even_for_a_page_alignment() -> None:
    # The one-by-one 5.10 capture replayed under each allocator: the 5.4 and 5.11 profiles (the length
    # size + align - 1 for every request) place all 32 allocations as 5.10 did; 5.16's length (size) and
    # everything from 5.18 put one module_alloc() of MODULE_ALIGN = PAGE_SIZE in the lowest hole instead.
    text = console_log("qemu-5.10-1cpu.txt.xz")
    events = trace.parse_trace(console_section(text, "trace"))
    wrong = {}
    for profile in profiles.PROFILES:
        snapshot = procfs.parse_vmallocinfo(console_section(text, "vmallocinfo-start"))
        space = procfs.restore(snapshot, layouts.X86_64, cpus=1, profile=profile)
        wrong[profile.name] = len(trace.replay(events, space).disagreements)
    assert wrong["5.4"] == wrong["5.11"] == 0
    assert all(n > 0 for name, n in wrong.items() if name not in ("5.4", "5.11")), wrong


def test_replay_notices_a_wrong_starting_state() -> None:
    text = console_log("qemu-6.12-1cpu.txt")
    snapshot = procfs.parse_vmallocinfo(console_section(text, "vmallocinfo-start"))
    # Forget a small busy area near the bottom of the window: the model now has a hole the kernel did not.
    hole = next(r for r in snapshot if r.size == 8192 and r.kind == "vm")
    space = procfs.restore([r for r in snapshot if r is not hole], layouts.X86_64_LA57, profile=profiles.LINUX_6_11)
    report = trace.replay(trace.parse_trace(console_section(text, "trace")), space)
    assert report.disagreements and report.agreement < 1.0
    first = report.disagreements[0]
    assert first.model == hole.start and first.event.addr != hole.start


def test_parse_trace_event_lines() -> None:
    text = """\
# tracer: nop
            init-1       [000] .....     2.135686: alloc_vmap_area: va_start: 18419722475945611264 size=12288 align=1 vstart=0xffa0000000000000 vend=0xffd1ffffffffffff failed=0
            init-1       [002] d..1.     2.141959: free_vmap_area_noflush: va_start=0xffa0000000741000 nr_lazy=262 nr_lazy_max=8192
     kworker/0:0-9       [000] .....     2.187999: purge_vmap_area_lazy: start=0xff11000006354000 end=0xffffffffc020a000 num_purged=3
          insmod-70  (     70) [001] .....     3.0: alloc_vmap_area: va_start: 18419722475945611264 size=8192 align=16384 vstart=0xffa0000000000000 vend=0xffd1ffffffffffff failed=1
            init-1       [000] .....     2.2: sched_switch: prev_comm=init
"""  # noqa: E501
    ev = trace.parse_trace(text)
    assert [e.kind for e in ev] == ["alloc", "free", "purge", "alloc"]
    assert (ev[0].addr, ev[0].size, ev[0].align, ev[0].line) == (0xFFA0000000045000, 12288, 1, 2)
    assert (ev[1].cpu, ev[1].addr) == (2, 0xFFA0000000741000)
    assert (ev[2].task, ev[2].addr, ev[2].end) == ("kworker/0:0", 0xFF11000006354000, 0xFFFFFFFFC020A000)
    assert ev[3].failed and ev[3].addr is None and ev[3].cpu == 1


def test_parse_kprobe_lines_pairs_returns_with_entries() -> None:
    # Two tasks allocate at once and each returns on the other's CPU (the allocation may sleep, the task
    # migrate): a return is paired with its own task's entry (by pid), not with the last entry on its CPU.
    text = """\
 init-1 [000] ..... 2.0: vm_alloc: (alloc_vmap_area+0x0/0x880) size=0x6000 align=0x1 vstart=0xffa0000000000000 vend=0xffd1ffffffffffff
 insmod-7 [001] ..... 2.0: vm_alloc: (alloc_vmap_area+0x0/0x880) size=0x2000 align=0x1000 vstart=0xffffffffc0000000 vend=0xffffffffff000000
 insmod-7 [000] ..... 2.1: vm_alloc_ret: (__get_vm_area_node+0xb1/0x150 <- alloc_vmap_area) va_start=(fault)
 init-1 [001] ..... 2.15: vm_alloc_ret: (__get_vm_area_node+0xb1/0x150 <- alloc_vmap_area) va_start=0xffa00000005a5000
 init-1 [000] ..... 2.2: vm_free: (free_vmap_area_noflush+0x0/0x2d0) va_start=0xffa00000005a5000 va_end=0xffa00000005ab000
 init-1 [000] ..... 2.3: vm_purge: (__purge_vmap_area_lazy+0x0/0x750) start=0xffffffffffffffff end=0x0
"""  # noqa: E501
    ev = trace.parse_trace(text)
    assert [(e.kind, e.cpu, e.pid) for e in ev] == [("alloc", 1, 7), ("alloc", 0, 1), ("free", 0, 1), ("purge", 0, 1)]
    assert ev[0].failed and ev[0].addr is None and ev[0].vstart == 0xFFFFFFFFC0000000 and ev[0].line == 2
    assert (ev[1].addr, ev[1].size, ev[1].line) == (0xFFA00000005A5000, 0x6000, 1)
    assert (ev[1].time, ev[1].returned) == (2.0, 2.15)  # entered, returned
    assert ev[2].end == 0xFFA00000005AB000


def _kprobe_pair(b_enters: str) -> str:
    # A enters, then B; A returns first with the higher address: B took the lock first and got the lowest.
    w = "vstart=0xffffc90000000000 vend=0xffffe8ffffffffff"
    return f"""\
 a-10 [000] ..... 1.000: p: (alloc_vmap_area+0x0/0x880) size=0x2000 align=0x1000 {w}
 b-11 [001] ..... {b_enters}: p: (alloc_vmap_area+0x0/0x880) size=0x2000 align=0x1000 {w}
 a-10 [000] ..... 1.010: r: (__get_vm_area_node+0xb1/0x150 <- alloc_vmap_area) va_start=0xffffc90000002000
 b-11 [001] ..... 1.020: r: (__get_vm_area_node+0xb1/0x150 <- alloc_vmap_area) va_start=0xffffc90000000000
"""


@pytest.mark.parametrize("b_enters,agree", [("1.005", 2), ("1.015", 1)])
def test_overlapping_kprobe_allocations_may_have_been_served_in_the_other_order(b_enters: str, agree: int) -> None:
    # listed by return, A comes first; if B entered while A was inside alloc_vmap_area(), the kernel may have
    # served B first, and the replay accepts that order; if B entered after A returned, it may not
    s = VmapSpace(layouts.X86_64, cpus=2)
    report = trace.replay(trace.parse_trace(_kprobe_pair(b_enters)), s)
    assert (report.allocs, report.agreed) == (2, agree)
    assert [(a.start, a.size) for a in s.areas()] == [(0xFFFFC90000000000, 0x2000), (0xFFFFC90000002000, 0x2000)]


@pytest.mark.parametrize(
    "line",
    [
        " init-1 [000] ..... 2.0: alloc_vmap_area: va_start: 1 size=8192",
        " init-1 [000] ..... 2.0: free_vmap_area_noflush: nr_lazy=1",
        " init-1 [000] ..... 2.0: r: (x+0x1/0x2 <- alloc_vmap_area) va_start=0x1000",
    ],
)
def test_malformed_allocator_lines_are_parse_errors(line: str) -> None:
    with pytest.raises(ParseError) as e:
        trace.parse_trace("# header\n" + line, source="t.txt")
    assert str(e.value).startswith("t.txt:2:")


@pytest.mark.parametrize(
    "line,needle",
    [
        (" init-1 [000] ..... 2.0: alloc_vmap_area: va_start: 18446683600570023937 size=8192 align=1 "
         "vstart=0xffffc90000000000 vend=0xffffe8ffffffffff failed=0", "va_start 0xffffc90000000001"),
        (" init-1 [000] ..... 2.0: alloc_vmap_area: va_start: 18446683600570023936 size=8193 align=4096 "
         "vstart=0xffffc90000000000 vend=0xffffe8ffffffffff failed=0", "size 0x2001"),
        (" init-1 [000] ..... 2.0: p: (alloc_vmap_area+0x0/0x880) size=0x2000 align=0x1 vstart=0xffffc90000000000 "
         "vend=0xffffe8ffffffffff\n init-1 [000] ..... 2.1: r: (__get_vm_area_node+0xb1/0x150 <- alloc_vmap_area) "
         "va_start=0xffffc90000000800", "va_start 0xffffc90000000800"),
    ],
)
def test_an_allocation_that_is_not_page_aligned_is_a_parse_error_naming_its_line(line: str, needle: str) -> None:
    with pytest.raises(ParseError, match="not page aligned") as e:
        trace.parse_trace("# header\n" + line, source="t.txt")
    assert str(e.value).startswith("t.txt:2:") and needle in str(e.value)


def test_replay_of_events_not_page_aligned_is_refused_and_changes_nothing() -> None:
    space = VmapSpace(layouts.X86_64, cpus=1)
    w = "vstart=0xffffc90000000000 vend=0xffffe8ffffffffff failed=0"
    good = trace.parse_trace(f" i-1 [000] ..... 1.0: alloc_vmap_area: va_start: 18446683600570023936 size=8192 "
                             f"align=4096 {w}")  # fmt: skip
    bad = attrs.evolve(good[0], addr=good[0].addr + 0x10001)  # a TraceEvent built by hand, the kernel disagreeing
    with pytest.raises(InvalidArgument, match="page-aligned"):
        trace.replay([bad], space)
    assert space.areas() == [] and space.auto_purge
    space._check()


def test_replay_rejects_cpus_the_space_does_not_have() -> None:
    text = console_log("qemu-6.12-4cpu.txt")
    space = procfs.restore(
        procfs.parse_vmallocinfo(console_section(text, "vmallocinfo-start")), layouts.X86_64_LA57, cpus=1
    )
    events = [e for e in trace.parse_trace(console_section(text, "trace")) if e.cpu > 0]
    with pytest.raises(InvalidArgument, match="CPU"):
        trace.replay(events, space)
    assert space.auto_purge


@given(st.text(max_size=300))
def test_trace_parser_raises_only_parse_errors(text: str) -> None:
    with contextlib.suppress(ParseError):
        trace.parse_trace(text)


def test_a_trace_from_boot_replays_on_the_snapshots_percpu_chunks() -> None:
    # 6.12 on 2 CPUs, traced from the first allocation (trace_event= on the command line), the snapshot read
    # after the loads: only the percpu chunks come from it; the trace rebuilds everything else, node pools
    # included, and the free tree's shape with it: the 16 KiB-aligned thread stacks, whose address the
    # kernel's descent picks by that shape, agree too.
    text = console_log("qemu-6.12-2cpu-from-boot.txt.xz")
    snapshot = procfs.parse_vmallocinfo(console_section(text, "vmallocinfo-start"))
    space = procfs.restore(snapshot, layouts.X86_64_LA57, cpus=2, profile=profiles.LINUX_6_11, percpu_only=True)
    assert {a.caller.split("+")[0] for a in space.areas() if a.caller} == {"pcpu_get_vm_areas"}
    report = trace.replay(trace.parse_trace(console_section(text, "trace")), space)
    assert report.allocs == 197 and report.unknown_frees == ()
    assert report.disagreements == ()
    assert sum(e.align == 16384 for e in trace.parse_trace(console_section(text, "trace"))) >= 4
    # the whole snapshot under a from-boot trace already holds what the trace allocates: page-aligned
    # requests then disagree too, which a replay from the right starting state never shows
    whole = procfs.restore(snapshot, layouts.X86_64_LA57, cpus=2, profile=profiles.LINUX_6_11)
    misses = trace.replay(trace.parse_trace(console_section(text, "trace")), whole).disagreements
    assert any(d.event.align <= 4096 for d in misses)


@pytest.mark.parametrize(
    "fixture,version,cpus,allocs,rox",
    [
        # 7.3.4 on 4 CPUs: node pools (6.16's decay rule), execmem's ROX chunk, every allocation from the first
        ("qemu-7.3-4cpu-from-boot.txt.xz", "7.3", 4, 150, True),
        # Debian 13's own 6.12.117+deb13 on 4 CPUs, the seven modules: no ROX cache before 6.15
        ("qemu-6.12deb13-4cpu-from-boot.txt.xz", "6.12", 4, 213, False),
        # 8 CPUs, 6.12 and 7.3: most allocations are 16 KiB-aligned kthread stacks, placed by the rbtree's shape
        ("qemu-6.12-8cpu-from-boot.txt.xz", "6.12", 8, 280, False),
        ("qemu-7.3-8cpu-from-boot.txt.xz", "7.3", 8, 208, True),
    ],
)
def test_a_boot_traced_from_boot_on_several_cpus_agrees_on_every_address(
    fixture: str, version: str, cpus: int, allocs: int, rox: bool
) -> None:
    text = console_log(fixture)
    snapshot = procfs.parse_vmallocinfo(console_section(text, "vmallocinfo-start"))
    chunk = [r for r in snapshot if r.caller and r.caller.startswith("execmem_alloc") and r.size == (2 << 20) + 4096]
    assert bool(chunk) == rox
    space = procfs.restore(snapshot, layouts.X86_64_LA57, cpus=cpus, profile=profiles.for_version(version),
                           percpu_only=True)  # fmt: skip
    report = trace.replay(trace.parse_trace(console_section(text, "trace")), space)
    assert report.allocs == allocs and report.disagreements == () and report.unknown_frees == ()


def test_the_2_cpu_boots_stacks_need_the_kernels_descent(monkeypatch: pytest.MonkeyPatch) -> None:
    # The 2-CPU boot's replay with every search the lowest fit (the rule before the rbtree) misses four
    # 16 KiB-aligned stacks: its agreement is the descent's doing. (At 8 CPUs the node pools serve the stacks,
    # and both rules agree on those captures.)
    from vmapsim.freetree import FreeTree

    lowest = FreeTree.alloc
    monkeypatch.setattr(FreeTree, "alloc", lambda self, size, align, vstart, vend, descend=False, adjust=True:
                        lowest(self, size, align, vstart, vend))  # fmt: skip
    text = console_log("qemu-6.12-2cpu-from-boot.txt.xz")
    snapshot = procfs.parse_vmallocinfo(console_section(text, "vmallocinfo-start"))
    space = procfs.restore(snapshot, layouts.X86_64_LA57, cpus=2, profile=profiles.LINUX_6_11, percpu_only=True)
    misses = trace.replay(trace.parse_trace(console_section(text, "trace")), space).disagreements
    assert len(misses) == 4 and {d.event.align for d in misses} == {16384}


def test_an_allocation_served_from_another_cpus_node_pool_is_recognised() -> None:
    # 6.9+: node_alloc() picks the pool from the CPU the task was on then; the trace line may name another
    # CPU (the task moved). The kernel's VA sits in CPU 1's pool, the line says CPU 0: it agrees, counted apart.
    s = VmapSpace(layouts.X86_64, cpus=2, profile="6.12")
    w = layouts.X86_64.vmalloc
    a = s.alloc_vmap_area(8192, vstart=w.start, vend=w.end, cpu=1)
    s.alloc_vmap_area(8192, vstart=w.start, vend=w.end, cpu=1)
    s.free_vmap_area(a.start)
    s.replay_purge(full_decay=False)  # a.start now waits in CPU 1's node pool
    ev = trace.TraceEvent("alloc", 0, 1.0, "t", a.start, 8192, 4096, w.start, w.end)
    report = trace.replay([ev], s)
    assert report.disagreements == () and report.other_node == (ev,)
    assert "1 from another CPU's node pool" in report.summary() and s.area(a.start).size == 8192
    # before 6.9 there are no pools, so the same event is a plain disagreement
    old = VmapSpace(layouts.X86_64, cpus=2, profile="6.5")
    old.alloc_vmap_area(8192, vstart=w.start, vend=w.end)
    assert trace.replay([attrs.evolve(ev, addr=w.start + 8192 * 4)], old).other_node == ()


def test_an_allocation_that_got_what_a_purge_on_another_cpu_was_freeing_replays_after_that_purge() -> None:
    # 6.12 on 4 CPUs traced from boot: kworker/3:1 frees a module's init data (line 250); init on CPU 1 gets that
    # very address (line 252) before CPU 3's purge_vmap_area_lazy line (256), which the kernel emits only after
    # the purge has put the areas back. Replayed in line order the allocation would find it still lazy.
    text = console_log("qemu-6.12-4cpu-from-boot-purge-race.txt.xz")
    snapshot = procfs.parse_vmallocinfo(console_section(text, "vmallocinfo-start"))
    space = procfs.restore(snapshot, layouts.X86_64_LA57, cpus=4, profile=profiles.LINUX_6_11, percpu_only=True)
    events = trace.parse_trace(console_section(text, "trace"))
    (purge,) = [e for e in events if e.line == 256]
    assert purge.kind == "purge" and purge.cpu == 3
    report = trace.replay(events, space)
    assert report.allocs == 212 and report.disagreements == () and report.unknown_frees == ()
    space._check()


@pytest.mark.parametrize("fixture,cpus", [("qemu-5.10-2cpu-dup-dm-mod.txt.xz", 2),
                                          ("qemu-5.10-4cpu-dup-dm-mod.txt.xz", 4),
                                          ("qemu-5.10-8cpu-dup-dm-mod.txt.xz", 8)])  # fmt: skip
def test_5_10_duplicates_return_and_allocate_per_caller_as_the_model_says(fixture: str, cpus: int) -> None:
    # Debian 11's 5.10 under QEMU, N finit_module(dm_mod) at once: one 0, N - 1 -EEXIST from
    # add_unformed_module(), and every caller -- the refused ones too -- allocated a read buffer, core and
    # init (nothing before 6.4 stops a duplicate earlier); the model's 5.10 path, not fitted on these boots
    from tests.realkernel.harness import duplicates, model_duplicates

    rets, counts = duplicates(console_log(fixture))
    model = model_duplicates("5.10", "dm_mod", cpus, "finit")
    assert rets == sorted(o.ret for o in model.outcomes) == [-17] * (cpus - 1) + [0]
    assert counts == sorted(len(o.allocations) for o in model.outcomes) == [3] * cpus
