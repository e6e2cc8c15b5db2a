"""Machine layouts: where the vmalloc and module windows lie in the kernel VA.

A layout is frozen data, chosen by value.  Every window is a ``[start, end)``
pair passed to ``alloc_vmap_area()`` as ``vstart``/``vend``; all windows share one
free tree over the whole kernel VA (``vmap_init_free_space()``).  Numbers come
from ``arch/*/include/asm/pgtable*.h`` and ``Documentation/arch/*/vm-layout.rst``
(x86-64: ``Documentation/arch/x86/x86_64/mm.rst``).

>>> X86_64.vmalloc.start == 0xffffc90000000000
True
>>> X86_64.modules.size // MiB
1008
"""

from __future__ import annotations

import re

import attrs

from vmapsim.checks import address, flag, integer, parse_number, show, text
from vmapsim.errors import InvalidArgument
from vmapsim.units import PAGE_SIZE, GiB, MiB, hex_repr

__all__ = [
    "ARM64_48",
    "LAYOUTS",
    "RISCV64_SV39",
    "RISCV64_SV48",
    "RISCV64_SV57",
    "X86_64",
    "X86_64_LA57",
    "X86_64_NOKASLR",
    "Layout",
    "Region",
    "by_name",
    "i386",
]


@attrs.frozen
class Region:
    """A named ``[start, end)`` window of the kernel VA.

    ``end`` is the ``vend`` the kernel passes: an allocation may end exactly at
    it.  On x86-64 ``VMALLOC_END`` is the inclusive last byte (``...ffff``), so
    the top page of the vmalloc window is never handed out.

    >>> Region("modules", 0x1000, 0x3000).size
    8192
    """

    name: str
    start: int = attrs.field(repr=hex_repr)
    end: int = attrs.field(repr=hex_repr)

    def __attrs_post_init__(self) -> None:
        if not text("name", self.name):
            raise InvalidArgument("a region's name is empty")
        if address("start", self.start) >= address("end", self.end):
            raise InvalidArgument(f"region {self.name!r}: [{self.start:#x}, {self.end:#x}) is empty")

    @property
    def size(self) -> int:
        """Bytes between ``start`` and ``end``.  Runtime complexity: O(1)."""
        return self.end - self.start

    def __contains__(self, addr: object) -> bool:
        """True when ``addr`` lies in ``[start, end)``.  Runtime complexity: O(1)."""
        return isinstance(addr, int) and self.start <= addr < self.end


