"""The module load path as stages: each is one step of finit_module()/init_module() in kernel/module.

A stage is a small frozen value with a ``run(ctx, kernel)`` generator: it
allocates and frees against the :class:`~vmapsim.VmapSpace`, changes the module
registry, yields to the engine where the kernel takes time or sleeps, and raises
:class:`LoadFailed` where the kernel returns an error.  A pipeline
(:mod:`vmapsim.loader.pipelines`) is an ordered tuple of stages plus the
idempotent-``finit_module()`` switch.

The rules, with the kernel functions they mirror, are in each stage's docstring;
../shared/reference/kernel-module-loading.md §0.2 and §1 give the sources.
"""

from __future__ import annotations

import random
from collections.abc import Generator

import attrs

from vmapsim.engine import CostModel, Delay, Engine, Event, Wait
from vmapsim.errors import VmapAllocationError
from vmapsim.loader.stats import BECOMING, LOAD, ModuleStats
from vmapsim.modules.catalog import ModuleImage
from vmapsim.space import VmapSpace
from vmapsim.units import PAGE_SIZE, KiB, MiB

__all__ = [
    "EBUSY",
    "EEXIST",
    "ENOMEM",
    "ETXTBSY",
    "AddUnformed",
    "Allocation",
    "CompleteFormation",
    "ConcurrencyLimit",
    "Decompress",
    "ElfValidate",
    "ExistenceCheck",
    "FreeCopy",
    "Init",
    "Kernel",
    "Layout",
    "LoadContext",
    "LoadFailed",
    "MapPages",
    "ModuleRecord",
    "Read",
    "Request",
    "SignatureCheck",
    "Stage",
]

ENOMEM, EBUSY, EEXIST, ETXTBSY = 12, 16, 17, 26
# Decompressor scratch space: the xz dictionary kbuild asks for (--lzma2=dict=1MiB), zlib's inflate
# workspace, and a zstd window about the size of the output (single-segment frames) plus its tables.
_XZ_DICT = 1 * MiB
_GZ_WORKSPACE = 44 * KiB
_ZSTD_EXTRA = 128 * KiB
Step = Generator[Delay | Wait, None, None]


@attrs.frozen
class Request:
    """One load request: which module, on which CPU, when, from which file, by which syscall.

    ``module`` is a :class:`~vmapsim.modules.ModuleImage` or a catalog name;
    ``path``/``inode`` identify the file (default: the module's path; same
    inode = same file for the 6.5 idempotent check); ``syscall`` is
    ``"finit_module"`` (kernel reads and, for compressed files, decompresses)
    or ``"init_module"`` (userspace already decompressed it); ``init_errno``
    makes the module's init function fail with that errno; ``after`` is the
    index of a request that must return first (as modprobe loads a module's
    dependencies one after the other), then this one starts at once or at
    ``time``, whichever is later.
    """

    module: ModuleImage | str
    cpu: int = 0
    time: float = 0.0
    path: str | None = None
    inode: str | None = None
    syscall: str = "finit_module"
    init_errno: int = 0
    after: int | None = None


@attrs.define
class Allocation:
    """One vmap area a request held: what for, where, how big (guard included), from when to when."""

    kind: str
    addr: int
    size: int
    region: str
    allocated: float
    freed: float | None = None


@attrs.define(eq=False)
class ModuleRecord:
    """An entry of the kernel's ``modules`` list: name, state, and an event fired on LIVE/GOING/gone."""

    name: str
    state: str
    owner: int
    changed: Event
    areas: list[Allocation] = attrs.field(factory=list)


class LoadFailed(Exception):
    """A stage failed: ``errno`` is returned negated; ``point`` picks the stats counter."""

    def __init__(self, errno: int, point: str) -> None:
        super().__init__(errno, point)
        self.errno = errno
        self.point = point


@attrs.define(eq=False)
class LoadContext:
    """What one request holds while it runs through the stages."""

    index: int
    request: Request
    image: ModuleImage
    compressed: bool
    length: int  # info->len: the image handed to load_module(), signature stripped after its check
    compressed_len: int
    allocations: list[Allocation] = attrs.field(factory=list)
    timeline: list[tuple[float, str]] = attrs.field(factory=list)
    read_buffer: Allocation | None = None
    copy: Allocation | None = None  # the temporary image: read buffer or vmap of decompressed pages
    record: ModuleRecord | None = None
    past_layout: bool = False
    releases: list[tuple[str, str | int]] = attrs.field(factory=list)
    ret: int = 0
    end: float = 0.0
    done: Event = attrs.field(factory=Event)


