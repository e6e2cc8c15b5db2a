"""The machine the load path acts on, and what one load holds (``struct load_info``).

:class:`Kernel` is the state every stage shares: the address space, the engine
and its clock, the cost model, the ``modules`` list, ``CONFIG_MODULE_STATS``, the
allocation failures and the pinned-bytes series, and each kind of state the
stages keep for a run, in a typed home of its own: the files being read
(:class:`FilesBeingRead`, the dedup proposals), the limiters' semaphores
(:meth:`Kernel.limiter`) and 6.5's hash of loads in flight (:class:`InFlight`).
:class:`LoadInfo` is one request's ``struct load_info``: its image, the buffers it
holds, its module record, its timeline.

>>> from vmapsim import VmapSpace, layouts
>>> from vmapsim.engine import Engine
>>> from vmapsim.loader.costs import CostModel
>>> from vmapsim.loader.pipelines import V6_4
>>> k = Kernel(VmapSpace(layouts.X86_64), Engine(), CostModel(), V6_4)
>>> k.generation is Generation.MODULE_MEMORY, k.reads.paths, k.in_flight
(True, set(), {})
"""

from __future__ import annotations

import random
from collections.abc import Callable, Generator, Iterable, Mapping
from typing import NoReturn, Protocol

import attrs

from vmapsim.engine import Command, Delay, Engine, Event, Processors, Semaphore
from vmapsim.errors import VmapAllocationError
from vmapsim.execmem import RoxCache
from vmapsim.loader.costs import Cost, CostModel
from vmapsim.loader.errno import ENOMEM
from vmapsim.loader.module_list import ModuleList, ModuleRecord
from vmapsim.loader.request import Request, Syscall
from vmapsim.loader.result import Allocation, AllocationFailure, AllocationKind
from vmapsim.loader.stats import FailurePoint, ModuleStats
from vmapsim.modules.image import ModuleImage
from vmapsim.modules.layout import TEXT_TYPES, Generation
from vmapsim.space import VmapArea, VmapSpace
from vmapsim.units import PAGE_SIZE

# Enum members bound once: reading one off its Enum class costs about 50 ns on Python 3.11, and these
# are read for every stage of every load.
_VMAP = AllocationKind.VMAP
_COST_ROX_FILL = Cost.ROX_FILL
_COST_WORKQUEUE = Cost.WORKQUEUE
_FINIT_MODULE = Syscall.FINIT_MODULE

__all__ = [
    "CHUNK_KIND",
    "EXECMEM_FAILURE",
    "FilesBeingRead",
    "InFlight",
    "Kernel",
    "LoadFailed",
    "LoadInfo",
    "LoadPath",
    "PinnedSeries",
]

#: The kind of the :class:`Allocation` recording a ROX cache chunk, on the load whose miss populated it.
CHUNK_KIND = AllocationKind.EXECMEM_CHUNK
#: What ``__execmem_alloc()`` prints (ratelimited) when module memory cannot be had (``mm/execmem.c``, 6.10+).
EXECMEM_FAILURE = "execmem: unable to allocate memory"


class LoadFailed(Exception):
    """A stage failed: ``errno`` is returned negated; ``point`` (a :class:`~vmapsim.loader.stats.FailurePoint`,
    or its name) picks the stats counter.

    >>> LoadFailed(16, "kread").point is FailurePoint.KREAD
    True
    """

    def __init__(self, errno: int, point: FailurePoint | str) -> None:
        self.errno = errno
        self.point: FailurePoint = point if type(point) is FailurePoint else FailurePoint.of(point)
        super().__init__(errno, self.point)


@attrs.define(eq=False)
class LoadInfo:
    """What one request holds while it runs through the stages (the kernel's ``struct load_info``).

    ``length`` is ``info->len``: the image handed to ``load_module()``, its
    signature stripped after the check.  ``cleanups`` run when the load returns,
    whatever happened (a stage that took a slot or a table entry gives it back there).
    """

    index: int
    request: Request
    image: ModuleImage
    compressed: bool
    length: int
    compressed_len: int
    allocations: list[Allocation] = attrs.field(factory=list)
    timeline: list[tuple[float, str]] = attrs.field(factory=list)
    read_buffer: Allocation | None = None
    copy: Allocation | None = None  # the temporary image: read buffer or vmap of decompressed pages
    record: ModuleRecord | None = None
    past_layout: bool = False
    cleanups: list[Callable[[], None]] = attrs.field(factory=list)
    ret: int = 0
    end: float = 0.0
    done: Event = attrs.field(factory=Event)

    @classmethod
    def of(cls, index: int, request: Request, image: ModuleImage) -> LoadInfo:
        """The load_info of a request for ``image``: compressed files reach the kernel only by finit_module().

        Runtime complexity: O(1).
        """
        compressed = request.syscall is _FINIT_MODULE and image.compression != "none"
        return cls(index, request, image, compressed, image.decompressed_size, image.file_size if compressed else 0)


