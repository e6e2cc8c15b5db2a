"""Reading a real /sys/kernel/debug/modules/stats (ModuleStats.parse) and setting it beside a simulation."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vmapsim import ParseError
from vmapsim.loader import ModuleStats

_COUNT = st.integers(0, 1 << 40)
_NAMES = st.text("abcdefghijklmnopqrstuvwxyz_0123456789", min_size=1, max_size=20)


@st.composite
def stats(draw: st.DrawFn) -> ModuleStats:
    s = ModuleStats(*(draw(_COUNT) for _ in range(11)))
    for name in draw(st.lists(_NAMES, unique=True, max_size=20)):
        s.duplicates[name] = [draw(st.integers(1, 10**6)), draw(st.sampled_from([1, 2, 3]))]
    return s


@given(stats())
def test_parse_reads_back_what_render_writes(s: ModuleStats) -> None:
    assert ModuleStats.parse(s.render()) == s


@pytest.mark.parametrize(
    "text,needle",
    [
        ("hello\n", "not a modules/stats line"),
        ("         Mods ever loaded\t1\n", "no 'Mods failed on kread' line"),
        (ModuleStats(invalid_mod_bytes=5).render().replace("wasted bytes\t5", "wasted bytes\t6"), "not the sum"),
        (ModuleStats(modcount=1).render() + "Duplicate failed modules:\nkvm\tmany\tLoad\n", "count .many."),
        ("         Mods ever loaded\t" + "9" * 5000 + "\n", "Mods ever loaded"),
    ],
)
def test_a_file_that_is_not_stats_is_a_parse_error(text: str, needle: str) -> None:
    with pytest.raises(ParseError, match=needle):
        ModuleStats.parse(text, source="stats")


def test_boot_sets_a_real_file_beside_the_simulation(tmp_path: Path) -> None:
    real = ModuleStats(modcount=33, failed_load_modules=7, invalid_mod_bytes=16850848)
    f = tmp_path / "stats"
    f.write_text(real.render())
    argv = [sys.executable, "-m", "vmapsim", "boot", "--machine", "qemu-kvm", "--cpus", "8", "--pipeline",
            "v6.3,v6.4", "--kmod", "30", "--real-stats", str(f)]  # fmt: skip
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    lines = out.splitlines()
    head = lines.index(f"# /sys/kernel/debug/modules/stats: {f} beside the simulated boot (kmod 30)")
    assert lines[head + 1].split() == ["real", "v6.3", "v6.4"]
    assert lines[head + 6].split()[:5] == ["Mods", "failed", "on", "load", "7"]
    doc = json.loads(subprocess.run([*argv, "--json"], capture_output=True, text=True, check=True).stdout)
    assert doc["real_stats"]["failed_load_modules"] == 7 and doc["parameters"]["real_stats"] == str(f)
    assert [r.get("stats") for r in doc["runs"]] == [None, None]