@attrs.define(eq=False)
class Kernel:
    """The machine the stages act on: address space, module list, stats, engine and costs."""

    space: VmapSpace
    engine: Engine
    costs: CostModel
    generation: str
    module_align: int = PAGE_SIZE
    load_offset: int = 0
    stats: ModuleStats = attrs.field(factory=ModuleStats)
    modules: dict[str, ModuleRecord] = attrs.field(factory=dict)
    failures: list[tuple[float, int, int, str, str]] = attrs.field(factory=list)
    inflight_paths: set[str] = attrs.field(factory=set)
    reading: set[str] = attrs.field(factory=set)
    slots: dict[int, list[Event]] = attrs.field(factory=dict)
    slot_used: dict[int, int] = attrs.field(factory=dict)
    rng: random.Random = attrs.field(factory=random.Random)
    #: (time, pinned bytes per window) after every allocation and free, for plots.
    pinned: list[tuple[float, tuple[int, ...]]] = attrs.field(factory=list)
    #: window -> (highest pinned bytes, the instant it was first reached).
    peaks: dict[str, tuple[int, float]] = attrs.field(factory=dict)

    def sample(self) -> None:
        """Record the pinned bytes of every window at this instant (one point per instant) and peak times."""
        point = (self.engine.now, tuple(self.space.pinned(r.name) for r in self.space.layout.regions))
        for r, v in zip(self.space.layout.regions, point[1], strict=True):
            if v > self.peaks.get(r.name, (-1, 0.0))[0]:
                self.peaks[r.name] = (v, self.engine.now)
        if self.pinned and self.pinned[-1][0] == point[0]:
            self.pinned[-1] = point
        else:
            self.pinned.append(point)

    def duration(self, stage: str, nbytes: int = 0) -> float:
        """The cost model's duration, spread by its ``jitter`` with this run's random generator."""
        d = self.costs.duration(stage, nbytes)
        if self.costs.jitter and d:
            d *= 1 + self.costs.jitter * (2 * self.rng.random() - 1)
        return d

    def vmalloc(self, ctx: LoadContext, kind: str, size: int, point: str, *, module: bool = False) -> Allocation:
        """Allocate for ``ctx`` (``vmalloc()`` or, for module memory, ``module_alloc()``); ENOMEM on failure."""
        try:
            if module:
                m = self.space.layout.modules
                addr = self.space.vmalloc_node_range(
                    size, align=self.module_align, start=m.start + self.load_offset, end=m.end,
                    caller="load_module", flush_reset_perms=True, cpu=ctx.request.cpu,
                )  # fmt: skip
            else:
                addr = self.space.vmalloc(size, caller=kind, cpu=ctx.request.cpu)
        except VmapAllocationError as e:
            self.failures.append((self.engine.now, ctx.index, e.size, kind, e.message))
            raise LoadFailed(ENOMEM, point) from None
        region = "modules" if module and "modules" in (r.name for r in self.space.layout.regions) else "vmalloc"
        a = Allocation(kind, addr, self.space.area(addr).size, region, self.engine.now)
        ctx.allocations.append(a)
        self.sample()
        return a

    def vmap(self, ctx: LoadContext, pages: int, point: str) -> Allocation:
        """``vmap()`` of ``pages`` pages for ``ctx``; ENOMEM on failure."""
        try:
            addr = self.space.vmap(pages, caller="module_decompress", cpu=ctx.request.cpu)
        except VmapAllocationError as e:
            self.failures.append((self.engine.now, ctx.index, e.size, "vmap", e.message))
            raise LoadFailed(ENOMEM, point) from None
        a = Allocation("vmap", addr, self.space.area(addr).size, "vmalloc", self.engine.now)
        ctx.allocations.append(a)
        self.sample()
        return a

    def free(self, a: Allocation) -> None:
        """Free one allocation (``vfree()``/``vunmap()``; module memory purges, VM_FLUSH_RESET_PERMS)."""
        if a.freed is None:
            if a.kind == "vmap":
                self.space.vunmap(a.addr)
            else:
                self.space.vfree(a.addr)
            a.freed = self.engine.now
            self.sample()

    def set_state(self, rec: ModuleRecord, state: str) -> None:
        """Change a module's state; LIVE and GOING wake everyone waiting on it (``module_wq``)."""
        rec.state = state
        if state in ("LIVE", "GOING"):
            self.engine.fire(rec.changed)
            rec.changed = Event(rec.name)

    def remove(self, rec: ModuleRecord) -> None:
        """Unlink a module from the list and wake its waiters."""
        if self.modules.get(rec.name) is rec:
            del self.modules[rec.name]
        self.engine.fire(rec.changed)

    def patient_check(self, name: str, reason: int) -> Step:
        """``module_patient_check_exists()``: wait out UNFORMED/COMING, then -EEXIST if LIVE else -EBUSY."""
        old = self.modules.get(name)
        if old is None:
            return
        if old.state in ("UNFORMED", "COMING"):
            yield Wait(old.changed)
            old = self.modules.get(name)
        self.stats.add_duplicate(name, reason)
        raise LoadFailed(EEXIST if old is not None and old.state == "LIVE" else EBUSY, "dup")


