"""Machine files (the presets, vmapsim machine capture, --machine FILE), the kdevops guest as a machine,
and modules of the user's own sizes (--image)."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers import fake_root
from vmapsim import Catalog, InvalidArgument, ParseError, Request, simulate
from vmapsim.loader.costs import CostModel
from vmapsim.units import KiB
from vmapsim.workloads import (
    KDEVOPS_COST_JITTER,
    KDEVOPS_UNSTRIPPED,
    PRESETS,
    Machine,
    capture,
    find_machine,
    kdevops_guest,
    udev_boot,
    unstripped,
)
from vmapsim.workloads.sysfs import MAX_DEPTH

DATA = Path(__file__).parent / "data"


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "vmapsim", *argv], capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_is_a_machine_file_that_reads_back(name: str, tmp_path: Path) -> None:
    m = PRESETS[name]
    path = tmp_path / "m.json"
    path.write_text(m.to_json())
    assert Machine.load(path) == m == find_machine(str(path)) == find_machine(name)


@settings(max_examples=30, deadline=None)
@given(cpus=st.none() | st.integers(1, 8192), ram=st.integers(1, 1 << 50), kmod=st.integers(1, 999),
       devices=st.lists(st.sampled_from(["pci:v00008086d00001572sv00008086sd00000000bc02sc00i00", "acpi:PNP0C0C:",
                                         "virtio:d00000001v00001AF4"]), max_size=5))  # fmt: skip
def test_a_machine_file_round_trips(cpus: int | None, ram: int, kmod: int, devices: list[str]) -> None:
    m = attrs.evolve(PRESETS["qemu-kvm"], cpus=cpus, ram=ram, kmod=kmod, devices=tuple(devices))
    assert Machine.from_json(m.to_json()) == m


@pytest.mark.parametrize(
    "edit,needle",
    [
        (lambda d: d.update(ram="8G"), "ram"),
        (lambda d: d.update(kmod=True), "kmod"),
        (lambda d: d.update(colour="blue"), "colour"),
        (lambda d: d.pop("cpu_modalias"), "cpu_modalias"),
        (lambda d: d.update(schema="vmapsim-machine/9"), "not a vmapsim machine file"),
        (lambda d: d.update(cpus=0), "cpus"),
    ],
)
def test_a_bad_machine_file_is_a_parse_error_naming_the_field(edit: object, needle: str) -> None:
    doc = json.loads(PRESETS["qemu-kvm"].to_json())
    edit(doc)  # type: ignore[operator]
    with pytest.raises(ParseError, match=needle):
        Machine.from_json(json.dumps(doc), source="m.json")


def test_an_unknown_machine_is_one_clear_error() -> None:
    with pytest.raises(InvalidArgument, match=r"unknown machine .vax.*machine capture"):
        find_machine("vax")
    r = _run("boot", "--machine", "vax")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "unknown machine 'vax'" in r.stderr


def test_capture_reads_a_systems_files(tmp_path: Path) -> None:
    m, notes = capture(fake_root(tmp_path))
    assert (m.name, m.cpus, m.ram, m.kmod, m.release) == ("box", 8, 65536000 << 10, 34, "6.12.117+deb12-amd64")
    assert m.catalog == "debian-6.12-amd64" and m.layout == "x86_64" and m.acpi_processors and notes == []
    assert m.devices == ("pci:v00008086d00001572sv00008086sd00000000bc02sc00i00",) * 2  # two NICs, two uevents
    jobs = udev_boot(Catalog.builtin(m.catalog), m, m.cpus or 1)
    assert sum(j.modules == ("i40e",) for j in jobs) == 2


def test_capture_says_what_it_had_to_guess(tmp_path: Path) -> None:
    root = fake_root(tmp_path, kmod=None)
    (root / "proc/sys/kernel/osrelease").write_text("6.18.1-custom\n")
    m, notes = capture(root)
    assert m.kmod == 30 and any("kmod's version not found" in n for n in notes)
    assert any("no shipped catalog of 6.18.1-custom" in n for n in notes) and m.catalog in Catalog.builtins()
    with pytest.raises(InvalidArgument, match="no CPU modalias"):
        capture(tmp_path / "nowhere")


@pytest.mark.parametrize(
    "path,text,needle",
    [
        ("sys/devices/system/cpu/online", "0-3,\n", "CPU in '0-3,' ''"),
        ("sys/devices/system/cpu/online", "-1\n", "CPU in '-1' ''"),
        ("sys/devices/system/cpu/online", "3-1\n", "'3-1' ends before it starts"),
        ("sys/devices/system/cpu/online", "0-99999999999\n", "'99999999999' is not a decimal number from 0"),
        ("proc/meminfo", f"MemFree: 1 kB\nMemTotal: {'9' * 5000} kB\n", "meminfo:2: MemTotal '999"),
        ("proc/sys/kernel/osrelease", f"6.{'1' * 1000}\n", "kernel '6.111"),
        ("proc/sys/kernel/osrelease", f"6.{'1' * 5000}\n", "more than 4096 bytes, too big to be that file"),
        ("proc/meminfo", "MemTotal: 1 kB\n" * 10000, "meminfo: more than 65536 bytes"),
        ("var/lib/dpkg/status", f"Package: kmod\nVersion: {'3' * 5000}\n", "kmod version '333"),
    ],
)
def test_capture_refuses_a_bad_tree_naming_the_value(tmp_path: Path, path: str, text: str, needle: str) -> None:
    root = fake_root(tmp_path)
    (root / path).write_text(text)
    with pytest.raises((InvalidArgument, ParseError)) as e:
        capture(root)
    assert needle in str(e.value)


def test_capture_skips_what_it_cannot_read_safely(tmp_path: Path) -> None:
    root = fake_root(tmp_path)
    (root / "sys/devices/fifo").mkdir()
    os.mkfifo(root / "sys/devices/fifo/modalias")  # opened, it would block the capture forever
    depth = MAX_DEPTH + 1000  # os.walk recurses once per level; so do pathlib and rmtree
    fds = [os.open(root / "sys/devices", os.O_RDONLY)]
    try:
        for _ in range(depth):
            os.mkdir("d", dir_fd=fds[-1])
            fds.append(os.open("d", os.O_RDONLY, dir_fd=fds[-1]))
        os.close(os.open("modalias", os.O_WRONLY | os.O_CREAT, dir_fd=fds[-1]))
        m, notes = capture(root)
    finally:
        os.unlink("modalias", dir_fd=fds[-1])
        while len(fds) > 1:
            os.close(fds.pop())
            os.rmdir("d", dir_fd=fds[-1])
        os.close(fds[0])
    assert len(m.devices) == 2 and m.cpus == 8
    assert any("1 modalias files could not be read or are not regular files" in n for n in notes)
    assert any(f"1 directories more than {MAX_DEPTH} levels under sys/devices" in n for n in notes)


def test_machine_capture_cli_writes_a_file_boot_runs(tmp_path: Path) -> None:
    root = fake_root(tmp_path / "root")
    out = tmp_path / "box.json"
    r = _run("machine", "capture", "--root", str(root), "-o", str(out))
    assert r.returncode == 0 and r.stdout == "" and f"vmapsim boot --machine {out}" in r.stderr, r.stderr
    boot = json.loads(_run("boot", "--machine", str(out), "--pipeline", "v6.4", "--json").stdout)
    assert boot["parameters"]["machine"] == "box" and boot["parameters"]["cpus"] == 8  # the file's CPUs
    assert json.loads(_run("machine", "capture", "--root", str(root), "--kmod", "30").stdout)["kmod"] == 30
    bad = _run("machine", "capture", "--root", str(tmp_path / "nowhere"))
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "no CPU modalias" in bad.stderr


@pytest.mark.skipif(not Path("/sys/devices/system/cpu/modalias").exists(), reason="no sysfs CPU modalias here")
def test_capture_this_machine() -> None:
    m, _ = capture("/")
    assert m.cpu_modalias.startswith("cpu:") and m.ram > 0 and (m.cpus or 1) >= 1


def test_boot_machine_kdevops_is_the_threads_guest() -> None:
    # the figures of docs/workloads.md: the same jobs, catalog, workers and costs as kdevops_guest's
    machine = PRESETS["kdevops"]
    cat = unstripped(Catalog.builtin("debian-6.1-amd64"), KDEVOPS_UNSTRIPPED)
    assert udev_boot(cat, machine, 8, seed=0, jitter=machine.jitter or 0) == kdevops_guest(8, seed=0)
    want = simulate(kdevops_guest(8, seed=0), pipeline="v6.4", cpus=8, catalog=cat, workers=32,
                    costs=CostModel(jitter=KDEVOPS_COST_JITTER), seed=0).stats  # fmt: skip
    doc = json.loads(_run("boot", "--machine", "kdevops", "--cpus", "8", "--pipeline", "v6.4", "--kmod", "31",
                          "--stats", "--json").stdout)  # fmt: skip
    got = doc["runs"][0]["stats"]
    assert (got["wasted_bytes"], got["failed_becoming"], got["failed_load_modules"]) == (
        want.wasted_bytes, want.failed_becoming, want.failed_load_modules)  # fmt: skip
    assert doc["parameters"]["jitter"] == 0.02 and doc["parameters"]["cost_jitter"] == KDEVOPS_COST_JITTER


def test_a_resized_image_is_the_kasan_module_of_the_loader_tests() -> None:
    cat = Catalog.builtin("debian-6.12-amd64")
    zero = dict.fromkeys(("data", "rodata", "ro_after_init", "init_data", "init_rodata"), 0)
    big = cat["kvm_intel"].resized("big_kasan", text=2494464, init_text=311296, **zero)
    assert big.memory == (2494464, 0, 0, 0, 311296, 0, 0) and big.legacy == (2494464, 311296)
    with pytest.raises(InvalidArgument, match="memory type 'txt'"):
        cat["kvm_intel"].resized(txt=1)
    with pytest.raises(InvalidArgument, match="text=-1"):
        cat["kvm_intel"].resized(text=-1)
    grown = cat.with_images([big])
    r = simulate([Request("big_kasan", cpu=c) for c in range(448)], pipeline="v6.3", cpus=448, catalog=grown,
                 costs=CostModel(lockstep=True), module_align=32 * KiB)  # fmt: skip
    assert r.failures and "big_kasan" not in cat and len(grown) == len(cat) + 1


def test_load_image_option_reproduces_the_448_cpu_kasan_exhaustion() -> None:
    image = "big_kasan=kvm_intel:text=2436K,init_text=304K,data=0,rodata=0,ro_after_init=0,init_data=0,init_rodata=0"
    doc = json.loads(_run("load", "big_kasan", "--image", image, "--cpus", "448", "--module-align", "32768",
                          "--lockstep", "--pipeline", "v6.3,v6.4", "--no-deps", "--json").stdout)  # fmt: skip
    v63, v64 = doc["runs"]
    assert v63["allocation_failures"] == 79 and v64["allocation_failures"] == 0  # docs/machines.md quotes 79
    assert v63["first_failure"] == "vmap allocation for size 2498560 failed: use vmalloc=<size> to increase size"
    r = _run("load", "loop", "--image", "big_loop:text=1Q")
    assert r.returncode == 2 and r.stderr.count("\n") == 1
    assert "the size in 'text=1Q' (bytes, or with K, M or G) '1Q'" in r.stderr


def test_a_failed_resize_changes_nothing() -> None:
    cat = Catalog.builtin("debian-6.12-amd64")
    before = pickle.dumps(cat.modules)
    with pytest.raises(InvalidArgument):
        cat.with_images([cat["msr"].resized("small_msr", text=0), "loop"])  # type: ignore[list-item]
    assert pickle.dumps(cat.modules) == before and "small_msr" not in cat


def test_a_sweep_of_a_machine_file_is_what_boot_prints(tmp_path: Path) -> None:
    from vmapsim.loader import METRICS
    from vmapsim.sweeps import Point, run_point

    path = tmp_path / "guest.json"
    path.write_text(attrs.evolve(PRESETS["kdevops"], name="guest").to_json())  # its timing and file factor too
    row = run_point(Point(str(path), 8, None, "v6.4", 31, 1))
    boot = json.loads(_run("boot", "--machine", str(path), "--cpus", "8", "--pipeline", "v6.4", "--kmod", "31",
                           "--seed", "1", "--json").stdout)["runs"][0]  # fmt: skip
    assert {k: row[k] for k in METRICS} == {k: boot[k] for k in METRICS}
