"""systemd-udevd at boot: the coldplug of a machine's devices, one kmod job per uevent.

``udev_boot()`` turns a machine description into the kmod jobs systemd-udevd runs at
boot: one uevent per CPU device and one per ACPI processor object (each resolved
through the catalog's aliases for the CPU's modalias), plus one per other device.
Presets describe a QEMU/KVM guest, an Intel and an AMD server and an arm64 server.

>>> from vmapsim.modules import Catalog
>>> jobs = udev_boot(Catalog.builtin("debian-6.12-amd64"), PRESETS["intel-server"], cpus=4)
>>> len(jobs), jobs[0].modules[:3]
(8, ('intel_uncore', 'intel_cstate', 'rapl'))
"""

from __future__ import annotations

import random
from typing import Any

import attrs

from vmapsim.checks import CPUS_LIMIT, by_value_or_name, errno_pairs, flag, integer, number, show, strings, text
from vmapsim.errors import InvalidArgument, ParseError
from vmapsim.modules.catalog import ACPI_PROCESSOR_MODALIASES, Catalog
from vmapsim.units import GiB, MiB
from vmapsim.workloads.kmod import Modprobe, syscall_for

__all__ = ["MAX_MODALIAS", "PRESETS", "Machine", "udev_boot", "udev_workers"]

#: Longest modalias line read (the kernel's uevent buffer is 2 KiB; a CPU's feature list fits in it).
MAX_MODALIAS = 4096


@attrs.frozen
class Machine:
    """A machine as udev sees it: CPU modalias, ACPI processor objects, other devices, RAM, kmod version.

    ``fails`` lists modules whose init fails on this machine (e.g. a driver
    probing hardware that is absent) with the errno.  ``kmod`` is kmod's
    version: before 31 it decompresses modules itself and uses init_module(2).
    ``preloads`` are modules loaded at boot by others than udev -- the
    kernel's ``request_module()`` (crypto algorithms) and systemd (autofs4,
    the ``modprobe@`` units) -- each by its own modprobe as the coldplug
    starts.  ``catalog`` and ``layout`` name the shipped catalog and layout
    that fit it.  :meth:`from_modaliases` builds one from a machine's own
    ``modalias`` files.
    """

    name: str
    cpu_modalias: str
    acpi_processors: bool = True
    devices: tuple[str, ...] = ()
    ram: int = 16 * GiB
    kmod: int = 30
    fails: tuple[tuple[str, int], ...] = ()
    catalog: str = "debian-6.12-amd64"
    layout: str = "x86_64"
    preloads: tuple[str, ...] = ()

    def __attrs_post_init__(self) -> None:
        for name in ("name", "cpu_modalias", "catalog", "layout"):
            text(name, getattr(self, name))
        flag("acpi_processors", self.acpi_processors)
        strings("devices", self.devices)
        integer("ram", self.ram, 1, 1 << 64)
        integer("kmod", self.kmod, 1, 999)
        errno_pairs("fails", self.fails)
        strings("preloads", self.preloads)

    @classmethod
    def from_modaliases(
        cls, aliases: str, *, name: str = "captured", source: str = "modaliases", **fields: Any
    ) -> Machine:
        """The machine whose ``modalias`` files say this, one per line, in any order.

        Make the text on the machine itself::

            cat /sys/devices/system/cpu/modalias /sys/bus/*/devices/*/modalias

        The ``cpu:`` line is the CPU's (one uevent per CPU), an ACPI processor
        object's (``acpi:ACPI0007:``, ``acpi:LNXCPU:``) makes one per CPU too,
        every other line is one device.  ``fields`` set the rest (``ram``,
        ``kmod``, ``fails``, ``preloads``...).  Text that is not modaliases, or
        has no single ``cpu:`` line, raises :class:`~vmapsim.errors.ParseError`.
        Runtime complexity: O(lines).

        >>> m = Machine.from_modaliases("cpu:type:x86,ven0002fam0019mod0001:feature:,0000\\nacpi:LNXCPU:\\n"
        ...                             "pci:v00001AF4d00001041sv00001AF4sd00001100bc02sc00i00\\n", ram=8 << 30)
        >>> m.acpi_processors, m.devices, m.ram
        (True, ('pci:v00001AF4d00001041sv00001AF4sd00001100bc02sc00i00',), 8589934592)
        """
        if not isinstance(aliases, str):
            raise InvalidArgument(f"aliases={show(aliases)}: expected the modalias files' text")
        lines = [line.strip() for line in aliases.splitlines() if line.strip()]
        for i, line in enumerate(lines, 1):
            if len(line) > MAX_MODALIAS or not line.isprintable() or ":" not in line or " " in line:
                raise ParseError(f"not a modalias: {show(line)}", source=source, line=i)
        cpus = sorted({line for line in lines if line.startswith("cpu:")})
        if len(cpus) != 1:
            raise ParseError(f"expected one cpu: modalias line, found {len(cpus)}", source=source)
        processors = any(line in ACPI_PROCESSOR_MODALIASES for line in lines)
        others = tuple(x for x in lines if not x.startswith("cpu:") and x not in ACPI_PROCESSOR_MODALIASES)
        return cls(name, cpus[0], acpi_processors=processors, devices=others, **fields)


