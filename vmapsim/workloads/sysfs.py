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
import stat
import subprocess
from pathlib import Path

from vmapsim.checks import CPUS_LIMIT, parse_number, show
from vmapsim.errors import InvalidArgument, ParseError
from vmapsim.loader.run import DEFAULT_KERNEL
from vmapsim.modules.shipped import catalog_for
from vmapsim.workloads.udev import MAX_MODALIAS, Machine

__all__ = ["MAX_DEPTH", "capture"]

# A modalias file is one line; anything longer is not one (and sysfs never makes it).
_MAX_FILE = MAX_MODALIAS + 1
# The most each other file may hold, well above what the kernel or dpkg writes there: dpkg's status file
# of a big install is a few MiB, /proc/meminfo about 1.5 KiB, a release or host name under 65 bytes.
_LIMITS = {"var/lib/dpkg/status": 64 << 20, "sys/devices/system/cpu/online": 64 << 10,
           "sys/devices/system/cpu/modalias": _MAX_FILE, "proc/meminfo": 64 << 10,
           "proc/sys/kernel/osrelease": 4096, "proc/sys/kernel/hostname": 4096}  # fmt: skip
#: Deepest directory under sys/devices walked: real device paths nest about 20 levels, and os.walk
#: recurses once per level (a copied tree can be made deep enough to exhaust Python's stack).
MAX_DEPTH = 64


def _contents(path: Path, limit: int) -> bytes | None:
    """At most ``limit`` bytes of ``path`` if it is a regular file, else None: a FIFO would block the
    read forever and a device (a link to /dev/zero) never end, so neither is opened."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return None
        with open(path, "rb") as f:
            return f.read(limit)
    except OSError:
        return None


def _read(root: Path, path: str) -> str | None:
    """The text of ``root/path``, None if it is no regular file; more than its limit is refused unread past
    the limit (/proc files have no size to check first)."""
    limit = _LIMITS[path]
    data = _contents(root / path, limit + 1)
    if data is not None and len(data) > limit:
        raise InvalidArgument(f"{root / path}: more than {limit} bytes, too big to be that file")
    return None if data is None else data.decode(errors="replace")


def _online(root: Path) -> int | None:
    """The number of CPUs in sysfs's online CPU list (``0-3,8``), None without one."""
    path = "sys/devices/system/cpu/online"
    text = (_read(root, path) or "").strip()
    if not text:
        return None
    n = 0
    for part in text.split(","):
        lo, dash, hi = part.partition("-")
        first, last = (parse_number(x, what=f"CPU in {show(text)}", source=str(root / path), line=1, decimal=True, lo=0,
                                    hi=CPUS_LIMIT - 1) for x in (lo, hi if dash else lo))  # fmt: skip
        if last < first:
            raise ParseError(f"CPU range {show(part)} ends before it starts", source=str(root / path), line=1)
        n += last - first + 1
    return n


def _version(text: str, path: str) -> int:
    """kmod's major version as a number (1 to 999, as :class:`Machine` takes it)."""
    return parse_number(text, what="kmod version", source=path, line=1, decimal=True, lo=1, hi=999)


def _kmod(root: Path) -> int | None:
    """kmod's major version: ``kmod --version`` on the live system, else dpkg's status file."""
    if root.resolve() == Path("/") and shutil.which("kmod"):
        try:
            out = subprocess.run(["kmod", "--version"], capture_output=True, text=True, timeout=10).stdout
        except (OSError, subprocess.SubprocessError):
            out = ""
        if found := re.search(r"kmod version ([0-9]+)", out):
            return _version(found[1], "kmod --version")
    status = _read(root, "var/lib/dpkg/status") or ""
    for stanza in status.split("\n\n"):
        if re.search(r"^Package: kmod$", stanza, re.M) and (v := re.search(r"^Version: (?:[0-9]+:)?([0-9]+)", stanza,
                                                                           re.M)):  # fmt: skip
            return _version(v[1], str(root / "var/lib/dpkg/status"))
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
    device (symlinks are not followed, so each is read once), in path order; only regular files are
    read (a FIFO would block), and directories over :data:`MAX_DEPTH` levels down are skipped, with a
    note.  A bad number in a file (the online CPUs, MemTotal, kmod's version) is a
    :class:`~vmapsim.errors.ParseError` naming the file.  ``kmod`` overrides the
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
    unreadable = too_deep = 0
    devices = base / "sys" / "devices"
    for top, dirs, files in os.walk(devices, followlinks=False):
        dirs.sort()
        if len(Path(top).relative_to(devices).parts) >= MAX_DEPTH:
            too_deep += len(dirs)
            dirs.clear()
        if "modalias" in files and Path(top) != base / "sys/devices/system/cpu":
            data = _contents(Path(top) / "modalias", _MAX_FILE)
            if data is None:
                unreadable += 1
                continue
            alias = data.decode(errors="replace").strip()
            if alias and len(alias) <= MAX_MODALIAS and not alias.startswith("cpu:"):
                lines.append(alias)
    if unreadable:
        notes.append(f"{unreadable} modalias files could not be read or are not regular files (run as root for "
                     "all of them)")  # fmt: skip
    if too_deep:
        notes.append(f"{too_deep} directories more than {MAX_DEPTH} levels under sys/devices were skipped")
    meminfo = _read(base, "proc/meminfo") or ""
    found_ram = re.search(r"^MemTotal:\s+([0-9]+) kB", meminfo, re.M)
    ram = (parse_number(found_ram[1], what="MemTotal", source=str(base / "proc/meminfo"),
                        line=meminfo.count("\n", 0, found_ram.start()) + 1, decimal=True, lo=1,
                        hi=1 << 54) << 10 if found_ram else 16 << 30)  # fmt: skip
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
    cpus = _online(base)
    try:
        machine = Machine.from_modaliases(
            "\n".join(lines), name=host, source=str(base), ram=ram, kmod=version, catalog=catalog,
            layout="arm64_48" if arch == "arm64" else "x86_64", release=release,
            cpus=cpus,
        )  # fmt: skip
    except ParseError as e:
        raise InvalidArgument(f"cannot describe the machine at {base}: {e}") from None
    return machine, notes
