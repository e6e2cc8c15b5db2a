"""simulate(): run load requests through a pipeline on a machine and report what happened.

>>> from vmapsim import simulate
>>> from vmapsim.loader import Request
>>> r = simulate([Request("loop", cpu=c) for c in range(4)], pipeline="v6.5", cpus=4,
...              catalog="debian-6.12-amd64")
>>> [o.ret for o in r.outcomes], r.stats.modcount, r.reads
([0, 0, 0, 0], 1, 1)
"""

from __future__ import annotations

import random
from collections.abc import Generator, Iterable
from typing import Any

import attrs

from vmapsim import layouts as _layouts
from vmapsim.engine import CostModel, Delay, Engine, Event, Fifo, Scheduler, Wait
from vmapsim.errors import InvalidArgument
from vmapsim.layouts import Layout
from vmapsim.loader import pipelines
from vmapsim.loader.stages import Kernel, LoadContext, LoadFailed, Request
from vmapsim.loader.stats import ModuleStats
from vmapsim.modules.catalog import Catalog, ModuleImage
from vmapsim.profiles import KernelProfile
from vmapsim.space import VmapSpace
from vmapsim.units import PAGE_SIZE

__all__ = ["AllocationFailure", "AllocationRecord", "Modprobe", "Outcome", "Result", "simulate"]


@attrs.frozen
class Modprobe:
    """kmod handling one uevent: load each module and its dependencies (first), skipping LIVE ones.

    This is what systemd-udevd's kmod builtin does for a device's modalias:
    every module the alias resolves to, each after its ``depends=`` closure in
    modprobe order; a module already LIVE (``/sys/module/<name>/initstate``)
    is skipped -- a COMING one is not; -EEXIST counts as success; another
    error stops that module's chain.  ``fails`` lists modules whose init fails
    on this machine, with the errno.
    """

    modules: tuple[str, ...]
    cpu: int = 0
    time: float = 0.0
    syscall: str = "finit_module"
    fails: tuple[tuple[str, int], ...] = ()


@attrs.frozen
class AllocationRecord:
    """One area a request held: ``kind`` (e.g. ``kernel_read_file``, ``vmap``, ``text``), address, size with guard."""

    kind: str
    addr: int
    size: int
    region: str
    allocated: float
    freed: float | None


@attrs.frozen
class AllocationFailure:
    """An allocation that failed after purge and retry: when, for which request, and the kernel's warning."""

    time: float
    request: int
    size: int
    kind: str
    message: str


@attrs.frozen
class Outcome:
    """What one request got: the syscall's return (0 or -errno), its span, its areas and its stage timeline."""

    request: Request
    module: str
    ret: int
    start: float
    end: float
    allocations: tuple[AllocationRecord, ...]
    timeline: tuple[tuple[float, str], ...]


@attrs.frozen
class Result:
    """Everything a run produced; equal inputs and seed give an equal Result.

    ``peak_pinned`` is the true figure per window (busy + lazy + pooled bytes at
    their highest); ``stats`` is what CONFIG_MODULE_STATS would report;
    ``space`` is the final address space (not compared).
    """

    pipeline: str
    outcomes: tuple[Outcome, ...]
    failures: tuple[AllocationFailure, ...]
    stats: ModuleStats
    peak_pinned: dict[str, int]
    live: tuple[str, ...]
    space: VmapSpace = attrs.field(eq=False, repr=False)
    #: (time, pinned bytes per window in ``space.layout.regions`` order) after each change.
    pinned_over_time: tuple[tuple[float, tuple[int, ...]], ...] = attrs.field(default=(), eq=False, repr=False)
    #: window -> the instant its pinned bytes first reached their peak (rerun with ``until`` to see it).
    peak_time: dict[str, float] = attrs.field(factory=dict, eq=False, repr=False)

    @property
    def reads(self) -> int:
        """How many requests made a read buffer (``kernel_read_file``).  Runtime complexity: O(n)."""
        return sum(any(a.kind == "kernel_read_file" for a in o.allocations) for o in self.outcomes)

    def leaks(self) -> list[AllocationRecord]:
        """Areas still held after the run that no LIVE module owns (should be empty).  Runtime: O(n)."""
        out = []
        for o in self.outcomes:
            for a in o.allocations:
                owned = a.region == "modules" or a.kind in ("text", "data", "rodata", "ro_after_init", "core")
                if a.freed is None and not (o.ret == 0 and o.module in self.live and owned):
                    out.append(a)
        return out


def _resolve(module: ModuleImage | str, catalog: Catalog | None) -> ModuleImage:
    if isinstance(module, ModuleImage):
        return module
    if catalog is None:
        raise InvalidArgument(f"request names module {module!r} but no catalog was given")
    return catalog[module]