_X86_BASE = (
    "0000,0001,0002,0003,0004,0005,0006,0007,0008,0009,000B,000C,000D,000E,000F,0010,0011,0013,0017,0018,0019,001A"
)
PRESETS: dict[str, Machine] = {
    m.name: m
    for m in (
        Machine(
            "qemu-kvm",
            f"cpu:type:x86,ven0000fam0006mod0055:feature:,{_X86_BASE},0081,0089,0094,0099,009C,0125",
            devices=(
                "pci:v00001AF4d00001041sv00001AF4sd00001100bc02sc00i00",  # virtio-net (modern)
                "pci:v00001AF4d00001042sv00001AF4sd00001100bc01sc00i00",  # virtio-blk
                "virtio:d00000001v00001AF4",
                "virtio:d00000002v00001AF4",
                "pci:v00001B36d00000010sv00001AF4sd00001100bc01sc08i02",  # QEMU NVMe
                "serio:ty01pr00id00ex00",
                "acpi:PNP0C0C:",
            ),
            ram=8 * GiB,
        ),
        Machine(
            "intel-server",
            f"cpu:type:x86,ven0000fam0006mod008F:feature:,{_X86_BASE},0016,0081,0083,0085,0089,0094,0099,009C,"
            "0125,013D,01C0,01C6",
            devices=(
                "pci:v00008086d00001572sv00008086sd00000000bc02sc00i00",  # i40e
                "pci:v0000144Dd0000A80Asv0000144Dsd0000A801bc01sc08i02",  # NVMe
                "pci:v00008086d0000A382sv00008086sd00007270bc01sc06i01",  # AHCI
                "acpi:IPI0001:",
            ),
            ram=512 * GiB,
        ),
        Machine(
            "amd-server",
            f"cpu:type:x86,ven0002fam0019mod0001:feature:,{_X86_BASE},007D,0081,0089,0094,0099,009C,00C2,00E8,"
            "0125,013D",
            devices=(
                "pci:v000014E4d000016D7sv000014E4sd00001402bc02sc00i00",  # bnxt_en
                "pci:v0000144Dd0000A80Asv0000144Dsd0000A801bc01sc08i02",
            ),
            ram=512 * GiB,
        ),
        Machine(
            "arm64-server",
            "cpu:type:aarch64:feature:,0000,0001,0002,0003,0004,0005,0006,0007,0008,0011,0015",
            devices=("pci:v0000144Dd0000A80Asv0000144Dsd0000A801bc01sc08i02",),
            ram=256 * GiB,
            catalog="debian-6.12-arm64",
            layout="arm64_48",
        ),
    )
}
# Debian 13 userspace (kmod 34: compressed modules go to finit_module() with MODULE_INIT_COMPRESSED_FILE, so
# duplicates take 6.5's idempotent path) on trixie's 6.12 and on trixie-backports' 7.3 (execmem's ROX cache).
PRESETS.update(
    {name: attrs.evolve(PRESETS["intel-server"], name=name, catalog=catalog, kmod=34)
     for name, catalog in (("intel-server-trixie", "debian13-6.12-amd64"),
                           ("intel-server-trixie-backports", "debian-7.3-amd64"))}
)  # fmt: skip


def udev_workers(cpus: int, ram: int) -> int:
    """systemd-udevd's default worker limit: ``min(2 * cpus + 16, RAM / 128 MiB, 2048)``.

    >>> udev_workers(255, 512 << 30)
    526
    """
    integer("cpus", cpus, 1, CPUS_LIMIT)
    integer("ram", ram, 1, 1 << 64)
    return max(1, min(2 * cpus + 16, ram // (128 * MiB), 2048))


def udev_boot(
    catalog: Catalog,
    machine: Machine | str,
    cpus: int,
    *,
    seed: int = 0,
    jitter: float = 0.05,
    kmod: int | None = None,
) -> list[Modprobe]:
    """The kmod jobs of a coldplug: one per CPU device, per ACPI processor object and per device.

    Each job's arrival is drawn uniformly from ``[0, jitter)`` seconds and it
    runs on a worker on a random CPU (both from ``seed``).  With kmod < 31 and
    compressed modules, jobs use init_module(2).  Devices matching no module
    make no job.  ``machine`` may be a preset's name.  Runtime complexity: O(cpus + aliases).
    """
    if not isinstance(catalog, Catalog):
        raise InvalidArgument(f"catalog={show(catalog)}: expected a Catalog")
    machine = by_value_or_name("machine", machine, PRESETS, Machine, "presets")
    integer("cpus", cpus, 1, CPUS_LIMIT)
    integer("seed", seed)
    number("jitter", jitter, 0)
    if kmod is not None:
        integer("kmod", kmod, 1, 999)
    rng = random.Random(seed)
    version = machine.kmod if kmod is None else kmod
    syscall = syscall_for(version, any(m.compression != "none" for m in catalog))
    cpu_mods = tuple(catalog.match_alias(machine.cpu_modalias))
    acpi_mods = tuple(sorted({m for a in ACPI_PROCESSOR_MODALIASES for m in catalog.match_alias(a)}))
    uevents: list[tuple[str, ...]] = []
    for _ in range(cpus):
        uevents.append(cpu_mods)
        if machine.acpi_processors:
            uevents.append(acpi_mods)
    uevents += [tuple(catalog.match_alias(d)) for d in machine.devices]
    for name in machine.preloads:
        if name not in catalog:
            catalog[name]  # raises UnknownModule, naming it
    # Loads by the kernel and systemd come first, each by its own modprobe; then udev's coldplug.
    jobs = [Modprobe((name,), syscall=syscall, fails=machine.fails) for name in machine.preloads]
    return jobs + [
        Modprobe(mods, cpu=rng.randrange(cpus), time=rng.random() * jitter, syscall=syscall, fails=machine.fails)
        for mods in uevents
        if mods
    ]


