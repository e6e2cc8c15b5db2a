"""simulate(): run load requests through a pipeline on a machine and report what happened.

A run is described by one frozen :class:`Run` value (pipeline, machine, costs,
scheduler, seed...); the same requests and the same :class:`Run` give an equal
:class:`~vmapsim.loader.result.Result`.

>>> from vmapsim import simulate
>>> from vmapsim.loader import Request, Run
>>> r = simulate([Request("loop", cpu=c) for c in range(4)], Run(pipeline="v6.5", cpus=4,
...              catalog="debian-6.12-amd64"))
>>> [o.ret for o in r.outcomes], r.stats.modcount, r.reads
([0, 0, 0, 0], 1, 1)
"""

from __future__ import annotations

import contextlib
import gc
import math
import random
from collections.abc import Iterable, Iterator
from typing import Any

import attrs

from vmapsim import layouts as _layouts
from vmapsim.checks import NR_CPUS_MAX, integer, number, random_seed, show, text
from vmapsim.engine import Engine, Fifo, Scheduler, Semaphore
from vmapsim.errors import InvalidArgument
from vmapsim.layouts import Layout
from vmapsim.loader import pipelines
from vmapsim.loader.costs import CostModel
from vmapsim.loader.kernel import Kernel
from vmapsim.loader.load_module import Job, Loader
from vmapsim.loader.request import Request
from vmapsim.loader.result import Allocation, Outcome, Result
from vmapsim.loader.schedule import Timing, retime
from vmapsim.modules.catalog import Catalog, check_image
from vmapsim.modules.image import ModuleImage
from vmapsim.modules.shipped import catalog_for
from vmapsim.profiles import KernelProfile, enterprise_note
from vmapsim.space import VmapSpace
from vmapsim.units import PAGE_SIZE, is_power_of_2

__all__ = ["DEFAULT_KERNEL", "Run", "simulate"]

#: The kernel of a run that names none and has no catalog: Debian 13's.
DEFAULT_KERNEL = "6.12"


def _catalog(value: Catalog | str | None) -> Catalog | None:
    """``Run.catalog``'s converter: a shipped catalog's name becomes the catalog, once."""
    if isinstance(value, str):
        return Catalog.builtin(value)  # refuses an unknown name, naming the shipped ones
    if value is not None and not isinstance(value, Catalog):
        raise InvalidArgument(f"catalog={show(value)}: expected a Catalog or a shipped catalog's name")
    return value


