"""Bad input gets a typed vmapsim error naming it, and a failed call changes nothing.

Each case below was once a bare ValueError/TypeError/AttributeError/RecursionError,
a silent wrong answer, or a half-done change; the fuzz tests hold every parser to
ParseError (and the checks to InvalidArgument) on generated text.
"""

from __future__ import annotations

import contextlib
import json
import lzma
import math
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers import snapshot
from vmapsim import (
    Catalog,
    InvalidArgument,
    ModuleFileError,
    ParseError,
    Request,
    VmapsimError,
    VmapSpace,
    layouts,
    procfs,
    profiles,
    simulate,
    trace,
)
from vmapsim.checks import MAX_DIGITS, load_json, parse_number
from vmapsim.loader import costs
from vmapsim.loader.pipelines import proposal_named
from vmapsim.loader.schedule import Schedule
from vmapsim.modules import KernelConfig, read_module
from vmapsim.modules.scan import kernel_version
from vmapsim.scenario import image_spec
from vmapsim.sweeps import Table
from vmapsim.workloads import (
    PRESETS,
    Machine,
    Modprobe,
    kdevops_guest,
    read_requests,
    udev_boot,
    udev_workers,
    unstripped,
)

BIG = "9" * 5000
X = layouts.X86_64


def _space() -> VmapSpace:
    s = VmapSpace(X, cpus=2, profile="6.12")
    s.vmalloc(8192)
    s.vfree(s.vmalloc(3 << 20))  # lazy, with its page array
    s.vm_map_ram(3)
    s.pcpu_get_vm_areas([0], [2 << 20], 2 << 20)
    return s


SPACE_CALLS: dict[str, Callable[[VmapSpace], object]] = {
    "vm_unmap_ram str": lambda s: s.vm_unmap_ram("x", 100),  # type: ignore[arg-type]
    "vm_unmap_ram float": lambda s: s.vm_unmap_ram(1.5, 100),  # type: ignore[arg-type]
    "vm_unmap_ram list": lambda s: s.vm_unmap_ram([], 100),  # type: ignore[arg-type]
    "pcpu float": lambda s: s.pcpu_get_vm_areas([0.5], [4096]),  # type: ignore[list-item]
    "pcpu str": lambda s: s.pcpu_get_vm_areas(["a"], [4096]),  # type: ignore[list-item]
    "pcpu None": lambda s: s.pcpu_get_vm_areas(None, [4096]),  # type: ignore[arg-type]
    "pcpu free twice": lambda s: s.pcpu_free_vm_areas([s.areas()[-1].start] * 2),
    "huge size": lambda s: s.vmalloc(10**5000),
    "bool size": lambda s: s.vmalloc(True),
    "bool cpu": lambda s: s.vmalloc(4096, cpu=True),
    "phys -1": lambda s: s.ioremap(4096, phys=-1),
    "phys str": lambda s: s.ioremap(4096, phys="x"),  # type: ignore[arg-type]
    "caller int": lambda s: s.vmalloc(4096, caller=123),  # type: ignore[arg-type]
    "bogus pages_area": lambda s: s.reserve(0xFFFFC90100000000, 8192, pages_area=0xFFFFC90200000000),
    "lazy with pages": lambda s: s.reserve(0xFFFFC90100000000, 8192, lazy=True, nr_pages=1),
    "flag not bool": lambda s: s.free_vmap_area(s.areas()[0].start, lazy=1),  # type: ignore[arg-type]
    "simulate bad cpu": lambda s: simulate([Request("loop", cpu=5)], space=s, cpus=2, catalog="debian-6.12-amd64"),
    "simulate bad run": lambda s: simulate([Request("loop")], space=s, cpus=2, load_offset=-4096),
    "replay bad event": lambda s: trace.replay([*_events(), "junk"], s),  # type: ignore[list-item]
    "replay bad size": lambda s: trace.replay([*_events(), _alloc(size=12345)], s),
}