@attrs.frozen
class Layout:
    """The address-space facts of one machine (architecture, paging mode, KASLR).

    ``vmalloc`` is ``[VMALLOC_START, VMALLOC_END]``; ``modules`` the window
    ``module_alloc()``/``execmem_alloc()`` searches (identical to ``vmalloc`` on
    i386); ``kva_end`` bounds the free tree (``ULONG_MAX``);
    ``ioremap_max_order`` is ``IOREMAP_MAX_ORDER``; ``thread_align`` is
    ``THREAD_ALIGN`` for vmapped stacks; ``vmalloc_space`` is the
    ``VMALLOC_SPACE`` guess used to size vmap blocks; ``kaslr`` says the module
    window starts at a random page offset (``get_module_load_offset()``: 1..1024 pages);
    ``arch`` the architecture whose modules load here; ``execmem_rox`` that the architecture selects
    ``ARCH_HAS_EXECMEM_ROX`` (x86-64
    with ``STRICT_MODULE_RWX``, ``arch/x86/Kconfig``; no other architecture in 7.3)
    and its CPUs have PSE, so 6.15+ module text comes from execmem's ROX cache.

    Runtime complexity: O(1) for every method.

    >>> X86_64.region_of(0xffffffffc0001000).name
    'modules'
    """

    name: str
    vmalloc: Region
    modules: Region
    bits: int = 64
    ioremap_max_order: int = 30
    thread_align: int = 4 * PAGE_SIZE
    vmalloc_space: int = 128 * GiB
    kaslr: bool = False
    execmem_rox: bool = False
    #: The architecture (``uname -m``'s name, as kbuild's ``UTS_MACHINE``): whose modules load here.
    arch: str = "x86_64"

    def __attrs_post_init__(self) -> None:
        for name in ("name", "arch"):
            if not text(name, getattr(self, name)):
                raise InvalidArgument(f"layout {name} is empty")
        integer("bits", self.bits, 32, 64)
        if self.bits not in (32, 64):
            raise InvalidArgument(f"bits={self.bits}: expected 32 or 64")
        for region in (self.vmalloc, self.modules):
            if not isinstance(region, Region):
                raise InvalidArgument(f"layout {self.name!r}: {show(region)} is not a Region")
            if region.end > self.kva_end or region.start % PAGE_SIZE:
                raise InvalidArgument(f"layout {self.name!r}: region {region.name!r} [{region.start:#x}, "
                                      f"{region.end:#x}) is not page aligned in {self.bits}-bit addresses")
        integer("ioremap_max_order", self.ioremap_max_order, 12, self.bits - 1)  # PAGE_SHIFT up
        if integer("thread_align", self.thread_align, PAGE_SIZE, 1 << 30) & (self.thread_align - 1):
            raise InvalidArgument(f"thread_align={self.thread_align}: expected a power of two")
        integer("vmalloc_space", self.vmalloc_space, PAGE_SIZE, 1 << self.bits)
        flag("kaslr", self.kaslr)
        flag("execmem_rox", self.execmem_rox)

    @property
    def kva_end(self) -> int:
        """``ULONG_MAX``: the free tree covers ``[1, ULONG_MAX)`` at boot."""
        return (1 << self.bits) - 1

    @property
    def shared_modules(self) -> bool:
        """Whether modules load inside the vmalloc window (i386: ``MODULES_VADDR`` is ``VMALLOC_START``), so
        there is no module window whose peak means anything of its own.  Runtime complexity: O(1).

        >>> i386().shared_modules, X86_64.shared_modules
        (True, False)
        """
        return self.modules.start >= self.vmalloc.start and self.modules.end <= self.vmalloc.end

    @property
    def regions(self) -> tuple[Region, ...]:
        """The distinct windows, vmalloc first (one window when they coincide)."""
        return (self.vmalloc,) if self.shared_modules else (self.vmalloc, self.modules)

    def region(self, name: str) -> Region:
        """The window called ``name`` (``"vmalloc"`` or ``"modules"``)."""
        if name == "vmalloc":
            return self.vmalloc
        if name == "modules":
            return self.modules
        raise InvalidArgument(f"unknown region {show(name)}: expected 'vmalloc' or 'modules'")

    def region_of(self, addr: int) -> Region | None:
        """The window holding ``addr``, or None outside every window."""
        for r in self.regions:
            if r.start <= addr < r.end:
                return r
        return None


_X86_MODULES_END = 0xFFFFFFFFFF000000
_X86_VMALLOC_L4 = Region("vmalloc", 0xFFFFC90000000000, 0xFFFFE8FFFFFFFFFF)

#: x86-64, 4-level paging, ``CONFIG_RANDOMIZE_BASE`` (KERNEL_IMAGE_SIZE 1 GiB).
X86_64 = Layout(
    "x86_64",
    vmalloc=_X86_VMALLOC_L4,
    modules=Region("modules", 0xFFFFFFFFC0000000, _X86_MODULES_END),
    kaslr=True,
    execmem_rox=True,
)
#: x86-64, 4-level paging, no ``CONFIG_RANDOMIZE_BASE`` (1520 MiB module window).
X86_64_NOKASLR = attrs.evolve(
    X86_64, name="x86_64_nokaslr", modules=Region("modules", 0xFFFFFFFFA0000000, _X86_MODULES_END), kaslr=False
)
#: x86-64, 5-level paging (what QEMU's ``-cpu max`` boots into).
X86_64_LA57 = attrs.evolve(
    X86_64, name="x86_64_la57", vmalloc=Region("vmalloc", 0xFFA0000000000000, 0xFFD1FFFFFFFFFFFF)
)
#: arm64, 48-bit VA, 4 KiB pages, the 6.3 layout (128 MiB modules below vmalloc).
ARM64_48 = Layout(
    "arm64_48",
    vmalloc=Region("vmalloc", 0xFFFF800008000000, 0xFFFFFBFFF0000000),
    modules=Region("modules", 0xFFFF800000000000, 0xFFFF800008000000),
    thread_align=8 * PAGE_SIZE,
    arch="arm64",
)
_RISCV_MODULES = Region("modules", 0xFFFFFFFF00000000, 0xFFFFFFFF80000000)
#: riscv64 Sv39 (vmalloc 64 GiB; VMALLOC_END = PAGE_OFFSET).
RISCV64_SV39 = Layout(
    "riscv64_sv39", vmalloc=Region("vmalloc", 0xFFFFFFC600000000, 0xFFFFFFD600000000),
    modules=_RISCV_MODULES,
    arch="riscv64",
)
#: riscv64 Sv48 (vmalloc 32 TiB).
RISCV64_SV48 = Layout(
    "riscv64_sv48", vmalloc=Region("vmalloc", 0xFFFF8F8000000000, 0xFFFFAF8000000000),
    modules=_RISCV_MODULES,
    arch="riscv64",
)
#: riscv64 Sv57 (vmalloc 16 PiB).
RISCV64_SV57 = Layout(
    "riscv64_sv57", vmalloc=Region("vmalloc", 0xFF20000000000000, 0xFF60000000000000),
    modules=_RISCV_MODULES,
    arch="riscv64",
)

