"""The module load path as stages: each is one step of finit_module()/init_module() in kernel/module.

A stage is a small frozen value with a ``run(info, kernel)`` generator: it
allocates and frees against the :class:`~vmapsim.VmapSpace`, changes the module
list, yields to the engine where the kernel takes time or sleeps, and raises
:class:`~vmapsim.loader.kernel.LoadFailed` where the kernel returns an error.  The
state a stage needs for the run has a typed home on the
:class:`~vmapsim.loader.kernel.Kernel` (the files being read, a limiter's slots).
A pipeline (:mod:`vmapsim.loader.pipelines`) is an ordered tuple of stages.

The rules, with the kernel functions they mirror, are in each stage's docstring.

>>> [Read().name, LayoutAndAllocate().name, ExistenceCheck().name]
['read', 'layout', 'existence_check']
"""

from __future__ import annotations

import enum
from collections.abc import Generator, Iterable

import attrs

from vmapsim.checks import integer, member
from vmapsim.engine import Command, Delay, Task
from vmapsim.loader.costs import Cost
from vmapsim.loader.errno import EBUSY, EINVAL, ETXTBSY
from vmapsim.loader.kernel import Kernel, LoadFailed, LoadInfo
from vmapsim.loader.module_list import ModuleRecord, ModuleState
from vmapsim.loader.request import Syscall
from vmapsim.loader.result import INIT_KINDS, Allocation, AllocationKind
from vmapsim.loader.stats import FAIL_DUP_MOD_BECOMING, FAIL_DUP_MOD_LOAD, FailurePoint
from vmapsim.units import PAGE_SIZE, KiB, MiB

__all__ = [
    "MAX_SLOTS",
    "AddUnformed",
    "CompleteFormation",
    "ConcurrencyLimit",
    "Decompress",
    "ElfValidate",
    "ExistenceCheck",
    "FinitFlags",
    "FreeCopy",
    "Init",
    "LayoutAndAllocate",
    "MapPages",
    "Read",
    "ReadDedup",
    "SignatureCheck",
    "Stage",
    "free_module_memory",
]

# Decompressor scratch space: the xz dictionary kbuild asks for (--lzma2=dict=1MiB), zlib's inflate
# workspace, and a zstd window about the size of the output (single-segment frames) plus its tables.
_XZ_DICT = 1 * MiB
_GZ_WORKSPACE = 44 * KiB
_ZSTD_EXTRA = 128 * KiB


def _patient_check(k: Kernel, name: str, reason: int) -> Task:
    """``module_patient_check_exists()``, counting a duplicate under ``reason`` before failing."""
    ret = yield from k.modules.patient_check(name)
    if ret:
        k.stats.add_duplicate(name, reason)
        raise LoadFailed(-ret, _AT_DUP)


class ReadDedup(enum.StrEnum):
    """Which second reader :class:`Read` refuses, as the 2023 proposals for ``kernel_read_file()`` did.

    ``PATH``: Luis Chamberlain's RFC 2/2 (LKML, posted against v6.4-rc): a read of a path already being
    loaded fails with -EBUSY before allocating; ``EXCLUSIVE``: v6.4-rc4's 9828ed3f695a in
    ``kernel/module/main.c`` (reverted before 6.4): a second reader of a file being read gets -ETXTBSY.
    Each member equals its name (``ReadDedup.PATH == "path"``).

    >>> ReadDedup.of("exclusive") is ReadDedup.EXCLUSIVE, ReadDedup.of(None)
    (True, None)
    """

    PATH = "path"
    EXCLUSIVE = "exclusive"

    @classmethod
    def of(cls, value: object) -> ReadDedup | None:
        """``value`` if it is a ReadDedup or None (no dedup), else the one it names; :class:`InvalidArgument`
        naming anything else.  Runtime complexity: O(1).

        >>> ReadDedup.of("inode")
        Traceback (most recent call last):
        ...
        vmapsim.errors.InvalidArgument: dedup='inode': expected one of path, exclusive
        """
        return None if value is None else member("dedup", value, cls)

