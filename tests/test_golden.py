"""Golden outputs: the answers of a fixed list of commands, byte for byte.

A refactor must not change any answer.  Each command's output is kept in
tests/golden/<name>.txt; this test runs the command again and compares.  Regenerate
only on purpose, and say why in the commit:

    python -m tests.test_golden --update
"""

from __future__ import annotations

import contextlib
import io
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.helpers import console_log, console_section
from vmapsim import cli

HERE = Path(__file__).parent
GOLDEN = HERE / "golden"
DATA = HERE / "data"

#: name -> argv of ``vmapsim``; ``{tmp}`` is a scratch directory, ``{data}`` tests/data.
COMMANDS: dict[str, list[str]] = {
    "boot": ["boot"],
    "boot-1cpu": ["boot", "--cpus", "1"],
    "boot-kmod31-json": ["boot", "--kmod", "31", "--json"],
    "boot-qemu-8-stats-vmallocinfo": ["boot", "--machine", "qemu-kvm", "--cpus", "8", "--stats", "--vmallocinfo"],
    "boot-arm64-csv": ["boot", "--machine", "arm64-server", "--csv"],
    "boot-amd-64-kmod31-stats": ["boot", "--machine", "amd-server", "--cpus", "64", "--kmod", "31", "--stats"],
    "load-kvm-intel-16-stats": ["load", "kvm_intel", "--cpus", "16", "--stats", "--no-deps"],
    "load-kvm-intel-16-modprobe": ["load", "kvm_intel", "--cpus", "16"],
    "load-dm-mod-init-module-lockstep": [
        "load", "dm_mod", "--cpus", "8", "--syscall", "init_module", "--lockstep", "--no-deps",
    ],
    "load-6.1-kasan-align": [
        "load", "kvm_intel", "msr", "--cpus", "32", "--catalog", "debian-6.1-amd64", "--module-align", "32768",
        "--stats", "--no-deps",
    ],
    "load-alias": ["load", "cpu:type:x86,ven0000fam0006mod0055:feature:,0000,0001", "--cpus", "4", "--no-deps"],
    "load-kernels-6.1-6.12-init-module": [
        "load", "dm_mod", "--cpus", "8", "--kernel", "6.1,6.12", "--syscall", "init_module", "--stats", "--no-deps",
    ],
    "load-concurrency-limit-8-json": ["load", "kvm_intel", "--cpus", "32", "--pipeline", "v6.4,concurrency-limit:8",
                                      "--json"],
    "boot-kernel-6.12-kmod31": ["boot", "--cpus", "32", "--kernel", "6.12", "--kmod", "31"],
    "boot-machine-file": [
        "boot", "--machine", "{data}/qemu-tcg-max-modaliases.txt", "--cpus", "8", "--ram", "3", "--kernel", "6.12",
    ],
    "worst-16-pct-json": ["worst", "--cpus", "16", "--budget", "8", "--strategy", "pct", "--json"],
    "worst-16-guided-6.12": ["worst", "--cpus", "16", "--budget", "8", "--kernel", "6.12", "--stats"],
    "demo": ["demo"],
    "demo-6.9-8cpus": ["demo", "--kernel", "6.9", "--cpus", "8"],
    "demo-arm64": ["demo", "--layout", "arm64_48"],
    "info": ["info"],
    "info-json": ["info", "--json"],
    "demo-json": ["demo", "--json"],
    "replay-6.12-1cpu": ["replay", "{tmp}/qemu-6.12-1cpu.snap", "{tmp}/qemu-6.12-1cpu.trace", "--kernel", "6.12"],
    "replay-6.12-4cpu": [
        "replay", "{tmp}/qemu-6.12-4cpu.snap", "{tmp}/qemu-6.12-4cpu.trace", "--kernel", "6.12", "--cpus", "4",
    ],
    "replay-6.1-1cpu": ["replay", "{tmp}/qemu-6.1-1cpu.snap", "{tmp}/qemu-6.1-1cpu.trace", "--kernel", "6.1"],
    "replay-6.12-2cpu-from-boot": [
        "replay", "{tmp}/qemu-6.12-2cpu-from-boot.snap", "{tmp}/qemu-6.12-2cpu-from-boot.trace", "--kernel", "6.12",
    ],
    "replay-6.1-4cpu-dup-kprobes": [
        "replay", "{tmp}/qemu-6.1-4cpu-dup-dm-mod.snap", "{tmp}/qemu-6.1-4cpu-dup-dm-mod.trace", "--kernel", "6.1",
    ],
    "replay-6.12-4cpu-as-6.3": [
        "replay", "{tmp}/qemu-6.12-4cpu.snap", "{tmp}/qemu-6.12-4cpu.trace", "--kernel", "6.3", "--cpus", "4",
    ],
    "scan-modules-csv": ["scan", "{data}/modules", "--csv", "-o", "{tmp}/scan.csv", "--workers", "1"],
}  # fmt: skip


