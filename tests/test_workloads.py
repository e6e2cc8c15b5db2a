"""Boot workloads: the udev coldplug model, kmod's rules, request traces, and vmapsim boot."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vmapsim import ParseError, simulate
from vmapsim.loader import PIPELINES, ModuleStats, Request
from vmapsim.loader.costs import CostModel
from vmapsim.modules import Catalog
from vmapsim.workloads import PRESETS, Modprobe, read_requests, udev_boot, udev_workers, write_requests

C612 = Catalog.builtin("debian-6.12-amd64")
C61 = Catalog.builtin("debian-6.1-amd64")


def test_udev_boot_makes_one_job_per_cpu_uevent_and_device() -> None:
    intel = PRESETS["intel-server"]
    jobs = udev_boot(C612, intel, cpus=16, seed=1)
    cpu_mods = tuple(C612.match_alias(intel.cpu_modalias))
    # 6.12 has no module for ACPI processor objects any more; every device of the preset matches one
    assert sum(j.modules == cpu_mods for j in jobs) == 16
    assert len(jobs) == 16 + len(intel.devices)
    assert all(0 <= j.cpu < 16 and 0 <= j.time < 0.05 for j in jobs)
    old = udev_boot(C61, intel, cpus=16)
    # 6.1: acpi_cpufreq is asked for twice per CPU: by the CPU device (feature ACPI) and by ACPI0007
    assert sum("acpi_cpufreq" in j.modules for j in old) == 32
    assert udev_boot(C612, intel, cpus=16, seed=1) == jobs


def test_kmod_version_picks_the_syscall() -> None:
    machine = PRESETS["qemu-kvm"]
    assert {j.syscall for j in udev_boot(C612, machine, cpus=2)} == {"init_module"}  # kmod 30, .ko.xz
    assert {j.syscall for j in udev_boot(C612, machine, cpus=2, kmod=31)} == {"finit_module"}
    assert {j.syscall for j in udev_boot(C61, machine, cpus=2)} == {"finit_module"}  # uncompressed .ko


@pytest.mark.parametrize("cpus,ram,workers", [(1, 16 << 30, 18), (255, 512 << 30, 526), (4096, 1 << 40, 2048),
                                              (64, 1 << 30, 8)])  # fmt: skip
def test_udev_worker_limit(cpus: int, ram: int, workers: int) -> None:
    assert udev_workers(cpus, ram) == workers


def test_kmod_skips_live_modules_but_not_coming_ones() -> None:
    early, late = Modprobe(("loop",), cpu=0, time=0.0), Modprobe(("loop",), cpu=1, time=1.0)
    r = simulate([early, late], pipeline="v6.4", cpus=2, catalog=C612)
    assert [o.ret for o in r.outcomes] == [0]  # the late job found loop LIVE and made no syscall
    racing = simulate([early, Modprobe(("loop",), cpu=1, time=0.0001)], pipeline="v6.4", cpus=2, catalog=C612)
    assert [o.ret for o in racing.outcomes] == [0, -17]  # still loading: kmod calls finit_module again


def test_modprobe_loads_dependencies_first_and_stops_a_chain_on_error() -> None:
    r = simulate([Modprobe(("kvm_intel",))], pipeline="v6.5", catalog=C612)
    assert [o.module for o in r.outcomes] == ["irqbypass", "kvm", "kvm_intel"]
    failing = Modprobe(("kvm_intel",), fails=(("kvm", 19),))
    r = simulate([failing], pipeline="v6.5", catalog=C612)
    assert [(o.module, o.ret) for o in r.outcomes] == [("irqbypass", 0), ("kvm", -19)]


def test_worker_limit_bounds_concurrent_jobs() -> None:
    jobs = [Modprobe(("xfs",), cpu=c) for c in range(8)]
    r = simulate(jobs, pipeline="v6.4", cpus=8, catalog=C612, workers=2, costs=CostModel(lockstep=True))
    # two workers race (libcrc32c, then xfs); the other six jobs find both LIVE and make no syscall
    assert [o.module for o in r.outcomes].count("xfs") == 2 and len(r.outcomes) == 4


@pytest.mark.parametrize("pipeline", sorted(PIPELINES))
def test_udev_boot_under_every_pipeline_leaves_no_leak(pipeline: str) -> None:
    jobs = udev_boot(C612, PRESETS["intel-server"], cpus=8, kmod=31)
    r = simulate(jobs, pipeline=pipeline, cpus=8, catalog=C612, costs=CostModel(jitter=0.25), workers=32)
    assert r.leaks() == [] and all(o.ret in (0, -17, -16, -26) for o in r.outcomes)
    wanted = {m.name for j in jobs for name in j.modules for m in C612.closure(name)}
    assert set(r.live) == wanted
    if pipeline == "v6.5":
        assert r.reads <= len(wanted) + 8  # only serial duplicates read again


def test_requests_round_trip_through_both_formats() -> None:
    reqs = [Request("loop", cpu=2, time=0.25, path="kernel/drivers/block/loop.ko.xz"),
            Request("msr", syscall="init_module")]  # fmt: skip
    for fmt in ("jsonl", "csv"):
        assert read_requests(write_requests(reqs, fmt=fmt), fmt=fmt) == reqs


@given(st.text(max_size=200), st.sampled_from(["jsonl", "csv"]))
def test_request_parser_raises_only_parse_errors(text: str, fmt: str) -> None:
    with contextlib.suppress(ParseError):
        read_requests(text, fmt=fmt)


def test_malformed_request_lines_name_the_line() -> None:
    with pytest.raises(ParseError, match=r"t\.jsonl:2:"):
        read_requests('{"module": "loop"}\n{"module": "loop", "syscall": "insmod"}\n', source="t.jsonl")
    with pytest.raises(ParseError, match=r"t\.csv:3:"):
        read_requests("time,cpu,module,path,syscall\n0,0,loop,,\nx,0,loop,,\n", fmt="csv", source="t.csv")


def _cli(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "vmapsim", *argv], capture_output=True, text=True)


def test_boot_cli_table_json_and_csv() -> None:
    r = _cli("boot", "--cpus", "8", "--pipeline", "v6.3,v6.5", "--kmod", "34", "--wide")
    lines = r.stdout.splitlines()
    assert r.returncode == 0 and lines[0].startswith("# udev coldplug of intel-server: 8 CPUs, 512 GiB RAM")
    assert lines[3] == "kmod 34 (Debian 13): modprobe passes the compressed file to finit_module(2)"
    assert lines[5].split()[0] == "v6.3" and lines[6].split()[0] == "v6.5" and "kmod 30" not in r.stdout
    data = json.loads(_cli("boot", "--cpus", "8", "--pipeline", "v6.5", "--json", "--kmod", "31").stdout)
    assert data["runs"][0]["pipeline"] == "v6.5" and data["runs"][0]["wasted_bytes"] == 0
    assert data["parameters"]["kmods"] == [31] and data["schema"] == "vmapsim-boot/3"
    csv_text = _cli("boot", "--cpus", "4", "--pipeline", "v6.4", "--csv").stdout
    assert csv_text.splitlines()[0].startswith("machine,cpus,ram,udev_workers,catalog")
    stats = _cli("boot", "--cpus", "4", "--pipeline", "v6.4", "--stats", "--kmod", "30").stdout
    assert "# /sys/kernel/debug/modules/stats after v6.4, kmod 30" in stats and "Mods ever loaded" in stats
    info = _cli("boot", "--cpus", "4", "--pipeline", "v6.3", "--vmallocinfo", "--kmod", "30").stdout
    assert "# /proc/vmallocinfo of v6.3, kmod 30, at the modules window's peak" in info and "load_module" in info


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["boot", "--machine", "vax"], "unknown machine 'vax'"),
        (["boot", "--pipeline", "v9"], "unknown pipeline 'v9'"),
        (["boot", "--catalog", "/none.json.xz"], "cannot read catalog"),
        (["boot", "--cpus", "0"], "--cpus: '0'"),
    ],
)
def test_boot_cli_bad_input(argv: list[str], needle: str) -> None:
    r = _cli(*argv)
    assert r.returncode == 2 and r.stdout == "" and r.stderr.count("\n") == 1 and needle in r.stderr, r.stderr


def test_boot_cli_plots_pinned_bytes(tmp_path: object) -> None:
    pytest.importorskip("matplotlib")
    from pathlib import Path

    out = Path(str(tmp_path)) / "boot.png"
    r = _cli("boot", "--cpus", "8", "--pipeline", "v6.3,v6.5", "--plot", str(out))
    assert r.returncode == 0 and out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    r = _cli("boot", "--cpus", "8", "--pipeline", "v6.5", "--plot", str(Path(str(tmp_path)) / "no" / "x.png"))
    assert r.returncode == 2 and "cannot write" in r.stderr and r.stderr.count("\n") == 1


def _kdevops(seed: int) -> tuple[ModuleStats, ModuleStats]:
    # docs/workloads.md: R1 (255 vCPUs, pre-6.4) and R2 (8 vCPUs, 6.4) of df3e764d8e5c's commit message.
    from vmapsim.workloads import KDEVOPS_COST_JITTER, KDEVOPS_UNSTRIPPED, kdevops_guest, unstripped

    cat = unstripped(C61, KDEVOPS_UNSTRIPPED)
    costs = CostModel(jitter=KDEVOPS_COST_JITTER)
    r1 = simulate(kdevops_guest(255, seed=seed), pipeline="v6.3", cpus=255, catalog=cat, workers=526, costs=costs,
                  seed=seed).stats  # fmt: skip
    r2 = simulate(kdevops_guest(8, seed=seed), pipeline="v6.4", cpus=8, catalog=cat, workers=32, costs=costs,
                  seed=seed).stats  # fmt: skip
    return r1, r2


@pytest.mark.parametrize("seed", [0, 1])
def test_r1_has_only_load_failures_and_r2_both_kinds(seed: int) -> None:
    # before 6.4 every duplicate fails after layout ("load"); with 064f4536 most are caught before it
    r1, r2 = _kdevops(seed)
    assert r1.failed_becoming == 0 and r1.failed_load_modules > 1000
    assert r2.failed_becoming > r2.failed_load_modules > 0


@pytest.mark.xfail(
    strict=True,
    reason="targets not met (docs/workloads.md): predicted, never fitted, R1's wasted bytes come out 12-13% high "
    "(target 10%) and its 'Mods failed on load' 2555-2592 against 1411 (target 25%)",
)
@pytest.mark.parametrize("seed", [0, 1])
def test_r1_predicted_within_the_targets(seed: int) -> None:
    r1, _ = _kdevops(seed)
    assert abs(r1.wasted_bytes / 14588526272 - 1) < 0.10
    assert abs(r1.failed_load_modules / 1411 - 1) < 0.25
