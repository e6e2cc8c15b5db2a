"""The command line: the demo runs, bad input gives one line and exit status 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import console_log, console_section, run_cli
from vmapsim.cli import commands, main

DATA = Path(__file__).parent / "data"


def test_demo_prints_vmallocinfo_meminfo_and_usage(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    assert "# /proc/vmallocinfo" in out and "VmallocTotal:   34359738367 kB" in out
    assert "0xffffffffc0000000-0xffffffffc0032000  204800 load_module+0x1a2/0x2b0 pages=49 vmalloc N0=49" in out
    assert "unpurged vm_area" in out


def test_demo_is_deterministic_across_processes() -> None:
    runs = [
        subprocess.run([sys.executable, "-m", "vmapsim", "demo", "--kernel", "6.12", "--cpus", "8"],
                       capture_output=True, text=True, check=True).stdout
        for _ in range(2)
    ]  # fmt: skip
    assert runs[0] == runs[1] and "profile 6.11" in runs[0]


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["demo", "--layout", "vax"], "unknown layout 'vax'"),
        (["demo", "--kernel", "4.19"], "profiles start at 5.4"),
        (["demo", "--kernel", "banana"], "kernel version 'banana'"),
        (["demo", "--cpus", "0"], "--cpus: '0': expected a whole number from 1 to 8192"),
        (["demo", "--cpus", "٣"], "--cpus: '٣': expected a whole number"),  # int() reads it as 3
        (["boot", "--seed", "²"], "--seed: '²': expected a whole number"),
        (["sweep", "--jitter", "٣"], "--jitter: '٣': expected a finite number"),
    ],
)
def test_bad_input_is_one_line_and_status_2(argv: list[str], needle: str) -> None:
    r = subprocess.run([sys.executable, "-m", "vmapsim", *argv], capture_output=True, text=True)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.count("\n") == 1 and needle in r.stderr and "Traceback" not in r.stderr


def _kernel_commands() -> list[list[str]]:
    """Every command with a --kernel option, as the argv words that name it."""
    return [name.split()[1:] for name, p in commands()
            if any("--kernel" in a.option_strings for a in p._actions)]  # fmt: skip


@pytest.mark.parametrize(
    "version,needle",
    [
        ("", "kernel version '': expected MAJOR.MINOR[...]"),
        ("7.4", "kernel version '7.4': newer than 7.3"),
        ("4.19", "kernel version '4.19': profiles start at 5.4"),
        ("six", "kernel version 'six': expected MAJOR.MINOR[...]"),
    ],
)
def test_every_kernel_option_refuses_the_same_versions_with_the_same_message(
    version: str, needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    found = _kernel_commands()
    assert {c[0] for c in found} >= {"demo", "replay", "load", "boot", "sweep", "compare", "worst"}
    for command in found:
        with pytest.raises(SystemExit) as e:  # refused while the options are read, before anything runs
            main([*command, "--kernel", version, *(["snap", "trace"] if command == ["replay"] else [])])
        err = capsys.readouterr().err
        assert e.value.code == 2 and err.count("\n") == 1 and f"argument --kernel: {needle}" in err, (command, err)


def test_a_kernel_list_refuses_an_empty_item(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["sweep", "--kernel", "6.3,"])
    assert "kernel version '': expected MAJOR.MINOR" in capsys.readouterr().err


def _split_probe(tmp_path: Path) -> tuple[str, str]:
    text = (DATA / "qemu-6.12-4cpu.txt").read_text()
    snap, trace = tmp_path / "start.txt", tmp_path / "trace.txt"
    snap.write_text(console_section(text, "vmallocinfo-start"))
    trace.write_text(console_section(text, "trace"))
    return str(snap), str(trace)


def test_replay_reports_agreement_and_lists_disagreements(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    snap, trace = _split_probe(tmp_path)
    assert main(["replay", snap, trace, "--kernel", "6.12", "--cpus", "4"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "# replay on x86_64_la57, 4 CPUs, kernel profile 6.11"
    assert out[1].startswith("# warning: on 6.12 with several CPUs, VAs parked in the node pools")  # a mid-run snapshot
    assert out[-1] == "68/68 allocations agree (100.0%); 0 frees of areas unknown to the model"
    assert all(line.startswith("#") for line in out[:-1]) and max(map(len, out)) <= 100
    # Without the 6.9+ node pools the model misses where the kernel reused pooled VAs.
    assert main(["replay", snap, trace, "--kernel", "6.3", "--cpus", "4"]) == 1  # 1: some disagree
    out = capsys.readouterr().out.splitlines()
    assert out[-1] == "# 2 allocations disagree" and out[1].startswith("66/68")
    assert out[2].startswith("line 50: cpu 0 size 20.0 KiB align 16.0 KiB") and out[3].startswith("  kernel 0x")


def test_replay_finds_a_trace_from_boot_and_the_layout_of_an_empty_snapshot(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = console_log("qemu-6.12-2cpu-from-boot.txt.xz")
    snap, trace, empty = tmp_path / "start.txt", tmp_path / "trace.txt", tmp_path / "empty.txt"
    snap.write_text(console_section(text, "vmallocinfo-start"))
    trace.write_text(console_section(text, "trace"))
    empty.write_text("")
    assert main(["replay", str(snap), str(trace), "--kernel", "6.12"]) == 0  # its 16 KiB-aligned stacks agree too
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "# replay on x86_64_la57, 2 CPUs, kernel profile 6.11, from boot"
    assert out[1].startswith("# 2 CPUs: the most the trace shows") and "began before the snapshot" in out[2]
    assert next(line for line in out if not line.startswith("#")).startswith("197/197 allocations agree")
    # no snapshot at all: the layout comes from the trace's addresses (5-level paging here), and no warning
    assert main(["replay", str(empty), str(trace), "--kernel", "6.12", "--cpus", "2"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "# replay on x86_64_la57, 2 CPUs, kernel profile 6.11, from boot"
    assert out[1].startswith("197/197 allocations agree")
    r = subprocess.run([sys.executable, "-m", "vmapsim", "replay", str(snap), str(trace)], capture_output=True,
                       text=True)  # fmt: skip
    assert r.returncode == 2 and "--kernel" in r.stderr  # never silently 6.3


def test_replay_bad_files_are_one_line_errors(tmp_path: Path) -> None:
    snap, _ = _split_probe(tmp_path)
    bad = tmp_path / "bad.txt"
    bad.write_text(" init-1 [000] ..... 2.0: alloc_vmap_area: va_start: 1 size=8192\n")
    for argv, needle in (
        (["replay", str(tmp_path / "missing"), snap], "cannot read"),
        (["replay", snap, str(bad)], "bad.txt:1: alloc_vmap_area line lacks a field"),
        (["replay", str(bad), snap], "bad.txt:1: not a vmallocinfo line"),
    ):
        r = subprocess.run([sys.executable, "-m", "vmapsim", *argv, "--kernel", "6.12"], capture_output=True, text=True)
        assert r.returncode == 2 and r.stderr.count("\n") == 1 and needle in r.stderr, r.stderr


def test_scan_writes_csv_and_catalog(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out_csv, out_cat = tmp_path / "m.csv", tmp_path / "m.json.xz"
    assert main(["scan", str(DATA / "modules"), "--save", str(out_cat), "--workers", "1"]) == 0
    assert capsys.readouterr().out.startswith("5 modules of 6.12.117+deb12-amd64 (module_memory loader), 0 skipped")
    assert main(["scan", str(DATA / "modules"), "--csv", "-o", str(out_csv), "--workers", "1"]) == 0
    assert capsys.readouterr().out == ""
    lines = out_csv.read_text().splitlines()
    assert lines[0].startswith("name,path,compression,file_size,decompressed_size,text,") and len(lines) == 6
    from vmapsim.modules import Catalog

    assert len(Catalog.load(out_cat)) == 5


def test_scan_errors_write_nothing(tmp_path: Path) -> None:
    target = tmp_path / "out.csv"
    for argv, needle in (
        (["scan", str(tmp_path / "nope"), "--csv", "-o", str(target)], "no such directory"),
        (["scan", str(tmp_path), "--csv", "-o", str(target)], "no module files"),
        (["scan", str(DATA / "modules"), "--csv", "-o", str(tmp_path / "no" / "dir.csv")], "cannot write"),
        (["scan", str(DATA / "modules"), "--save", str(tmp_path / "no" / "cat.json.xz")], "cannot write"),
    ):
        r = subprocess.run([sys.executable, "-m", "vmapsim", *argv], capture_output=True, text=True)
        assert r.returncode == 2 and r.stderr.count("\n") == 1 and needle in r.stderr, r.stderr
    assert list(tmp_path.iterdir()) == []


def test_load_compares_pipelines(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["load", "msr", "--cpus", "4", "--lockstep", "--pipeline", "v6.3,v6.5", "--stats", "--wide"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("# 4 jobs: msr on each of 4 CPUs, dependencies first (modprobe); ")
    assert out[0].endswith(", finit_module(2), x86_64, MODULE_ALIGN 4.0 KiB, lockstep, seed 0")
    # calls, ok, EEXIST, other, reads
    assert out[2].split()[:6] == ["v6.3", "4", "1", "3", "0", "4"]
    assert out[3].split()[:6] == ["v6.5", "4", "4", "0", "0", "1"]
    assert "# /sys/kernel/debug/modules/stats after v6.3" in out and "      Mods failed on load\t3" in out


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["load", "nosuch"], "no module or alias 'nosuch'"),
        (["load"], "nothing to load"),
        (["load", "msr", "--pipeline", "v9"], "unknown pipeline 'v9'"),
        (["load", "msr", "--catalog", "/nonexistent.json.xz"], "cannot read catalog"),
        (["load", "msr", "--layout", "pdp11"], "unknown layout"),
        (["load", "loop", "--pipeline", "concurrency-limit:²"], "concurrency-limit's N '²'"),
        (["load", "loop", "--image", "x:text=2²K"], "the size in 'text=2²K' (bytes, or with K, M or G) '2²'"),
    ],
)
def test_load_bad_input(argv: list[str], needle: str) -> None:
    r = subprocess.run([sys.executable, "-m", "vmapsim", *argv], capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and needle in r.stderr, r.stderr


def test_load_takes_aliases_and_request_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    alias = "pci:v00008086d000010D3sv00008086sd0000A01Fbc02sc00i00"
    assert main(["load", alias, "--cpus", "2", "--pipeline", "v6.5"]) == 0
    assert "# 2 jobs: e1000e on each of 2 CPUs, dependencies first (modprobe); " in capsys.readouterr().out
    reqs = tmp_path / "reqs.csv"
    reqs.write_text("time,cpu,module,path,syscall\n0,0,loop,,finit_module\n0.001,1,loop,,finit_module\n")
    assert main(["load", "--requests", str(reqs), "--cpus", "2", "--pipeline", "v6.4", "--wide"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"# 2 jobs: 2 requests from {reqs}; ")
    assert out[2].split()[:4] == ["v6.4", "2", "1", "1"]


def test_load_loads_dependencies_first_unless_asked_not_to(capsys: pytest.CaptureFixture[str]) -> None:
    from vmapsim import Catalog

    deps = Catalog.builtin("debian-6.12-amd64")["xfs"].depends
    assert deps  # xfs needs libcrc32c (and more) in Debian 12's 6.12
    assert main(["load", "xfs", "--cpus", "1", "--pipeline", "v6.5", "--json"]) == 0
    run = json.loads(capsys.readouterr().out)["runs"][0]
    assert run["loads"] == run["ok"] > len(deps) - 1  # every module of the closure, each once
    assert main(["load", "xfs", "--cpus", "1", "--pipeline", "v6.5", "--json", "--no-deps"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["runs"][0]["loads"] == 1  # xfs alone: insmod
    assert "xfs needs libcrc32c, which --no-deps does not load" in err  # and a kernel would refuse it


@pytest.mark.parametrize(
    "content,needle",
    [("garbage\n", "reqs.jsonl:1: not valid JSON"), ('{"module": "nosuch"}\n', "no module 'nosuch'"),
     ('{"module": "loop", "cpu": "x"}\n', "reqs.jsonl:1:")],
)  # fmt: skip
def test_load_bad_request_files(tmp_path: Path, content: str, needle: str) -> None:
    f = tmp_path / "reqs.jsonl"
    f.write_text(content)
    r = subprocess.run([sys.executable, "-m", "vmapsim", "load", "--requests", str(f)], capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and needle in r.stderr, r.stderr


def test_info_lists_what_ships(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    for needle in ("debian-6.12-arm64", "x86_64_la57", "profile 6.11         6.11 and later, before 6.16",
                   "v6.5                 idempotent finit_module", "intel-server"):  # fmt: skip
        assert needle in out
    lines = out.splitlines()
    i386, x86 = (next(x for x in lines if x.startswith(name)) for name in ("i386", "x86_64 "))
    assert i386.rindex(" 0x") == x86.rindex(" 0x")  # the modules window's column lines up


def test_progress_off_a_terminal_is_a_sparse_line_once_a_run_is_long() -> None:
    import io

    from vmapsim.cli._io import PROGRESS_EVERY, progress_bar

    now = [0.0]
    out = io.StringIO()  # not a terminal
    show = progress_bar("sweeping", "run", out, clock=lambda: now[0])
    for done in range(1, 51):  # a short run (under PROGRESS_EVERY seconds) says nothing
        show(done, 1000)
    assert out.getvalue() == ""
    now[0] = PROGRESS_EVERY  # 30 s in, 5% done: a line, then none until a tenth more or 30 s more
    show(50, 1000)
    for done in range(51, 100):
        show(done, 1000)
    show(100, 1000)  # a tenth
    now[0] = 2 * PROGRESS_EVERY + 1
    show(101, 1000)  # 30 s since the last line
    show(1000, 1000)
    assert out.getvalue().splitlines() == [
        "vmapsim: sweeping: 5% (50 of 1000 runs), about 10 min left",
        "vmapsim: sweeping: 10% (100 of 1000 runs), about 4 min left",
        "vmapsim: sweeping: 10% (101 of 1000 runs), about 9 min left",
        "vmapsim: sweeping: 100% (1000 of 1000 runs)",
    ]


def test_worst_states_a_large_budgets_time_before_the_search() -> None:
    argv = ["worst", "--machine", "qemu-kvm", "--cpus", "2", "--goal=-1e300"]  # the goal stops at the first
    assert "--budget" not in run_cli(*argv, "--budget", "999").stderr
    assert "vmapsim: note: --budget 1000000: about " in run_cli(*argv, "--budget", "1000000").stderr


def test_a_command_imports_no_other_commands_module() -> None:
    # each command pays only for its own imports: `vmapsim info` loads neither the sweeps nor the search
    code = ("import sys, contextlib, io\nfrom vmapsim.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n    assert main(['info']) == 0\n"
            "print(sorted(m for m in sys.modules if m.startswith('vmapsim.')))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "vmapsim.cli._info" in loaded
    for other in ("vmapsim.cli._sweep", "vmapsim.cli._worst", "vmapsim.cli._boot", "vmapsim.sweeps", "vmapsim.explore"):
        assert f"'{other}'" not in loaded, (other, loaded)
