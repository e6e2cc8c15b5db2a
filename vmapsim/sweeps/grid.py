"""A grid of coldplugs and its points, and :func:`sweep`, which runs them on any executor."""

from __future__ import annotations

import concurrent.futures
import functools
import itertools
import math
from collections.abc import Callable, Sequence
from typing import Any

import attrs

from vmapsim import layouts
from vmapsim.checks import MAX_SEED, NR_CPUS_MAX, integer, number, random_seed, show, usable_cpus
from vmapsim.errors import InvalidArgument
from vmapsim.loader import selection
from vmapsim.scenario import Scenario
from vmapsim.sweeps.table import Table
from vmapsim.units import PAGE_SIZE
from vmapsim.workloads import find_machine
from vmapsim.workloads.kmod import kmod_version

__all__ = ["MAX_RUNS", "RUN_PARAMETERS", "Grid", "Point", "run_point", "sweep"]

#: The most runs a :class:`Grid` holds unless its ``max_runs`` says otherwise (``vmapsim sweep
#: --max-runs``): a million runs of about 0.1 to 1 s each are a day or more on a few CPUs, and the
#: grid's points alone take hundreds of megabytes.
MAX_RUNS = 1_000_000

#: The grid's settings every row depends on but does not record: rows run under other values are other
#: runs, so a sweep resumes only rows run under the same ones (:meth:`Grid.check_resume`).
RUN_PARAMETERS = ("jitter", "cost_jitter", "module_align", "layout")


@attrs.frozen
class Point:
    """One run of a sweep: a machine preset, its CPUs, a kernel, a pipeline, a kmod version and a seed.

    ``kernel`` and ``pipeline`` name the load path as :func:`~vmapsim.loader.load_path` takes them (None
    and ``"v6.3"``: 6.3's own path as released; ``"6.12"`` and None: 6.12's own).  ``kmod`` None: the
    machine's.  :meth:`scenario` is the point as a :class:`~vmapsim.Scenario`.

    >>> Point("qemu-kvm", 4, "6.12", None, None, 0).label
    '6.12'
    """

    machine: str
    cpus: int
    kernel: str | None
    pipeline: str | None
    kmod: int | None
    seed: int

    @property
    def label(self) -> str:
        """The load path this point runs, as ``vmapsim boot`` labels it.  Runtime complexity: O(stages)."""
        return _label(self.machine, self.kernel, self.pipeline)

    def scenario(self, jitter: float | None = None, cost_jitter: float | None = None, module_align: int = PAGE_SIZE,
                 layout: str | None = None) -> Scenario:  # fmt: skip
        """This point with the grid's shared settings, as ``vmapsim boot --machine M --cpus N --kernel K
        --pipeline P --kmod V --seed S`` runs it.  Runtime complexity: a scenario's resolution (a machine file is read,
        a shipped catalog only the first time).
        """
        return Scenario(self.machine, cpus=self.cpus, kernel=self.kernel, pipeline=self.pipeline, kmod=self.kmod,
                        seed=self.seed, jitter=jitter, cost_jitter=cost_jitter, layout=layout,
                        module_align=module_align)  # fmt: skip


def _strings(name: str, values: Sequence[str | None], *, allow_none: bool) -> tuple[str | None, ...]:
    if isinstance(values, str) or not isinstance(values, Sequence) or not values:
        raise InvalidArgument(f"{name}={show(values)}: expected a non-empty sequence")
    for v in values:
        if not (isinstance(v, str) or (v is None and allow_none)):
            raise InvalidArgument(f"{name}: {show(v)} is not a name")
    return tuple(values)



def _sequence(value: object) -> bool:
    """A non-empty sequence of values; bytes and text are not (b"4096" would be four numbers)."""
    return isinstance(value, Sequence) and not isinstance(value, str | bytes | bytearray) and bool(value)

