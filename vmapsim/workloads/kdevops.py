"""The kdevops guest behind the published R1/R2 figures of the 2023 LKML thread (docs/workloads.md).

>>> len(kdevops_guest(8)), KDEVOPS_PERCPU[0]
(21, 'kvm_intel')
"""

from __future__ import annotations

import random

import attrs

from vmapsim.checks import CPUS_LIMIT, integer, number, show
from vmapsim.errors import InvalidArgument
from vmapsim.modules.catalog import Catalog
from vmapsim.workloads.kmod import Modprobe

__all__ = [
    "KDEVOPS_COST_JITTER",
    "KDEVOPS_DEVICES",
    "KDEVOPS_PERCPU",
    "KDEVOPS_SPREAD",
    "KDEVOPS_UNSTRIPPED",
    "kdevops_guest",
    "unstripped",
]

#: The kdevops guest of Luis Chamberlain's published stats (R1: 255 vCPUs, R2: 8 vCPUs): what udev asks for
#: once per CPU (the "Duplicate failed modules" of both tables) and its devices (virtio, NVMe, input).
KDEVOPS_PERCPU = ("kvm_intel", "aesni_intel", "crct10dif_pclmul", "ghash_clmulni_intel", "sha512_ssse3",
                  "crc32_pclmul", "crc32c_intel")  # fmt: skip
KDEVOPS_DEVICES = (("virtio_pci",),) * 4 + (("nvme",),) * 4 + (("evdev",),) * 3 + (("serio_raw",),) * 2
#: kdevops builds modules with debug info, about 8x the stripped size. Calibrated on one published figure
#: alone, R2's "Average fail becoming bytes" (2758544: a failure before layout counts the file's length),
#: in steps of 0.1 over seeds 0-3; R1's bytes and counts are then predictions (docs/workloads.md).
KDEVOPS_UNSTRIPPED = 8.1
#: Calibrated timing, on R2's becoming/load split (83/16): coldplug uevents reach kmod within 20 ms ...
KDEVOPS_SPREAD = 0.02
#: ... and duplicate loads woken together stay within 5% of each other's pace (CostModel.jitter).
KDEVOPS_COST_JITTER = 0.05


def unstripped(catalog: Catalog, factor: float) -> Catalog:
    """The catalog with every file ``factor`` times bigger, as if built with debug info.

    Debug sections are not SHF_ALLOC, so only the file, read and decompressed
    sizes grow; module memory stays.  Runtime complexity: O(n).
    """
    if not isinstance(catalog, Catalog):
        raise InvalidArgument(f"catalog={show(catalog)}: expected a Catalog")
    number("factor", factor, 1, 1000)
    return attrs.evolve(
        catalog,
        modules={
            n: attrs.evolve(m, file_size=int(m.file_size * factor), decompressed_size=int(m.decompressed_size * factor))
            for n, m in catalog.modules.items()
        },
    )


def kdevops_guest(cpus: int, *, seed: int = 0, spread: float = KDEVOPS_SPREAD) -> list[Modprobe]:
    """The kmod jobs of the kdevops guest behind the published R1/R2 figures (docs/workloads.md).

    Runtime complexity: O(cpus).
    """
    integer("cpus", cpus, 1, CPUS_LIMIT)
    integer("seed", seed)
    number("spread", spread, 0)
    rng = random.Random(seed)
    jobs = [Modprobe(KDEVOPS_PERCPU, cpu=rng.randrange(cpus), time=rng.random() * spread) for _ in range(cpus)]
    jobs += [Modprobe(d, cpu=rng.randrange(cpus), time=rng.random() * spread) for d in KDEVOPS_DEVICES]
    return jobs