def _alloc(size: int = 8192) -> trace.TraceEvent:
    w = X.vmalloc
    return trace.TraceEvent("alloc", 0, 1.0, "t", w.start + (64 << 20), size, 4096, w.start, w.end)


def _events() -> list[trace.TraceEvent]:
    return [_alloc(), trace.TraceEvent("purge", 0, 2.0, "t")]


@pytest.mark.parametrize("name", sorted(SPACE_CALLS))
def test_bad_calls_raise_typed_errors_and_change_nothing(name: str) -> None:
    s = _space()
    before = snapshot(s)
    with pytest.raises(InvalidArgument):
        SPACE_CALLS[name](s)
    assert snapshot(s) == before
    s._check()


def test_a_vfree_of_an_area_whose_page_array_is_gone_changes_nothing() -> None:
    s = VmapSpace(X)
    a = s.vmalloc(3 << 20)
    array = s.area(a).pages_area
    s.replay_free(array)  # the trace freed the array on its own
    before = snapshot(s)
    with pytest.raises(InvalidArgument, match="page array"):
        s.vfree(a)
    assert snapshot(s) == before


@pytest.mark.parametrize(
    "call",
    [
        lambda: VmapSpace(X, profile=3),  # type: ignore[arg-type]
        lambda: VmapSpace(3),  # type: ignore[arg-type]
        lambda: VmapSpace(X, cpus=9000),
        lambda: profiles.for_version(None),  # type: ignore[arg-type]
        lambda: simulate([], cpus="4"),  # type: ignore[arg-type]
        lambda: simulate([], pipeline=123),
        lambda: simulate([], catalog=123),
        lambda: simulate(None),  # type: ignore[arg-type]
        lambda: simulate([42]),  # type: ignore[list-item]
        lambda: simulate([Request("loop", time=math.nan)], catalog="debian-6.12-amd64"),
        lambda: simulate([], workers=-1),
        lambda: costs.CostModel(read=0),
        lambda: costs.CostModel(jitter=math.nan),
        lambda: kdevops_guest(0),
        lambda: unstripped(Catalog.builtin("debian-6.12-amd64"), math.nan),
        lambda: Catalog.load(None),  # type: ignore[arg-type]
        lambda: Catalog.scan(None),  # type: ignore[arg-type]
        lambda: Catalog.scan("tests/data/modules", jobs=-1),
        lambda: Catalog.scan("tests/data/modules", arch="riscv"),
        lambda: Catalog.scan("tests/data/modules", arch="arm64"),  # the modules are x86-64's
        lambda: Catalog.from_bytes("not bytes"),  # type: ignore[arg-type]
        lambda: Machine.from_text(None),  # type: ignore[arg-type]
        lambda: procfs.is_crash_kmem_v(b"crash> kmem -v"),  # type: ignore[arg-type]
        lambda: Modprobe(("loop",), time=math.nan),
        lambda: Modprobe(("loop",), syscall="ioctl"),
        lambda: Modprobe("loop"),  # type: ignore[arg-type]  # a lone name, once read as its letters
        lambda: Machine("m", "cpu:type:x86", devices="pci:v00008086"),  # type: ignore[arg-type]
        lambda: Machine("m", "cpu:type:x86", ram="3G"),  # type: ignore[arg-type]
        lambda: Machine("m", "cpu:type:x86", fails=(("amd64_edac", "ENODEV"),)),  # type: ignore[arg-type]
        lambda: udev_boot(Catalog.builtin("debian-6.12-amd64"), "no-such-machine", 4),
        lambda: udev_boot(123, "qemu-kvm", 4),  # type: ignore[arg-type]
        lambda: udev_boot(Catalog.builtin("debian-6.12-amd64"), "qemu-kvm", 4, jitter=math.nan),
        lambda: udev_workers(0, 8 << 30),
        lambda: Catalog.builtin("debian-6.12-amd64").match_alias(None),  # type: ignore[arg-type]
    ],
)
def test_bad_arguments_raise_invalid_argument(call: Callable[[], object]) -> None:
    with pytest.raises(InvalidArgument):
        call()


