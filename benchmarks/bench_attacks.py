"""Resource attacks on every reader: each command's time and peak memory, against its reader's limit.

    python benchmarks/bench_attacks.py [--only NAME ...] [--quick]

Each attack builds its input in a temporary directory (oversize files are sparse, so a 3 GiB module costs
no disk: the reader must refuse it by its size, before reading), runs one ``vmapsim`` command in a fresh
process, and records its exit status, wall time and peak RSS (``wait4()``'s ``ru_maxrss``). The growth
is the peak less that of ``vmapsim info`` (the interpreter and the package); a refused input must grow the
process by at most twice its reader's limit. Inputs a reader accepts at its limit (a trace or a
/proc/vmallocinfo of 256 MiB) are timed too: that is the most work a file can ask of that command.
``--quick`` shrinks the accepted inputs to 1/16 (for a look, not for the table). Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import lzma
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vmapsim import procfs, trace
from vmapsim.modules.catalog import MAX_CATALOG_BYTES
from vmapsim.modules.compression import MAX_MODULE_BYTES
from vmapsim.modules.proc_modules import MAX_PROC_MODULES_BYTES
from vmapsim.workloads import PRESETS
from vmapsim.workloads.udev import MAX_MACHINE_BYTES

MODULE = Path(__file__).resolve().parents[1] / "tests" / "data" / "modules" / "msr.ko.xz"
MiB = 1 << 20
GiB = 1 << 30


def sparse(path: Path, size: int) -> Path:
    with path.open("wb") as f:
        f.truncate(size)
    return path


def _alloc_lines(n: int) -> bytes:
    # events/vmalloc allocations one after another up the la57 window, as a long boot would trace them
    base, step = 0xFFA0000000000000, 3 * 4096
    line = ("            init-1       [000] .....     {t:.6f}: alloc_vmap_area: va_start: {a} size={s} align=1 "
            "vstart=0xffa0000000000000 vend=0xffd1ffffffffffff failed=0\n")  # fmt: skip
    return "".join(line.format(t=1 + i * 1e-6, a=base + i * step, s=step) for i in range(n)).encode()


def _trace(tmp: Path, size: int) -> list[str]:
    one = len(_alloc_lines(1))
    (tmp / "trace").write_bytes(_alloc_lines(size // one))
    (tmp / "snap").write_text("0xffd1ffffffffe000-0xffd1fffffffff000    4096 last+0x1/0x2 vmap\n")
    return ["replay", str(tmp / "snap"), str(tmp / "trace"), "--layout", "x86_64_la57", "--kernel", "6.12"]


def _vmallocinfo(tmp: Path, size: int) -> list[str]:
    line = "0x{a:016x}-0x{b:016x}    8192 load_module+0x1/0x2 pages=1 vmalloc N0=1\n"
    one = len(line.format(a=0, b=0))
    base = 0xFFFFC90000000000
    (tmp / "vi").write_text("".join(line.format(a=base + i * 8192, b=base + i * 8192 + 8192)
                                    for i in range(size // one)))  # fmt: skip
    return ["vmallocinfo", str(tmp / "vi")]


def _xz_bomb(path: Path, expanded: int) -> Path:
    comp = lzma.LZMACompressor(preset=0)
    f_head = comp.compress(b"\x7fELF\x02\x01\x01" + b"\0" * 57)  # an ELF header's start, then zeros
    chunk = b"\0" * (16 * MiB)
    with path.open("wb") as f:
        f.write(f_head)
        for _ in range(expanded // len(chunk)):
            f.write(comp.compress(chunk))
        f.write(comp.flush())
    return path


def _catalog_bomb(path: Path, expanded: int) -> Path:
    comp = lzma.LZMACompressor(preset=0)
    with path.open("wb") as f:
        f.write(comp.compress(b'{"format": "vmapsim-catalog", "pad": "'))
        chunk = b" " * (16 * MiB)
        for _ in range(expanded // len(chunk)):
            f.write(comp.compress(chunk))
        f.write(comp.compress(b'"}'))
        f.write(comp.flush())
    return path


def _machine_with(tmp: Path, catalog: str) -> str:
    doc = json.loads(PRESETS["qemu-kvm"].to_json())
    doc["catalog"] = catalog
    (tmp / "m.json").write_text(json.dumps(doc))
    return str(tmp / "m.json")


def _capture_root(tmp: Path) -> list[str]:
    root = tmp / "root"
    cpu = root / "sys" / "devices" / "system" / "cpu"
    cpu.mkdir(parents=True)
    (cpu / "modalias").write_text(PRESETS["qemu-kvm"].cpu_modalias + "\n")
    (root / "sys" / "devices" / "pci0000:00").mkdir()
    os.mkfifo(root / "sys" / "devices" / "pci0000:00" / "modalias")
    (root / "proc").mkdir()
    sparse(root / "proc" / "meminfo", 3 * GiB)
    (root / "proc" / "sys" / "kernel").mkdir(parents=True)
    (root / "proc" / "sys" / "kernel" / "osrelease").write_text("6.12.0\n")
    return ["machine", "capture", "--root", str(root), "--name", "x", "--kmod", "34"]


def _lsmod(tmp: Path, n: int) -> list[str]:
    lines = "".join(f"mod{i} 16384 0 - Live 0xffffffffc{i:07x}\n" for i in range(n))
    (tmp / "modules").write_text(lines)
    return ["lsmod", str(tmp / "modules")]


def _scan_dir(tmp: Path, name: str, make: Callable[[Path], object]) -> list[str]:
    d = tmp / "lib" / "modules" / "6.12.0" / "kernel"
    d.mkdir(parents=True)
    make(d / name)
    return ["scan", str(tmp / "lib" / "modules" / "6.12.0")]


#: name -> (what it is, the reader's limit in bytes or None, build(tmp, quick) -> argv)
ATTACKS: dict[str, tuple[str, int | None, Callable[[Path, bool], list[str]]]] = {
    "trace at the limit": ("a trace of 256 MiB (1.6 million allocations), replayed", trace.MAX_TRACE_BYTES,
                           lambda t, q: _trace(t, trace.MAX_TRACE_BYTES // (16 if q else 1) - MiB)),
    "trace of 1.4 GiB": ("a trace of 1.4 GiB (10 million lines)", trace.MAX_TRACE_BYTES,
                         lambda t, q: [*_trace(t, 4096)[:2], str(sparse(t / "t", 1434 * MiB)), *_trace(t, 4096)[3:]]),
    "vmallocinfo at the limit": ("a /proc/vmallocinfo of 256 MiB (3.8 million areas)", procfs.MAX_VMALLOCINFO_BYTES,
                                 lambda t, q: _vmallocinfo(t, procfs.MAX_VMALLOCINFO_BYTES // (16 if q else 1) - MiB)),
    "vmallocinfo /dev/zero": ("a device named as /proc/vmallocinfo", procfs.MAX_VMALLOCINFO_BYTES,
                              lambda t, q: ["vmallocinfo", "/dev/zero"]),
    "machine file of 1 GiB": ("a machine file of 1 GiB", MAX_MACHINE_BYTES,
                              lambda t, q: ["boot", "--machine", str(sparse(t / "m.json", GiB))]),
    "machine's catalog /dev/zero": ("a machine file whose catalog is /dev/zero", MAX_CATALOG_BYTES,
                                    lambda t, q: ["boot", "--machine", _machine_with(t, "/dev/zero")]),
    "schedule /dev/zero": ("--schedule /dev/zero", 64 * MiB, lambda t, q: ["boot", "--schedule", "/dev/zero"]),
    "resume /dev/zero": ("sweep --resume /dev/zero", 1 * GiB,
                         lambda t, q: ["sweep", "--cpus", "2", "--resume", "/dev/zero"]),
    "module of 3 GiB": ("an uncompressed .ko of 3 GiB in a scanned tree", MAX_MODULE_BYTES,
                        lambda t, q: _scan_dir(t, "big.ko", lambda p: sparse(p, 3 * GiB))),
    "module xz bomb": ("a .ko.xz expanding to 768 MiB", MAX_MODULE_BYTES,
                       lambda t, q: _scan_dir(t, "bomb.ko.xz", lambda p: _xz_bomb(p, 768 * MiB))),
    "catalog xz bomb": ("a catalog of 35 KiB of xz expanding to 240 MiB of JSON", MAX_CATALOG_BYTES,
                        lambda t, q: ["boot", "--catalog", str(_catalog_bomb(t / "c.json.xz", 240 * MiB))]),
    "capture: FIFO and 3 GiB meminfo": ("machine capture of a root with a FIFO modalias and a 3 GiB meminfo",
                                        64 << 10, lambda t, q: _capture_root(t)),  # /proc/meminfo's limit
    "lsmod of 40,000 modules": ("/proc/modules of 40,000 lines", MAX_PROC_MODULES_BYTES,
                                lambda t, q: _lsmod(t, 40_000)),
    "sweep of 2.5 billion runs": ("sweep --cpus 1-8192 --seeds 100000", None,
                                  lambda t, q: ["sweep", "--cpus", "1-8192", "--seeds", "100000"]),
    "scan --workers 1024": ("1024 worker processes asked of 2 CPUs", None,
                            lambda t, q: [*_scan_dir(t, "msr.ko.xz", lambda p: p.write_bytes(MODULE.read_bytes())),
                                          "--workers", "1024"]),
}  # fmt: skip


# A small process forks the command and reports its peak: Linux counts a child's pre-exec copy of its
# parent in ru_maxrss, so the command must not be forked from this (large) process.
_LAUNCH = """
import os, sys
pid = os.fork()
if pid == 0:
    fd = os.open(os.devnull, os.O_RDWR)
    os.dup2(fd, 0); os.dup2(fd, 1)
    os.execv(sys.executable, [sys.executable, "-m", "vmapsim", *sys.argv[1:]])
