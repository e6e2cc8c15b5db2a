"""Kernel profiles: how the vmap allocator behaves in each kernel version range.

A profile is frozen data chosen by value (``VmapSpace(..., profile=LINUX_6_9)``),
never a subclass.  The default, :data:`LINUX_6_3`, is the 6.3-6.8 allocator.
Each field names the ``mm/vmalloc.c`` change it follows (the 6.9 node pools: Uladzislau
Rezki's ``vmap_node`` series).

>>> for_version("6.12") is LINUX_6_11
True
>>> LINUX_6_3.node_pools, LINUX_6_9.node_pools
(False, True)
"""

from __future__ import annotations

import enum

import attrs

from vmapsim.checks import release, show
from vmapsim.errors import InvalidArgument

__all__ = [
    "BLOCK_RULES",
    "DEFAULT",
    "LINUX_5_4",
    "LINUX_5_11",
    "LINUX_5_16",
    "LINUX_5_18",
    "LINUX_6_3",
    "LINUX_6_5",
    "LINUX_6_9",
    "LINUX_6_11",
    "LINUX_6_16",
    "NEWEST",
    "PROFILES",
    "FailureMessage",
    "KernelProfile",
    "PoolDecay",
    "SearchLength",
    "enterprise_note",
    "for_version",
    "kernel_release",
    "release",
]


class FailureMessage(enum.Enum):
    """Which warning ``alloc_vmap_area()`` prints when a request cannot be met."""

    #: ≤ 6.10: ``vmap allocation for size N failed: use vmalloc=<size> to increase size``.
    VMAP = "vmap"
    #: 6.11+: ``vmalloc_node_range for size N failed: Address range restricted to 0x… - 0x…``.
    RANGE = "range"


class SearchLength(enum.Enum):
    """The length ``find_vmap_lowest_match()`` descends for: what a subtree must hold to be entered."""

    #: ≤ 5.15: ``size + align - 1`` for every request, so even a page-aligned one misses an exact hole off its path.
    ALIGN_OVERHEAD = "size+align-1"
    #: 5.16-5.17: ``size`` for every request (9f531973dff3), the roll-back moving ``vstart`` past each subtree
    #: it leaves, so an aligned request walks on until a range holds it.
    SIZE = "size"
    #: 5.18+: ``size + align - 1`` only for ``align > PAGE_SIZE`` in a window longer than ``size``
    #: (``adjust_search_size``, 9333fe98d0a6).
    ADJUSTED = "adjusted"


class PoolDecay(enum.Enum):
    """How ``decay_va_pool_node()`` trims a pool on an ordinary purge (6.9+)."""

    #: 6.9-6.15: a quarter of each pool; a pool shorter than 4 decays completely.
    QUARTER_SMALL_ALL = "quarter-small-all"
    #: 6.16+: a quarter of each pool; a pool shorter than 4 keeps everything.
    QUARTER_SMALL_NONE = "quarter-small-none"