@pytest.mark.parametrize(
    "call,needle",
    [
        (lambda: Schedule.from_json(None), "schedule: data=None"),  # type: ignore[arg-type]
        (lambda: Machine.from_json(None), "machine: data=None"),  # type: ignore[arg-type]
        (lambda: Table.from_json(None), "sweep: data=None"),  # type: ignore[arg-type]
        (lambda: Table.from_json(["rows"]), r"sweep: data=\['rows'\]"),  # type: ignore[arg-type]
        (lambda: trace.parse_trace(None), "trace: text=None"),  # type: ignore[arg-type]
        (lambda: procfs.restore([1], X), "record 1: 1 is not a VmallocInfoRecord"),  # type: ignore[list-item]
        (lambda: procfs.restore(5, X), "records=5"),  # type: ignore[arg-type]
    ],
)
def test_readers_given_no_text_name_what_they_got(call: Callable[[], object], needle: str) -> None:
    with pytest.raises(InvalidArgument, match=needle):
        call()


def test_names_are_accepted_where_users_pass_them() -> None:
    s = VmapSpace("x86_64", profile="6.12")
    assert s.layout is X and s.profile is profiles.for_version("6.12")
    cat = Catalog.builtin("debian-6.12-amd64")
    assert udev_boot(cat, "qemu-kvm", 4) == udev_boot(cat, PRESETS["qemu-kvm"], 4)


@pytest.mark.parametrize(
    "parse",
    [
        lambda: trace.parse_trace("x-1 [000] . 1.5: alloc_vmap_area: size=" + BIG),
        lambda: trace.parse_trace("x-1 [000] . 1.5: alloc_vmap_area: " + "a=1 " * 2000),
        lambda: procfs.parse_vmallocinfo(f"0xffffc90000000000-0xffffc90000002000 {BIG} f+0x1/0x2 pages=1 vmalloc"),
        lambda: procfs.parse_vmallocinfo("0xffffc90000000000-0xffffc90000002000 8192 f+0x1/0x2 pages=-1 vmalloc"),
        lambda: procfs.parse_meminfo("VmallocUsed: " + BIG + " kB"),
        lambda: read_requests('{"cpu": ' + BIG + "}"),
        lambda: read_requests("[" * 100000),
        lambda: read_requests('{"module": "loop", "time": NaN}'),
        lambda: read_requests('{"module": "loop", "time": 1e999}'),
        lambda: read_requests('{"module": "loop", "cpu": true}'),
        lambda: read_requests('{"module": 3}'),
        lambda: read_requests("[]"),
        lambda: read_requests("time,cpu,module\n1,x,loop\n", fmt="csv"),
        lambda: read_requests("when,where\n", fmt="auto"),
        lambda: procfs.parse_vmallocinfo(f"0 0 ffffc90000000000 - ffffc90000002000 {BIG}"),
        lambda: procfs.parse_vmallocinfo("0 0 ffffc90000000000 - ffffc90000002000 4096"),
    ],
)
def test_parsers_raise_only_parse_error(parse: Callable[[], object]) -> None:
    with pytest.raises(ParseError):
        parse()


@given(st.text(st.characters(), max_size=50) | st.from_regex(r"\A[0-9]{1,45}\Z"))
def test_one_number_parser_reads_ascii_digits_alone(token: str) -> None:
    # str.isdigit() says yes to "²" and "٣", and int() reads "٣" but not "²": neither decides alone
    if token.strip().isascii() and token.strip().isdigit() and len(token.strip()) <= MAX_DIGITS:
        assert parse_number(token, what="n", decimal=True) == int(token)
    else:
        with pytest.raises(InvalidArgument, match="expected a decimal number"):
            parse_number(token, what="n", decimal=True)
        with pytest.raises(ParseError, match="src:3: n"):
            parse_number(token, what="n", source="src", line=3, decimal=True)


