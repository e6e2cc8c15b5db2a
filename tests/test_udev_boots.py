"""Real udev coldplugs under QEMU, kept as fixtures: Debian 12's systemd, udev and kmod 30 on Debian 12's 6.12,
Debian 13's (kmod 34) on trixie's own 6.12 and on trixie-backports' 7.3, and Debian 11's (kmod 28) on its 5.10.

The machine is the boot's own modalias dump (``Machine.from_modaliases``) with the modules the kernel and
systemd loaded as ``preloads``; the costs are ``QEMU_TCG_SHARED``, calibrated on 2- and 4-vCPU duplicate
boots (tests/test_timing.py), never on a coldplug. The 8- and 16-vCPU Debian 12 coldplugs and every Debian 13
and Debian 11 coldplug are predictions.
"""

from __future__ import annotations

from collections import Counter

import pytest

from tests.helpers import console_log, console_section
from tests.realkernel import udevboot
from vmapsim import ParseError, VmapsimError
from vmapsim.modules import Catalog
from vmapsim.workloads import Machine, udev_boot

FIXTURES = {cpus: f"udev/udev-6.12-kmod30-{cpus}cpu.txt.xz" for cpus in (2, 4, 8, 16)}
CAT = Catalog.builtin("debian-6.12-amd64")
#: Debian 13's userspace: kmod 34 passes the compressed file to finit_module(), the 6.5 idempotent path.
TRIXIE = {(v, cpus): f"udev/udev-{v}-kmod34-{cpus}cpu.txt.xz" for v in ("6.12deb13", "7.3") for cpus in (2, 4, 8, 16)}


def _failed(calls: dict[str, Counter[int]]) -> dict[str, int]:
    return {m: sum(n for ret, n in c.items() if ret not in (0, -17)) for m, c in calls.items()}


@pytest.mark.parametrize("cpus", sorted(FIXTURES))
def test_failed_calls_and_their_copy_bytes_are_predicted_exactly(cpus: int) -> None:
    # a module whose init fails here fails once with -ENODEV and gives -EBUSY to the callers that waited;
    # every failed init_module() copied the whole decompressed module first
    real, predicted = udevboot.predict(console_log(FIXTURES[cpus]), cpus)
    assert _failed(predicted) == _failed(real) and sum(_failed(real).values()) == 2 * cpus
    copied = {m: n * CAT[m].decompressed_size for m, n in _failed(real).items()}
    assert copied == {m: n * CAT[m].decompressed_size for m, n in _failed(predicted).items()}


@pytest.mark.parametrize("cpus", [2, 4])
def test_calibration_sizes_per_module_calls_within_ten_percent(cpus: int) -> None:
    # where nearly every per-CPU module is asked for once per CPU the model says so too
    real, predicted = udevboot.predict(console_log(FIXTURES[cpus]), cpus)
    close = [m for m in real if abs(sum(predicted[m].values()) - sum(real[m].values())) <= 0.1 * cpus]
    assert len(close) >= len(real) - 2


@pytest.mark.xfail(
    strict=True,
    reason="target not met (docs/fidelity.md): at 8 and 16 vCPUs a late udev worker often finds a module LIVE "
    "and skips it (crc32_pclmul: 2 calls of 8; sha512_ssse3: 4 of 16); the model, with uevents 10 ms apart, "
    "asks for every per-CPU module once per CPU (9 of 13 modules within 10% at 8, 11 at 16; 90% wanted)",
)
@pytest.mark.parametrize("cpus", [8, 16])
def test_per_module_calls_at_8_and_16_vcpus_within_ten_percent_for_nine_in_ten_modules(cpus: int) -> None:
    asked, close = _within_ten_percent(*udevboot.predict(console_log(FIXTURES[cpus]), cpus))
    assert close >= 0.9 * asked


def _within_ten_percent(real: dict[str, Counter[int]], predicted: dict[str, Counter[int]]) -> tuple[int, int]:
    """(modules asked for, modules whose predicted call count is within 10% of the real one)."""
    asked = [m for m in real if sum(real[m].values())]
    close = [m for m in asked if abs(sum(predicted[m].values()) - sum(real[m].values())) <= 0.1 * sum(real[m].values())]
    return len(asked), len(close)


@pytest.mark.parametrize("version,cpus", sorted(TRIXIE))
def test_a_debian_13_coldplug_shares_each_modules_first_result(version: str, cpus: int) -> None:
    # kmod 34's finit_module(): every caller of a module gets the first caller's result (0, or -ENODEV where
    # init fails here), never -EEXIST or -EBUSY, exactly the return codes the model gives each module
    real, predicted = udevboot.predict(console_log(TRIXIE[version, cpus]), cpus, version=version)
    asked = {m: c for m, c in real.items() if c}
    assert len(asked) >= 8 and any(c[-19] for c in asked.values()) and any(c[0] for c in asked.values())
    assert all(len(c) == 1 and set(c) == set(predicted[m]) for m, c in asked.items()), (real, predicted)
    assert {m for m, c in predicted.items() if c} == set(asked)


