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

import json
import random
from importlib import resources
from pathlib import Path
from typing import Any

import attrs
import cattrs

from vmapsim import layouts
from vmapsim.checks import (
    CPUS_LIMIT,
    by_value_or_name,
    conversion_error,
    errno_pairs,
    flag,
    integer,
    load_json,
    number,
    read_file,
    release,
    show,
    strict_converter,
    strings,
    text,
)
from vmapsim.errors import InvalidArgument, ParseError
from vmapsim.modules.catalog import ACPI_PROCESSOR_MODALIASES, Catalog
from vmapsim.units import GiB, MiB
from vmapsim.workloads.kdevops import unstripped
from vmapsim.workloads.kmod import Modprobe, syscall_for

__all__ = ["MACHINE_SCHEMA", "MAX_MACHINE_BYTES", "MAX_MODALIAS", "PRESETS", "Machine", "find_machine", "udev_boot",
           "udev_workers"]

#: Longest modalias line read (the kernel's uevent buffer is 2 KiB; a CPU's feature list fits in it).
MAX_MODALIAS = 4096
#: The schema of machine files (``vmapsim machine capture``, ``vmapsim/data/machines/*.json``).
MACHINE_SCHEMA = "vmapsim-machine/1"
#: The largest machine file read (a machine with every PCI function of a big server fits in far less).
MAX_MACHINE_BYTES = 8 << 20


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
    #: The CPUs the machine has (``vmapsim boot --machine FILE``'s default --cpus), if known.
    cpus: int | None = None
    #: The running kernel's release (``uname -r``) where the machine was captured, if known.
    release: str | None = None
    #: Modules each CPU's uevent asks for by name, in place of resolving ``cpu_modalias`` (a machine
    #: known by what it loaded, not by its modaliases: the kdevops guest).
    cpu_modules: tuple[str, ...] = ()
    #: More uevents, each asking for these modules by name.
    device_modules: tuple[tuple[str, ...], ...] = ()
    #: Module files are this many times their size in ``catalog`` (debug info: :func:`unstripped`).
    file_factor: float = 1.0
    #: The machine's own timing, where calibrated: how far apart uevents reach kmod (seconds) and how
    #: far stage durations vary (``CostModel.jitter``); None: ``vmapsim boot``'s defaults.
    jitter: float | None = None
    cost_jitter: float | None = None

    def __attrs_post_init__(self) -> None:
        for name in ("name", "cpu_modalias", "catalog", "layout"):
            text(name, getattr(self, name))
        if not self.name or not self.catalog:
            raise InvalidArgument(f"a machine's {'name' if not self.name else 'catalog'} is empty")
        layouts.by_name(self.layout)  # an unknown name is refused, naming the known ones
        flag("acpi_processors", self.acpi_processors)
        strings("devices", self.devices)
        integer("ram", self.ram, 1, 1 << 64)
        integer("kmod", self.kmod, 1, 999)
        errno_pairs("fails", self.fails)
        strings("preloads", self.preloads)
        if self.cpus is not None:
            integer("cpus", self.cpus, 1, CPUS_LIMIT)
        if self.release is not None:
            release(self.release)  # MAJOR.MINOR first, as uname -r prints it
        strings("cpu_modules", self.cpu_modules)
        if not isinstance(self.device_modules, tuple):
            raise InvalidArgument(f"device_modules={show(self.device_modules)}: expected a tuple of module tuples")
        for mods in self.device_modules:
            strings("device_modules", mods, empty=False)
        number("file_factor", self.file_factor, 1, 1000)
        _timing(self.jitter, self.cost_jitter)

    def own_files(self, catalog: Catalog) -> Catalog:
        """``catalog`` with this machine's module file sizes (``file_factor``: :func:`unstripped`).

        Runtime complexity: O(modules) when the factor is not 1, else O(1).
        """
        return catalog if self.file_factor == 1 else unstripped(catalog, self.file_factor)

    def timing(self, jitter: float | None = None, cost_jitter: float | None = None) -> tuple[float, float]:
        """(uevent spread, stage-duration jitter): the ones given, else the machine's calibrated ones, else
        ``vmapsim boot``'s defaults (0.05 s, 0.25).  Runtime complexity: O(1).

        >>> PRESETS["kdevops"].timing(), PRESETS["kdevops"].timing(jitter=0.1), PRESETS["qemu-kvm"].timing()
        ((0.02, 0.05), (0.1, 0.05), (0.05, 0.25))
        """
        _timing(jitter, cost_jitter)
        spread = jitter if jitter is not None else self.jitter if self.jitter is not None else 0.05
        drift = cost_jitter if cost_jitter is not None else self.cost_jitter if self.cost_jitter is not None else 0.25
        return spread, drift

    def to_json(self) -> str:
        """The machine file: this machine as JSON (``vmapsim-machine/1``), which :meth:`load` reads back.

        Runtime complexity: O(devices).

        >>> Machine.from_json(PRESETS["qemu-kvm"].to_json()) == PRESETS["qemu-kvm"]
        True
        """
        data = _CONVERTER.unstructure(self)
        return json.dumps({"schema": MACHINE_SCHEMA, **data}, indent=1) + "\n"

    @classmethod
    def from_json(cls, data: str | bytes, *, source: str = "machine") -> Machine:
        """A machine from its file's text; :class:`~vmapsim.errors.ParseError` naming ``source`` and the
        first bad field.  Runtime complexity: O(devices).
        """
        doc = load_json(data, source=source, max_bytes=MAX_MACHINE_BYTES)
        if not isinstance(doc, dict) or doc.get("schema") != MACHINE_SCHEMA:
            raise ParseError(f"not a vmapsim machine file ({MACHINE_SCHEMA})", source=source)
        try:
            machine: Machine = _CONVERTER.structure({k: v for k, v in doc.items() if k != "schema"}, cls)
        except (cattrs.BaseValidationError, InvalidArgument, TypeError, ValueError) as e:
            raise ParseError(f"not a vmapsim machine: {conversion_error(e)}", source=source) from None
        return machine

    @classmethod
    def load(cls, path: str | Path) -> Machine:
        """A machine file (:meth:`to_json`), or a file of the machine's modaliases (:meth:`from_modaliases`,
        named after the file).  :class:`~vmapsim.errors.InvalidArgument` if it cannot be read.
        Runtime complexity: O(size).
        """
        raw = read_file(path, MAX_MACHINE_BYTES, what="machine file")
        return cls.from_text(raw, name=Path(path).stem, source=str(path))

    @classmethod
    def from_text(cls, data: str | bytes, *, name: str = "captured", source: str = "machine") -> Machine:
        """A machine file's text (:meth:`from_json`: its first character is ``{``) or a list of modaliases
        (:meth:`from_modaliases`, the machine called ``name``), as :meth:`load` reads a file.
        Runtime complexity: O(size).

        >>> Machine.from_text("cpu:type:x86,ven0002fam0019mod0001:feature:,0000\\n", name="mine").name
        'mine'
        """
        text = data.decode(errors="replace") if isinstance(data, bytes) else data
        if not isinstance(text, str):
            raise InvalidArgument(f"data={show(data)}: expected a machine file's or a modalias list's text")
        if text.lstrip()[:1] == "{":
            return cls.from_json(data, source=source)
        return cls.from_modaliases(text, name=name, source=source)

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