@pytest.mark.parametrize(
    "call",
    [
        lambda: proposal_named("concurrency-limit:²"),
        lambda: proposal_named("concurrency-limit:٣"),
        lambda: image_spec("x:text=2²K", Catalog.builtin("debian-6.12-amd64")),
        lambda: image_spec("x:text=٣K", Catalog.builtin("debian-6.12-amd64")),
        lambda: layouts.by_name("i386(vmalloc=٦٤M)"),
        lambda: profiles.release("٦.12"),
    ],
)
def test_other_scripts_digits_are_refused_naming_them(call: Callable[[], object]) -> None:
    with pytest.raises(InvalidArgument, match=r"[²٣٦]"):
        call()


def test_a_release_of_thousands_of_digits_is_no_version() -> None:
    assert kernel_version("6." + BIG) == (0, 0) and kernel_version("6.12.1 SMP") == (6, 12)


def test_a_leading_zero_is_read_as_decimal() -> None:
    line = "x-1 [000] . 1.5: alloc_vmap_area: va_start: 4096 size=08192 align=4096 vstart=0 vend=65536 failed=0"
    assert trace.parse_trace(line)[0].size == 8192


def _catalog_file(tmp_path: Path, doc: object) -> Path:
    p = tmp_path / "c.json.xz"
    p.write_bytes(lzma.compress(json.dumps(doc).encode()))
    return p


def test_catalog_files_are_checked_field_by_field(tmp_path: Path) -> None:
    good = tmp_path / "good.json.xz"
    Catalog.builtin("debian-6.12-amd64").save(good)
    doc = json.loads(lzma.decompress(good.read_bytes()))
    bad_docs: list[object] = [[], {"format": doc["format"]}, "x", {**doc, "config": []}]
    bad_docs += [{**doc, "modules": [["x"] * len(doc["fields"])]}, {**doc, "modules": [doc["modules"][0][:-1]]}]
    i = doc["fields"].index("text")
    row = list(doc["modules"][0])
    row[i] = -1
    bad_docs.append({**doc, "modules": [row]})
    bad_docs.append({**doc, "modules": [doc["modules"][0]] * 2})  # the same name twice
    for bad in bad_docs:
        with pytest.raises(InvalidArgument, match="not a readable vmapsim catalog"):
            Catalog.load(_catalog_file(tmp_path, bad))
    deep = tmp_path / "deep.json.xz"
    deep.write_bytes(lzma.compress(b"[" * 100000))
    with pytest.raises(InvalidArgument):
        Catalog.load(deep)
    assert len(Catalog.load(good)) == len(Catalog.builtin("debian-6.12-amd64"))


def test_a_decompression_bomb_is_refused_without_expanding_it() -> None:
    bomb = zstandard.ZstdCompressor(level=19).compress(bytes(256 << 20))
    with pytest.raises(ModuleFileError, match="not an ELF file"):
        read_module(bomb, "bomb.ko.zst", KernelConfig())
    elf_then_zeros = lzma.compress(b"\x7fELF" + bytes(8 << 20))
    from vmapsim.modules.compression import decompress

    with pytest.raises(ModuleFileError, match="more than the limit"):
        decompress(elf_then_zeros, "xz", "big.ko.xz", limit=1 << 20)