@attrs.define(eq=False)
class PinnedSeries:
    """Pinned bytes per window after every allocation and free (one point per instant), and peak instants.

    A sample appends the tuple it is given: the points are made when the run ends.
    """

    regions: tuple[str, ...]
    times: list[float] = attrs.field(factory=list, init=False)
    rows: list[tuple[int, ...]] = attrs.field(factory=list, init=False)
    peaks: list[int] = attrs.field(init=False)
    peak_times: list[float] = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self.peaks = [-1] * len(self.regions)
        self.peak_times = [0.0] * len(self.regions)

    def sample(self, now: float, values: tuple[int, ...]) -> None:
        """Record ``values`` (pinned bytes per window) at ``now``, replacing a point of the same instant."""
        times, rows = self.times, self.rows
        last = rows[-1] if rows else None
        if times and times[-1] == now:
            rows[-1] = values
        else:
            times.append(now)
            rows.append(values)
        if values == last:
            return  # unchanged (a lazy free): no new peak
        peaks = self.peaks
        for i, v in enumerate(values):
            if v > peaks[i]:
                peaks[i] = v
                self.peak_times[i] = now

    def points(self) -> tuple[tuple[float, tuple[int, ...]], ...]:
        """The series as ``(time, values)`` points."""
        return tuple(zip(self.times, self.rows, strict=True))

    def first_peak_times(self) -> dict[str, float]:
        """Window -> the instant its pinned bytes first reached their peak (sampled windows only)."""
        return {n: t for n, v, t in zip(self.regions, self.peaks, self.peak_times, strict=True) if v >= 0}


@attrs.define(eq=False)
class FilesBeingRead:
    """The files being read in a run, for the proposals that refuse a second reader of one.

    ``paths``: Luis Chamberlain's RFC (kread-dedup), where a read of a path being loaded fails with
    -EBUSY until that load returns; ``inodes``: v6.4-rc4's exclusive write-deny (9828ed3f695a,
    reverted), where a second reader of an inode during a read gets -ETXTBSY.
    """

    paths: set[str] = attrs.field(factory=set)
    inodes: set[str] = attrs.field(factory=set)


@attrs.define(eq=False)
class InFlight:
    """One entry of ``idempotent_init_module()``'s hash (6.5+, 9b9879fc0327): the first caller's
    completion, and the return code it hands to everyone waiting on it."""

    done: Event
    ret: int = 0


class LoadPath(Protocol):
    """What the kernel keeps of its load path, a :class:`~vmapsim.loader.Pipeline` (which is built on the
    stages, themselves built on this module)."""

    @property
    def generation(self) -> Generation:
        """The module-memory generation."""

    @property
    def execmem(self) -> bool:
        """Whether module memory comes from ``execmem_alloc()`` (6.10+)."""

    @property
    def rox_cache(self) -> bool:
        """Whether module text comes from execmem's ROX cache (6.15+)."""