_CONVERTER = strict_converter()


def _timing(jitter: object, cost_jitter: object) -> None:
    """Refuse a uevent spread (seconds, >= 0) or a stage-duration jitter (a fraction, 0 to 0.99) out of range;
    None is the default."""
    for name, value, hi in (("jitter", jitter, None), ("cost_jitter", cost_jitter, 0.99)):
        if value is not None:
            number(name, value, 0, hi)


def _presets() -> dict[str, Machine]:
    """The shipped machine files, by name (``vmapsim/data/machines``, in their files' numbered order)."""
    folder = resources.files("vmapsim") / "data" / "machines"
    found = sorted((f.name, f) for f in folder.iterdir() if f.name.endswith(".json"))
    return {m.name: m for m in (Machine.from_json(f.read_bytes(), source=name) for name, f in found)}


#: The shipped machines, by name: each a machine file in ``vmapsim/data/machines`` (``vmapsim info``).
PRESETS: dict[str, Machine] = _presets()


def find_machine(spec: Machine | str) -> Machine:
    """A machine by value, by preset name, or from a file (:meth:`Machine.load`).  Runtime: O(file).

    >>> find_machine("qemu-kvm").ram >> 30
    8
    """
    # any path that exists is the user's file: a FIFO or a device is refused as one, not as an unknown name
    if isinstance(spec, str) and spec not in PRESETS and Path(spec).exists():
        return Machine.load(spec)
    if isinstance(spec, str) and spec not in PRESETS:
        raise InvalidArgument(f"unknown machine {spec!r}: a preset ({', '.join(PRESETS)}), a machine file "
                              "(vmapsim machine capture) or a file of modaliases")  # fmt: skip
    return by_value_or_name("machine", spec, PRESETS, Machine, "presets")


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
    decompresses: bool = True,
) -> list[Modprobe]:
    """The kmod jobs of a coldplug: one per CPU device, per ACPI processor object and per device.

    Each job's arrival is drawn uniformly from ``[0, jitter)`` seconds and it
    runs on a worker on a random CPU (both from ``seed``).  With compressed
    modules and kmod < 31 or a kernel that does not decompress them
    (``decompresses=False``, before 5.17), jobs use init_module(2).  Devices matching no module
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
    syscall = syscall_for(version, any(m.compression != "none" for m in catalog), flag("decompresses", decompresses))
    cpu_mods = machine.cpu_modules or tuple(catalog.match_alias(machine.cpu_modalias))
    acpi_mods = tuple(sorted({m for a in ACPI_PROCESSOR_MODALIASES for m in catalog.match_alias(a)}))
    uevents: list[tuple[str, ...]] = []
    for _ in range(cpus):
        uevents.append(cpu_mods)
        if machine.acpi_processors:
            uevents.append(acpi_mods)
    uevents += [tuple(catalog.match_alias(d)) for d in machine.devices]
    uevents += list(machine.device_modules)
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