def test_a_scan_reports_every_bad_file_and_keeps_every_good_one(tmp_path: Path) -> None:
    import os
    import shutil

    src = Path(__file__).parent / "data" / "modules"
    tree = tmp_path / "tree"
    shutil.copytree(src, tree / "real")
    (tree / "loop.ko").symlink_to("loop.ko")  # a symlink loop
    os.mkfifo(tree / "fifo.ko")
    (tree / "link").symlink_to(tree / "real")  # a symlinked directory: walked, its modules counted once
    (tree / "bomb.ko.zst").write_bytes(zstandard.ZstdCompressor().compress(bytes(16 << 20)))
    cat = Catalog.scan(tree, jobs=1)
    want = {p.name.split(".ko")[0].replace("-", "_") for p in src.iterdir() if ".ko" in p.name}
    assert set(cat.modules) == want
    reasons = {p.path: p.reason for p in cat.problems}
    assert "loop.ko" in reasons and reasons["fifo.ko"] == "not a regular file"
    assert "not an ELF file" in reasons["bomb.ko.zst"]


def test_replay_refuses_a_trace_without_allocations(tmp_path: Path) -> None:
    snap = tmp_path / "snap.txt"
    snap.write_text("0xffffc90000000000-0xffffc90000002000    8192 x+0x0/0x1 pages=1 vmalloc\n")
    empty = tmp_path / "empty.txt"
    empty.write_text("# tracer: nop\n")
    r = subprocess.run([sys.executable, "-m", "vmapsim", "replay", str(snap), str(empty), "--kernel", "6.12"],
                       capture_output=True, text=True)  # fmt: skip
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "no vmalloc allocation events" in r.stderr


@pytest.mark.parametrize(
    "argv",
    [
        ["boot", "--cpus", "1000000000"],
        ["load", "--cpus", "1000000000", "loop"],
        ["boot", "--jitter", "nan"],
        ["boot", "--cost-jitter", "nan"],
        ["boot", "--plot", "."],
        ["scan", "tests/data/modules", "--workers", "-1"],
        ["replay", "a", "b", "--show", "-1"],
        ["load", "--cpus", "9" * 5000, "loop"],
        ["load", "loop", "--pipeline", "concurrency-limit:²"],
        ["load", "loop", "--image", "x=loop:text=2²K"],
        ["sweep", "--kmod", "abc"],
        ["compare", "--kmod", "abc", "--kernel", "6.3,6.12"],
        ["sweep", "--cpus", "1-99999999999"],
        ["sweep", "--cpus", "1-8192", "--seeds", "100000"],
        ["demo", "--kernel", "7.4"],
        ["replay", "a", "b", "--kernel", "7.4"],
        ["load", "loop", "--kernel", ""],
        ["demo", "--kernel", ""],
        ["compare", "--kernel", "6.3,6.12", "--executor", "bogus"],
        ["worst", "--budget", "1000000", "--cpus", "0"],
    ],
)
def test_cli_bad_options_are_one_line_errors(argv: list[str]) -> None:
    r = subprocess.run([sys.executable, "-m", "vmapsim", *argv], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and r.stdout == "" and r.stderr.count("\n") == 1, r.stderr
    assert r.stderr.startswith("vmapsim: error: ") and "Traceback" not in r.stderr


def test_cli_bad_request_files_are_one_line_errors(tmp_path: Path) -> None:
    bodies = ['{"module": "loop", "time": NaN}', '{"module": "loop", "cpu": ' + BIG + "}", "[" * 50000]
    for i, body in enumerate(bodies):
        f = tmp_path / f"r{i}.jsonl"
        f.write_text(body + "\n")
        r = subprocess.run([sys.executable, "-m", "vmapsim", "load", "--requests", str(f)], capture_output=True,
                           text=True)  # fmt: skip
        assert r.returncode == 2 and r.stderr.count("\n") == 1 and f"r{i}.jsonl:1:" in r.stderr, r.stderr


# ------------------------------------------------------------------ fuzzing
# Bounded and derandomized in CI (the profile in tests/__init__.py); only the typed errors may escape.

_TRACE_WORDS = st.sampled_from(
    ["alloc_vmap_area:", "free_vmap_area_noflush:", "purge_vmap_area_lazy:", "va_start:", "size=", "align=",
     "vstart=", "vend=", "failed=", "0x", "08192", BIG[:50], "-1", "(fault)", "[000]", "x-1", "1.5:", "\n", " "]
)  # fmt: skip


@given(st.lists(st.one_of(_TRACE_WORDS, st.text(max_size=8)), max_size=40).map("".join))
@settings(max_examples=300)
def test_fuzz_parse_trace(text: str) -> None:
    with contextlib.suppress(ParseError):
        trace.parse_trace(text)


@given(st.lists(st.sampled_from(["0x", "ffffc9", "-", " ", "8192", "pages=", "phys=", "N0=", "vmalloc", "vpages",
                                 "unpurged", "vm_area", "vm_map_ram", BIG[:45], "\n", "f+0x1/0x2"]), max_size=30)
       .map("".join))  # fmt: skip
@settings(max_examples=300)
def test_fuzz_parse_vmallocinfo(text: str) -> None:
    with contextlib.suppress(ParseError):
        procfs.parse_vmallocinfo(text)


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.sampled_from(["module", "cpu", "time", "path",
                                                                               "syscall", "x"]), kids, max_size=4),
    max_leaves=10,
)  # fmt: skip