@attrs.frozen
class Run:
    """Everything about a run except its requests: kernel, pipeline, machine, costs, scheduler, seed.

    ``kernel`` (a release such as ``"6.12"``) and ``pipeline`` name the load path together, by the one
    rule of :func:`~vmapsim.loader.pipelines.load_path`: the kernel's own path, a proposal on top of it
    (``"kread-dedup"``...), a released path (``"v6.3"`` is 6.3's own: it agrees with ``kernel="6.3"``
    or none) or a whole :class:`~vmapsim.loader.Pipeline`.  ``catalog`` (a
    :class:`~vmapsim.modules.Catalog`, or a shipped catalog's name, read once) resolves module names;
    without one the run takes its kernel's shipped catalog (the nearest release's when none ships;
    :attr:`notes` says so; without a kernel, :data:`DEFAULT_KERNEL`'s, as a
    :class:`~vmapsim.Scenario` without a machine does), and without a kernel the path is the catalog's
    (else :data:`DEFAULT_KERNEL`'s).  The resolved path is :attr:`path` and the catalog used
    :attr:`module_catalog`, both resolved once, when the Run is made.
    ``profile`` overrides the path's allocator; ``module_align`` is ``MODULE_ALIGN`` (32 KiB with
    generic KASAN); ``load_offset`` the KASLR module offset (default: drawn from ``seed`` when the
    layout has KASLR, else 0); ``workers`` how many userspace jobs (udev workers running kmod) run at
    once (None: no limit); ``seed`` drives the KASLR draw and the cost jitter.

    >>> Run(cpus=8, catalog="debian-6.1-amd64").path.name
    '6.1'
    >>> r = Run(kernel="6.3", pipeline="kread-dedup")
    >>> r.path.name, r.module_catalog.kernel, r.notes[0][:25]
    ('6.3+kread-dedup', '6.1.0-56-amd64', 'no 6.3 catalog ships: run')
    """

    pipeline: str | pipelines.Pipeline | None = None
    layout: Layout = _layouts.X86_64
    cpus: int = 1
    catalog: Catalog | None = attrs.field(default=None, converter=_catalog)
    scheduler: Scheduler = attrs.field(factory=Fifo)
    costs: CostModel = attrs.field(factory=CostModel)
    profile: KernelProfile | None = None
    module_align: int = PAGE_SIZE
    load_offset: int | None = None
    seed: int = 0
    workers: int | None = None
    kernel: str | None = None
    #: The load path this run takes (resolved once from ``kernel``, ``pipeline`` and the catalog).
    path: pipelines.Pipeline = attrs.field(init=False, eq=False, repr=False)
    #: The catalog module names resolve in: ``catalog``, else the kernel's shipped one.
    module_catalog: Catalog = attrs.field(init=False, eq=False, repr=False)
    #: What the run chose that its caller did not give (a catalog of another release than the kernel's).
    notes: tuple[str, ...] = attrs.field(init=False, eq=False, repr=False)

    def __attrs_post_init__(self) -> None:
        text("kernel", self.kernel, optional=True)
        if not isinstance(self.layout, Layout):
            raise InvalidArgument(f"layout={show(self.layout)}: expected a Layout")
        # num_online_cpus() cannot pass CONFIG_NR_CPUS, and the kernel's Kconfig caps that at NR_CPUS_MAX.
        integer("cpus", self.cpus, 1, NR_CPUS_MAX)
        if not callable(getattr(self.scheduler, "chooser", None)):
            raise InvalidArgument(f"scheduler={show(self.scheduler)}: expected a scheduler (Fifo(), Seeded(...)...)")
        if not isinstance(self.costs, CostModel):
            raise InvalidArgument(f"costs={show(self.costs)}: expected a CostModel")
        if self.profile is not None and not isinstance(self.profile, KernelProfile):
            raise InvalidArgument(f"profile={show(self.profile)}: expected a KernelProfile")
        if not is_power_of_2(integer("module_align", self.module_align, PAGE_SIZE, self.layout.modules.size)):
            raise InvalidArgument(f"module_align={self.module_align}: must be a power of two")
        if self.load_offset is not None:
            # The KASLR offset moves module_alloc() inside the module window, never out of it.
            integer("load_offset", self.load_offset, 0, self.layout.modules.size - PAGE_SIZE)
            if self.load_offset % PAGE_SIZE:
                raise InvalidArgument(f"load_offset={self.load_offset}: must be a multiple of {PAGE_SIZE}")
        random_seed("seed", self.seed)
        if self.workers is not None:
            integer("workers", self.workers, 1)
        default = self.catalog.kernel if self.catalog is not None else DEFAULT_KERNEL
        path = pipelines.load_path(self.kernel, self.pipeline, default_kernel=default)
        catalog, notes = self.catalog, tuple[str, ...]()
        if catalog is None:  # the kernel brings its modules
            choice = catalog_for(self.kernel or DEFAULT_KERNEL, self.layout.arch)
            catalog, notes = Catalog.builtin(choice.name), tuple(filter(None, [choice.note]))
        if self.kernel is not None:
            notes += tuple(filter(None, [enterprise_note(self.kernel)]))
        object.__setattr__(self, "path", path)  # frozen: set once, here
        object.__setattr__(self, "module_catalog", catalog)
        object.__setattr__(self, "notes", notes)


#: The keywords :func:`simulate` takes for a :class:`Run`: its fields given when one is made (not ``path``,
#: ``module_catalog`` or ``notes``, which a Run resolves itself).
_RUN_FIELDS = frozenset(f.name for f in attrs.fields(Run) if f.init)