# x86-32 with HIGHMEM: VMALLOC_END = PKMAP_BASE - 2 pages (0xff800000 - 8 KiB).
_I386_VMALLOC_END = 0xFF7FE000


_I386_DEFAULT = 120 * MiB
_I386_NAMED = re.compile(r"i386\(vmalloc=([0-9]{1,7})([KMG])\)")


def i386(vmalloc: int = _I386_DEFAULT) -> Layout:
    """x86-32 (3G/1G split, lowmem full): the vmalloc window is exactly ``vmalloc=`` bytes.

    Without the boot parameter the window is 128 MiB - 8 MiB = 120 MiB
    (``__VMALLOC_RESERVE``); modules live inside it (``MODULES_VADDR =
    VMALLOC_START``).  Runtime complexity: O(1).

    >>> i386().vmalloc.size // MiB, i386().name, i386(vmalloc=64 * MiB).name
    (120, 'i386', 'i386(vmalloc=64M)')
    >>> lay = i386(vmalloc=64 * MiB)
    >>> (lay.modules.start, lay.modules.end) == (lay.vmalloc.start, lay.vmalloc.end)
    True
    """
    if vmalloc <= 0 or vmalloc % PAGE_SIZE or vmalloc > _I386_VMALLOC_END - 0xC0000000:
        raise InvalidArgument(f"vmalloc={vmalloc}: must be a positive multiple of 4096 below 1 GiB")
    window = Region("vmalloc", _I386_VMALLOC_END - vmalloc, _I386_VMALLOC_END)
    # named as the boot parameter is written (memparse() suffixes), so by_name() reads the name back
    size = f"{vmalloc // MiB}M" if vmalloc % MiB == 0 else f"{vmalloc // 1024}K"
    return Layout(
        "i386" if vmalloc == _I386_DEFAULT else f"i386(vmalloc={size})",
        vmalloc=window,
        modules=attrs.evolve(window, name="modules"),
        bits=32,
        ioremap_max_order=21,
        thread_align=2 * PAGE_SIZE,
        vmalloc_space=128 * MiB,
        arch="i386",
    )


#: Every named layout, by name (``i386`` with its default window).
LAYOUTS: dict[str, Layout] = {
    lay.name: lay for lay in (X86_64, X86_64_NOKASLR, X86_64_LA57, ARM64_48, RISCV64_SV39, RISCV64_SV48, RISCV64_SV57)
}
LAYOUTS["i386"] = i386()


def by_name(name: str) -> Layout:
    """The layout called ``name`` (an i386 layout's own name too: ``i386(vmalloc=64M)``); raises
    :class:`InvalidArgument` naming it if unknown.

    Runtime complexity: O(1).

    >>> by_name("x86_64") is X86_64, by_name("i386(vmalloc=64M)").vmalloc.size // MiB
    (True, 64)
    """
    named = _I386_NAMED.fullmatch(name) if isinstance(name, str) else None
    if named is not None:
        return i386(parse_number(named[1], what="vmalloc=", decimal=True) << {"K": 10, "M": 20, "G": 30}[named[2]])
    layout = LAYOUTS.get(name) if isinstance(name, str) else None
    if layout is None:
        raise InvalidArgument(f"unknown layout {show(name)}; known: {', '.join(sorted(LAYOUTS))}")
    return layout
