"""A machine read from a live system (or a copy of its ``/sys`` and ``/proc``): ``vmapsim machine capture``.

What udev's coldplug sees is in sysfs: the CPU's modalias
(``/sys/devices/system/cpu/modalias``, one uevent per CPU), every device's
``modalias`` file under ``/sys/devices`` (ACPI processor objects among them),
the online CPUs (``/sys/devices/system/cpu/online``); the RAM that sets udev's
worker limit is ``/proc/meminfo``'s ``MemTotal``; the kernel release is
``/proc/sys/kernel/osrelease``.  kmod's version decides the load syscall: it is
asked of ``kmod --version`` on the live root, else read from dpkg's status file.

>>> import tempfile, pathlib
>>> root = pathlib.Path(tempfile.mkdtemp())
>>> for path, text in {"sys/devices/system/cpu/modalias": "cpu:type:x86,ven0000fam0006mod0055:feature:,0000\\n",
...                    "sys/devices/system/cpu/online": "0-3\\n", "proc/meminfo": "MemTotal: 8388608 kB\\n",
...                    "proc/sys/kernel/osrelease": "6.12.117+deb12-amd64\\n",
...                    "sys/devices/pci0000:00/0000:00:02.0/modalias": "pci:v00001AF4d00001041sv00001AF4sd00bc02\\n",
...                    "var/lib/dpkg/status": "Package: kmod\\nStatus: install ok installed\\nVersion: 30+20221128-1\\n"
...                    }.items():
...     (root / path).parent.mkdir(parents=True, exist_ok=True)
...     _ = (root / path).write_text(text)
>>> m, notes = capture(root)
>>> m.cpus, m.ram >> 30, m.kmod, m.release, m.catalog, len(m.devices), notes
(4, 8, 30, '6.12.117+deb12-amd64', 'debian-6.12-amd64', 1, [])
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

from vmapsim.checks import show
from vmapsim.errors import InvalidArgument, ParseError
from vmapsim.loader.run import DEFAULT_KERNEL
from vmapsim.modules.shipped import catalog_for
from vmapsim.workloads.udev import MAX_MODALIAS, Machine

__all__ = ["capture"]

# A modalias file is one line; anything longer is not one (and sysfs never makes it).
_MAX_FILE = MAX_MODALIAS + 1


def _read(root: Path, path: str) -> str | None:
    try:
        return (root / path).read_text(errors="replace")
    except OSError:
        return None


def _online(text: str | None) -> int | None:
    """The number of CPUs in a sysfs CPU list (``0-3,8``)."""
    if not text or not re.fullmatch(r"[0-9,\-\s]+", text):
        return None
    n = 0
    for part in text.strip().split(","):
        lo, _, hi = part.partition("-")
        n += int(hi or lo) - int(lo) + 1
    return n or None


def _kmod(root: Path) -> int | None:
    """kmod's major version: ``kmod --version`` on the live system, else dpkg's status file."""
    if root.resolve() == Path("/") and shutil.which("kmod"):
        try:
            out = subprocess.run(["kmod", "--version"], capture_output=True, text=True, timeout=10).stdout
        except (OSError, subprocess.SubprocessError):
            out = ""
        if found := re.search(r"kmod version (\d+)", out):
            return int(found[1])
    status = _read(root, "var/lib/dpkg/status") or ""
    for stanza in status.split("\n\n"):
        if re.search(r"^Package: kmod$", stanza, re.M) and (v := re.search(r"^Version: (?:\d+:)?(\d+)", stanza, re.M)):
            return int(v[1])
    return None


def _catalog(release: str | None, arch: str) -> tuple[str, str | None]:
    """The shipped catalog for this kernel, by :func:`~vmapsim.modules.shipped.catalog_for` (its release's,
    else the nearest of the same architecture), and a note unless it is this very build's."""
    choice = catalog_for(release or DEFAULT_KERNEL, arch)
    if choice.kernel == release:
        return choice.name, None
    note = (f"no shipped catalog of {release or 'this kernel'}: the machine file names {choice.name} "
            f"({choice.kernel}); scan this kernel's modules (vmapsim scan /lib/modules/$(uname -r) --save "
            "FILE) and pass --catalog FILE for its own")  # fmt: skip
    return choice.name, note


def capture(root: str | Path = "/", *, name: str | None = None, kmod: int | None = None) -> tuple[Machine, list[str]]:
    """The machine at ``root`` (``/`` for this one), and notes on what had to be guessed.

    Reads the files the module docstring lists; every ``modalias`` file under ``sys/devices`` is one
    device (symlinks are not followed, so each is read once), in path order.  ``kmod`` overrides the
    version found; none found means 30 and a note.  :class:`~vmapsim.errors.InvalidArgument` when
    ``root`` has no CPU modalias (not a Linux root, or sysfs not mounted).
    Runtime complexity: O(files under sys/devices).
    """
    if not isinstance(root, (str, Path)):
        raise InvalidArgument(f"root={show(root)}: expected a directory")
    base = Path(root)
    cpu = (_read(base, "sys/devices/system/cpu/modalias") or "").strip()
    if not cpu.startswith("cpu:"):
        raise InvalidArgument(f"{base / 'sys/devices/system/cpu/modalias'}: no CPU modalias (is {base} a Linux "
                              "system's root, with /sys mounted?)")  # fmt: skip
    notes: list[str] = []
    lines = [cpu]
    unreadable = 0
    for top, dirs, files in os.walk(base / "sys" / "devices", followlinks=False):
        dirs.sort()
        if "modalias" in files and Path(top) != base / "sys/devices/system/cpu":
            try:
                with open(Path(top) / "modalias", "rb") as f:
                    alias = f.read(_MAX_FILE).decode(errors="replace").strip()
            except OSError:
                unreadable += 1
                continue
            if alias and len(alias) <= MAX_MODALIAS and not alias.startswith("cpu:"):
                lines.append(alias)
    if unreadable:
        notes.append(f"{unreadable} modalias files could not be read (run as root for all of them)")
    meminfo = _read(base, "proc/meminfo") or ""
    found_ram = re.search(r"^MemTotal:\s+(\d+) kB", meminfo, re.M)
    ram = int(found_ram[1]) << 10 if found_ram else 16 << 30
    if not found_ram:
        notes.append("no MemTotal in proc/meminfo: 16 GiB assumed (--ram sets it)")
    release = (_read(base, "proc/sys/kernel/osrelease") or "").strip() or None
    version = kmod if kmod is not None else _kmod(base)
    if version is None:
        notes.append("kmod's version not found: 30 assumed (pass --kmod)")
        version = 30
    arch = "arm64" if cpu.startswith("cpu:type:aarch64") else "x86_64"
    catalog, note = _catalog(release, arch)
    notes += [note] if note else []
    host = name or (_read(base, "proc/sys/kernel/hostname") or "").strip() or "captured"
    try:
        machine = Machine.from_modaliases(
            "\n".join(lines), name=host, source=str(base), ram=ram, kmod=version, catalog=catalog,
            layout="arm64_48" if arch == "arm64" else "x86_64", release=release,
            cpus=_online(_read(base, "sys/devices/system/cpu/online")),
        )  # fmt: skip
    except ParseError as e:
        raise InvalidArgument(f"cannot describe the machine at {base}: {e}") from None
    return machine, notes
