"""One module as the loader sees it: file sizes, section groups, allocations, metadata.

>>> MEMORY_TYPES.index("init_text")
4
"""

from __future__ import annotations

import functools

import attrs

from vmapsim.errors import InvalidArgument
from vmapsim.modules.layout import MEMORY_TYPES, Generation

# Enum members bound once: reading one off its Enum class costs about 50 ns on Python 3.11, and these
# are read for every stage of every load.
_MODULE_LAYOUT = Generation.MODULE_LAYOUT
_MODULE_MEMORY = Generation.MODULE_MEMORY

__all__ = ["MEMORY_TYPES", "ModuleImage"]


@attrs.frozen
class ModuleImage:
    """One module as the loader sees it: file sizes, section groups, allocations, metadata.

    ``legacy`` is the (core, init) ``module_alloc()`` pair of kernels up to 6.3;
    ``memory`` the seven 6.4+ allocations in ``layout.MEMORY_TYPES`` order (0:
    empty type, no allocation).  Sizes are bytes.

    >>> from vmapsim.modules import Catalog
    >>> m = Catalog.builtin("debian-6.1-amd64")["kvm_intel"]
    >>> m.legacy, m.depends
    ((380928, 61440), ('kvm',))
    """

    name: str
    path: str
    compression: str
    file_size: int
    decompressed_size: int
    signature_size: int
    text: int
    rodata: int
    ro_after_init: int
    data: int
    init_text: int
    init_data: int
    init_rodata: int
    percpu: int
    not_loaded_alloc: int
    alloc_total: int
    btf: int
    ksym_core: int
    ksym_init: int
    legacy: tuple[int, int]
    memory: tuple[int, ...]
    depends: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()
    softdeps: tuple[str, ...] = ()
    vermagic: str = ""
    modinfo_name: str = ""
    plt_core: int = 0
    plt_init: int = 0

    @property
    def core_size(self) -> int:
        """Bytes that stay allocated while the module is loaded (lsmod's Size), 6.4+ layout.

        Runtime complexity: O(1).
        """
        return sum(self.memory[:4])

    def resized(self, name: str | None = None, **sizes: int) -> ModuleImage:
        """This module with other section sizes (bytes per memory type of ``MEMORY_TYPES``, each rounded up
        to pages as ``module_memory_alloc()`` gets it), e.g. as a KASAN build would make it; ``name``
        renames it.  The ≤ 6.3 (core, init) pair becomes the page-rounded sums of the core and init types
        (a departure: the kernel lays sections out into one area, with alignment padding between them).
        Runtime complexity: O(1).

        >>> from vmapsim import Catalog
        >>> big = Catalog.builtin("debian-6.12-amd64")["kvm_intel"].resized("big_kasan", text=2494464, init_text=300000)
        >>> big.name, big.memory[0], big.memory[4], big.legacy == (sum(big.memory[:4]), sum(big.memory[4:]))
        ('big_kasan', 2494464, 303104, True)
        """
        unknown = sorted(set(sizes) - set(MEMORY_TYPES))
        if unknown:
            raise InvalidArgument(f"memory type {unknown[0]!r}: expected one of {', '.join(MEMORY_TYPES)}")
        memory = list(self.memory)
        for kind, n in sizes.items():
            if type(n) is not int or not 0 <= n <= 1 << 40:
                raise InvalidArgument(f"{kind}={n!r}: expected a size in bytes, 0 to 1 TiB")
            memory[MEMORY_TYPES.index(kind)] = -(-n // 4096) * 4096
        legacy = (sum(memory[:4]), sum(memory[4:])) if sizes else self.legacy
        if name is not None and (not isinstance(name, str) or not name):
            raise InvalidArgument(f"name={name!r}: expected a module name")
        return attrs.evolve(self, name=name or self.name, memory=tuple(memory), legacy=legacy)

    def allocations(self, generation: Generation | str) -> tuple[tuple[str, int], ...]:
        """The module-area allocations ``move_module()`` makes, as ``(type, bytes)`` pairs.

        ``generation`` is :attr:`Generation.MODULE_LAYOUT` (≤ 6.3: core, init) or
        :attr:`Generation.MODULE_MEMORY` (≥ 6.4: each non-empty type, in ``enum mod_mem_type``
        order), or its name.  Runtime complexity: O(1).
        """
        # A Generation equals its name, so the name takes the same branch.
        if generation == _MODULE_LAYOUT:
            return _nonempty(_LEGACY_TYPES, tuple(self.legacy))
        if generation == _MODULE_MEMORY:
            return _nonempty(MEMORY_TYPES, tuple(self.memory))
        raise InvalidArgument(f"generation {generation!r}: expected 'module_layout' or 'module_memory'")


_LEGACY_TYPES = ("core", "init")


@functools.lru_cache(maxsize=1 << 14)
def _nonempty(types: tuple[str, ...], sizes: tuple[int, ...]) -> tuple[tuple[str, int], ...]:
    """The non-empty ``(type, bytes)`` pairs, made once per sizes: every load of a module asks twice."""
    return tuple((t, n) for t, n in zip(types, sizes, strict=True) if n)
