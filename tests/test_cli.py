"""The command line: the demo runs, bad input gives one line and exit status 2."""

from __future__ import annotations

import subprocess
import sys

import pytest

from vmapsim.cli import main


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
        (["demo", "--kernel", "4.19"], "profiles start at 5.18"),
        (["demo", "--kernel", "banana"], "kernel version 'banana'"),
        (["demo", "--cpus", "0"], "cpus=0"),
    ],
)
def test_bad_input_is_one_line_and_status_2(argv: list[str], needle: str) -> None:
    r = subprocess.run([sys.executable, "-m", "vmapsim", *argv], capture_output=True, text=True)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.count("\n") == 1 and needle in r.stderr and "Traceback" not in r.stderr