@attrs.frozen
class Grid:
    """The parameters a sweep crosses; every combination is one :class:`Point`.

    ``machines``: preset names (``vmapsim info`` lists them) or machine files; ``cpus``: CPU counts;
    ``kernels`` (None: a machine file's release, else the released paths) and ``pipelines`` (``"all"`` or
    names) choose the load paths as ``vmapsim boot`` does (:func:`~vmapsim.loader.selection`);
    ``kmods``: kmod versions (None: the machine's); ``seeds``: how many seeds (0 to n-1) or which;
    ``jitter``: uevent arrivals spread over this many seconds; ``cost_jitter``: stage durations vary by
    this fraction (None: each machine's :meth:`~vmapsim.workloads.Machine.timing`, as ``vmapsim boot``);
    ``module_align``: ``MODULE_ALIGN`` (32 KiB with generic KASAN);
    ``layout``: a layout name in place of the machines' own (``vmapsim boot --layout``);
    ``max_runs``: the most runs the grid may hold (default :data:`MAX_RUNS`): a larger one is refused,
    :class:`InvalidArgument` saying how many runs it would be.  Its size is the product of its axes, known
    without enumerating the points, and each load path is checked once per machine.
    Runtime complexity: O(machines × load paths + CPU counts + kmods + seeds) to build and to size,
    O(points) to enumerate.

    >>> len(Grid(cpus=(8, 16, 32), seeds=10))  # 3 CPU counts × 7 load paths (as vmapsim boot) × 10 seeds
    210
    """

    machines: tuple[str, ...] = ("intel-server",)
    cpus: tuple[int, ...] = (255,)
    kernels: tuple[str | None, ...] = (None,)
    pipelines: str | tuple[str | None, ...] = "all"
    kmods: tuple[int | None, ...] = (None,)
    seeds: int | tuple[int, ...] = 1
    jitter: float | None = None
    cost_jitter: float | None = None
    module_align: int = PAGE_SIZE
    layout: str | None = None
    max_runs: int = MAX_RUNS

    def __attrs_post_init__(self) -> None:
        integer("module_align", self.module_align, PAGE_SIZE, 1 << 30)
        if self.layout is not None:
            layouts.by_name(self.layout)  # an unknown name is refused, naming the known ones
        for m in _strings("machines", self.machines, allow_none=False):
            find_machine(str(m))  # a preset's name or a machine file; raises, naming it
        if not _sequence(self.cpus):
            raise InvalidArgument(f"cpus={show(self.cpus)}: expected a non-empty sequence of CPU counts")
        for c in self.cpus:
            integer("cpus", c, 1, NR_CPUS_MAX)
        _strings("kernels", self.kernels, allow_none=True)
        if self.pipelines != "all":
            _strings("pipelines", self.pipelines, allow_none=True)
        if not _sequence(self.kmods):
            raise InvalidArgument(f"kmods={show(self.kmods)}: expected a non-empty sequence")
        for k in self.kmods:
            if k is not None:
                kmod_version(k, "kmods")
        if isinstance(self.seeds, int):
            integer("seeds", self.seeds, 1, MAX_SEED)
        else:
            if not _sequence(self.seeds):
                raise InvalidArgument(f"seeds={show(self.seeds)}: expected a count or a non-empty sequence of seeds")
            for s in self.seeds:
                random_seed("seeds", s)
        if self.jitter is not None:
            number("jitter", self.jitter, 0)
        if self.cost_jitter is not None:
            number("cost_jitter", self.cost_jitter, 0, 0.99)
        integer("max_runs", self.max_runs, 1, 1 << 63)
        for machine in self.machines:  # an unknown kernel or pipeline, or one that does not combine, is refused here
            for kernel, pipeline in self.paths(str(machine)):
                _label(machine, kernel, pipeline)
        if (runs := len(self)) > self.max_runs:
            paths = sum(len(self.paths(m)) for m in self.machines)
            raise InvalidArgument(f"the grid holds {runs} runs: {paths} (machine, load path) pairs"
                                  f" × {len(self.cpus)} CPU counts × {len(self.kmods)} kmods × {self._seed_count()} "
                                  f"seeds, more than max_runs={self.max_runs}; sweep fewer, or raise the limit "
                                  "(vmapsim sweep --max-runs)")  # fmt: skip

    def seed_list(self) -> tuple[int, ...]:
        """The seeds, as a tuple.  Runtime complexity: O(seeds)."""
        return tuple(range(self.seeds)) if isinstance(self.seeds, int) else tuple(self.seeds)

    def paths(self, machine: str) -> list[tuple[str | None, str | None]]:
        """The (kernel, pipeline) pairs ``machine``'s points run, as :func:`~vmapsim.loader.selection` gives
        them (a machine file's release where no kernel is given, as ``vmapsim boot``).
        Runtime complexity: O(load paths); a machine file is read.

        >>> Grid(machines=("qemu-kvm",), pipelines=("v6.3",)).paths("qemu-kvm")
        [(None, 'v6.3')]
        """
        own = find_machine(machine).release if self.pipelines == "all" else None
        return selection([k if k is not None else own for k in self.kernels], self.pipelines)

    def points(self) -> list[Point]:
        """Every point, machines outermost and seeds innermost.  Runtime complexity: O(points)."""
        out = []
        for machine in self.machines:
            out += [Point(machine, cpus, kernel, pipeline, kmod, seed) for cpus, (kernel, pipeline), kmod, seed
                    in itertools.product(self.cpus, self.paths(machine), self.kmods, self.seed_list())]  # fmt: skip
        return out

    def notes(self) -> list[str]:
        """What the grid's scenarios chose that it did not give (a kernel on another release's catalog),
        once each.  Runtime complexity: O(machines × load paths).
        """
        return list(dict.fromkeys(n for m in self.machines for k, p in self.paths(m) for n in _notes(m, k, p)))

    def kmod_of(self, machine: str, kmod: int | None) -> int:
        """The kmod version a cell of ``machine`` ran (``kmod`` None: the machine's own).

        Runtime complexity: O(1) for a preset; a machine file is read.

        >>> Grid(machines=("qemu-kvm",)).kmod_of("qemu-kvm", None)
        30
        """
        return kmod if kmod is not None else find_machine(machine).kmod

    def parameters(self) -> dict[str, Any]:
        """Every parameter of the grid, as the JSON documents record them (pipelines as the load paths they
        resolved to).  Runtime complexity: O(machines × load paths + the axes).

        >>> Grid(machines=("qemu-kvm",), pipelines=("v6.3",)).parameters()["pipelines"]
        ['v6.3']
        """
        return {"machines": list(self.machines), "cpus": list(self.cpus), "kernels": list(self.kernels),
                "pipelines": list(dict.fromkeys(_label(m, k, p) for m in self.machines for k, p in self.paths(m))),
                "kmods": list(self.kmods), "seeds": self.seeds if isinstance(self.seeds, int) else list(self.seeds),
                **{name: getattr(self, name) for name in RUN_PARAMETERS}}  # fmt: skip

    def check_resume(self, done: Table, source: str = "the rows to resume") -> None:
        """Refuse to resume ``done`` (an earlier sweep's :class:`Table`) in this grid unless its rows are this
        grid's own runs: :class:`InvalidArgument` naming ``source`` when one of :data:`RUN_PARAMETERS`
        differs (naming it and both values) or when a row is of a point this grid does not hold (other
        CPUs, machines, load paths, kmods or seeds: rewriting the file would drop it).  A parameter
        ``done`` does not record (a ``vmapsim-sweep/1`` or ``/2`` file, a Table built by hand) is taken as
        its default, so such rows resume only in a grid that leaves it at the default.
        Runtime complexity: O(points + rows).

        >>> g = Grid(machines=("qemu-kvm",), cpus=(2,), pipelines=("v6.3",))
        >>> g.check_resume(Table((), {"jitter": 0.5}), "rows.json")
        Traceback (most recent call last):
        ...
        vmapsim.errors.InvalidArgument: rows.json: its rows were run with jitter=0.5, this grid's jitter is None
        """
        if not isinstance(done, Table):
            raise InvalidArgument(f"done={show(done)}: expected a Table")
        for name in RUN_PARAMETERS:
            theirs, ours = done.parameters.get(name, _DEFAULTS[name]), getattr(self, name)
            if theirs != ours:
                raise InvalidArgument(f"{source}: its rows were run with {name}={show(theirs)}, this grid's {name} "
                                      f"is {show(ours)}")  # fmt: skip
        keys = {_key(p) for p in self.points()}
        extra = [r for r in done.rows if _row_key(r) not in keys]
        if extra:
            first = ", ".join(f"{k}={show(extra[0][k])}" for k in ("machine", "cpus", "kernel", "pipeline", "kmod",
                                                                   "seed"))  # fmt: skip
            raise InvalidArgument(f"{source}: {len(extra)} of its rows are of points this grid does not hold "
                                  f"(the first: {first}); sweep a grid that holds them, or resume another file")

    def __len__(self) -> int:
        """How many runs (points) the grid holds, the product of its axes, without enumerating them.

        Runtime complexity: O(machines × load paths).
        """
        return len(self.cpus) * len(self.kmods) * self._seed_count() * sum(len(self.paths(m)) for m in self.machines)

    def _seed_count(self) -> int:
        return self.seeds if isinstance(self.seeds, int) else len(self.seeds)