@pytest.mark.parametrize(
    "version,cpus",
    [
        pytest.param(*key, marks=pytest.mark.xfail(
            strict=True,
            reason="target not met (docs/fidelity.md): at 16 vCPUs gf128mul took 2.2 s to load and every worker "
            "asked for aesni_intel (16) and 12 for gf128mul before it was LIVE; the model loads it sooner, so "
            "3 and 2 of its workers find them LIVE (13, 10): 6 of 8 modules within 10%",
        )) if key == ("7.3", 16) else key
        for key in sorted(TRIXIE)
    ],
)  # fmt: skip
def test_a_debian_13_coldplug_has_each_modules_call_count_within_ten_percent_for_nine_in_ten(
    version: str, cpus: int
) -> None:
    asked, close = _within_ten_percent(*udevboot.predict(console_log(TRIXIE[version, cpus]), cpus, version=version))
    assert close >= 0.9 * asked


#: Debian 11's userspace (systemd 247, kmod 28: finit_module(2) of the uncompressed file) on its 5.10.262.
BULLSEYE = {cpus: f"udev/udev-5.10-kmod28-{cpus}cpu.txt.xz" for cpus in (2, 4, 8)}


@pytest.mark.parametrize("cpus", sorted(BULLSEYE))
def test_a_debian_11_coldplug_fails_each_failing_module_as_often_as_the_model_says(cpus: int) -> None:
    # 5.10 refuses duplicates only in add_unformed_module(): a per-CPU module is asked for by every worker that
    # does not find it LIVE, and one whose init fails here (powernow_k8, acpi_cpufreq, edac_mce_amd) fails for
    # each caller, with -ENODEV or, for those that waited on it, -EBUSY: as many failures as the model's
    real, predicted = udevboot.predict(console_log(BULLSEYE[cpus]), cpus, version="5.10")
    asked = {m: c for m, c in real.items() if c}
    assert len(asked) >= 15 and _failed(predicted) == _failed(real) and sum(_failed(real).values()) >= cpus
    assert {m for m, c in predicted.items() if c} == set(asked)
    assert all(set(c) <= {0, -17, -16, -19} for c in asked.values())


@pytest.mark.xfail(
    strict=True,
    reason="target not met (docs/fidelity.md): as on 6.12, late udev workers find per-CPU modules LIVE and skip "
    "them (irqbypass: 5 calls of 8, crct10dif_pclmul: 1), while the model asks once per CPU: 10 of 18 modules "
    "within 10% at 8 vCPUs (15 of 18 at 2 and 4; no arrival spread from 0 to 1 s does better)",
)
def test_a_debian_11_coldplug_at_8_vcpus_has_nine_in_ten_modules_call_counts_within_ten_percent() -> None:
    asked, close = _within_ten_percent(*udevboot.predict(console_log(BULLSEYE[8]), 8, version="5.10"))
    assert close >= 0.9 * asked


def test_the_qemu_machine_is_its_own_modalias_dump() -> None:
    text = console_log(FIXTURES[4])
    m = Machine.from_modaliases(console_section(text, "modalias"), ram=3 << 30)
    assert m.cpu_modalias.startswith("cpu:type:x86,ven0002") and m.acpi_processors  # QEMU's TCG -cpu max: "AMD"
    assert not any(d.startswith(("cpu:", "acpi:LNXCPU")) for d in m.devices)
    jobs = udev_boot(CAT, m, 4)
    assert sum(1 for j in jobs if "kvm_amd" in j.modules) == 4  # one uevent per CPU asks for the CPU's modules


@pytest.mark.parametrize(
    "text,needle",
    [
        ("pci:v00008086d00001572\n", "expected one cpu: modalias line, found 0"),
        ("cpu:type:x86,ven0000\ncpu:type:x86,ven0002\n", "found 2"),
        ("cpu:type:x86\nnot an alias\n", "not a modalias"),
        ("cpu:type:x86\n" + "x:" * 3000 + "\n", "not a modalias"),
    ],
)
def test_a_bad_modalias_dump_is_a_parse_error(text: str, needle: str) -> None:
    with pytest.raises(ParseError, match=needle):
        Machine.from_modaliases(text)


def test_preloads_are_loaded_first_and_checked() -> None:
    m = Machine("m", "cpu:type:x86,ven0000fam0006mod008F:feature:,0000", preloads=("autofs4", "loop"))
    jobs = udev_boot(CAT, m, 2)
    assert [j.modules for j in jobs[:2]] == [("autofs4",), ("loop",)] and jobs[0].time == 0.0
    with pytest.raises(VmapsimError, match="no_such"):
        udev_boot(CAT, Machine("m", "cpu:type:x86", preloads=("no_such",)), 2)