@given(st.lists(_JSON.map(lambda v: json.dumps(v)) | st.text(max_size=20), max_size=5).map("\n".join))
@settings(max_examples=300)
def test_fuzz_read_requests(text: str) -> None:
    for fmt in ("jsonl", "csv"):
        try:
            for r in read_requests(text, fmt=fmt):
                assert isinstance(r.cpu, int) and r.time >= 0 and math.isfinite(r.time)
        except ParseError:
            pass


@given(st.text(max_size=60))
@settings(max_examples=300)
def test_fuzz_load_json(text: str) -> None:
    with contextlib.suppress(ParseError):
        load_json(text, source="x", max_bytes=50)


@given(st.lists(st.text(max_size=12), max_size=6))
@settings(max_examples=100, deadline=None)
def test_fuzz_cli_arguments(argv: list[str]) -> None:
    from vmapsim.cli import main

    try:
        main(["demo", *argv])
    except SystemExit as e:  # argparse: --help exits 0, a bad option exits 2
        assert e.code in (0, 2)
    except VmapsimError:  # pragma: no cover - main() turns these into status 2
        raise AssertionError("main() let a vmapsim error escape") from None


def test_output_is_byte_identical_across_hash_seeds() -> None:
    import os

    argv = [sys.executable, "-m", "vmapsim", "load", "loop", "--cpus", "4", "--pipeline", "all", "--stats"]
    outs = {}
    for seed in ("0", "1", "12345"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        outs[seed] = subprocess.run(argv, capture_output=True, text=True, check=True, env=env).stdout
    assert len(set(outs.values())) == 1 and outs["0"]


def test_the_long_fuzz_run_works_in_a_bounded_form() -> None:
    # benchmarks/fuzz_parsers.py is the 100,000-input run whose figures docs/usage.md records; here a few hundred
    # inputs per parser keep the script itself from rotting (its first input per parser must be accepted)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    try:  # on the path while it runs: its worker processes import it by name
        import fuzz_parsers

        assert fuzz_parsers.main(["--inputs", "300", "--jobs", "1", "--json"]) == 0
    finally:
        sys.path.pop(0)


def test_setters_and_builders_refuse_what_the_constructors_refuse() -> None:
    import attrs

    from vmapsim.explore import Exhaustive, worst_case
    from vmapsim.workloads import PRESETS

    space = VmapSpace(layouts.X86_64, cpus=2)
    for bad in ("no", 1, None):
        with pytest.raises(InvalidArgument, match="auto_purge="):
            space.auto_purge = bad  # type: ignore[assignment]
        assert space.auto_purge is True
    cat = Catalog.builtin("debian-6.12-amd64")
    loop = cat["loop"]
    for image, needle in [
        (attrs.evolve(loop, name=""), "name '' is empty"),
        (attrs.evolve(loop, text=-1), "text=-1"),
        (attrs.evolve(loop, memory=(4096, 4096, 4096)), "expected 7 sizes"),
        (attrs.evolve(loop, legacy=(4096,)), "legacy"),
    ]:
        with pytest.raises(InvalidArgument, match=needle):
            cat.with_images([image])
    assert "loop" in cat.with_images([loop.resized("loop2", text=8192)]).to_csv()
    qemu = PRESETS["qemu-kvm"]
    with pytest.raises(InvalidArgument, match="unknown layout 'vax'"):
        attrs.evolve(qemu, layout="vax")
    for kwargs, needle in [({"jitter": math.nan}, "jitter=nan"), ({"cost_jitter": 1.5}, "cost_jitter=1.5"),
                           ({"jitter": -1.0}, "jitter=-1.0")]:  # fmt: skip
        with pytest.raises(InvalidArgument, match=needle):
            qemu.timing(**kwargs)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="probes=0"):
        Exhaustive(probes=0)
    for kwargs, needle in [({"baseline": "no"}, "baseline='no'"), ({"progress": 5}, "progress=5")]:
        with pytest.raises(InvalidArgument, match=needle):
            worst_case(["loop"], budget=1, **kwargs)  # type: ignore[arg-type]