# Enum members bound once: reading one off its Enum class costs about 50 ns on Python 3.11, and these
# are read for every stage of every load.
_COPY = AllocationKind.COPY_MODULE_FROM_USER
_READ_BUFFER = AllocationKind.KERNEL_READ_FILE
_SCRATCH = AllocationKind.MODULE_DECOMPRESS
# A module memory type's name (ModuleImage.allocations()) -> its kind.
_KIND_OF = {k.value: k for k in AllocationKind}
_AT_BECOMING = FailurePoint.BECOMING
_AT_DECOMPRESS = FailurePoint.DECOMPRESS
_AT_DUP = FailurePoint.DUP
_AT_INIT = FailurePoint.INIT
_AT_KREAD = FailurePoint.KREAD
_COST_COPY = Cost.COPY
_COST_DECOMPRESS = Cost.DECOMPRESS
_COST_INIT = Cost.INIT
_COST_IPI = Cost.IPI
_COST_LAYOUT = Cost.LAYOUT
_COST_POPULATE = Cost.POPULATE
_COST_RCU_GRACE = Cost.RCU_GRACE
_COST_READ = Cost.READ
_COST_SIGNATURE = Cost.SIGNATURE
_COST_WORKQUEUE = Cost.WORKQUEUE
_DEDUP_EXCLUSIVE = ReadDedup.EXCLUSIVE
_DEDUP_PATH = ReadDedup.PATH
_INIT_MODULE = Syscall.INIT_MODULE
_STATE_COMING = ModuleState.COMING
_STATE_GOING = ModuleState.GOING
_STATE_LIVE = ModuleState.LIVE
_STATE_UNFORMED = ModuleState.UNFORMED




def _dedup(value: object) -> ReadDedup | None:
    return ReadDedup.of(value)


def _dedup_repr(value: ReadDedup | None) -> str:
    return repr(None if value is None else value.value)  # Read(dedup='path'), as it is written


class Stage:
    """One step of the load path; subclasses are frozen values with a ``run`` method.

    ``run(info, k)`` acts on one load against the kernel and returns the engine
    commands to yield from when the step takes time or may sleep (a generator, or
    the one command of a plain wait), or None when it is instantaneous; it raises
    :class:`~vmapsim.loader.kernel.LoadFailed` where the kernel returns an error.
    """

    name = "stage"

    def run(self, info: LoadInfo, k: Kernel) -> Iterable[Command] | None:
        """Act on ``info`` against ``k``: the commands to yield from, or None when done at once."""
        raise NotImplementedError


#: The most slots a concurrency limit has (``concurrency-limit:N``): more than any machine's CPUs.
MAX_SLOTS = 999_999


@attrs.frozen
class ConcurrencyLimit(Stage):
    """At most ``limit`` loads past this point at once (the limiter sketched for kernel_read_file())."""

    limit: int
    name = "concurrency_limit"

    def __attrs_post_init__(self) -> None:
        integer("limit", self.limit, 1, MAX_SLOTS)

    def run(self, info: LoadInfo, k: Kernel) -> Task:
        """Take a slot, waiting while all are taken; the slot is given back when the load ends."""
        sem = k.limiter(self, self.limit)
        yield from sem.acquire()
        info.cleanups.append(lambda: sem.release(k.engine))


@attrs.frozen
class FinitFlags(Stage):
    """``finit_module()``'s flags check before 5.17 (no ``CONFIG_MODULE_DECOMPRESS``): a compressed file can
    only come with ``MODULE_INIT_COMPRESSED_FILE``, a flag that kernel does not know: -EINVAL, nothing read.

    kmod 31+ never asks: without ``/sys/module/compression`` it decompresses the file itself and calls
    ``init_module(2)`` (``do_finit_module()`` falls back as for -ENOSYS).
    """

    name = "finit_flags"

    def run(self, info: LoadInfo, k: Kernel) -> None:
        """Refuse a compressed finit_module() file."""
        if info.compressed:
            raise LoadFailed(EINVAL, _AT_KREAD)