@attrs.frozen
class KernelProfile:
    """The version-dependent rules of ``mm/vmalloc.c``.

    ``node_pools``: Rezki's per-node size-class pools (6.9+, ``node_alloc()``);
    ``coalesce_lazy``: lazily freed neighbours merge in the purge tree (≤ 6.8,
    visible as merged ``unpurged vm_area`` lines); ``fragmented_threshold``:
    ``vm_unmap_aliases()`` releases a fragmented vmap block only below
    ``VMAP_PURGE_THRESHOLD`` (6.5+); ``message``: the failure warning;
    ``vmap_ram_flag``: only ``VMAP_RAM`` areas without a ``vm_struct`` show as
    ``vm_map_ram`` in /proc/vmallocinfo (6.3+; before, every such area did);
    ``search``: the descent's :class:`SearchLength`; ``purge_newest_first``: the
    lazy list is an ``llist`` taken whole and given back newest first, uncoalesced
    (≤ 5.10); ``sync_drain``: the free that passes ``lazy_max_pages()`` purges at
    once in its own context (``try_purge_vmap_area_lazy()``, ≤ 5.17), not in a work
    item run later; ``purge_info_after_vm``: ``s_show()`` lists the unpurged areas
    after the last busy area only when that one has a ``vm_struct`` (≤ 5.15; fixed
    by 7cc7913e8e61).

    >>> LINUX_6_3.failure_message(8192, 0x1000, 0x2000)
    'vmap allocation for size 8192 failed: use vmalloc=<size> to increase size'
    """

    name: str
    first: tuple[int, int]
    node_pools: bool = False
    coalesce_lazy: bool = True
    fragmented_threshold: bool = False
    message: FailureMessage = FailureMessage.VMAP
    pool_decay: PoolDecay = PoolDecay.QUARTER_SMALL_ALL
    vmap_ram_flag: bool = True
    search: SearchLength = SearchLength.ADJUSTED
    purge_newest_first: bool = False
    sync_drain: bool = False
    purge_info_after_vm: bool = False

    def rules(self, *, blocks: bool = True) -> tuple[object, ...]:
        """What the profile makes the allocator do, without its name and first release; without ``blocks``,
        also without the :data:`BLOCK_RULES`.  Runtime complexity: O(fields).

        >>> LINUX_6_3.rules() == LINUX_6_5.rules(), LINUX_6_3.rules(blocks=False) == LINUX_6_5.rules(blocks=False)
        (False, True)
        """
        skip = ("name", "first") if blocks else ("name", "first", *BLOCK_RULES)
        return tuple(getattr(self, f.name) for f in attrs.fields(KernelProfile) if f.name not in skip)

    def failure_message(self, size: int, vstart: int, vend: int) -> str:
        """The warning line ``alloc_vmap_area()`` prints for a failed request.

        ``size`` is guard-inclusive and page-aligned, as the kernel prints it.
        Runtime complexity: O(1).

        >>> LINUX_6_11.failure_message(8192, 0xffffc90000000000, 0xffffe8ffffffffff)
        'vmalloc_node_range for size 8192 failed: Address range restricted to 0xffffc90000000000 - 0xffffe8ffffffffff'
        """
        if self.message is FailureMessage.VMAP:
            return f"vmap allocation for size {size} failed: use vmalloc=<size> to increase size"
        return f"vmalloc_node_range for size {size} failed: Address range restricted to {vstart:#x} - {vend:#x}"


#: The rules that act on vmap blocks alone (``vm_map_ram()``'s per-CPU blocks): a run that makes none cannot
#: tell profiles apart by them.
BLOCK_RULES = ("fragmented_threshold",)

#: 5.4-5.10 (Debian 11's 5.10): every descent looks for ``size + align - 1``; the lazy list is an ``llist``
#: given back newest first, uncoalesced; the free past ``lazy_max_pages()`` purges at once.
LINUX_5_4 = KernelProfile("5.4", (5, 4), coalesce_lazy=False, vmap_ram_flag=False,
                          search=SearchLength.ALIGN_OVERHEAD, purge_newest_first=True, sync_drain=True,
                          purge_info_after_vm=True)  # fmt: skip
#: 5.11-5.15 (Ubuntu 22.04's 5.15): lazy areas coalesce in ``purge_vmap_area_root``, given back by address
#: (96e2db456135).  From 5.18 the drain runs in ``drain_vmap_work`` (690467c81b1a).
LINUX_5_11 = attrs.evolve(LINUX_5_4, name="5.11", first=(5, 11), coalesce_lazy=True, purge_newest_first=False)
#: 5.16-5.17: the descent looks for ``size`` alone.
LINUX_5_16 = attrs.evolve(LINUX_5_11, name="5.16", first=(5, 16), search=SearchLength.SIZE, purge_info_after_vm=False)
#: 5.18-6.2 (Debian's 6.1): as 6.3, but vmallocinfo prints every vm-less area as vm_map_ram.
LINUX_5_18 = KernelProfile("5.18", (5, 18), vmap_ram_flag=False)
#: 6.3-6.4: one free tree, coalesced lazy tree, fragmented vmap blocks always purged.
LINUX_6_3 = KernelProfile("6.3", (6, 3))
#: 6.5-6.8: as 6.3, but ``vm_unmap_aliases()`` honours ``VMAP_PURGE_THRESHOLD``.
LINUX_6_5 = attrs.evolve(LINUX_6_3, name="6.5", first=(6, 5), fragmented_threshold=True)
#: 6.9-6.10: per-node pools, per-node (uncoalesced) lazy lists.
LINUX_6_9 = attrs.evolve(LINUX_6_5, name="6.9", first=(6, 9), node_pools=True, coalesce_lazy=False)
#: 6.11-6.15 (Debian's 6.12): the ``vmalloc_node_range`` failure message.
LINUX_6_11 = attrs.evolve(LINUX_6_9, name="6.11", first=(6, 11), message=FailureMessage.RANGE)
#: 6.16+: small pools no longer decay on an ordinary purge.
LINUX_6_16 = attrs.evolve(LINUX_6_11, name="6.16", first=(6, 16), pool_decay=PoolDecay.QUARTER_SMALL_NONE)

