"""procfs: exact /proc/vmallocinfo and meminfo text, and parsing real text back."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vmapsim import InvalidArgument, ParseError, VmapSpace, layouts, procfs, profiles
from vmapsim.units import MiB

PAGE = 4096
X = layouts.X86_64

# Lines in the shape real kernels print (6.1/6.12 under QEMU, kptr_restrict=1, as root).
REAL = """\
0xffffc90000000000-0xffffc90000005000   20480 irq_init_percpu_irqstack+0x114/0x1a0 vmap
0xffffc90000005000-0xffffc90000007000    8192 acpi_os_map_iomem+0x1b1/0x1e0 phys=0x000000007ffe0000 ioremap
0xffffc90000014000-0xffffc90000019000   20480 kernel_clone+0xc8/0x3e0 pages=4 vmalloc N0=4
0xffffc9000001c000-0xffffc90000275000 2461696 load_module+0x1b2/0x2960 pages=600 vmalloc vpages N0=600
0xffffc90000275000-0xffffc90000278000   12288 load_module+0x1b2/0x2960 pages=2 vmalloc N0=2
0xffffc90000300000-0xffffc90000400000 1048576 vm_map_ram
0xffffffffc0000000-0xffffffffc0003000   12288 load_module+0x2de/0x2960 [floppy] pages=2 vmalloc N0=2
0xffffe8ffffc00000-0xffffe8ffffe00000 2097152 pcpu_get_vm_areas+0x0/0x1b0 vmalloc
0xffffc90000008000-0xffffc9000000a000    8192 unpurged vm_area
"""


def test_render_is_exactly_what_s_show_prints() -> None:
    s = VmapSpace(X)
    a = s.vmalloc(3 * PAGE, caller="kernel_clone+0xc8/0x3e0")
    s.ioremap(8192, phys=0x7FFE0000, caller="acpi_os_map_iomem+0x1b1/0x1e0")
    s.vmap(4, caller="irq_init_percpu_irqstack+0x114/0x1a0")
    big = s.vmalloc(600 * PAGE, caller="load_module+0x1b2/0x2960")
    s.vm_map_ram(1)
    s.pcpu_get_vm_areas([0], [2 * MiB], 2 * MiB)
    s.vfree(a)
    assert procfs.render_vmallocinfo(s) == (
        "0xffffc90000004000-0xffffc90000007000   12288 acpi_os_map_iomem+0x1b1/0x1e0 phys=0x000000007ffe0000 ioremap\n"
        "0xffffc90000007000-0xffffc9000000c000   20480 irq_init_percpu_irqstack+0x114/0x1a0 vmap\n"
        "0xffffc9000000c000-0xffffc90000265000 2461696 load_module+0x1b2/0x2960 pages=600 vmalloc vpages N0=600\n"
        "0xffffc90000265000-0xffffc90000268000   12288 load_module+0x1b2/0x2960 pages=2 vmalloc N0=2\n"
        "0xffffc90000300000-0xffffc90000400000 1048576 vm_map_ram\n"
        "0xffffe8ffffc00000-0xffffe8ffffe00000 2097152 pcpu_get_vm_areas vmalloc\n"
        "0xffffc90000000000-0xffffc90000004000   16384 unpurged vm_area\n"
    )
    assert big == X.vmalloc.start + 0xC000
    restricted = procfs.render_vmallocinfo(s, restricted=True, numa=False)
    assert restricted.splitlines()[0] == (
        "0x0000000000000000-0x0000000000000000   12288 acpi_os_map_iomem+0x1b1/0x1e0 phys=0x000000007ffe0000 ioremap"
    )
    assert all(r.start is None for r in procfs.parse_vmallocinfo(restricted))


def test_lazy_neighbours_merge_up_to_6_8_and_stay_apart_from_6_9() -> None:
    for profile, lines in ((profiles.LINUX_6_3, 1), (profiles.LINUX_6_9, 2)):
        s = VmapSpace(X, cpus=2, profile=profile)
        a, b = s.vmalloc(PAGE), s.vmalloc(PAGE)
        s.vfree(a)
        s.vfree(b)
        assert procfs.render_vmallocinfo(s).count("unpurged vm_area") == lines


def test_6_9_lists_areas_node_by_node() -> None:
    s = VmapSpace(X, cpus=2, profile=profiles.LINUX_6_11)
    addrs = [s.vmalloc(15 * PAGE) for _ in range(3)]  # 64 KiB each: zones 0, 1, 2 -> nodes 0, 1, 0
    starts = [r.start for r in procfs.parse_vmallocinfo(procfs.render_vmallocinfo(s))]
    assert starts == [addrs[0], addrs[2], addrs[1]]


def test_5_18_prints_every_vm_less_area_as_vm_map_ram() -> None:
    for profile, shown in ((profiles.LINUX_5_18, True), (profiles.LINUX_6_3, False)):
        s = VmapSpace(X, profile=profile)
        s.alloc_vmap_area(PAGE, vstart=MiB, vend=2 * MiB)
        assert ("vm_map_ram" in procfs.render_vmallocinfo(s)) is shown


def test_parse_real_text() -> None:
    recs = procfs.parse_vmallocinfo(REAL)
    assert [r.kind for r in recs] == ["vm"] * 5 + ["vm_map_ram", "vm", "vm", "unpurged"]
    io = recs[1]
    assert (io.phys, io.flags, io.caller, io.vm_flags) == (0x7FFE0000, ("ioremap",), "acpi_os_map_iomem+0x1b1/0x1e0", 1)
    assert recs[3].flags == ("vmalloc", "vpages") and recs[3].pages == 600 and recs[3].numa == ((0, 600),)
    assert recs[6].caller == "load_module+0x2de/0x2960 [floppy]" and recs[6].pages == 2
    assert recs[7].pages == 0 and recs[8].size == 8192


def test_restore_rebuilds_the_snapshot_and_renders_it_back() -> None:
    space = procfs.restore(procfs.parse_vmallocinfo(REAL), X)
    space._check()
    again = procfs.parse_vmallocinfo(procfs.render_vmallocinfo(space, numa=True))
    assert sorted(again, key=lambda r: (r.kind == "unpurged", r.start or 0)) == sorted(
        procfs.parse_vmallocinfo(REAL), key=lambda r: (r.kind == "unpurged", r.start or 0)
    )
    assert space.lazy_pages == 2
    main = space.area(0xFFFFC9000001C000)
    assert main.pages_area == 0xFFFFC90000275000 and space.area(main.pages_area).nested
    space.vfree(main.start)  # frees the page array with it
    assert space.lazy_pages == 2 + 601 + 3
    assert space.vmalloc(PAGE) == 0xFFFFC9000000A000  # first gap big enough, after the lazy area


def test_restore_needs_real_pointers_and_consistent_areas() -> None:
    hashed = "0x000000003c1d6a2b-0x00000000c7bb03b4    8192 f+0x1/0x2 pages=1 vmalloc N0=1\n"
    with pytest.raises(InvalidArgument, match="kptr_restrict=1"):
        procfs.restore(procfs.parse_vmallocinfo(hashed), X)
    overlapping = REAL + "0xffffc90000000000-0xffffc90000002000    8192 unpurged vm_area\n"
    with pytest.raises(InvalidArgument):
        procfs.restore(procfs.parse_vmallocinfo(overlapping), X)


@pytest.mark.parametrize(
    "text",
    ["hello\n", "0xffff-0xzz 12 vmalloc\n", "0xffffc90000000000-0xffffc90000002000    8192 f pages=x\n"],
)
def test_parse_errors_name_the_line(text: str) -> None:
    with pytest.raises(ParseError) as e:
        procfs.parse_vmallocinfo("\n" + text, source="snap.txt")
    assert str(e.value).startswith("snap.txt:2:")


def test_meminfo() -> None:
    s = VmapSpace(X)
    s.vmalloc(10 * PAGE)
    s.vmap(5)
    text = procfs.render_meminfo(s)
    assert text == "VmallocTotal:   34359738367 kB\nVmallocUsed:          40 kB\nVmallocChunk:          0 kB\n"
    assert procfs.parse_meminfo(text) == {"VmallocTotal": 34359738367, "VmallocUsed": 40, "VmallocChunk": 0}
    assert procfs.render_meminfo(VmapSpace(layouts.ARM64_48)).startswith("VmallocTotal:   133143592960 kB")
    with pytest.raises(ParseError):
        procfs.parse_meminfo("VmallocUsed: lots\n")


@given(st.text(max_size=200))
def test_parser_raises_only_parse_errors(text: str) -> None:
    with contextlib.suppress(ParseError):
        procfs.parse_vmallocinfo(text)


# ------------------------------------------------------------------ summaries of a machine's file


def _qemu_snapshot(name: str = "qemu-6.12-4cpu.txt") -> str:
    from tests.helpers import console_log, console_section

    return console_section(console_log(name), "vmallocinfo-start")


def test_a_summary_adds_up_to_the_file() -> None:
    from vmapsim.procfs import parse_vmallocinfo, summarize_vmallocinfo

    records = parse_vmallocinfo(_qemu_snapshot())
    s = summarize_vmallocinfo(records, layouts.X86_64_LA57, cpus=4)
    assert s.areas == len(records) and s.total_bytes == sum(r.size for r in records)
    busy = sum(r.size for r in records if r.kind != "unpurged")
    assert sum(b for _, _, b in s.callers) == sum(b for _, _, b in s.kinds) == busy
    assert sum(n for _, n, _ in s.callers) == sum(r.kind != "unpurged" for r in records)
    assert [b for _, _, b in s.callers] == sorted((b for _, _, b in s.callers), reverse=True)
    assert s.lazy_max_bytes == 3 * 32 << 20  # fls(4) = 3
    vmalloc = next(w for w in s.windows if w[0] == "vmalloc")
    assert all(vmalloc[3][i][1] - vmalloc[3][i][0] >= vmalloc[3][i + 1][1] - vmalloc[3][i + 1][0]
               for i in range(len(vmalloc[3]) - 1))  # fmt: skip
    # the next vmalloc lands in the lowest free range that fits, as vmapsim's replays of this file found
    first_fit = min(a for a, e in procfs.restore(records, layouts.X86_64_LA57, cpus=4).free_ranges("vmalloc")
                    if e - a >= 8192)  # fmt: skip
    assert dict(((w, n), a) for w, n, a in s.next)[("vmalloc", 4096)] == first_fit


def test_a_summary_of_hashed_pointers_sums_without_addresses() -> None:
    import re

    from vmapsim.procfs import parse_vmallocinfo, summarize_vmallocinfo

    text = _qemu_snapshot()
    hashed = re.sub(r"0x[0-9a-f]{16}-0x[0-9a-f]{16}", "0x00000000deadbeef-0x00000000cafef00d", text)
    real = summarize_vmallocinfo(parse_vmallocinfo(text), layouts.X86_64_LA57, cpus=4)
    blind = summarize_vmallocinfo(parse_vmallocinfo(hashed), layouts.X86_64_LA57, cpus=4)
    assert blind.hashed and not real.hashed and blind.windows == () == blind.next
    assert (blind.callers, blind.kinds, blind.lazy_bytes) == (real.callers, real.kinds, real.lazy_bytes)


def test_vmallocinfo_command(tmp_path: Path) -> None:
    import subprocess
    import sys

    f = tmp_path / "vmallocinfo"
    f.write_text(_qemu_snapshot())
    r = subprocess.run([sys.executable, "-m", "vmapsim", "vmallocinfo", str(f), "--cpus", "4"], capture_output=True,
                       text=True)  # fmt: skip
    assert r.returncode == 0 and "lazily freed, not yet purged: 0 B of the 96.0 MiB" in r.stdout
    assert "modules window:" in r.stdout and "the next allocations would get" in r.stdout
    f.write_text("garbage\n")
    r = subprocess.run([sys.executable, "-m", "vmapsim", "vmallocinfo", str(f)], capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "not a vmallocinfo line" in r.stderr


# ------------------------------------------------------------------ crash's kmem -v

CRASH = Path(__file__).parent / "data" / "crash-kmem-v.txt"
CRASH_HEADER = "   VMAP_AREA         VM_STRUCT                 ADDRESS RANGE                SIZE"


def test_crash_kmem_v_reads_as_vm_areas_with_real_pointers() -> None:
    text = CRASH.read_text()
    assert text.startswith("crash> kmem -v\n") and procfs.is_crash_kmem_v(text)
    records = procfs.parse_vmallocinfo(text, source="crash.txt")
    assert len(records) == 25 and {(r.kind, r.caller, r.flags, r.pages) for r in records} == {("vm", None, (), 0)}
    assert records[0] == procfs.VmallocInfoRecord(0xFFA0000000000000, 0xFFA0000000005000, 20480)
    assert all(r.start is not None and r.end is not None and r.end - r.start == r.size for r in records)
    # the header may be left off, and so may the prompt: rows alone are crash's too
    rows = [line for line in text.splitlines() if line[:1] == "f"]
    assert procfs.parse_vmallocinfo("\n".join(rows)) == records
    assert not procfs.is_crash_kmem_v(_qemu_snapshot()) and not procfs.is_crash_kmem_v("crash> kmem -v\n")


def test_a_summary_of_crash_kmem_v_is_the_procfs_one_of_the_same_areas() -> None:
    crash = procfs.parse_vmallocinfo(CRASH.read_text())
    starts = {r.start for r in crash}
    same = [r for r in procfs.parse_vmallocinfo(_qemu_snapshot()) if r.start in starts]  # the sample's source
    assert len(same) == len(crash)
    from_crash = procfs.summarize_vmallocinfo(crash, layouts.X86_64_LA57, cpus=4)
    from_proc = procfs.summarize_vmallocinfo(same, layouts.X86_64_LA57, cpus=4)
    assert not from_crash.hashed and (from_crash.windows, from_crash.next) == (from_proc.windows, from_proc.next)
    assert from_crash.kinds == (("vm", 25, from_proc.total_bytes),) and from_crash.callers[0][0] == "(none)"
    modules = next(w for w in from_crash.windows if w[0] == "modules")
    assert modules[2] == 2101248  # bpf_prog_pack_alloc's 2 MiB + guard page, as in the snapshot


def test_the_vmallocinfo_command_reads_crash_kmem_v() -> None:
    import json
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "vmapsim", "vmallocinfo", str(CRASH), "--cpus", "4"],
                       capture_output=True, text=True)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "modules window: 2.0 MiB pinned of 1008.0 MiB" in r.stdout and "largest free:" in r.stdout
    assert "note: crash's kmem -v lists the areas that have a vm_struct" in r.stdout
    assert "layout x86_64_la57" in r.stdout
    doc = json.loads(subprocess.run([sys.executable, "-m", "vmapsim", "vmallocinfo", str(CRASH), "--json"],
                                    capture_output=True, text=True, check=True).stdout)  # fmt: skip
    assert any(n.startswith("crash's kmem -v") for n in doc["notes"]) and doc["windows"]


@pytest.mark.parametrize(
    "lines,lineno,needle",
    [
        ([CRASH_HEADER, "ff11000003a1c000  ff11000003b27200  ffa0000000000000 - ffa0000000005000"], 3,
         "not a row of crash's kmem -v"),
        ([CRASH_HEADER, "ff11000003a1c000  ff11000003b27200  ffa0000000000000 - ffa0000000005000    4096"], 3,
         "range 0xffa0000000000000-0xffa0000000005000 is not SIZE 4096 bytes"),
        ([CRASH_HEADER, "ff11000003a1c000  ff11000003b27200  ffa0000000000000 - ffa0000000005000    20480",
          CRASH_HEADER], 4, "header after its rows"),
        (["crash> kmem -v", CRASH_HEADER, "PAGE  PHYSICAL  MAPPING"], 4, "not a row of crash's kmem -v: 'PAGE"),
        ([CRASH_HEADER, "0  0  " + "f" * 41 + " - ffa0000000005000    20480"], 3, "start"),
    ],
)  # fmt: skip
def test_a_bad_crash_line_is_a_parse_error_naming_it(lines: list[str], lineno: int, needle: str) -> None:
    text = "\n" + "\n".join(lines) + "\n"
    with pytest.raises(ParseError, match=needle) as e:
        procfs.parse_vmallocinfo(text, source="crash.txt")
    assert str(e.value).startswith(f"crash.txt:{lineno}:")


@given(st.text(max_size=200))
def test_crash_parser_raises_only_parse_errors(text: str) -> None:
    with contextlib.suppress(ParseError):
        procfs.parse_vmallocinfo(CRASH_HEADER + "\n" + text)