def simulate(
    requests: Iterable[Request | Job],
    run: Run | None = None,
    *,
    space: VmapSpace | None = None,
    until: float | None = None,
    schedule: Timing | None = None,
    **fields: Any,
) -> Result:
    """Run ``requests`` as ``run`` describes; return a :class:`~vmapsim.loader.result.Result`.

    Items are :class:`Request` values or jobs (e.g. kmod's
    :class:`~vmapsim.workloads.Modprobe`), whose loads appear in ``outcomes`` as
    they happen.  ``space`` is an address space to start from (e.g. a restored
    boot snapshot); with ``until`` the run stops after that instant (runs are
    deterministic, so ``until=result.peak_time["modules"]`` shows the space at
    its peak).  ``schedule`` (a :class:`~vmapsim.loader.schedule.Schedule`)
    sets each item's arrival time, every stage's duration factor and every
    tie-break, in place of the items' times, the run's jitter and its scheduler
    (give no scheduler with it).  Keywords named after :class:`Run`'s fields (``cpus=4``,
    ``pipeline="v6.3"``...) override ``run``'s, for short calls; any other keyword is an
    :class:`~vmapsim.errors.InvalidArgument`.
    Runtime complexity: O(r · (s + log n)) for r requests of s stages.

    Keywords (each a :class:`Run` field; unset, ``run``'s value, else the default shown):

    * ``kernel`` (``str | None`` = None): the kernel release whose load path, allocator and modules the
      run takes, e.g. ``"6.1"``, ``"6.12"``, ``"7.3"``; None: the catalog's kernel, else
      :data:`DEFAULT_KERNEL`.
    * ``pipeline`` (``str | Pipeline | None`` = None): the load path with ``kernel``: None for the
      kernel's own, a proposal on top of it (``"kread-dedup"``, ``"page-list"``, ``"exclusive-deny"``,
      ``"concurrency-limit"`` or ``"concurrency-limit:8"``), a released path (``"v6.3"``, ``"v6.4"``, ``"v6.5"``) or a
      :class:`~vmapsim.loader.pipelines.Pipeline`.
    * ``cpus`` (``int`` = 1): online CPUs, 1 to ``NR_CPUS_MAX``; every request's ``cpu`` is below it.
    * ``catalog`` (``Catalog | str | None`` = None): where module names resolve, or a shipped catalog's
      name (``"debian-6.1-amd64"``); None: the kernel's shipped catalog, or the nearest release's.
    * ``layout`` (``Layout`` = ``layouts.X86_64``): the machine's windows (``vmapsim.layouts``).
    * ``workers`` (``int | None`` = None): how many userspace jobs (udev workers running kmod) run at
      once; None: no limit.
    * ``seed`` (``int`` = 0): draws the KASLR module offset and the cost jitter.
    * ``costs`` (``CostModel`` = ``CostModel()``): what each step of a load takes in time
      (:mod:`vmapsim.loader.costs`).
    * ``scheduler`` (``Scheduler`` = ``Fifo()``): which runnable task goes first at one instant
      (``Seeded(7)``, ``Ordered([...])``, :mod:`vmapsim.engine`); none with ``schedule``.
    * ``profile`` (``KernelProfile | None`` = None): an allocator in place of the load path's
      (:mod:`vmapsim.profiles`).
    * ``module_align`` (``int`` = ``PAGE_SIZE``): ``MODULE_ALIGN``, a power of two (32 KiB with generic
      KASAN).
    * ``load_offset`` (``int | None`` = None): the KASLR offset inside the module window, a multiple of
      ``PAGE_SIZE``; None: drawn from ``seed`` when the layout has KASLR, else 0.

    >>> from vmapsim.loader import Request
    >>> simulate([Request("loop", cpu=c) for c in range(2)], kernel="6.1", cpus=2).pipeline
    '6.1'
    """
    unknown = sorted(set(fields) - _RUN_FIELDS)
    if unknown:
        raise InvalidArgument(f"simulate() has no option {unknown[0]!r}; a Run has {', '.join(sorted(_RUN_FIELDS))}")
    if run is not None and not isinstance(run, Run):
        raise InvalidArgument(f"run={show(run)}: expected a Run")
    run = attrs.evolve(run or Run(), **fields)
    if isinstance(requests, str | bytes) or not isinstance(requests, Iterable):
        raise InvalidArgument(f"requests={show(requests)}: expected Request values or jobs")
    if space is not None and not isinstance(space, VmapSpace):
        raise InvalidArgument(f"space={show(space)}: expected a VmapSpace")
    if until is not None:
        number("until", until, 0)
    pipe, cat = run.path, run.module_catalog
    items = list(requests)
    spread = None
    if schedule is not None:
        if not callable(getattr(schedule, "factor_source", None)):
            raise InvalidArgument(f"schedule={show(schedule)}: expected a Schedule")
        if run.scheduler != Fifo():
            raise InvalidArgument(f"scheduler={show(run.scheduler)} with a schedule: the schedule makes the tie-breaks")
        items = retime(items, schedule.arrivals)
        run = attrs.evolve(run, scheduler=schedule.scheduler())
        spread = schedule.factor_source()
    reqs = [r for r in items if isinstance(r, Request)]
    jobs = [j for j in items if not isinstance(j, Request)]
    for j in jobs:
        if not callable(getattr(j, "start", None)):
            raise InvalidArgument(f"requests: {show(j)} is neither a Request nor a job (e.g. Modprobe)")
    images: set[int] = set()  # each image checked once, however many requests load it
    for i, r in enumerate(reqs):
        _check_request(i, r, run.cpus)
        if isinstance(r.module, ModuleImage) and id(r.module) not in images:
            check_image(f"request {i} module", r.module)
            images.add(id(r.module))
    if space is not None and space.cpus != run.cpus:
        raise InvalidArgument(f"space has {space.cpus} CPUs but the run has cpus={run.cpus}")
    if space is None:
        space = VmapSpace(run.layout, cpus=run.cpus, profile=run.profile or pipe.profile)
    load_offset = run.load_offset
    if load_offset is None:
        load_offset = random.Random(run.seed).randint(1, 1024) * PAGE_SIZE if space.layout.kaslr else 0
    engine = Engine(run.scheduler)
    kernel = Kernel(space, engine, run.costs, pipe, run.module_align, load_offset, random.Random(run.seed),
                    spread=spread)  # fmt: skip
    loader = Loader(kernel, pipe, cat, Semaphore(run.workers) if run.workers else None)
    for r, img in zip(reqs, [loader.resolve(r.module) for r in reqs], strict=True):
        loader.begin(r, img)
    for info in list(loader.loads):
        r = info.request
        engine.spawn(loader.run(info, loader.loads[r.after].done if r.after is not None else None), at=r.time)
    for job in jobs:  # a job checks itself against the run before any task has run
        job.start(loader)
    with _collector_paused():
        return _run(engine, loader, pipe, space, until)