def _loader_story() -> str:
    """Every pipeline on a mixed workload: each outcome's allocations and timeline, stats, peaks."""
    from vmapsim import layouts, simulate
    from vmapsim.engine import Seeded
    from vmapsim.loader import PIPELINES, Request
    from vmapsim.loader.costs import CostModel
    from vmapsim.units import MiB
    from vmapsim.workloads import Modprobe

    reqs: list[Request | Modprobe] = [Request("dm_mod", cpu=c, time=c * 0.001) for c in range(6)]
    reqs += [Request("msr", cpu=c, syscall="init_module") for c in range(3)]
    reqs += [Request("loop", cpu=1, init_errno=19), Request("loop", cpu=2, time=0.05, after=9)]
    reqs += [Modprobe(("kvm_intel",), cpu=c, time=0.002 * c) for c in range(4)]
    out = []
    for name in PIPELINES:
        for seed, costs, label, layout in (
            (0, CostModel(), "timed", layouts.X86_64),
            (3, CostModel(jitter=0.25), "jitter 0.25", layouts.X86_64),
            (1, CostModel(lockstep=True), "lockstep", layouts.X86_64),
            (2, CostModel(), "timed, 12 MiB i386 window", layouts.i386(12 * MiB)),
        ):
            r = simulate(reqs, pipeline=name, cpus=8, catalog="debian-6.12-amd64", costs=costs, seed=seed,
                         scheduler=Seeded(seed), workers=2, layout=layout)  # fmt: skip
            out.append(f"## {name} seed {seed} {label}")
            for o in r.outcomes:
                out.append(f"{o.module} cpu{o.request.cpu} ret={o.ret} {o.start!r}..{o.end!r}")
                out += [f"  {a.kind} {a.addr:#x} {a.size} {a.region} {a.allocated!r} {a.freed!r}"
                        for a in o.allocations]  # fmt: skip
                out.append(f"  {o.timeline}")
            out += [f"failure {f.time!r} {f.request} {f.size} {f.kind} {f.message}" for f in r.failures]
            out.append(f"peak {r.peak_pinned} at {r.peak_time} live {r.live} leaks {len(r.leaks())}")
            out.append(f"{len(r.pinned_over_time)} samples, last {r.pinned_over_time[-1]}")
            out.append(r.stats.render())
    return "\n".join(out) + "\n"