@attrs.frozen
class Read(Stage):
    """``kernel_read_file()``: vmalloc(file size) and read it (``copy_module_from_user()`` for init_module).

    ``dedup`` (a :class:`ReadDedup`, or its name; None for none):
    :attr:`ReadDedup.PATH` is Luis's RFC: a read of a path already being loaded
    fails with -EBUSY before allocating; :attr:`ReadDedup.EXCLUSIVE` is v6.4-rc4's
    exclusive write-deny: a second reader during a read gets -ETXTBSY;
    ``pages=True`` reads into a page list (no vmap area), as Rick Edgecombe proposed.

    >>> Read(dedup="path").dedup is ReadDedup.PATH, Read(dedup=ReadDedup.PATH)
    (True, Read(dedup='path', pages=False))
    """

    dedup: ReadDedup | None = attrs.field(default=None, converter=_dedup, repr=_dedup_repr)
    pages: bool = False
    name = "read"

    def run(self, info: LoadInfo, k: Kernel) -> Iterable[Command]:
        """Allocate the buffer and spend the read time (the commands to yield from)."""
        if info.request.syscall is _INIT_MODULE:
            # The buffer userspace passed (already decompressed) is copied into a vmalloc area.
            info.copy = k.vmalloc(info, _COPY, info.image.decompressed_size, _AT_KREAD)
            return k.compute(_COST_COPY, info.image.decompressed_size)
        if self.dedup is None and not self.pages:  # nothing to hold while reading: no generator
            info.read_buffer = k.vmalloc(info, _READ_BUFFER, info.image.file_size, _AT_KREAD)
            if not info.compressed:
                info.copy = info.read_buffer
            return k.compute(_COST_READ, info.image.file_size)
        return self._read(info, k)

    def _read(self, info: LoadInfo, k: Kernel) -> Task:
        """The finit_module() read with a dedup rule or into pages: what the read holds, held until it ends."""
        req = info.request
        path = req.path or info.image.path
        inode = req.inode or path
        reads = k.reads
        if self.dedup is _DEDUP_PATH:
            if path in reads.paths:
                raise LoadFailed(EBUSY, _AT_KREAD)
            reads.paths.add(path)
            info.cleanups.append(lambda: reads.paths.discard(path))
        if self.dedup is _DEDUP_EXCLUSIVE:
            if inode in reads.inodes:
                raise LoadFailed(ETXTBSY, _AT_KREAD)
            reads.inodes.add(inode)
        try:
            if not self.pages:
                info.read_buffer = k.vmalloc(info, _READ_BUFFER, info.image.file_size, _AT_KREAD)
                if not info.compressed:
                    info.copy = info.read_buffer
            yield from k.compute(_COST_READ, info.image.file_size)
        finally:
            reads.inodes.discard(inode)


