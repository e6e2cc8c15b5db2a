"""Where commands read their input: ``-`` is standard input for every file a command reads (once), and
``lsmod`` and ``vmallocinfo`` read this machine's /proc files when no FILE is given."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import console_log, console_section
from vmapsim.cli import _io, _lsmod, _vmallocinfo, main
from vmapsim.errors import InvalidArgument
from vmapsim.loader import ModuleStats, Schedule
from vmapsim.modules import Catalog

DATA = Path(__file__).parent / "data"
CAPTURE = console_log("qemu-6.12-4cpu.txt")
SNAPSHOT = console_section(CAPTURE, "vmallocinfo-start")
TRACE = console_section(CAPTURE, "trace")
MODULES = console_section(CAPTURE, "modules")


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The inputs the table names, as files: each case reads one of them from standard input instead."""
    tmp = tmp_path_factory.mktemp("inputs")
    texts = {"snapshot": SNAPSHOT, "trace": TRACE, "modules": MODULES,
             "stats": ModuleStats(modcount=33, failed_load_modules=7).render(),
             "requests.csv": "time,cpu,module,path,syscall\n0,0,loop,,finit_module\n0.001,1,loop,,finit_module\n",
             "requests.jsonl": '{"module": "loop", "cpu": 0}\n{"module": "loop", "cpu": 1, "time": 0.001}\n',
             "schedule": Schedule(choices=(1, 0)).to_json() + "\n",
             "config": "CONFIG_X86_64=y\n# CONFIG_STRICT_MODULE_RWX is not set\nCONFIG_MODULE_UNLOAD=y\n"}  # fmt: skip
    out = {name: tmp / name for name in texts}
    for name, text in texts.items():
        out[name].write_text(text)
    out["modaliases"] = DATA / "qemu-tcg-max-modaliases.txt"
    Catalog.scan(DATA / "modules", jobs=1).save(tmp / "catalog.json.xz")
    out["catalog"] = tmp / "catalog.json.xz"
    return out


#: (argv with '-' where the input goes, the input's name in ``files``, a line of what it prints)
STDIN_CASES = [
    (["lsmod", "-"], "modules", "sizes agree for 7 of 7 modules"),
    (["lsmod", "{modules}", "--catalog", "-"], "catalog", "sizes agree for 1 of 1 module; 6 not in the catalog"),
    (["vmallocinfo", "-", "--cpus", "4"], "snapshot", "# <stdin>: 103 areas, 6.8 MiB"),
    (["replay", "-", "{trace}", "--kernel", "6.12", "--cpus", "4"], "snapshot", "68/68 allocations agree"),
    (["replay", "{snapshot}", "-", "--kernel", "6.12", "--cpus", "4"], "trace", "68/68 allocations agree"),
    (["boot", "--machine", "qemu-kvm", "--cpus", "4", "--pipeline", "v6.3", "--real-stats", "-"], "stats",
     "# /sys/kernel/debug/modules/stats: <stdin> beside the simulated boot (kmod 30)"),
    (["boot", "--machine", "qemu-kvm", "--cpus", "4", "--pipeline", "v6.3", "--schedule", "-"], "schedule",
     "# udev coldplug of qemu-kvm: 4 CPUs"),
    (["boot", "--machine", "-", "--cpus", "4", "--pipeline", "v6.3"], "modaliases", "# udev coldplug of stdin: 4 CPUs"),
    (["load", "--requests", "-", "--cpus", "2", "--pipeline", "v6.4"], "requests.csv", "2 requests from <stdin>"),
    (["load", "--requests", "-", "--cpus", "2", "--pipeline", "v6.4"], "requests.jsonl", "2 requests from <stdin>"),
    (["load", "msr", "--cpus", "2", "--pipeline", "v6.4", "--catalog", "-"], "catalog", "# 2 jobs: msr on each"),
    (["scan", str(DATA / "modules"), "--config", "-", "--workers", "1"], "config", "kernel config: the given config"),
]  # fmt: skip


def _stdin(monkeypatch: pytest.MonkeyPatch, data: bytes) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))