def _run(engine: Engine, loader: Loader, pipe: pipelines.Pipeline, space: VmapSpace, until: float | None) -> Result:
    kernel = loader.kernel
    engine.run(until)
    if until is not None:
        for c in loader.loads:  # loads still under way when the run stopped
            if not c.timeline:
                c.timeline.append((engine.now, "start"))
            c.end = c.end or engine.now
    outcomes = tuple(
        Outcome(
            c.request, c.image.name, c.ret, c.timeline[0][0], c.end,
            tuple(map(Allocation.record, c.allocations)), tuple(c.timeline),
        )
        for c in loader.loads
    )
    return Result(
        pipe.name,
        outcomes,
        tuple(kernel.failures),
        kernel.stats,
        {r.name: space.peak_pinned(r.name) for r in space.regions},
        kernel.modules.live(),
        space,
        kernel.series.points(),
        kernel.series.first_peak_times(),
    )


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """The cyclic garbage collector paused, as ``timeit`` pauses it.

    A run builds many long-lived objects (load records, allocations, outcomes) and
    frees almost nothing until it ends; generational collections would re-scan them
    over and over.  Reference counting still frees what dies; cycles wait for the
    next collection after the run.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _check_request(i: int, r: Request, cpus: int) -> None:
    """Every field of request ``i`` checked before anything runs (the space is not touched on failure)."""
    if type(r.cpu) is not int or not 0 <= r.cpu < cpus:
        if isinstance(r.cpu, int) and not isinstance(r.cpu, bool) and r.cpu >= cpus:
            raise InvalidArgument(f"request {i} runs on CPU {r.cpu}, but the machine has {cpus}")
        integer(f"request {i} cpu", r.cpu, 0, cpus - 1)
    if type(r.time) is not float or not 0 <= r.time < math.inf:
        number(f"request {i} time", r.time, 0)
    if not isinstance(r.module, str | ModuleImage):
        raise InvalidArgument(f"request {i}: module={show(r.module)}: expected a name or a ModuleImage")
    text(f"request {i} path", r.path, optional=True)
    text(f"request {i} inode", r.inode, optional=True)
    if r.init_errno:
        integer(f"request {i} init_errno", r.init_errno, 0, 4095)  # MAX_ERRNO
    if r.after is not None and (type(r.after) is not int or not 0 <= r.after < i):
        raise InvalidArgument(f"request {i} comes after request {show(r.after)}, which is not an earlier request")