def _cli(*argv: str) -> subprocess.CompletedProcess[str]:
    """The CLI in a subprocess: a read that blocks (a FIFO) fails the test by the timeout, not by hanging it."""
    return subprocess.run([sys.executable, "-m", "vmapsim", *argv], capture_output=True, text=True, timeout=20)


def test_a_fifo_or_a_device_is_refused_unread_wherever_a_file_is_named(tmp_path: Path) -> None:
    import os

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for argv in (["boot", "--schedule", str(fifo)], ["boot", "--machine", str(fifo)],
                 ["boot", "--catalog", str(fifo)],
                 ["boot", "--schedule", "/dev/zero"], ["vmallocinfo", "/dev/zero"],
                 ["sweep", "--resume", "/dev/zero"]):  # fmt: skip
        r = _cli(*argv)
        assert r.returncode == 2 and r.stderr.count("\n") == 1, (argv, r.stderr)
        assert "not a regular file" in r.stderr and ("fifo" in r.stderr or "/dev/zero" in r.stderr), r.stderr
    with pytest.raises(InvalidArgument, match="is a directory, not a regular file"):
        Catalog.load(tmp_path)


def test_an_oversize_file_is_refused_by_its_size_before_it_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                   ) -> None:  # fmt: skip
    import os

    from vmapsim.modules.compression import MAX_MODULE_BYTES
    from vmapsim.modules.scan import scan_tree
    from vmapsim.workloads.udev import MAX_MACHINE_BYTES

    def sparse(name: str, size: int) -> Path:  # a hole: no disk used, and any read of it would be seen
        path = tmp_path / name
        with open(path, "wb") as f:
            f.truncate(size)
        return path

    real = os.fdopen
    monkeypatch.setattr(os, "fdopen", lambda *a, **k: pytest.fail("read an oversize file") or real(*a, **k))
    with pytest.raises(InvalidArgument, match="more than 67108864 bytes"):
        Schedule.load(sparse("s.json", (64 << 20) + 1))
    with pytest.raises(InvalidArgument, match=f"more than {MAX_MACHINE_BYTES} bytes"):
        Machine.load(sparse("m.json", MAX_MACHINE_BYTES + 1))
    (tmp_path / "tree").mkdir()
    sparse("tree/huge.ko", MAX_MODULE_BYTES + 1)
    with pytest.raises(InvalidArgument, match=f"huge.ko: more than {MAX_MODULE_BYTES} bytes"):
        scan_tree(tmp_path / "tree", config=KernelConfig())