_DEFAULTS = {name: attrs.fields_dict(Grid)[name].default for name in RUN_PARAMETERS}


@functools.cache
def _label(machine: str, kernel: str | None, pipeline: str | None) -> str:
    return Scenario(machine, cpus=1, kernel=kernel, pipeline=pipeline).run.path.name


@functools.cache
def _notes(machine: str, kernel: str | None, pipeline: str | None) -> tuple[str, ...]:
    return Scenario(machine, cpus=1, kernel=kernel, pipeline=pipeline).notes


def run_point(
    point: Point,
    jitter: float | None = None,
    cost_jitter: float | None = None,
    module_align: int = PAGE_SIZE,
    layout: str | None = None,
) -> dict[str, Any]:
    """One coldplug, :meth:`Point.scenario` simulated; the row of its parameters and metrics.

    Runtime: one run.

    >>> run_point(Point("qemu-kvm", 2, None, "v6.5", None, 0))["ok"] >= 1
    True
    """
    s = point.scenario(jitter, cost_jitter, module_align, layout)
    return {**attrs.asdict(point), "pipeline": s.run.path.name, **s.simulate().metrics()}


def _run_batch(points: Sequence[Point], grid: Grid) -> list[dict[str, Any]]:
    return [run_point(p, grid.jitter, grid.cost_jitter, grid.module_align, grid.layout) for p in points]