def _space_story() -> str:
    """A seeded mix of every allocator call on each kernel profile: addresses and the final text."""
    import random

    from vmapsim import InvalidArgument, VmapAllocationError, VmapSpace, layouts, procfs, profiles

    out = []
    for profile in profiles.PROFILES:
        for layout in (layouts.X86_64, layouts.i386()):
            rng = random.Random(7)
            space = VmapSpace(layout, cpus=8, profile=profile)
            live: list[tuple[str, int, int]] = []
            log = []
            for _ in range(400):
                op = rng.randrange(9)
                cpu = rng.randrange(8)
                try:
                    if op < 3 or not live:
                        a = space.vmalloc(rng.choice([1, 4096, 9000, 3 << 20, 70000]), caller="v", cpu=cpu)
                        live.append(("v", a, 0))
                    elif op == 3:
                        live.append(("m", space.vmap(rng.randrange(1, 40), cpu=cpu), 0))
                    elif op == 4:
                        n = rng.choice([1, 3, 8, 100])
                        live.append(("r", space.vm_map_ram(n, cpu=cpu), n))
                    elif op == 5:
                        live.append(("i", space.ioremap(rng.randrange(1, 1 << 21), phys=0x1000, cpu=cpu), 0))
                    elif op == 6:
                        m = space.layout.modules
                        a = space.vmalloc_node_range(rng.randrange(1, 1 << 20), start=m.start, end=m.end,
                                                     flush_reset_perms=rng.random() < 0.5, cpu=cpu)  # fmt: skip
                        live.append(("v", a, 0))
                    elif op == 7 and rng.random() < 0.1:
                        space.purge()
                    else:
                        kind, a, n = live.pop(rng.randrange(len(live)))
                        if kind == "r":
                            space.vm_unmap_ram(a, n)
                        else:
                            {"v": space.vfree, "m": space.vunmap, "i": space.iounmap}[kind](a)
                    log.append(f"{op}:{live[-1][1]:#x}" if live else f"{op}")
                except (VmapAllocationError, InvalidArgument) as e:
                    log.append(f"{op}:error {e}")
            out.append(f"## {profile.name} {layout.name}: purges {space.purges}")
            out.append(" ".join(log))
            out.append(procfs.render_vmallocinfo(space))
            out.append(procfs.render_meminfo(space))
            out += [f"{r.name} {space.usage(r)}" for r in space.layout.regions]
    return "\n".join(out) + "\n"


#: name -> a function of the public API whose text is golden too.
STORIES: dict[str, Callable[[], str]] = {"api-loader": _loader_story, "api-space": _space_story}


def _prepare(tmp: Path) -> None:
    """Split the shipped QEMU captures into the snapshot and trace files replay reads."""
    for capture in sorted([*DATA.glob("qemu-*cpu*.txt"), *DATA.glob("qemu-*.txt.xz")]):
        text = console_log(capture.name)
        stem = capture.name.removesuffix(".xz").removesuffix(".txt")
        (tmp / f"{stem}.snap").write_text(console_section(text, "vmallocinfo-start"))
        (tmp / f"{stem}.trace").write_text(console_section(text, "trace"))


def run(name: str, tmp: Path) -> str:
    """The output of one golden command (stdout, then any file it wrote), with paths made relative."""
    if name in STORIES:
        return STORIES[name]()
    argv = [a.format(tmp=tmp, data=DATA) for a in COMMANDS[name]]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = cli.main(argv)
    text = f"$ vmapsim {' '.join(COMMANDS[name])}\n[exit {status}]\n{out.getvalue()}"
    for written in sorted(tmp.glob("*.csv")):
        text += f"--- {written.name}\n{written.read_text()}"
        written.unlink()
    return text.replace(str(tmp), "{tmp}").replace(str(DATA), "{data}")


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("golden")
    _prepare(tmp)
    return tmp


@pytest.mark.parametrize("name", sorted([*COMMANDS, *STORIES]))
def test_golden_output_is_unchanged(name: str, scratch: Path) -> None:
    expected = (GOLDEN / f"{name}.txt").read_text()
    assert run(name, scratch) == expected


def _update(names: list[str], write: Callable[[str, str], None]) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        _prepare(tmp)
        for name in names:
            write(name, run(name, tmp))


if __name__ == "__main__":
    if sys.argv[1:2] != ["--update"]:
        sys.exit("usage: python -m tests.test_golden --update [NAME ...]")
    GOLDEN.mkdir(exist_ok=True)
    _update(sys.argv[2:] or sorted([*COMMANDS, *STORIES]), lambda n, t: (GOLDEN / f"{n}.txt").write_text(t))
