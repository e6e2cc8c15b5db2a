"""A real udev coldplug: Debian's systemd, udev and kmod booting a Debian kernel under QEMU.

    python -m tests.realkernel.udevboot --kernel 7.3 --cpus 4 --out /tmp/udev-4cpu.txt

Debian 12's userspace (kmod 30: init_module(2)) boots Debian 12's 6.12; Debian 13's (kmod 34:
finit_module(2) of the compressed file) boots trixie's 6.12 and trixie-backports' 7.3; Debian 11's (kmod 28,
systemd 247: finit_module(2) of the uncompressed file) boots its 5.10 (``SUITES``). The root
file system is made once with ``debootstrap --variant=minbase --include=systemd-sysv,udev,kmod <suite>``
(cached beside the kernel packages), the kernel's modules are added with depmod, and the whole tree boots
as an initramfs with systemd as PID 1 (``rdinit=``). The kernel traces, from boot, every
module_load/module_free, every init_module/finit_module return, and (a kprobe on do_sys_openat2) every
file opened, of which the module files are kept. A oneshot unit waits for ``udevadm settle``, prints the
modaliases udev saw, the trace and /proc/modules between markers, and powers off.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter, defaultdict
from pathlib import Path

from tests.helpers import has_sections
from tests.realkernel.capture import kernel_files, kernel_tree
from vmapsim.loader.costs import CostModel

_DUMP = """#!/bin/sh
exec > /dev/ttyS0 2>&1
udevadm settle --timeout=120
sleep 2
echo "=== BEGIN modalias"
sed -n 's/^MODALIAS=//p' /sys/devices/system/cpu/cpu0/uevent
for f in /sys/bus/*/devices/*/modalias; do cat "$f"; done | sort -u
echo "=== END modalias"
echo "=== BEGIN trace"
cat /sys/kernel/tracing/trace
echo "=== END trace"
echo "=== BEGIN modules"
cat /proc/modules
echo "=== END modules"
sleep 1  # let the serial port drain before the power goes
echo o > /proc/sysrq-trigger
"""
_UNIT = """[Unit]
Description=vmapsim: dump the coldplug trace and power off
After=systemd-udev-trigger.service systemd-udevd.service

[Service]
Type=oneshot
ExecStart=/usr/local/sbin/vmapsim-dump

