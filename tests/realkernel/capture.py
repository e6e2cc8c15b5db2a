"""Boot a real Debian kernel under QEMU and capture its vmalloc trace (the real-kernel probe).

    python tests/realkernel/capture.py --kernel 6.12 --cpus 1 --out tests/data/qemu-6.12-1cpu.txt \\
        crypto/ansi_cprng crypto/aegis128 ...

Fetches the kernel package with ``apt-get download`` (Debian 13 backports' 7.3 through a private apt
state directory naming trixie and trixie-backports; cached in
``$VMAPSIM_KERNEL_CACHE``, default /tmp/vmapsim-kernels; never committed), compiles
init.c with ``gcc -static``, packs it and the named modules into a newc initramfs
(written here in Python, so no cpio binary is needed), boots ``qemu-system-x86_64``
(TCG, ``-cpu max``, ``nokaslr``) and writes the console text: the starting
/proc/vmallocinfo, one ``vmapsim-load`` line per module, the trace, the final
vmallocinfo and /proc/modules, between ``=== BEGIN/END <name>`` markers.
"""

from __future__ import annotations

import argparse
import gzip
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from vmapsim.modules.compression import compression_of, decompress

PACKAGES = {
    "6.12": "linux-image-6.12.117+deb12-amd64",
    "6.1": "linux-image-6.1.0-56-amd64",
    # Debian 13's backports split the kernel (linux-binary: /usr/lib/modules/<kver>/vmlinuz), its modules and
    # linux-base (config, modules.order)
    "7.3": "linux-binary-7.3.4+deb13-amd64 linux-modules-7.3.4+deb13-amd64 linux-base-7.3.4+deb13-amd64",
    # Debian 13's own 6.12: vmlinuz in /boot, modules under /usr/lib/modules
    "6.12deb13": "linux-image-6.12.117+deb13-amd64",
    # Debian 11's 5.10 (bullseye-security)
    "5.10": "linux-image-5.10.0-46-amd64",
}
#: The suites each package comes from when the machine's own apt lists do not have it (archive, suite).
SUITES = {
    "7.3": (("debian", "trixie"), ("debian", "trixie-backports")),
    "6.12deb13": (("debian", "trixie"), ("debian", "trixie-backports")),
    "5.10": (("debian", "bullseye"), ("debian-security", "bullseye-security")),
}
#: Kernels without the vmalloc trace events (6.3+), traced by kprobes.
KPROBES = {"6.1", "5.10"}
HERE = Path(__file__).resolve().parent


def _newc(entries: list[tuple[str, int, bytes]]) -> bytes:
    """A newc cpio archive of (name, mode, data) entries."""
    out = bytearray()
    for ino, (name, mode, data) in enumerate([*entries, ("TRAILER!!!", 0, b"")], 1):
        fields = [ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(name) + 1, 0]
        out += b"070701" + b"".join(b"%08x" % f for f in fields) + name.encode() + b"\0"
        out += b"\0" * (-len(out) % 4) + data
        out += b"\0" * (-len(out) % 4)
    return bytes(out)


def kernel_tree(version: str) -> Path:
    """The extracted package root for a kernel version, downloading it once."""
    cache = Path(os.environ.get("VMAPSIM_KERNEL_CACHE", "/tmp/vmapsim-kernels"))
    names = PACKAGES[version].split()
    root = cache / names[0]
    if not (root / "boot").is_dir() and not (root / "usr/lib/modules").is_dir():
        cache.mkdir(parents=True, exist_ok=True)
        options = _private_apt(cache, version) if version in SUITES else []
        subprocess.run(["apt-get", *options, "download", *names], cwd=cache, check=True, capture_output=True)
        for name in names:
            deb = next(cache.glob(name + "_*.deb"))
            subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
    return root


def _private_apt(cache: Path, version: str) -> list[str]:
    """apt options for the version's suites, with a state directory of our own (the system's untouched)."""
    suites = SUITES[version]
    state = cache / f"apt-{suites[0][1]}"
    (state / "lists" / "partial").mkdir(parents=True, exist_ok=True)
    keyring = "/usr/share/keyrings/debian-archive-keyring.gpg"
    (state / "sources.list").write_text(
        "".join(f"deb [signed-by={keyring}] http://deb.debian.org/{archive} {suite} main\n"
                for archive, suite in suites)
    )  # fmt: skip
    options = ["-o", f"Dir::Etc::SourceList={state / 'sources.list'}", "-o", "Dir::Etc::SourceParts=/dev/null",
               "-o", f"Dir::State::Lists={state / 'lists'}", "-o", "APT::Sandbox::User=root"]  # fmt: skip
    subprocess.run(["apt-get", *options, "update", "-qq"], check=True, capture_output=True)
    return options