def simulate(
    requests: Iterable[Request | Modprobe],
    *,
    pipeline: str | pipelines.Pipeline = "v6.5",
    layout: Layout = _layouts.X86_64,
    cpus: int = 1,
    catalog: Catalog | str | None = None,
    scheduler: Scheduler | None = None,
    costs: CostModel | None = None,
    profile: KernelProfile | None = None,
    module_align: int = PAGE_SIZE,
    load_offset: int | None = None,
    seed: int = 0,
    space: VmapSpace | None = None,
    workers: int | None = None,
    until: float | None = None,
) -> Result:
    """Run ``requests`` through ``pipeline`` on a ``cpus``-CPU machine with ``layout``; return a :class:`Result`.

    ``catalog`` (a :class:`~vmapsim.modules.Catalog` or a shipped name)
    resolves module names; ``module_align`` is ``MODULE_ALIGN`` (32 KiB with
    generic KASAN); ``load_offset`` the KASLR module offset (default: drawn
    from ``seed`` when the layout has KASLR, else 0); ``space`` an existing
    address space to start from (e.g. a restored boot snapshot).  Items may be
    :class:`Modprobe` jobs, of which at most ``workers`` run at once (udev's
    worker limit); their loads appear in ``outcomes`` as they happen.  With
    ``until`` the run stops after that instant (runs are deterministic, so
    ``until=result.peak_time["modules"]`` shows the space at its peak).
    Runtime complexity: O(r · (s + log n)) for r requests of s stages.
    """
    pipe = pipelines.by_name(pipeline) if isinstance(pipeline, str) else pipeline
    cat = Catalog.builtin(catalog) if isinstance(catalog, str) else catalog
    items = list(requests)
    jobs = [j for j in items if isinstance(j, Modprobe)]
    reqs = [r for r in items if isinstance(r, Request)]
    if jobs and cat is None:
        raise InvalidArgument("modprobe jobs need a catalog to resolve modules and dependencies")
    for j in jobs:
        if not 0 <= j.cpu < cpus:
            raise InvalidArgument(f"modprobe of {j.modules} runs on CPU {j.cpu}, but the machine has {cpus}")
        for name in j.modules:
            _resolve(name, cat)
    images = [_resolve(r.module, cat) for r in reqs]
    for i, r in enumerate(reqs):
        if not 0 <= r.cpu < cpus:
            raise InvalidArgument(f"request {i} runs on CPU {r.cpu}, but the machine has {cpus}")
        if r.time < 0 or r.syscall not in ("finit_module", "init_module"):
            raise InvalidArgument(f"request {i}: time {r.time} / syscall {r.syscall!r} not allowed")
        if r.after is not None and not 0 <= r.after < i:
            raise InvalidArgument(f"request {i} comes after request {r.after}, which is not an earlier request")
    if space is None:
        space = VmapSpace(layout, cpus=cpus, profile=profile or pipe.profile)
    if load_offset is None:
        load_offset = random.Random(seed).randint(1, 1024) * PAGE_SIZE if space.layout.kaslr else 0
    engine = Engine(scheduler or Fifo())
    kernel = Kernel(space, engine, costs or CostModel(), pipe.generation, module_align, load_offset)
    kernel.rng = random.Random(seed)
    idem: dict[str, tuple[Event, list[int]]] = {}
    contexts = []
    for i, (r, img) in enumerate(zip(reqs, images, strict=True)):
        compressed = r.syscall == "finit_module" and img.compression != "none"
        ctx = LoadContext(i, r, img, compressed, img.decompressed_size, img.file_size if compressed else 0)
        contexts.append(ctx)
        after = contexts[r.after].done if r.after is not None else None
        engine.spawn(_run(ctx, kernel, pipe, idem, after), at=r.time)
    slots = [workers or len(jobs) or 1, []]
    for j in jobs:
        assert cat is not None
        engine.spawn(_modprobe(j, cat, kernel, pipe, idem, contexts, slots), at=j.time)
    engine.run(until)
    if until is not None:
        for c in contexts:  # loads still under way when the run stopped
            if not c.timeline:
                c.timeline.append((engine.now, "start"))
            c.end = c.end or engine.now
    outcomes = tuple(
        Outcome(
            c.request,
            c.image.name,
            c.ret,
            c.timeline[0][0],
            c.end,
            tuple(AllocationRecord(a.kind, a.addr, a.size, a.region, a.allocated, a.freed) for a in c.allocations),
            tuple(c.timeline),
        )
        for c in contexts
    )
    return Result(
        pipe.name,
        outcomes,
        tuple(AllocationFailure(*f) for f in kernel.failures),
        kernel.stats,
        {r.name: space.peak_pinned(r.name) for r in space.layout.regions},
        tuple(sorted(n for n, m in kernel.modules.items() if m.state == "LIVE")),
        space,
        tuple(kernel.pinned),
        {name: t for name, (_, t) in kernel.peaks.items()},
    )


