"""Helpers shared by the tests: a full snapshot of a space's observable state, real-kernel console logs."""

from __future__ import annotations

import lzma
import subprocess
import sys
from pathlib import Path
from typing import Any

from vmapsim import VmapSpace
from vmapsim.workloads import PRESETS


def snapshot(space: VmapSpace) -> tuple[Any, ...]:
    """Everything a caller can observe, to prove a failed call changed nothing."""
    return (
        space.areas(),
        space.lazy_areas(),
        space.free_ranges(),
        space.pooled_ranges(),
        space.lazy_pages,
        space.vmap_blocks(),
        space.nr_vmalloc_pages,
        {r.name: (space.pinned(r.name), space.peak_pinned(r.name)) for r in space.layout.regions},
        space.purges,
    )


def console_section(text: str, name: str) -> str:
    """The text between '=== BEGIN name' and '=== END name' in a real-kernel probe's console log."""
    begin = text.index(f"=== BEGIN {name}\n") + len(f"=== BEGIN {name}\n")
    return text[begin : text.index(f"=== END {name}\n", begin)]


def has_sections(text: str, names: tuple[str, ...]) -> bool:
    """Whether a real-kernel probe's console log holds every named section (a guest that died has not)."""
    return all(f"=== END {name}\n" in text for name in names)


DATA = Path(__file__).resolve().parent / "data"


def console_log(name: str) -> str:
    """A console log kept in tests/data (``.txt``, or ``.txt.xz`` for the larger captures)."""
    path = DATA / name
    return lzma.decompress(path.read_bytes()).decode() if name.endswith(".xz") else path.read_text()


def run_cli(*argv: str) -> subprocess.CompletedProcess[str]:
    """``python -m vmapsim ARGV`` in a fresh process; raises if it exits non-zero."""
    return subprocess.run([sys.executable, "-m", "vmapsim", *argv], capture_output=True, text=True, check=True)


def fake_root(root: Path, *, kmod: str | None = "34.2-1", online: str = "0-5,8-9\n") -> Path:
    """A copy of a system's /sys, /proc and dpkg status under ``root``, as ``machine capture --root`` reads it:
    an 8-CPU box with two NICs (``kmod`` None: no dpkg record of kmod)."""
    files = {
        "sys/devices/system/cpu/modalias": PRESETS["intel-server"].cpu_modalias + "\n",
        "sys/devices/system/cpu/online": online,
        "sys/devices/LNXSYSTM:00/LNXCPU:00/modalias": "acpi:LNXCPU:\n",
        "sys/devices/pci0000:00/0000:00:1f.6/modalias": "pci:v00008086d00001572sv00008086sd00000000bc02sc00i00\n",
        "sys/devices/pci0000:00/0000:00:1f.7/modalias": "pci:v00008086d00001572sv00008086sd00000000bc02sc00i00\n",
        "proc/meminfo": "MemTotal:       65536000 kB\nMemFree: 1 kB\n",
        "proc/sys/kernel/osrelease": "6.12.117+deb12-amd64\n",
        "proc/sys/kernel/hostname": "box\n",
    }
    if kmod:
        files["var/lib/dpkg/status"] = f"Package: kmod\nStatus: install ok installed\nVersion: {kmod}\n\nPackage: x\n"
    for path, text in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text)
    (root / "sys/devices/pci0000:00/link").symlink_to(root / "sys/devices/pci0000:00/0000:00:1f.6")  # not followed
    return root
