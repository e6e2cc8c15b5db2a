"""``struct vmap_area`` and ``struct vm_struct`` as one value, their flags, and per-window usage.

>>> VmapArea(0x1000, 0x3000, vm_flags=VM_ALLOC).size
8192
"""

from __future__ import annotations

import attrs

__all__ = [
    "VMAP_BLOCK",
    "VMAP_RAM",
    "VM_ALLOC",
    "VM_DMA_COHERENT",
    "VM_FLUSH_RESET_PERMS",
    "VM_IOREMAP",
    "VM_MAP",
    "VM_USERMAP",
    "RegionUsage",
    "VmapArea",
]

# vm_struct flags (include/linux/vmalloc.h), same bit values as the kernel.
VM_IOREMAP = 0x1
VM_ALLOC = 0x2
VM_MAP = 0x4
VM_USERMAP = 0x8
VM_DMA_COHERENT = 0x10
VM_FLUSH_RESET_PERMS = 0x100
# vmap_area flags (mm/vmalloc.c, 6.3+).
VMAP_RAM = 0x1
VMAP_BLOCK = 0x2


@attrs.frozen(repr=False)
class VmapArea:
    """One allocated (or lazily freed) ``vmap_area`` and what its ``vm_struct`` says.

    ``size`` includes the guard page, as ``/proc/vmallocinfo`` shows it.
    ``vm_flags`` is 0 for a bare area (``alloc_vmap_area()``, ``vm_map_ram``);
    ``node`` is the 6.9+ vmap node the area was allocated for (-1: none);
    ``pages_area`` is the start of the nested page-array vmalloc, if any (0:
    one exists but a restored snapshot did not say where); ``nested`` marks
    such a page array; ``percpu`` marks an area of ``pcpu_get_vm_areas()``.
    Runtime complexity: O(1) for every method.

    >>> VmapArea(0x1000, 0x3000)
    VmapArea(0x1000-0x3000, caller=None, vm_flags=0x0, va_flags=0x0, nr_pages=0, node=-1)
    """

    start: int
    end: int
    caller: str | None = None
    vm_flags: int = 0
    va_flags: int = 0
    nr_pages: int = 0
    phys: int = 0
    node: int = -1
    pages_area: int | None = None
    nested: bool = False
    percpu: bool = False

    @property
    def size(self) -> int:
        """Bytes of VA, guard page included.  Runtime complexity: O(1)."""
        return self.end - self.start

    def __repr__(self) -> str:
        """Addresses and flags in hex, as the kernel prints them.  Runtime complexity: O(1)."""
        extra = f", phys={self.phys:#x}" if self.phys else ""
        extra += f", pages_area={self.pages_area:#x}" if self.pages_area else ""
        extra += ", nested=True" if self.nested else ""
        extra += ", percpu=True" if self.percpu else ""
        return (
            f"VmapArea({self.start:#x}-{self.end:#x}, caller={self.caller!r}, vm_flags={self.vm_flags:#x}, "
            f"va_flags={self.va_flags:#x}, nr_pages={self.nr_pages}, node={self.node}{extra})"
        )


@attrs.frozen
class RegionUsage:
    """Address-space use of one window, in bytes.

    ``pinned = busy + lazy + pooled`` is what a new allocation cannot use;
    ``peak_pinned`` is its maximum since the space was made or ``reset_peak()``.

    >>> RegionUsage(busy=8192, lazy=4096, pooled=0, free=0, largest_free=0, peak_pinned=12288).pinned
    12288
    """

    busy: int
    lazy: int
    pooled: int
    free: int
    largest_free: int
    peak_pinned: int

    @property
    def pinned(self) -> int:
        """Busy + lazy + pooled bytes.  Runtime complexity: O(1)."""
        return self.busy + self.lazy + self.pooled
