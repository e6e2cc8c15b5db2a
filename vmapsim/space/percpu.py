"""``pcpu_get_vm_areas()``: where the percpu allocator's chunk areas go (mm/vmalloc.c).

All areas of one chunk keep their relative offsets and are placed together, as
high as possible below ``VMALLOC_END``: the search starts at the free range
holding the top, and ``pvm_determine_end_from_reverse()`` walks down one free
range at a time until every area fits.  :func:`find_base` is that search on a
:class:`~vmapsim.freetree.FreeTree`; it changes nothing.

>>> from vmapsim.freetree import FreeTree
>>> hex(find_base(FreeTree.from_ranges([(0x100000, 0x900000)]), 0x100000, 0x900000, [0], [0x200000], 0x200000))
'0x600000'
"""

from __future__ import annotations

from collections.abc import Sequence

from vmapsim.checks import integer, show
from vmapsim.errors import InvalidArgument
from vmapsim.freetree import FreeTree
from vmapsim.units import PAGE_SIZE, is_power_of_2

__all__ = ["check_areas", "find_base"]


def check_areas(offsets: Sequence[int], sizes: Sequence[int], align: int) -> None:
    """The argument checks of ``pcpu_get_vm_areas()``; :class:`InvalidArgument` naming the bad one.

    Runtime complexity: O(n²) for n areas (n is the number of NUMA groups, a handful).
    """
    for name, seq in (("offsets", offsets), ("sizes", sizes)):
        if isinstance(seq, str | bytes) or not isinstance(seq, Sequence):
            raise InvalidArgument(f"{name}={show(seq)}: expected a sequence of integers")
        for i, v in enumerate(seq):
            integer(f"{name}[{i}]", v, 0, 1 << 64)
    integer("align", align, PAGE_SIZE, 1 << 64)
    n = len(offsets)
    if n == 0 or n != len(sizes) or not is_power_of_2(align):
        raise InvalidArgument(f"pcpu_get_vm_areas(offsets={show(list(offsets))}, sizes={show(list(sizes))}, "
                              f"align={align:#x}): one size per offset, and a power-of-two align")  # fmt: skip
    for i in range(n):
        if offsets[i] % align or sizes[i] % align or sizes[i] <= 0:
            raise InvalidArgument(
                f"percpu area {i}: offset {offsets[i]:#x} / size {sizes[i]:#x} not aligned to {align:#x}"
            )
        for k in range(i + 1, n):
            if offsets[k] < offsets[i] + sizes[i] and offsets[i] < offsets[k] + sizes[k]:
                raise InvalidArgument(f"percpu areas {i} and {k} overlap")


def find_base(
    free: FreeTree, vstart: int, vend: int, offsets: Sequence[int], sizes: Sequence[int], align: int
) -> int | None:
    """The base address ``pcpu_get_vm_areas()`` settles on in ``[vstart, vend)``, or None if none fits.

    Runtime complexity: O(k log n) for k free ranges visited.
    """
    vm_start = (vstart + align - 1) & ~(align - 1)
    vm_end = vend & ~(align - 1)
    n = len(offsets)
    last = max(range(n), key=lambda i: (offsets[i], -i))
    last_end = offsets[last] + sizes[last]
    if vm_end - vm_start < last_end:
        return None

    def end_from_reverse(va: tuple[int, int] | None) -> tuple[tuple[int, int] | None, int]:
        # pvm_determine_end_from_reverse(): highest aligned end at or below this range.
        while va is not None:
            addr = min(va[1] & ~(align - 1), vm_end)
            if va[0] < addr:
                return va, addr
            va = free.before(va[0])
        return None, 0

    area = term = last
    start, end = offsets[area], offsets[area] + sizes[area]
    va, top = end_from_reverse(free.floor(vm_end))
    base = top - end
    while True:
        if base + last_end < vm_start + last_end or va is None:
            return None
        if base + end > va[1]:
            va, top = end_from_reverse(va)
            base, term = top - end, area
            continue
        if base + start < va[0]:
            va, top = end_from_reverse(free.before(va[0]))
            base, term = top - end, area
            continue
        area = (area + n - 1) % n
        if area == term:
            return base
        start, end = offsets[area], offsets[area] + sizes[area]
        va = free.floor(base + end)