def _executor(executor: Any) -> tuple[Any, int, bool]:
    """(executor, workers, whether we own it) for ``sweep``'s ``executor`` argument."""
    if executor is None or executor == "local":
        workers = usable_cpus()
        return concurrent.futures.ProcessPoolExecutor(workers), workers, True
    if executor == "serial":
        return None, 1, False
    if callable(getattr(executor, "get_executor", None)):  # a dask.distributed Client
        workers = max(1, sum(getattr(executor, "nthreads", lambda: {"w": 1})().values()))
        return executor.get_executor(), workers, False
    if isinstance(executor, concurrent.futures.Executor):
        workers = getattr(executor, "_max_workers", None) or usable_cpus()
        return executor, int(workers), False
    raise InvalidArgument(f"executor={show(executor)}: expected 'local', 'serial', an Executor or a Dask Client")


def sweep(
    grid: Grid,
    *,
    executor: Any = None,
    done: Table | None = None,
    progress: Callable[[int, int], None] | None = None,
    batch: int | None = None,
) -> Table:
    """Run every point of ``grid``; the :class:`Table` of their rows, in the grid's order.

    ``executor``: None or ``"local"`` (a process pool of one worker per usable CPU,
    :func:`~vmapsim.checks.usable_cpus`), ``"serial"`` (this process), any
    ``concurrent.futures.Executor``, or a Dask ``distributed.Client`` (its ``get_executor()``).  Points
    go out in batches (``batch`` points each; default: about four batches per worker), the most CPUs first,
    so that scheduling costs little beside the runs and no worker is left with a long batch at the end;
    each worker loads a catalog once.  ``done``: rows of an earlier,
    interrupted sweep (``Table.from_json``), which are kept and not run again; refused, before anything runs,
    unless they are this grid's own runs (:meth:`Grid.check_resume`).  The table records
    :meth:`Grid.parameters`.  ``progress(finished,
    total)`` after each batch.  An interrupt (Ctrl-C) cancels the batches not yet started.
    Runtime: one run per point not in ``done``.
    """
    if not isinstance(grid, Grid):
        raise InvalidArgument(f"grid={show(grid)}: expected a Grid")
    if batch is not None:
        integer("batch", batch, 1)
    points = grid.points()
    kept: dict[tuple[Any, ...], dict[str, Any]] = {}
    if done is not None:
        grid.check_resume(done)
        kept = {_row_key(r): r for r in done.rows}
    # The biggest machines first: a run's time grows with its CPUs, and the last batches, the shortest,
    # leave no worker waiting long for another's; the table keeps the grid's order whatever order ran.
    todo = sorted((p for p in points if _key(p) not in kept), key=lambda p: -p.cpus)
    pool, workers, owned = _executor(executor)
    size = batch or max(1, math.ceil(len(todo) / (4 * workers)))
    batches = [todo[i : i + size] for i in range(0, len(todo), size)]
    results: dict[tuple[Any, ...], dict[str, Any]] = dict(kept)
    finished = len(points) - len(todo)
    try:
        if pool is None:
            for b in batches:
                for row in _run_batch(b, grid):
                    results[_row_key(row)] = row
                finished += len(b)
                if progress:
                    progress(finished, len(points))
        else:
            futures = {pool.submit(_run_batch, b, grid): len(b) for b in batches}
            try:
                for f in concurrent.futures.as_completed(futures):
                    for row in f.result():
                        results[_row_key(row)] = row
                    finished += futures[f]
                    if progress:
                        progress(finished, len(points))
            except BaseException:
                for f in futures:
                    f.cancel()
                raise
    finally:
        if owned:
            pool.shutdown(cancel_futures=True)
    return Table(tuple(results[_key(p)] for p in points), grid.parameters())


def _key(p: Point) -> tuple[Any, ...]:
    return (p.machine, p.cpus, p.kernel, p.kmod, p.seed, p.label)


def _row_key(row: dict[str, Any]) -> tuple[Any, ...]:
    return (row["machine"], row["cpus"], row["kernel"], row["kmod"], row["seed"], row["pipeline"])