[Install]
WantedBy=multi-user.target
"""
_EVENTS = (
    "module:module_load,module:module_free,syscalls:sys_enter_init_module,syscalls:sys_exit_init_module,"
    "syscalls:sys_exit_finit_module"
)


#: The Debian userspace each kernel boots with: Debian 12's kmod 30 for its 6.12, Debian 13's kmod 34 for
#: trixie's own 6.12 and for the 7.3 of trixie-backports.
SUITES = {"6.12": "bookworm", "6.12deb13": "trixie", "7.3": "trixie", "5.10": "bullseye"}
#: kmod of each suite: < 31 decompresses and calls init_module(2), newer passes the file to finit_module(2);
#: Debian 11's modules are not compressed, so its kmod 28 passes them to finit_module(2).
KMOD = {"bookworm": 30, "trixie": 34, "bullseye": 28}


def root_tree(suite: str = "bookworm") -> Path:
    """The debootstrapped Debian userspace of ``suite``, made once."""
    cache = Path(os.environ.get("VMAPSIM_KERNEL_CACHE", "/tmp/vmapsim-kernels"))
    root = cache / f"udevroot-{suite}"
    if not (root / "usr" / "bin" / "udevadm").exists():
        cache.mkdir(parents=True, exist_ok=True)
        subprocess.run(["debootstrap", "--variant=minbase", "--include=systemd-sysv,udev,kmod", suite, str(root),
                        "http://deb.debian.org/debian"], check=True, capture_output=True)  # fmt: skip
    return root


SECTIONS = ("modalias", "trace", "modules")


def boot(cpus: int = 4, version: str = "6.12", timeout: int = 900, tries: int = 3) -> str:
    """The console text of a boot that printed every dump section.

    Under TCG the guest kernel now and then dies before the dump (seen once: "Fatal exception in interrupt"
    during coldplug); such a boot says nothing about vmapsim, so it is booted again, up to ``tries`` times.
    The last console is returned whatever it holds; ``has_sections(text, SECTIONS)`` tells whether it is whole.
    """
    text = ""
    for _ in range(tries):
        text = _boot_once(cpus, version, timeout)
        if has_sections(text, SECTIONS):
            break
    return text


def _boot_once(cpus: int, version: str, timeout: int) -> str:
    kver, vmlinuz, moddir = kernel_files(kernel_tree(version))
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp) / "root"
        subprocess.run(["cp", "-a", str(root_tree(SUITES[version])), str(work)], check=True)
        shutil.copytree(moddir, work / "usr/lib/modules" / kver, symlinks=True)
        subprocess.run(["chroot", str(work), "depmod", kver], check=True)  # the root's own kmod
        dump = work / "usr/local/sbin/vmapsim-dump"
        dump.write_text(_DUMP)
        dump.chmod(0o755)
        (work / "etc/systemd/system/vmapsim-dump.service").write_text(_UNIT)
        wants = work / "etc/systemd/system/multi-user.target.wants"
        wants.mkdir(parents=True, exist_ok=True)
        (wants / "vmapsim-dump.service").symlink_to("/etc/systemd/system/vmapsim-dump.service")
        (work / "etc/hostname").write_text("vmapsim\n")
        for unit in ("serial-getty@ttyS0.service", "getty.target"):  # nothing else may own the console
            (work / "etc/systemd/system" / unit).symlink_to("/dev/null")
        initrd = Path(tmp) / "initrd.cpio"
        with open(initrd, "wb") as out:
            files = subprocess.run(["find", "."], cwd=work, check=True, capture_output=True).stdout
            subprocess.run(["cpio", "-o", "-H", "newc", "--quiet"], cwd=work, input=files, stdout=out, check=True)
        disk = Path(tmp) / "disk.img"
        disk.write_bytes(b"\0" * (8 << 20))
        append = (
            "console=ttyS0 nokaslr quiet loglevel=1 panic=-1 rdinit=/lib/systemd/systemd "
            f"systemd.show_status=0 trace_event={_EVENTS},kprobes:vmapsim_open trace_buf_size=8M "
            "kprobe_event=p:vmapsim_open,do_sys_openat2,path=+0(%si):ustring"
        )
        cmd = [
            "qemu-system-x86_64", "-accel", "tcg", "-cpu", "max", "-smp", str(cpus), "-m", "3G", "-nographic",
            "-no-reboot", "-kernel", str(vmlinuz), "-initrd", str(initrd),
            "-append", append,
            "-drive", f"file={disk},if=none,id=nv,format=raw", "-device", "nvme,serial=vmapsim,drive=nv",
            "-netdev", "user,id=n0", "-device", "virtio-net-pci,netdev=n0",
        ]  # fmt: skip
        out = subprocess.run(cmd, capture_output=True, timeout=timeout, check=True).stdout.decode(errors="replace")
    return module_opens_only(re.sub(r"\x1b\[[0-9;?]*[a-zA-Z]|\x1bc", "", out).replace("\r", ""))


def module_opens_only(text: str) -> str:
    """The console without the traced opens of files that are not modules.

    Every open of the boot is traced; only a module file's open names a finit_module() call.
    """
    return "".join(line for line in text.splitlines(keepends=True)
                   if "vmapsim_open:" not in line or re.search(r'\.ko(?:\.\w+)?"$', line))  # fmt: skip


#: What a udev worker is called in the trace: "(udev-worker)" from systemd 253, a forked "systemd-udevd" before.
_UDEV_WORKERS = ("(udev-worker)", "systemd-udevd")
_LINE = re.compile(r"^\s*(?P<task>.+?)-(?P<pid>\d+)\s+\[\d+\]\s+\S+\s+[\d.]+:\s+(?P<rest>.*)$")


def calls_by_module(trace: str, sizes: dict[int, str], *, udev: bool | None = None) -> dict[str, Counter[int]]:
    """Per module, how many init_module()/finit_module() calls returned each value (0 or -errno).

    kmod < 31 passes the whole decompressed file to init_module(2), so the ``len`` of each call names the
    module (``sizes``: decompressed size → name). kmod 34 opens the module file and passes it to
    finit_module(2): the ``.ko`` the same process opened last (the do_sys_openat2 kprobe) names it.
    ``udev=True`` counts only calls by udev workers, ``False`` only the others (request_module()'s modprobe,
    systemd), None all.
    """
    pending: dict[str, str] = {}
    out: dict[str, Counter[int]] = defaultdict(Counter)
    for raw in trace.splitlines():
        m = _LINE.match(raw)
        if m is None or (udev is not None and (m["task"].strip() in _UDEV_WORKERS) != udev):
            continue
        pid, rest = m["pid"], m["rest"]
        enter = re.match(r"sys_init_module\(umod: \w+, len: ([0-9a-f]+)", rest)
        opened = re.match(r'vmapsim_open: .* path=".*/([^/]+)\.ko(?:\.\w+)?"$', rest)
        if enter:
            pending[pid] = sizes.get(int(enter.group(1), 16), "?")
        elif opened:
            pending[pid] = opened.group(1).replace("-", "_")
        elif re.match(r"sys_f?init_module -> ", rest):
            value = int(rest.split("->")[-1].strip(), 16)
            out[pending.pop(pid, "?")][value - (1 << 64) if value >= 1 << 63 else value] += 1
    return dict(out)


def predict(
    text: str, cpus: int, costs: CostModel | None = None, seed: int = 0, version: str = "6.12"
) -> tuple[dict[str, Counter[int]], dict[str, Counter[int]]]:
    """(real, predicted) init_module()/finit_module() outcomes per module for the modules udev loads by itself.

    The machine is what the boot showed, built by ``Machine.from_modaliases`` from its modalias dump: 3 GiB,
    the userspace's kmod (``SUITES``, ``KMOD``), the modules whose init failed (-ENODEV) there, and the
    modules the kernel's request_module() and systemd loaded (``preloads``). Those preloaded modules are left
    out of the comparison.
    """
    from tests.helpers import console_section
    from tests.realkernel.harness import CATALOGS
    from vmapsim import simulate
    from vmapsim.loader.costs import QEMU_TCG_SHARED
    from vmapsim.modules import Catalog
    from vmapsim.workloads import Machine, udev_boot, udev_workers

    cat = Catalog.builtin(CATALOGS[version])
    sizes = {m.decompressed_size: m.name for m in cat}
    trace = console_section(text, "trace")
    real = calls_by_module(trace, sizes, udev=True)
    others = calls_by_module(trace, sizes, udev=False)
    failing = tuple(sorted((name, 19) for name, rets in real.items() if -19 in rets))
    preloads = tuple(sorted(n for n in others if n != "?"))
    machine = Machine.from_modaliases(console_section(text, "modalias"), name="qemu-tcg-max", ram=3 << 30,
                                      kmod=KMOD[SUITES[version]],
                                      fails=failing, preloads=preloads)  # fmt: skip
    jobs = udev_boot(cat, machine, cpus, jitter=0.01, seed=seed)
    r = simulate(jobs, kernel=version, cpus=cpus, catalog=cat, costs=costs or QEMU_TCG_SHARED,
                 workers=udev_workers(cpus, machine.ram), seed=seed)  # fmt: skip
    predicted: dict[str, Counter[int]] = defaultdict(Counter)
    for o in r.outcomes:
        predicted[o.module][o.ret] += 1
    cpu_modules = {m.name for name in cat.match_alias(machine.cpu_modalias) for m in cat.closure(name)}
    keep = cpu_modules - set(others)
    return ({n: real.get(n, Counter()) for n in sorted(keep)}, {n: predicted.get(n, Counter()) for n in sorted(keep)})


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cpus", type=int, default=4)
    p.add_argument("--kernel", default="6.12", choices=sorted(SUITES))
    p.add_argument("--out", required=True)
    args = p.parse_args()
    Path(args.out).write_text(boot(args.cpus, args.kernel))
    return 0


if __name__ == "__main__":
    sys.exit(main())