def kernel_files(root: Path) -> tuple[str, Path, Path]:
    """(release, vmlinuz, modules directory) of an extracted kernel package, old layout or Debian 13's."""
    if (root / "lib/modules").is_dir():
        kver = next((root / "lib/modules").iterdir()).name
        return kver, root / "boot" / f"vmlinuz-{kver}", root / "lib/modules" / kver
    kver = next((root / "usr/lib/modules").iterdir()).name
    vmlinuz = root / "usr/lib/modules" / kver / "vmlinuz"
    return kver, vmlinuz if vmlinuz.is_file() else root / "boot" / f"vmlinuz-{kver}", root / "usr/lib/modules" / kver


def capture(
    version: str,
    cpus: int,
    modules: list[str],
    trace: str | None = None,
    *,
    dup: int = 0,
    syscall: str = "finit",
    plain: bool = False,
    from_boot: bool = False,
) -> str:
    """Boot once and return the console text.

    ``dup``: load the first module from that many processes at once, one per CPU; ``syscall="init"``
    passes the (decompressed) file to init_module(2); ``plain`` ships modules decompressed;
    ``from_boot`` traces the allocator from the first allocation (``trace_event=`` on the command line).
    """
    root = kernel_tree(version)
    _, kernel, moddir = kernel_files(root)
    with tempfile.TemporaryDirectory() as tmp:
        init = Path(tmp) / "init"
        subprocess.run(["gcc", "-static", "-O2", "-o", str(init), str(HERE / "init.c")], check=True)
        entries = [(d, 0o40755, b"") for d in ("proc", "sys", "dev", "m")]
        entries.append(("init", 0o100755, init.read_bytes()))
        names = []
        for mod in modules:
            path = next((moddir / "kernel").glob(mod + ".ko*"))
            name, data = path.name, path.read_bytes()
            if (plain or syscall == "init") and compression_of(name) != "none":
                data = decompress(data, str(compression_of(name)), name)  # what kmod does before init_module
                name = name[: name.index(".ko") + 3]
            names.append(name)
            entries.append((f"m/{name}", 0o100644, data))
        initrd = Path(tmp) / "initrd.gz"
        initrd.write_bytes(gzip.compress(_newc(entries)))
        mode = trace or ("kprobes" if version in KPROBES else "events")
        if from_boot and mode == "kprobes":
            # kprobe_event= registers its probes at fs_initcall, after the boot's first allocations: no trace
            # of a kernel without the vmalloc trace events (6.3+) starts at the first one
            raise ValueError(f"{version} has no vmalloc trace events: a trace from boot needs 6.3 or later")
        cmd = [
            "qemu-system-x86_64", "-accel", "tcg", "-cpu", "max", "-smp", str(cpus), "-m", "512M",
            "-nographic", "-no-reboot", "-kernel", str(kernel), "-initrd", str(initrd), "-append",
            f"console=ttyS0 nokaslr quiet loglevel=1 panic=-1 vmapsim.mods={','.join(names)} vmapsim.trace={mode}"
            + (f" vmapsim.dup={dup}" if dup else "") + f" vmapsim.syscall={syscall}"
            + (" trace_event=vmalloc:* trace_buf_size=4M vmapsim.fromboot=1" if from_boot else ""),
        ]  # fmt: skip
        out = subprocess.run(cmd, capture_output=True, timeout=300, check=True).stdout.decode(errors="replace")
    # Drop terminal control sequences QEMU's firmware prints before the kernel starts.
    return re.sub(r"\x1b\[[0-9;?]*[a-zA-Z]|\x1bc", "", out).replace("\r", "")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kernel", choices=sorted(PACKAGES), default="6.12")
    p.add_argument("--cpus", type=int, default=1)
    p.add_argument("--trace", choices=["events", "kprobes"])
    p.add_argument("--out", required=True)
    p.add_argument("--dup", type=int, default=0, help="load the first module from N processes at once")
    p.add_argument("--syscall", choices=["finit", "init"], default="finit")
    p.add_argument("--plain", action="store_true", help="ship the modules decompressed")
    p.add_argument("--from-boot", action="store_true", help="trace the allocator from its first allocation")
    p.add_argument("modules", nargs="+", help="module paths under kernel/, without .ko*")
    args = p.parse_args()
    if not shutil.which("qemu-system-x86_64"):
        print("capture: qemu-system-x86_64 is not installed (apt-get install qemu-system-x86)", file=sys.stderr)
        return 2
    text = capture(
        args.kernel, args.cpus, args.modules, args.trace, dup=args.dup, syscall=args.syscall, plain=args.plain,
        from_boot=args.from_boot,
    )  # fmt: skip
    Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