@pytest.mark.parametrize("argv,name,needle", STDIN_CASES, ids=[f"{' '.join(a)} < {n}" for a, n, _ in STDIN_CASES])
def test_dash_reads_standard_input(
    argv: list[str], name: str, needle: str, files: dict[str, Path], monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    _stdin(monkeypatch, files[name].read_bytes())
    named = {k: files[k] for k in ("modules", "snapshot", "trace")}
    assert main([a.format(**named) for a in argv]) == 0
    out, err = capsys.readouterr()
    assert needle in " ".join(out.replace("\n#  ", "").split()), err or out  # wrapped headers read as one line


def test_a_pipe_into_the_command() -> None:
    r = subprocess.run([sys.executable, "-m", "vmapsim", "vmallocinfo", "-", "--json"], input=SNAPSHOT,
                       capture_output=True, text=True)  # fmt: skip
    assert r.returncode == 0 and '"areas": 103' in r.stdout, r.stderr


@pytest.mark.parametrize(
    "argv,text,needle",
    [
        (["replay", "-", "-", "--kernel", "6.12"], SNAPSHOT, "SNAPSHOT and TRACE are both '-'"),
        # boot reads --real-stats first (good ones), then the machine: standard input was read already
        (["boot", "--machine", "-", "--real-stats", "-"], ModuleStats().render(),
         "standard input ('-') is closed or was read already: only one input can be '-'"),
        (["vmallocinfo", "-"], "x\n", "<stdin>:1: not a vmallocinfo line: 'x'"),
        (["load", "--requests", "-"], "x\n", "<stdin>:1: unknown column 'x'"),
        (["lsmod", "{modules}", "--catalog", "-"], "x\n", "<stdin>: not a readable vmapsim catalog"),
    ],
)  # fmt: skip
def test_bad_standard_input_is_one_line(argv: list[str], text: str, needle: str, files: dict[str, Path]) -> None:
    argv = [a.format(modules=files["modules"]) for a in argv]
    r = subprocess.run([sys.executable, "-m", "vmapsim", *argv], input=text, capture_output=True, text=True)
    assert r.returncode == 2 and r.stdout == "" and r.stderr.count("\n") == 1 and needle in r.stderr, r.stderr


def test_standard_input_closed_or_read_already(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", None)  # as when the process was started with descriptor 0 closed
    with pytest.raises(InvalidArgument, match="closed or was read already"):
        _io.read("-")
    _stdin(monkeypatch, b"once")
    assert _io.read("-") == "once"
    with pytest.raises(InvalidArgument, match="only one input can be '-'"):
        _io.read("-")


def test_every_read_is_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    big = tmp_path / "big"
    big.write_bytes(b"x" * 101)
    assert _io.read(str(big), 101) == "x" * 101
    with pytest.raises(InvalidArgument, match=f"{big}: more than 100 bytes"):
        _io.read(str(big), 100)

    class Endless(io.RawIOBase):
        """A pipe that never ends: reading must stop at the limit."""

        def readable(self) -> bool:
            return True

        def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
            buffer[:] = b"y" * len(buffer)
            return len(buffer)

    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BufferedReader(Endless())))
    with pytest.raises(InvalidArgument, match="<stdin>: more than 1000 bytes"):
        _io.read("-", 1000)


def test_lsmod_reads_proc_modules_without_a_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    live = tmp_path / "modules"
    live.write_text(MODULES)
    monkeypatch.setattr(_lsmod, "PROC_MODULES", str(live))  # this machine's may be missing or another kernel's
    assert main(["lsmod"]) == 0
    assert " ".join(capsys.readouterr().out.replace("#", "").split()).startswith(
        f"{live} against the 6.12.117+deb12-amd64 catalog"
    )


def test_vmallocinfo_reads_the_live_file_without_one(capsys: pytest.CaptureFixture[str]) -> None:
    # /proc/vmallocinfo is root's alone (mode 0400): as root the summary, else the one-line error naming it
    readable = os.access(_vmallocinfo.PROC_VMALLOCINFO, os.R_OK)
    status = main(["vmallocinfo"])
    out, err = capsys.readouterr()
    if readable:  # this machine's text: summed up, or (a line of a kernel newer than the parser) refused naming it
        assert (status, out[:20]) == (0, "# /proc/vmallocinfo:") or err.startswith("vmapsim: error: /proc/vmallocinfo:")
    else:
        assert status == 2 and err.startswith("vmapsim: error: cannot read /proc/vmallocinfo: "), err


def test_an_unreadable_file_is_one_line_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    secret = tmp_path / "vmallocinfo"
    secret.write_text(SNAPSHOT)
    secret.chmod(0)
    monkeypatch.setattr(_vmallocinfo, "PROC_VMALLOCINFO", str(secret))
    if os.access(secret, os.R_OK):  # root reads it anyway: make its open refuse as the kernel refuses non-root
        real = os.open

        def refuse(path: str, flags: int, *args: int) -> int:
            if os.fspath(path) == str(secret):
                raise PermissionError(13, "Permission denied", path)
            return real(path, flags, *args)

        monkeypatch.setattr(os, "open", refuse)
    assert main(["vmallocinfo"]) == 2
    assert capsys.readouterr().err == f"vmapsim: error: cannot read {secret}: Permission denied\n"


def test_proc_files_report_size_zero_and_are_read_whole(tmp_path: Path) -> None:
    # /proc/self/status says st_size 0, as /proc/modules and /proc/vmallocinfo do; the text is still all read
    status = Path("/proc/self/status")
    if not status.is_file():
        pytest.skip("no /proc here")
    assert status.stat().st_size == 0 and _io.read(str(status)).startswith("Name:")