def _modprobe(
    job: Modprobe,
    cat: Catalog,
    k: Kernel,
    pipe: pipelines.Pipeline,
    idem: dict[str, tuple[Event, list[int]]],
    contexts: list[LoadContext],
    slots: list[Any],
) -> Generator[Delay | Wait, None, None]:
    """One udev worker running kmod for one uevent (``kmod_module_probe_insert_module()`` per module)."""
    while slots[0] == 0:  # every udev worker is busy
        ev = Event("worker")
        slots[1].append(ev)
        yield Wait(ev)
    slots[0] -= 1
    fails = dict(job.fails)
    try:
        for name in job.modules:
            for img in cat.closure(name):
                rec = k.modules.get(img.name)
                if rec is not None and rec.state == "LIVE":
                    continue  # kmod reads /sys/module/<name>/initstate: live means done
                req = Request(img, job.cpu, k.engine.now, syscall=job.syscall, init_errno=fails.get(img.name, 0))
                compressed = req.syscall == "finit_module" and img.compression != "none"
                ctx = LoadContext(len(contexts), req, img, compressed, img.decompressed_size,
                                  img.file_size if compressed else 0)  # fmt: skip
                contexts.append(ctx)
                yield from _run(ctx, k, pipe, idem, None)
                if ctx.ret < 0 and ctx.ret != -17:  # -EEXIST is success to kmod
                    break
    finally:
        slots[0] += 1
        if slots[1]:
            k.engine.fire(slots[1].pop(0))


def _run(
    ctx: LoadContext,
    k: Kernel,
    pipe: pipelines.Pipeline,
    idem: dict[str, tuple[Event, list[int]]],
    after: Event | None,
) -> Generator[Delay | Wait, None, None]:
    """One request: the idempotent wrapper (6.5), the stages, and the error paths of load_module()."""
    if after is not None:
        yield Wait(after)
    try:
        yield from _load(ctx, k, pipe, idem)
    finally:
        k.engine.fire(ctx.done)


def _load(
    ctx: LoadContext, k: Kernel, pipe: pipelines.Pipeline, idem: dict[str, tuple[Event, list[int]]]
) -> Generator[Delay | Wait, None, None]:
    req = ctx.request
    ctx.timeline.append((k.engine.now, "start"))
    cookie = req.inode or req.path or ctx.image.path
    mine: tuple[Event, list[int]] | None = None
    if pipe.idempotent and req.syscall == "finit_module":
        other = idem.get(cookie)
        if other is not None:  # idempotent_wait_for_completion(): allocate nothing, share the result
            ctx.timeline.append((k.engine.now, "idempotent_wait"))
            yield Wait(other[0])
            ctx.ret, ctx.end = other[1][0], k.engine.now
            return
        mine = (Event(cookie), [0])
        idem[cookie] = mine
    ret = 0
    try:
        for stage in pipe.stages:
            ctx.timeline.append((k.engine.now, stage.name))
            yield from stage.run(ctx, k)
    except LoadFailed as f:
        ret = -f.errno
        _fail(ctx, k, f)
    finally:
        for kind, what in ctx.releases:
            if kind == "path":
                k.inflight_paths.discard(str(what))
            else:
                key = int(what)
                k.slot_used[key] -= 1
                if k.slots.get(key):
                    k.engine.fire(k.slots[key].pop(0))
    ctx.ret, ctx.end = ret, k.engine.now
    ctx.timeline.append((k.engine.now, "done"))
    if mine is not None:  # idempotent_complete(): hand the result to every waiter
        mine[1][0] = ret
        del idem[cookie]
        k.engine.fire(mine[0])


def _fail(ctx: LoadContext, k: Kernel, f: LoadFailed) -> None:
    """Free what the failed load held (module memory, then the copy) and bump the stats counter."""
    if f.point != "init":
        if ctx.record is not None and ctx.past_layout:
            for a in ctx.record.areas:  # module_deallocate()
                k.free(a)
            if k.modules.get(ctx.image.name) is ctx.record:
                k.remove(ctx.record)
        for held in (ctx.copy, ctx.read_buffer):
            if held is not None:
                k.free(held)
    s = k.stats
    compressed = ctx.compressed_len if ctx.compressed else 0
    if f.point == "kread":
        s.bump_kread()
        if ctx.request.syscall == "init_module":
            s.invalid_kread_bytes += ctx.image.decompressed_size
    elif f.point == "decompress":
        s.bump_decompress(ctx.compressed_len)
    elif f.point == "becoming" or (f.point == "dup" and not ctx.past_layout):
        s.bump_becoming(ctx.length, compressed)
    elif f.point == "dup":
        s.bump_invalid(ctx.length, compressed)
