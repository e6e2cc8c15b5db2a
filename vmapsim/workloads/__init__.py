"""Who asks for what, and when: userspace (kmod, udev), the machines it runs on, request files.

* :mod:`~vmapsim.workloads.kmod` -- :class:`Modprobe`: kmod's load of a module and its
  dependencies, the LIVE skip rule, the userspace-decompression switch of kmod < 31;
* :mod:`~vmapsim.workloads.udev` -- :class:`Machine` presets, :func:`udev_boot` (the coldplug
  storm) and :func:`udev_workers` (systemd-udevd's worker limit);
* :mod:`~vmapsim.workloads.kdevops` -- the guest behind the published R1/R2 figures;
* :mod:`~vmapsim.workloads.requests` -- request files (JSON lines or CSV);
* :mod:`~vmapsim.workloads.sysfs` -- :func:`capture`: a machine file from a live system.

>>> from vmapsim.modules import Catalog
>>> jobs = udev_boot(Catalog.builtin("debian-6.12-amd64"), PRESETS["intel-server"], cpus=4)
>>> len(jobs), jobs[0].modules[:3]
(8, ('intel_uncore', 'intel_cstate', 'rapl'))
"""

from vmapsim.workloads.kdevops import (
    KDEVOPS_COST_JITTER,
    KDEVOPS_SPREAD,
    KDEVOPS_UNSTRIPPED,
    kdevops_guest,
    unstripped,
)
from vmapsim.workloads.kmod import Modprobe, syscall_for
from vmapsim.workloads.requests import read_requests, write_requests
from vmapsim.workloads.sysfs import capture
from vmapsim.workloads.udev import MACHINE_SCHEMA, PRESETS, Machine, find_machine, udev_boot, udev_workers

__all__ = [
    "KDEVOPS_COST_JITTER",
    "KDEVOPS_SPREAD",
    "KDEVOPS_UNSTRIPPED",
    "MACHINE_SCHEMA",
    "PRESETS",
    "Machine",
    "Modprobe",
    "capture",
    "find_machine",
    "kdevops_guest",
    "read_requests",
    "syscall_for",
    "udev_boot",
    "udev_workers",
    "unstripped",
    "write_requests",
]