@attrs.frozen
class Decompress(Stage):
    """``module_decompress()``: scratch vmalloc, pages, then vmap() of them; the read buffer is vfree'd.

    xz allocates its 1 MiB dictionary (freed as soon as decompression ends),
    gzip its inflate workspace, zstd a window about the output's size.  With
    ``pages=True`` the output stays a page list (mapped later by
    :class:`MapPages`) and the scratch space is page-based too.
    """

    pages: bool = False
    name = "decompress"

    def run(self, info: LoadInfo, k: Kernel) -> Task:
        """Decompress a compressed finit_module() file; a no-op otherwise."""
        if not info.compressed:
            return
        img = info.image
        if not self.pages:
            scratch = {"xz": _XZ_DICT, "gz": _GZ_WORKSPACE, "zst": img.decompressed_size + _ZSTD_EXTRA}[img.compression]
            work = k.vmalloc(info, _SCRATCH, scratch, _AT_DECOMPRESS)
            yield from k.compute(_COST_DECOMPRESS, img.decompressed_size)
            k.free(work)
            info.copy = k.vmap(info, -(-img.decompressed_size // PAGE_SIZE), _AT_DECOMPRESS)
        else:
            yield from k.compute(_COST_DECOMPRESS, img.decompressed_size)
        if info.read_buffer is not None:
            k.free(info.read_buffer)  # "compressed data is no longer needed"


@attrs.frozen
class SignatureCheck(Stage):
    """``module_sig_check()``: hash the image; the appended signature leaves ``info->len``."""

    name = "signature"

    def run(self, info: LoadInfo, k: Kernel) -> Iterable[Command]:
        """Spend the hashing time (over the signed length) and strip the signature length."""
        hashing = k.compute(_COST_SIGNATURE, info.length)
        info.length -= info.image.signature_size  # nothing reads it while the hash is computed
        return hashing


@attrs.frozen
class ElfValidate(Stage):
    """``elf_validity_cache_copy()``: checks on the temporary copy; no allocation, no measurable time."""

    name = "elf_validate"

    def run(self, info: LoadInfo, k: Kernel) -> None:
        """Nothing to allocate; catalog modules are valid ELF."""


@attrs.frozen
class ExistenceCheck(Stage):
    """``early_mod_check()``'s ``module_patient_check_exists(name, FAIL_DUP_MOD_BECOMING)`` (6.4+)."""

    name = "existence_check"

    def run(self, info: LoadInfo, k: Kernel) -> Task:
        """Fail with -EEXIST/-EBUSY if a module of this name exists (after waiting it out)."""
        return _patient_check(k, info.image.name, FAIL_DUP_MOD_BECOMING)


@attrs.frozen
class MapPages(Stage):
    """The page-list proposal's one ``vmap()``: only a load that passed the existence check maps its pages."""

    name = "map_pages"

    def run(self, info: LoadInfo, k: Kernel) -> None:
        """vmap() the (decompressed) image now that it is known to be unique (init_module has its copy)."""
        if info.copy is None:
            info.copy = k.vmap(info, -(-info.image.decompressed_size // PAGE_SIZE), _AT_BECOMING)
        return None


@attrs.frozen
class LayoutAndAllocate(Stage):
    """``layout_and_allocate()`` → ``move_module()``: one module_alloc() per area, then the section copy.

    Up to 6.3 a core and an init area; from 6.4 one per non-empty memory
    type, each ``MODULE_ALIGN``-aligned from ``MODULES_VADDR + load offset``,
    with ``VM_FLUSH_RESET_PERMS``.  A failure frees what was allocated
    (``module_deallocate()``) and counts as "becoming".
    """

    name = "layout"

    def run(self, info: LoadInfo, k: Kernel) -> Task:
        """Lay out, allocate every area, copy the sections (the race window of the 6.4 early check)."""
        if k.costs.layout:
            yield from k.compute(_COST_LAYOUT, info.image.decompressed_size)
        got = []
        try:
            for kind, size in info.image.allocations(k.generation):
                got.append((yield from k.module_memory(info, _KIND_OF[kind], size, _AT_BECOMING)))
                if k.costs.populate:  # the pages are allocated and mapped before the next area is asked for
                    yield from k.compute(_COST_POPULATE, size)
        except LoadFailed:
            for a in got:
                k.free(a)
            raise
        info.past_layout = True
        # not on the list yet: add_unformed_module() links it, UNFORMED
        info.record = ModuleRecord(info.image.name, _STATE_UNFORMED, info.index, list(got))
        yield from k.compute(_COST_COPY, sum(a.size for a in got))


@attrs.frozen
class AddUnformed(Stage):
    """``add_unformed_module()``: the duplicate check after layout (the only one up to 6.3), then UNFORMED."""

    name = "add_unformed"

    def run(self, info: LoadInfo, k: Kernel) -> Task:
        """Wait out a same-name module being loaded, fail if one exists, else join the list."""
        yield from _patient_check(k, info.image.name, FAIL_DUP_MOD_LOAD)
        assert info.record is not None
        info.record.state = _STATE_UNFORMED
        k.modules.add(info.record)


@attrs.frozen
class CompleteFormation(Stage):
    """``complete_formation()``: COMING; making module memory read-only purges the lazy areas.

    ``module_enable_ro()`` changes page permissions, which ends in
    ``vm_unmap_aliases()``: a 6.12 kernel traced under QEMU showed several purges per load.
    """

    name = "complete_formation"

    def run(self, info: LoadInfo, k: Kernel) -> Iterable[Command] | None:
        """State COMING, one ``vm_unmap_aliases()``; the cross-CPU flushes take time if the costs say so."""
        assert info.record is not None
        k.modules.set_state(info.record, _STATE_COMING)
        k.space.vm_unmap_aliases()
        return k.compute(_COST_IPI, k.space.cpus) if k.costs.ipi else None


@attrs.frozen
class FreeCopy(Stage):
    """``free_copy()``: the temporary image (read buffer, or vmap of decompressed pages) goes, lazily."""

    name = "free_copy"

    def run(self, info: LoadInfo, k: Kernel) -> None:
        """Free the temporary copy before the module's init runs."""
        if info.copy is not None:
            k.free(info.copy)
        return None


@attrs.frozen
class Init(Stage):
    """``do_init_module()``: run init; LIVE and a deferred free of the init areas, or GOING and free all.

    The init areas are freed from a workqueue after ``synchronize_rcu()``
    (``do_free_init()``); each free purges (VM_FLUSH_RESET_PERMS).
    """

    name = "init"

    def run(self, info: LoadInfo, k: Kernel) -> Task:
        """Spend the init time; succeed or fail with the request's ``init_errno``."""
        rec = info.record
        assert rec is not None
        yield from k.compute(_COST_INIT)
        if info.request.init_errno:
            k.modules.set_state(rec, _STATE_GOING)
            free_module_memory(k, rec)
            k.modules.remove(rec)
            raise LoadFailed(info.request.init_errno, _AT_INIT)
        k.modules.set_state(rec, _STATE_LIVE)
        img = info.image
        # total_mod_size: every mem[type].size (page-aligned); total_text_size: MOD_TEXT + MOD_INIT_TEXT.
        k.stats.add_loaded(sum(n for _, n in img.allocations(k.generation)), img.memory[0] + img.memory[4])
        init_areas = [a for a in rec.areas if a.kind in INIT_KINDS]
        if init_areas:
            k.engine.spawn(_free_init(k, init_areas))


def free_module_memory(k: Kernel, rec: ModuleRecord) -> None:
    """``module_deallocate()``/``free_mod_mem()``: every module-memory area of a record."""
    for a in rec.areas:
        k.free(a)


def _free_init(k: Kernel, areas: list[Allocation]) -> Generator[Delay, None, None]:
    yield Delay(k.duration(_COST_WORKQUEUE) + k.duration(_COST_RCU_GRACE))
    for a in areas:
        k.free(a)