@attrs.define(eq=False)
class Kernel:
    """The machine the stages act on: address space, engine, costs, module list, stats, failures.

    ``path`` is the load path the stages belong to (:class:`~vmapsim.loader.Pipeline`): its module-memory
    :attr:`generation`, whether module memory comes from ``execmem_alloc()`` (6.10+) and whether module
    text is carved from execmem's ROX cache, ``rox`` (6.15+, on a layout with ``execmem_rox``).
    ``module_align`` is ``MODULE_ALIGN``; ``load_offset`` the KASLR offset into the module window;
    ``spread`` a schedule's source of duration factors, which replaces the cost model's jitter.

    The state stages keep for the run: ``reads``, the files being read (the dedup
    proposals); ``in_flight``, 6.5's hash of ``finit_module()`` loads in flight, by
    inode; and each limiter's semaphore (:meth:`limiter`).
    """

    space: VmapSpace
    engine: Engine
    costs: CostModel
    path: LoadPath
    module_align: int = PAGE_SIZE
    load_offset: int = 0
    rng: random.Random = attrs.field(factory=random.Random)
    spread: Callable[[], float] | None = None
    stats: ModuleStats = attrs.field(factory=ModuleStats)
    rox: RoxCache | None = attrs.field(init=False)
    modules: ModuleList = attrs.field(init=False)
    failures: list[AllocationFailure] = attrs.field(factory=list, init=False)
    series: PinnedSeries = attrs.field(init=False)
    reads: FilesBeingRead = attrs.field(factory=FilesBeingRead, init=False)
    in_flight: dict[str, InFlight] = attrs.field(factory=dict, init=False)
    _limiters: dict[int, Semaphore] = attrs.field(factory=dict, init=False)  # id of the limiting stage -> its slots
    _module_region: str = attrs.field(init=False)
    _processors: Processors | None = attrs.field(init=False)
    _clean_queued: bool = attrs.field(default=False, init=False)
    _chunks: dict[int, Allocation] = attrs.field(factory=dict, init=False)
    _pinned: Callable[[], tuple[int, ...]] = attrs.field(init=False)  # sampled after every change
    _timers: Mapping[str, Callable[[int], float]] = attrs.field(init=False)  # every stage of every load
    _area_at: Callable[[int], VmapArea | None] = attrs.field(init=False)  # after every allocation

    def __attrs_post_init__(self) -> None:
        self.modules = ModuleList(self.engine)
        self.rox = RoxCache(self.space) if self.path.rox_cache and self.space.layout.execmem_rox else None
        self._pinned = self.space.pinned_reader()
        self._timers = self.costs.timers
        self._area_at = self.space.area_reader()
        self._processors = Processors(self.costs.processors) if self.costs.processors else None
        names = tuple(r.name for r in self.space.regions)
        self.series = PinnedSeries(names)
        self._module_region = "modules" if "modules" in names else "vmalloc"

    @property
    def generation(self) -> Generation:
        """The module-memory generation of :attr:`path` (``module_layout`` ≤ 6.3, ``module_memory`` ≥ 6.4).

        Runtime complexity: O(1).
        """
        return self.path.generation

    def limiter(self, stage: object, limit: int) -> Semaphore:
        """The semaphore of ``limit`` slots that ``stage`` (a concurrency limiter) holds loads back with in
        this run, made on first use: one per stage, even for two equal ones.  Runtime complexity: O(1).

        >>> from vmapsim import VmapSpace, layouts
        >>> from vmapsim.engine import Engine
        >>> from vmapsim.loader.pipelines import V6_4
        >>> k = Kernel(VmapSpace(layouts.X86_64), Engine(), CostModel(), V6_4)
        >>> a, b = object(), object()
        >>> k.limiter(a, 4) is k.limiter(a, 4), k.limiter(a, 4) is k.limiter(b, 4)
        (True, False)
        """
        sem = self._limiters.get(id(stage))
        if sem is None:
            sem = self._limiters[id(stage)] = Semaphore(limit)
        return sem

    def sample(self) -> None:
        """Record the pinned bytes of every window at this instant (one point per instant) and peak times.

        Runtime complexity: O(windows).
        """
        self.series.sample(self.engine.now, self._pinned())

    def duration(self, cost: Cost, nbytes: int = 0) -> float:
        """The cost model's duration of ``cost``, times the schedule's next factor (``spread``) or spread by
        its ``jitter`` with this run's random generator.  Runtime complexity: O(1)."""
        timer = self._timers.get(cost)
        d = timer(nbytes) if timer is not None else self.costs.duration(cost, nbytes)  # that one refuses it
        if d:
            if self.spread is not None:
                d *= self.spread()
            elif self.costs.jitter:
                d *= 1 + self.costs.jitter * (2 * self.rng.random() - 1)
        return d

    def compute(self, cost: Cost, nbytes: int = 0) -> Iterable[Command]:
        """Spend ``cost``'s CPU time: alone, or shared with the other loads' (``CostModel.processors``); the
        commands to yield from.  Runtime complexity: O(1), or O(k) with k loads sharing the processors.
        """
        d = self.duration(cost, nbytes)
        if self._processors is None:
            return (Delay(d),)  # one command: no generator to make and resume
        return self._processors.compute(self.engine, d)

    def vmalloc(self, info: LoadInfo, kind: AllocationKind, size: int, point: FailurePoint, *,
                module: bool = False) -> Allocation:  # fmt: skip
        """Allocate for a load (``vmalloc()`` or, for module memory, ``module_alloc()``); ENOMEM on failure,
        counted at ``point``.  Runtime complexity: the allocator's, O(log n)."""
        try:
            if module:
                m = self.space.layout.modules
                # 7.3's execmem_vmalloc() is inlined into execmem_alloc_rw(), the caller vmallocinfo names
                addr = self.space.vmalloc_node_range(
                    size, align=self.module_align, start=m.start + self.load_offset, end=m.end,
                    caller="execmem_alloc_rw" if self.rox else "load_module", flush_reset_perms=True,
                    cpu=info.request.cpu,
                )  # fmt: skip
            else:
                addr = self.space.vmalloc(size, caller=kind, cpu=info.request.cpu)
        except VmapAllocationError as e:
            # __execmem_alloc() (6.10+) asks with __GFP_NOWARN, so vmalloc stays silent and execmem speaks
            self._failed(info, e.size, kind, EXECMEM_FAILURE if module and self.path.execmem else e.message, point)
        region = self._module_region if module else "vmalloc"
        return self._held(info, Allocation(kind, addr, self._size_of(addr), region, self.engine.now))

    def module_memory(
        self, info: LoadInfo, kind: AllocationKind, size: int, point: FailurePoint
    ) -> Generator[Command, None, Allocation]:
        """``module_memory_alloc()``: one memory type's area, text carved from the ROX cache when there is one.

        A cache miss populates a 2 MiB chunk and spends the ``rox_fill`` cost on
        its pages (``execmem_fill_trapping_insns()``, ``set_memory_rox()``) before
        adding it to the cache: outside the cache's mutex, so loads that miss
        together each populate one (``execmem_cache_populate_alloc()``, 7.3).
        Runtime complexity: O(log n) for a vmalloc, O(f) over the cache's f free ranges for a carve.
        """
        if self.rox is None or kind not in TEXT_TYPES:
            return self.vmalloc(info, kind, size, point, module=True)
        m = self.space.layout.modules
        start = m.start + self.load_offset
        addr = self.rox.alloc(size, start, m.end)
        if addr is None:
            try:
                chunk = self.rox.populate(size, start, m.end, align=self.module_align, cpu=info.request.cpu)
            except VmapAllocationError as e:
                self._failed(info, e.size, kind, EXECMEM_FAILURE, point)
            # the chunk is the cache's, not the load's: recorded on the load that made it, freed by the cache
            area = self._size_of(chunk)
            self._chunks[chunk] = self._held(
                info, Allocation(CHUNK_KIND, chunk, area, self._module_region, self.engine.now))
            if self.costs.rox_fill:
                yield from self.compute(_COST_ROX_FILL, area - PAGE_SIZE)
            self.rox.add(chunk)
            addr = self.rox.alloc(size, start, m.end)
            assert addr is not None, "a chunk just added holds the carve it was populated for"
        carve = self.rox.carved(addr)
        assert carve is not None
        return self._held(info, Allocation(kind, addr, carve, self._module_region, self.engine.now))

    def _failed(self, info: LoadInfo, size: int, kind: AllocationKind, message: str, point: FailurePoint) -> NoReturn:
        self.failures.append(AllocationFailure(self.engine.now, info.index, size, kind, message))
        raise LoadFailed(ENOMEM, point) from None

    def vmap(self, info: LoadInfo, pages: int, point: FailurePoint) -> Allocation:
        """``vmap()`` of ``pages`` pages for a load; ENOMEM on failure, counted at ``point``.

        Runtime complexity: the allocator's, O(log n).
        """
        try:
            addr = self.space.vmap(pages, caller="module_decompress", cpu=info.request.cpu)
        except VmapAllocationError as e:
            self._failed(info, e.size, _VMAP, e.message, point)
        return self._held(info, Allocation(_VMAP, addr, self._size_of(addr), "vmalloc", self.engine.now))

    def free(self, a: Allocation) -> None:
        """Free one allocation (``vfree()``/``vunmap()``; module memory purges, VM_FLUSH_RESET_PERMS).

        Runtime complexity: the allocator's, O(log n), plus a purge's when there is one.
        """
        if a.freed is None:
            if a.kind is _VMAP:
                self.space.vunmap(a.addr)
            elif self.rox is not None and self.rox.free(a.addr):  # execmem_free(): a carve goes back
                if not self._clean_queued:  # schedule_work() queues a pending work item once
                    self._clean_queued = True
                    self.engine.spawn(self._clean())
            else:
                self.space.vfree(a.addr)
            a.freed = now = self.engine.now
            self.series.sample(now, self._pinned())  # sample(), one call less for every free

    def _clean(self) -> Generator[Command, None, None]:
        """``execmem_cache_clean_work``: after the workqueue's latency, wholly free chunks go back to vmalloc."""
        yield Delay(self.duration(_COST_WORKQUEUE))
        self._clean_queued = False
        assert self.rox is not None
        gone = self.rox.clean()
        for chunk in gone:
            self._chunks.pop(chunk).freed = self.engine.now
        if gone:
            self.sample()

    def _size_of(self, addr: int) -> int:
        """Guard-inclusive size of the area just allocated at ``addr``."""
        area = self._area_at(addr)
        assert area is not None  # just allocated
        return area.end - area.start  # its size, without the property's call

    def _held(self, info: LoadInfo, a: Allocation) -> Allocation:
        info.allocations.append(a)
        self.series.sample(self.engine.now, self._pinned())  # sample(), one call less for every allocation
        return a