class Stage:
    """One step of the load path; subclasses are frozen values with a ``run`` generator."""

    name = "stage"

    def run(self, ctx: LoadContext, k: Kernel) -> Step:
        """Act on ``ctx`` against ``k``, yielding engine commands; raise :class:`LoadFailed` to fail."""
        raise NotImplementedError


@attrs.frozen
class ConcurrencyLimit(Stage):
    """At most ``limit`` loads past this point at once (the limiter sketched for kernel_read_file())."""

    limit: int
    name = "concurrency_limit"

    def run(self, ctx: LoadContext, k: Kernel) -> Step:
        """Take a slot, waiting while all are taken; the slot is given back when the load ends."""
        while k.slot_used.get(id(self), 0) >= self.limit:
            ev = Event("slot")
            k.slots.setdefault(id(self), []).append(ev)
            yield Wait(ev)
        k.slot_used[id(self)] = k.slot_used.get(id(self), 0) + 1
        ctx.releases.append(("slot", id(self)))


@attrs.frozen
class Read(Stage):
    """``kernel_read_file()``: vmalloc(file size) and read it (``copy_module_from_user()`` for init_module).

    ``dedup="path"`` is Luis's RFC: a read of a path already being loaded fails
    with -EBUSY before allocating; ``dedup="exclusive"`` is v6.4-rc4's
    exclusive write-deny: a second reader during a read gets -ETXTBSY;
    ``pages=True`` reads into a page list (no vmap area), as Rick Edgecombe proposed.
    """

    dedup: str = "none"
    pages: bool = False
    name = "read"

    def run(self, ctx: LoadContext, k: Kernel) -> Step:
        """Allocate the buffer and spend the read time."""
        req = ctx.request
        path = req.path or ctx.image.path
        inode = req.inode or path
        if req.syscall == "init_module":
            # The buffer userspace passed (already decompressed) is copied into a vmalloc area.
            ctx.copy = k.vmalloc(ctx, "copy_module_from_user", ctx.image.decompressed_size, "kread")
            yield Delay(k.duration("copy", ctx.image.decompressed_size))
            return
        if self.dedup == "path":
            if path in k.inflight_paths:
                raise LoadFailed(EBUSY, "kread")
            k.inflight_paths.add(path)
            ctx.releases.append(("path", path))
        if self.dedup == "exclusive":
            if inode in k.reading:
                raise LoadFailed(ETXTBSY, "kread")
            k.reading.add(inode)
        try:
            if not self.pages:
                ctx.read_buffer = k.vmalloc(ctx, "kernel_read_file", ctx.image.file_size, "kread")
                if not ctx.compressed:
                    ctx.copy = ctx.read_buffer
            yield Delay(k.duration("read", ctx.image.file_size))
        finally:
            k.reading.discard(inode)


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

    def run(self, ctx: LoadContext, k: Kernel) -> Step:
        """Decompress a compressed finit_module() file; a no-op otherwise."""
        if not ctx.compressed:
            return
        img = ctx.image
        if not self.pages:
            scratch = {"xz": _XZ_DICT, "gz": _GZ_WORKSPACE, "zst": img.decompressed_size + _ZSTD_EXTRA}[img.compression]
            work = k.vmalloc(ctx, "module_decompress", scratch, "decompress")
            yield Delay(k.duration("decompress", img.decompressed_size))
            k.free(work)
            ctx.copy = k.vmap(ctx, -(-img.decompressed_size // PAGE_SIZE), "decompress")
        else:
            yield Delay(k.duration("decompress", img.decompressed_size))
        if ctx.read_buffer is not None:
            k.free(ctx.read_buffer)  # "compressed data is no longer needed"


@attrs.frozen
class SignatureCheck(Stage):
    """``module_sig_check()``: hash the image; the appended signature leaves ``info->len``."""

    name = "signature"

    def run(self, ctx: LoadContext, k: Kernel) -> Step:
        """Spend the hashing time and strip the signature length."""
        yield Delay(k.duration("signature", ctx.length))
        ctx.length -= ctx.image.signature_size


@attrs.frozen
class ElfValidate(Stage):
    """``elf_validity_cache_copy()``: checks on the temporary copy; no allocation, no measurable time."""

    name = "elf_validate"

    def run(self, ctx: LoadContext, k: Kernel) -> Step:
        """Nothing to allocate; catalog modules are valid ELF."""
        return
        yield


@attrs.frozen
class ExistenceCheck(Stage):
    """``early_mod_check()``'s ``module_patient_check_exists(name, FAIL_DUP_MOD_BECOMING)`` (6.4+)."""

    name = "existence_check"

    def run(self, ctx: LoadContext, k: Kernel) -> Step:
        """Fail with -EEXIST/-EBUSY if a module of this name exists (after waiting it out)."""
        yield from k.patient_check(ctx.image.name, BECOMING)


@attrs.frozen
class MapPages(Stage):
    """The page-list proposal's one ``vmap()``: only a load that passed the existence check maps its pages."""

    name = "map_pages"

    def run(self, ctx: LoadContext, k: Kernel) -> Step:
        """vmap() the (decompressed) image now that it is known to be unique (init_module has its copy)."""
        if ctx.copy is None:
            ctx.copy = k.vmap(ctx, -(-ctx.image.decompressed_size // PAGE_SIZE), "becoming")
        return
        yield


@attrs.frozen
class Layout(Stage):
    """``layout_and_allocate()`` → ``move_module()``: one module_alloc() per area, then the section copy.

    Up to 6.3 a core and an init area; from 6.4 one per non-empty memory
    type, each ``MODULE_ALIGN``-aligned from ``MODULES_VADDR + load offset``,
    with ``VM_FLUSH_RESET_PERMS``.  A failure frees what was allocated
    (``module_deallocate()``) and counts as "becoming".
    """

    name = "layout"

    def run(self, ctx: LoadContext, k: Kernel) -> Step:
        """Allocate every area, then copy the sections (the race window of the 6.4 early check)."""
        got = []
        try:
            for kind, size in ctx.image.allocations(k.generation):
                got.append(k.vmalloc(ctx, kind, size, "becoming", module=True))
        except LoadFailed:
            for a in got:
                k.free(a)
            raise
        ctx.past_layout = True
        ctx.record = ModuleRecord(ctx.image.name, "", ctx.index, Event(ctx.image.name), got)
        yield Delay(k.duration("copy", sum(a.size for a in got)))


@attrs.frozen
class AddUnformed(Stage):
    """``add_unformed_module()``: the duplicate check after layout (the only one up to 6.3), then UNFORMED."""

    name = "add_unformed"

    def run(self, ctx: LoadContext, k: Kernel) -> Step:
        """Wait out a same-name module being loaded, fail if one exists, else join the list."""
        yield from k.patient_check(ctx.image.name, LOAD)
        assert ctx.record is not None
        ctx.record.state = "UNFORMED"
        k.modules[ctx.image.name] = ctx.record


@attrs.frozen
class CompleteFormation(Stage):
    """``complete_formation()``: COMING; making module memory read-only purges the lazy areas.

    ``module_enable_ro()`` changes page permissions, which ends in
    ``vm_unmap_aliases()`` -- kernel-verified.md saw several purges per load.
    """

    name = "complete_formation"

    def run(self, ctx: LoadContext, k: Kernel) -> Step:
        """State COMING, one ``vm_unmap_aliases()``."""
        assert ctx.record is not None
        k.set_state(ctx.record, "COMING")
        k.space.vm_unmap_aliases()
        return
        yield


@attrs.frozen
class FreeCopy(Stage):
    """``free_copy()``: the temporary image (read buffer, or vmap of decompressed pages) goes, lazily."""

    name = "free_copy"

    def run(self, ctx: LoadContext, k: Kernel) -> Step:
        """Free the temporary copy before the module's init runs."""
        if ctx.copy is not None:
            k.free(ctx.copy)
        return
        yield


@attrs.frozen
class Init(Stage):
    """``do_init_module()``: run init; LIVE and a deferred free of the init areas, or GOING and free all.

    The init areas are freed from a workqueue after ``synchronize_rcu()``
    (``do_free_init()``); each free purges (VM_FLUSH_RESET_PERMS).
    """

    name = "init"

    def run(self, ctx: LoadContext, k: Kernel) -> Step:
        """Spend the init time; succeed or fail with the request's ``init_errno``."""
        rec = ctx.record
        assert rec is not None
        yield Delay(k.duration("init"))
        if ctx.request.init_errno:
            k.set_state(rec, "GOING")
            for a in rec.areas:
                k.free(a)
            k.remove(rec)
            raise LoadFailed(ctx.request.init_errno, "init")
        k.set_state(rec, "LIVE")
        img = ctx.image
        # total_mod_size: every mem[type].size (page-aligned); total_text_size: MOD_TEXT + MOD_INIT_TEXT.
        k.stats.add_loaded(sum(n for _, n in img.allocations(k.generation)), img.memory[0] + img.memory[4])
        init_areas = [a for a in rec.areas if a.kind.startswith("init")]
        if init_areas:
            k.engine.spawn(_free_init(k, init_areas))


def _free_init(k: Kernel, areas: list[Allocation]) -> Generator[Delay, None, None]:
    yield Delay(k.duration("workqueue") + k.duration("rcu_grace"))
    for a in areas:
        k.free(a)