@pytest.mark.parametrize("kind", ["xz", "gz", "zst"])
def test_a_decompression_bomb_peaks_below_twice_the_limit(kind: str) -> None:
    import gzip
    import tracemalloc

    from vmapsim.modules.compression import decompress

    limit = 4 << 20
    payload = b"\x7fELF" + bytes(4 * limit)
    # kbuild's 1 MiB xz dictionary (--lzma2=dict=1MiB): the default 8 MiB one is the decompressor's, not ours
    packers: dict[str, Callable[[bytes], bytes]] = {"xz": lambda b: lzma.compress(b, preset=1),
                                                    "gz": gzip.compress, "zst": zstandard.ZstdCompressor().compress}
    bomb = packers[kind](payload)
    tracemalloc.start()
    try:
        with pytest.raises(ModuleFileError, match="more than the limit"):
            decompress(bomb, kind, f"bomb.ko.{kind}", limit=limit)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2 * limit, peak


def test_a_scans_modules_order_or_config_that_is_not_a_file_is_a_problem_not_a_hang(tmp_path: Path) -> None:
    import os
    import shutil

    from vmapsim.modules import Catalog

    tree = tmp_path / "tree"
    shutil.copytree("tests/data/modules", tree)
    os.mkfifo(tree / "modules.order")  # a read would block until a writer came
    os.mkfifo(tree / "config")
    cat = Catalog.scan(tree, jobs=1)
    reasons = {Path(p.path).name: p.reason for p in cat.problems}
    assert "FIFO, not a regular file" in reasons["modules.order"]
    assert "defaults" in cat.config_source  # a config that is no file is passed over, as a missing one
    assert len(cat) == 5  # the modules themselves are still read


def test_a_catalog_that_expands_past_its_bound_is_refused_while_decompressing() -> None:
    import tracemalloc

    from vmapsim.modules import Catalog
    from vmapsim.modules.catalog import MAX_CATALOG_BYTES

    bomb = lzma.compress(b'{"kernel": "' + b" " * (MAX_CATALOG_BYTES + 1024) + b'"}', preset=1)
    tracemalloc.start()
    try:
        with pytest.raises(InvalidArgument, match="more than 67108864 bytes"):
            Catalog.from_bytes(bomb, source="bomb.json.xz")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(bomb) < MAX_CATALOG_BYTES // 100 and peak < 2 * MAX_CATALOG_BYTES  # refused before any parse


@given(st.text(st.sampled_from("ab \r\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"), max_size=30))
def test_lines_are_splitlines_one_at_a_time(text: str) -> None:
    from vmapsim.checks import lines

    assert list(lines(text)) == text.splitlines()


def test_a_trace_over_its_limit_is_refused_and_a_replay_reports_progress(monkeypatch: pytest.MonkeyPatch) -> None:
    line = ("  init-1  [000] .....  1.000000: alloc_vmap_area: va_start: {a} size=8192 align=1 "
            "vstart=0xffffc90000000000 vend=0xffffe8ffffffffff failed=0\n")  # fmt: skip
    text = "".join(line.format(a=0xFFFFC90000000000 + i * 8192) for i in range(5))
    monkeypatch.setattr(trace, "PROGRESS_STEP", 2)
    seen: list[tuple[int, int]] = []
    report = trace.replay(trace.parse_trace(text), VmapSpace(X), progress=lambda d, t: seen.append((d, t)))
    assert report.allocs == 5 and seen == [(0, 5), (2, 5), (4, 5), (5, 5)]
    with pytest.raises(InvalidArgument, match="progress=5"):
        trace.replay([], VmapSpace(X), progress=5)  # type: ignore[arg-type]
    monkeypatch.setattr(trace, "MAX_TRACE_BYTES", len(text) - 1)
    with pytest.raises(ParseError, match=f"{len(text)} characters is more than the limit"):
        trace.parse_trace(text)