#: The 6.3-6.8 allocator, the default of :class:`vmapsim.VmapSpace`.
DEFAULT = LINUX_6_3
#: Every profile, oldest first.
PROFILES: tuple[KernelProfile, ...] = (LINUX_5_4, LINUX_5_11, LINUX_5_16, LINUX_5_18, LINUX_6_3, LINUX_6_5, LINUX_6_9,
                                       LINUX_6_11, LINUX_6_16)  # fmt: skip


#: The newest release whose load path, execmem and allocator vmapsim's model was read from (Debian 13
#: backports' 7.3.4): :func:`kernel_release` refuses anything newer.
NEWEST = (7, 3)


def kernel_release(version: object) -> tuple[int, int]:
    """``(major, minor)`` of a kernel version vmapsim models: the one check every ``--kernel`` of every command,
    :func:`for_version` and :func:`vmapsim.loader.for_kernel` make, with one set of limits and messages.

    :class:`InvalidArgument` for anything but a string, an empty or malformed version, one older than 5.4
    (the oldest long-term kernel whose ``mm/vmalloc.c`` was read) or newer than :data:`NEWEST` (nothing
    newer has been read).  Runtime complexity: O(1).

    >>> kernel_release("6.1.0-56-amd64")
    (6, 1)
    >>> kernel_release("7.4")
    Traceback (most recent call last):
    ...
    vmapsim.errors.InvalidArgument: kernel version '7.4': newer than 7.3, the newest release vmapsim models
    """
    key = release(version)  # type: ignore[arg-type]  # release() refuses a non-string, naming it
    if key < PROFILES[0].first:
        raise InvalidArgument(f"kernel version {show(version)}: profiles start at 5.4")
    if key > NEWEST:
        raise InvalidArgument(f"kernel version {show(version)}: newer than {NEWEST[0]}.{NEWEST[1]}, the newest "
                              "release vmapsim models")  # fmt: skip
    return key


#: Upstream releases enterprise distributions build on (``MAJOR.MINOR`` -> whose), for :func:`enterprise_note`.
ENTERPRISE_BASES = {(5, 14): "RHEL 9 and its rebuilds"}


def enterprise_note(version: str) -> str | None:
    """What to say when ``version`` is an enterprise kernel's base, or None.

    Such kernels carry backports of later ``mm/vmalloc.c`` and ``kernel/module`` changes; which ones, only the
    vendor's source says, so vmapsim runs the upstream release.  Runtime complexity: O(1).

    >>> enterprise_note("5.14.0-427.el9.x86_64")[:60]
    '5.14 is the base of RHEL 9 and its rebuilds: their kernels b'
    """
    key = kernel_release(version)
    whose = ENTERPRISE_BASES.get(key)
    if whose is None:
        return None
    return (f"{key[0]}.{key[1]} is the base of {whose}: their kernels backport later mm/vmalloc.c and module "
            f"loader changes (the vendor's source says which); vmapsim runs upstream {key[0]}.{key[1]}")  # fmt: skip


def for_version(version: str) -> KernelProfile:
    """The profile for a kernel release such as ``"6.12"`` or ``"6.1.0-56-amd64"``.

    A version :func:`kernel_release` refuses raises :class:`InvalidArgument`.  Runtime complexity: O(1).

    >>> for_version("6.8.0").name, for_version("6.9").name, for_version("6.1.0-56-amd64").name
    ('6.5', '6.9', '5.18')
    """
    key = kernel_release(version)
    return [p for p in PROFILES if p.first <= key][-1]