_, status, usage = os.wait4(pid, 0)
print(os.waitstatus_to_exitcode(status), usage.ru_maxrss)
"""


def measure(argv: list[str]) -> tuple[int, float, int, str]:
    """(exit status, seconds, peak RSS in KiB, last stderr line) of ``vmapsim ARGV`` in a fresh process."""
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", _LAUNCH, *argv], capture_output=True, text=True, check=True,
                          stdin=subprocess.DEVNULL)  # fmt: skip
    seconds = time.perf_counter() - t0
    code, peak = (int(x) for x in done.stdout.split())
    lines = done.stderr.strip().splitlines()
    return code, seconds, peak, lines[-1] if lines else ""


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", action="append", choices=sorted(ATTACKS), help="run only this attack (repeatable)")
    p.add_argument("--quick", action="store_true", help="accepted inputs at 1/16 of their limit")
    args = p.parse_args(argv)
    _, _, base, _ = measure(["info"])
    print(f"baseline (`vmapsim info`): {base // 1024} MiB peak RSS\n")
    print("| attack | limit | exit | s | peak RSS (MiB) | growth ÷ limit | what it said |")
    print("|---|---:|---:|---:|---:|---:|---|")
    worst = 0.0
    for name in args.only or list(ATTACKS):
        what, limit, build = ATTACKS[name]
        with tempfile.TemporaryDirectory() as tmp:
            argv_ = build(Path(tmp), args.quick)
            code, seconds, peak, said = measure(argv_)
        growth = max(peak - base, 0) * 1024
        ratio = f"{growth / limit:.2f}" if limit else "–"
        if limit and code:
            worst = max(worst, growth / limit)
        said = said.replace("|", "\\|").replace(tmp, "…")[:90]
        print(f"| {what} | {f'{limit // MiB} MiB' if limit else '–'} | {code} | {seconds:.1f} | {peak // 1024} | "
              f"{ratio} | {said} |", flush=True)  # fmt: skip
    print(f"\nrefused inputs grew the process by at most {worst:.2f}× their reader's limit")
    return 1 if worst > 2 else 0


if __name__ == "__main__":
    sys.exit(main())
