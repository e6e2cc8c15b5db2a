"""The worst case, searched for: arrival times, stage durations and tie-breaks that pin the most.

A seeded run is one schedule of many. :func:`worst_case` searches the schedules of a workload (its jobs'
arrival times within a window, every stage's duration within the cost model's bounds, every tie-break of
the engine) for the one that maximises a metric of the :class:`~vmapsim.loader.result.Result`, and
returns it as a :class:`~vmapsim.loader.schedule.Schedule` that ``simulate(..., schedule=...)`` and
``vmapsim boot --schedule FILE`` replay exactly.

>>> from vmapsim.loader import Request
>>> jobs = [Request("loop", cpu=c) for c in range(3)]
>>> w = worst_case(jobs, kernel="6.3", cpus=3, catalog="debian-6.12-amd64", budget=8, strategy="random")
>>> w.evaluations, w.value == max(w.values), w.replay() == w.result
(8, True, True)

The search space (:class:`Space`), the strategies (:class:`RandomSearch`, :class:`PCT`,
:class:`Exhaustive`, :class:`Guided`) and the metrics (:data:`METRICS`) are values; docs/explore.md
compares the strategies.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import random
import statistics
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, Protocol

import attrs

from vmapsim.checks import integer, number, show
from vmapsim.engine import Drawn, Fifo, Scheduler
from vmapsim.errors import InvalidArgument, VmapsimError
from vmapsim.loader.load_module import Job
from vmapsim.loader.request import Request
from vmapsim.loader.result import Result
from vmapsim.loader.run import Run, simulate
from vmapsim.loader.schedule import Schedule

__all__ = [
    "METRICS",
    "PCT",
    "STRATEGIES",
    "Exhaustive",
    "Guided",
    "Metric",
    "RandomSearch",
    "SearchTooLarge",
    "Space",
    "Strategy",
    "Worst",
    "worst_case",
]


class SearchTooLarge(InvalidArgument):
    """An exhaustive search whose space is larger than its budget; ``estimate`` is the space's size."""

    def __init__(self, message: str, estimate: float) -> None:
        super().__init__(message)
        self.estimate = estimate


@attrs.frozen
class Metric:
    """A named number of a Result that a search maximises.

    >>> METRICS["failures"].name, METRICS["peak-modules"].measure.__doc__
    ('failures', 'peak pinned bytes of the module window')
    """

    name: str
    measure: Callable[[Result], float]


def _peak(window: str) -> Callable[[Result], float]:
    def measure(r: Result) -> float:
        return float(r.peak_pinned.get(window, 0))

    measure.__doc__ = f"peak pinned bytes of the {'module' if window == 'modules' else window} window"
    return measure


def _failures(r: Result) -> float:
    """allocation failures (a window exhausted)"""
    return float(len(r.failures))


def _wasted(r: Result) -> float:
    """CONFIG_MODULE_STATS ``Virtual mem wasted bytes``"""
    return float(r.stats.wasted_bytes)


def _becoming(r: Result) -> float:
    """duplicates refused in ``early_mod_check()`` (stats ``Mods failed on becoming``)"""
    return float(r.stats.failed_becoming)


def _load(r: Result) -> float:
    """duplicates refused in ``add_unformed_module()`` (stats ``Mods failed on load``)"""
    return float(r.stats.failed_load_modules)


#: The shipped metrics by name; :func:`worst_case` also takes a :class:`Metric` or any ``Result -> number``.
METRICS: dict[str, Metric] = {
    "peak-modules": Metric("peak-modules", _peak("modules")),
    "peak-vmalloc": Metric("peak-vmalloc", _peak("vmalloc")),
    "failures": Metric("failures", _failures),
    "wasted": Metric("wasted", _wasted),
    "becoming": Metric("becoming", _becoming),
    "load": Metric("load", _load),
}


def _metric(metric: str | Metric | Callable[[Result], float]) -> Metric:
    if isinstance(metric, Metric):
        return metric
    if isinstance(metric, str):
        if metric not in METRICS:
            raise InvalidArgument(f"metric={metric!r}: expected one of {', '.join(METRICS)} or a function of a Result")
        return METRICS[metric]
    if callable(metric):
        return Metric(getattr(metric, "__name__", "custom"), metric)
    raise InvalidArgument(f"metric={show(metric)}: expected a metric's name, a Metric or a function of a Result")


@attrs.frozen
class Space:
    """What a search may change, as ``simulate``'s ``schedule=`` can express it.

    ``span``: every job arrives in ``[0, span]`` seconds (None: the workload's own span, or when every job
    arrives at 0, how long the seeded run takes).  ``slots``: arrivals on a grid of that many instants
    ``0, span/(slots-1), ...`` (None: anywhere in the window).  ``bound``: every stage's duration is the
    cost model's times a factor in ``[1 - bound, 1 + bound]`` (0: exactly the cost model; 0.25 is
    ``vmapsim boot``'s ``--cost-jitter``).  ``ties``: whether the engine's tie-breaks among tasks
    runnable at one instant are searched (else FIFO).  Which udev worker serves which job follows from
    the arrivals: udevd hands queued events to free workers in order, as the model's worker semaphore.

    >>> Space(slots=3, bound=0).finite
    True
    """

    span: float | None = None
    slots: int | None = None
    bound: float = 0.25
    ties: bool = True

    def __attrs_post_init__(self) -> None:
        if self.span is not None:
            number("span", self.span, 0)
        if self.slots is not None:
            integer("slots", self.slots, 1, 1 << 16)
        number("bound", self.bound, 0, 0.99)
        if not isinstance(self.ties, bool):
            raise InvalidArgument(f"ties={show(self.ties)}: expected True or False")

    @property
    def finite(self) -> bool:
        """Whether the space can be enumerated: arrivals on a grid and durations fixed.  Runtime: O(1)."""
        return self.slots is not None and self.bound == 0


@attrs.define
class _Probe:
    """One evaluation's timing: draws what the run asks for, records it, and becomes a Schedule."""

    arrivals: tuple[float, ...]
    draw_factor: Callable[[], float] | None = None
    draw_choice: Callable[[int], int] | None = None
    prefix: Sequence[int] = ()  # exhaustive search: tie-breaks fixed so far, FIFO after
    jitter: float = 0.0
    seed: int = 0
    factors: list[float] = attrs.field(factory=list)
    choices: list[int] = attrs.field(factory=list)
    widths: list[int] = attrs.field(factory=list)

    def factor_source(self) -> Callable[[], float]:
        if self.draw_factor is None:
            return Schedule(jitter=self.jitter, seed=self.seed).factor_source()
        draw, out = self.draw_factor, self.factors

        def factor() -> float:
            f = draw()
            out.append(f)
            return f

        return factor

    def scheduler(self) -> Scheduler:
        draw, prefix, out, widths = self.draw_choice, self.prefix, self.choices, self.widths

        def choose(n: int) -> int:
            k = len(out)
            c = prefix[k] if k < len(prefix) else draw(n) if draw is not None else 0
            out.append(c)
            widths.append(n)
            return c

        return Drawn(choose)

    def schedule(self) -> Schedule:
        choices = list(self.choices)
        while choices and choices[-1] == 0:  # FIFO once the listed choices run out
            choices.pop()
        return Schedule(self.arrivals, tuple(self.factors), tuple(choices), self.jitter, self.seed)


@attrs.define
class _Problem:
    """A workload, a run and a metric: evaluates schedules and keeps the worst."""

    items: list[Request | Job]
    run: Run
    metric: Metric
    space: Space
    span: float
    budget: int
    goal: float | None = None
    progress: Callable[[int, int, float], None] | None = None
    values: list[float] = attrs.field(factory=list)
    best: tuple[float, Schedule, Result] | None = None
    found: tuple[float, Schedule, Result] | None = None

    @property
    def left(self) -> int:
        return self.budget - len(self.values)

    def grid(self) -> list[float]:
        slots = self.space.slots or 1
        return [self.span * i / (slots - 1) if slots > 1 else 0.0 for i in range(slots)]

    def evaluate(self, probe: _Probe) -> float:
        result = simulate(self.items, self.run, schedule=probe)
        value = self.metric.measure(result)
        if not isinstance(value, int | float) or math.isnan(value):
            raise InvalidArgument(f"metric {self.metric.name!r} gave {show(value)}, not a number")
        self.values.append(float(value))
        if self.best is None or value > self.best[0]:  # the first schedule to reach the maximum is kept
            self.best = (float(value), probe.schedule(), result)
        if self.progress is not None:
            self.progress(len(self.values), self.budget, self.best[0])
        if self.goal is not None and value >= self.goal:
            # the last schedule to reach the goal is kept: after shrinking, Hypothesis runs the simplest last
            self.found = (float(value), probe.schedule(), result)
            raise _Found
        return float(value)


class Strategy(Protocol):
    """A search strategy: evaluates up to ``problem.budget`` schedules, deterministically for ``seed``."""

    @property
    def name(self) -> str:
        """The strategy's name in reports."""
        ...

    def search(self, problem: _Problem, seed: int) -> None:
        """Evaluate schedules of ``problem`` (its ``evaluate``) until the budget is spent or the space is."""
        ...


def _arrival_draw(problem: _Problem, rng: random.Random) -> Callable[[], float]:
    if problem.space.slots is not None:
        grid = problem.grid()
        return lambda: rng.choice(grid)
    return lambda: rng.uniform(0.0, problem.span)


def _probe(problem: _Problem, rng: random.Random, arrivals: tuple[float, ...]) -> _Probe:
    """A probe whose factors (as a seed: compact to save) and tie-breaks come from ``rng``."""
    return _Probe(
        arrivals,
        draw_choice=rng.randrange if problem.space.ties else None,
        jitter=problem.space.bound,
        seed=rng.getrandbits(32),
    )


@attrs.frozen
class RandomSearch:
    """Independent uniform samples: each job's arrival in the window, each factor within the bound, each
    tie-break among the runnable tasks.  Runtime: ``budget`` runs.

    >>> RandomSearch().name
    'random'
    """

    name: str = "random"

    def search(self, problem: _Problem, seed: int) -> None:
        """``budget`` independent samples from ``random.Random(seed)``."""
        rng = random.Random(seed)
        arrival = _arrival_draw(problem, rng)
        while problem.left > 0:
            problem.evaluate(_probe(problem, rng, tuple(arrival() for _ in problem.items)))


@attrs.frozen
class PCT:
    """PCT-style schedules (Burckhardt et al., ASPLOS 2010) carried over to time: every job starts at once,
    the moment of most contention, except ``depth - 1`` jobs, the change points, each moved to a random
    instant of the window; factors and tie-breaks are random.  An outcome that needs few jobs to be out
    of step (a duplicate that slips past a check, a free that comes late) is found with few samples.
    The probability bound of PCT over thread interleavings is not claimed here.  Runtime: ``budget`` runs.

    >>> PCT(depth=2).name
    'pct'
    """

    depth: int = 3
    name: str = "pct"

    def __attrs_post_init__(self) -> None:
        integer("depth", self.depth, 1)

    def search(self, problem: _Problem, seed: int) -> None:
        """``budget`` samples from ``random.Random(seed)``."""
        rng = random.Random(seed)
        arrival = _arrival_draw(problem, rng)
        n = len(problem.items)
        while problem.left > 0:
            arrivals = [0.0] * n
            for i in rng.sample(range(n), min(n, self.depth - 1)):
                arrivals[i] = arrival()
            problem.evaluate(_probe(problem, rng, tuple(arrivals)))


@attrs.frozen
class Exhaustive:
    """Every schedule of a finite space (:attr:`Space.finite`): each grid assignment of arrivals, and for
    each every sequence of tie-breaks, depth first (as shuttle's DFS scheduler).  Refused with
    :class:`SearchTooLarge` and an estimate of the size when the space exceeds the budget; the estimate
    is the number of arrival grids times Knuth's estimator of the tie-break tree (the product of the
    branching seen along random paths).  Runtime: the size of the space, in runs.

    >>> Exhaustive().name
    'exhaustive'
    """

    probes: int = 8
    name: str = "exhaustive"

    def search(self, problem: _Problem, seed: int) -> None:
        """All schedules, in a fixed order, after checking the space fits the budget."""
        if not problem.space.finite:
            raise InvalidArgument("an exhaustive search needs a finite space: Space(slots=N, bound=0)")
        grid, n = problem.grid(), len(problem.items)
        size = self.estimate(problem, seed)
        if size > problem.budget:
            raise SearchTooLarge(
                f"the space has about {size:.3g} schedules ({len(grid)}^{n} arrival grids"
                f"{' times their tie-breaks' if problem.space.ties else ''}), more than budget={problem.budget}",
                size,
            )
        for arrivals in itertools.product(grid, repeat=n):
            prefix: list[int] = []
            while problem.left > 0:
                probe = _Probe(tuple(arrivals), prefix=prefix)
                problem.evaluate(probe)
                if not problem.space.ties:
                    break
                prefix = _next_prefix(probe.choices, probe.widths)
                if not prefix:
                    break

    def estimate(self, problem: _Problem, seed: int) -> float:
        """The space's size: arrival grids × the mean tie-tree size of ``probes`` random paths.  O(probes) runs.

        The probe runs are not counted as evaluations.
        """
        grids = float(len(problem.grid())) ** len(problem.items)
        if not problem.space.ties or grids > problem.budget:
            return grids
        rng = random.Random(seed)
        arrival = _arrival_draw(problem, rng)
        sizes = []
        for _ in range(self.probes):
            probe = _Probe(tuple(arrival() for _ in problem.items), draw_choice=rng.randrange)
            simulate(problem.items, problem.run, schedule=probe)
            sizes.append(math.prod(probe.widths))
        return grids * statistics.fmean(sizes)


def _next_prefix(choices: Sequence[int], widths: Sequence[int]) -> list[int]:
    """The next tie-break sequence depth first after ``choices``; [] when the tree is done."""
    for k in range(len(choices) - 1, -1, -1):
        if choices[k] + 1 < widths[k]:
            return [*choices[:k], choices[k] + 1]
    return []


# Hypothesis also offers integers and floats it finds as literal constants in the program's own modules
# (hypothesis.internal.constants_ast), which would make a search's schedules depend on what else the program
# imported. So every number the guided search draws is an integer in a range no literal is likely to fall
# in (from 987_654_321_123 up, small enough to keep 448 arrivals inside Hypothesis' limit on the size of an
# example), shifted back to 0: the draws keep Hypothesis' shrinking toward 0 and its targeting.
_OFFSET = 987_654_321_123


def _draw_below(data: Any, n: int) -> int:
    """A number in ``range(n)``, drawn by Hypothesis without its constants."""
    from hypothesis import strategies as st

    return int(data.draw(st.integers(_OFFSET, _OFFSET + n - 1))) - _OFFSET


class _Found(Exception):
    """Raised inside Hypothesis' test to stop the search at the goal (and let it shrink the schedule)."""


def _group(item: Request | Job) -> Any:
    """What an item loads (duplicates share it): a request's module, a modprobe's chain, else the item."""
    loads = getattr(item, "module", None) or getattr(item, "modules", None)
    if isinstance(loads, str | tuple):
        return loads
    return getattr(loads, "name", id(item))


def _zigzag(k: int) -> int:
    """0, 1, -1, 2, -2, ...: a drawn number Hypothesis shrinks toward 0 as a deviation shrinking toward none."""
    return (k + 1) // 2 if k % 2 else -(k // 2)


@attrs.frozen
class Guided:
    """Hypothesis-guided search: ``hypothesis.target()`` on the metric steers generation toward larger
    values; with a ``goal`` (e.g. one allocation failure), a schedule reaching it is shrunk by Hypothesis
    to a simpler one; ``database`` (a directory or a Hypothesis example database) keeps found schedules
    so a later search replays them first.

    The drawn numbers are coordinates Hypothesis' simplest values and shrinking make meaningful: each
    module's arrival instant, then each job's offset from its module's (0: with its duplicates, as udev
    sends them), so the simplest schedule is every job at once with its duplicates; each factor a
    deviation from 1 (0: exactly the cost model); tie-breaks counted from FIFO.  For workloads of more
    than ``fine`` jobs, whose thousands of factors and tie-breaks would overflow a Hypothesis example,
    the factors are the seeded jitter at a drawn amplitude (0: exactly the cost model) and the tie-breaks
    come from a drawn seed (0: FIFO).  Runtime: ``budget`` runs (plus the shrinker's, which are counted).

    >>> Guided().name
    'guided'
    """

    database: Any = None
    fine: int = 16
    name: str = "guided"

    def search(self, problem: _Problem, seed: int) -> None:
        """Hypothesis' search, seeded with ``seed``, for at most ``budget`` generated schedules."""
        from hypothesis import HealthCheck, Phase, Verbosity, given, settings, target
        from hypothesis import seed as seeded
        from hypothesis import strategies as st
        from hypothesis.database import DirectoryBasedExampleDatabase, ExampleDatabase
        from hypothesis.errors import Unsatisfiable

        db = self.database
        if isinstance(db, str):
            db = DirectoryBasedExampleDatabase(db)
        elif db is not None and not isinstance(db, ExampleDatabase):
            raise InvalidArgument(f"database={show(db)}: expected a directory or a Hypothesis ExampleDatabase")
        if problem.left <= 0:
            return
        n, space = len(problem.items), problem.space
        # continuous arrivals: on 4096 instants of the window
        instants = problem.grid() if space.slots is not None else [problem.span * i / 4095 for i in range(4096)]
        keys = [_group(item) for item in problem.items]
        groups = {key: g for g, key in enumerate(dict.fromkeys(keys))}
        member = [groups[key] for key in keys]
        fine, bound, m = n <= self.fine, space.bound, len(instants)
        levels = 127  # factors on 255 levels of the bound
        phases = [Phase.explicit, Phase.reuse, Phase.generate, Phase.target]
        if problem.goal is not None:
            phases.append(Phase.shrink)

        @seeded(seed)
        @settings(max_examples=problem.left, database=db, deadline=None, derandomize=False, phases=phases,
                  suppress_health_check=list(HealthCheck), verbosity=Verbosity.quiet, report_multiple_bugs=False,
                  print_blob=False)  # fmt: skip
        @given(st.data())
        def probe(data: Any) -> None:
            draw = partial(_draw_below, data)
            at = [draw(m) for _ in groups]
            arrivals = tuple(instants[(at[g] + draw(m)) % m] for g in member)
            draw_factor: Callable[[], float] | None = None
            draw_choice: Callable[[int], int] | None = None
            jitter, jitter_seed = 0.0, 0
            if fine:
                if bound:
                    draw_factor = lambda: 1 + bound * _zigzag(draw(2 * levels + 1)) / levels  # noqa: E731
                if space.ties:
                    draw_choice = draw
            else:
                if bound:
                    jitter = bound * draw(levels + 1) / levels
                    jitter_seed = draw(1 << 32) if jitter else 0
                ties = draw(1 << 32) if space.ties else 0
                if ties:
                    draw_choice = random.Random(ties).randrange
            value = problem.evaluate(_Probe(arrivals, draw_factor, draw_choice, jitter=jitter, seed=jitter_seed))
            target(value)

        try:
            probe()
        except Unsatisfiable:
            raise InvalidArgument(f"the guided search cannot draw {n} arrivals in one Hypothesis example; "
                                  "use strategy='random' or 'pct' for a workload this big") from None


#: The strategies by name (``vmapsim worst --strategy``).
STRATEGIES: dict[str, RandomSearch | PCT | Exhaustive | Guided] = {
    "random": RandomSearch(),
    "pct": PCT(),
    "exhaustive": Exhaustive(),
    "guided": Guided(),
}


@attrs.frozen
class Worst:
    """What a search found: the worst schedule, its Result and metric value, and every value tried.

    ``values`` in the order evaluated; ``first`` the evaluations it took to first reach the maximum;
    ``hits`` how many evaluations reached it.  :meth:`replay` runs the schedule again.
    """

    value: float
    schedule: Schedule
    result: Result
    values: tuple[float, ...]
    metric: str
    strategy: str
    items: tuple[Request | Job, ...] = attrs.field(repr=False)
    run: Run = attrs.field(repr=False)

    @property
    def evaluations(self) -> int:
        """How many schedules were run.  Runtime complexity: O(1)."""
        return len(self.values)

    @property
    def first(self) -> int:
        """Evaluations until the maximum was first reached.  Runtime complexity: O(evaluations)."""
        return self.values.index(self.value) + 1

    @property
    def hits(self) -> int:
        """Evaluations that reached the maximum.  Runtime complexity: O(evaluations)."""
        return self.values.count(self.value)

    def best_so_far(self) -> list[float]:
        """The best value after each evaluation.  Runtime complexity: O(evaluations)."""
        return list(itertools.accumulate(self.values, max))

    def replay(self) -> Result:
        """The schedule run again: equal to :attr:`result`.  Runtime: one run."""
        return simulate(self.items, self.run, schedule=self.schedule)

    def summary(self) -> str:
        """One line: the worst value, the distribution over the search, and when the worst was first found.

        Runtime complexity: O(evaluations log evaluations).
        """
        v = sorted(self.values)
        return (
            f"{self.metric}: worst {_fmt(self.value)} after {self.first} of {self.evaluations} evaluations "
            f"({self.strategy}; reached {self.hits}×); min {_fmt(v[0])}, median {_fmt(statistics.median(v))}"
        )


def _fmt(x: float) -> str:
    return str(int(x)) if x == int(x) else f"{x:.6g}"


def worst_case(
    workload: Sequence[Request | Job],
    run: Run | None = None,
    *,
    metric: str | Metric | Callable[[Result], float] = "peak-modules",
    budget: int = 100,
    strategy: str | Strategy = "guided",
    space: Space | None = None,
    seed: int = 0,
    goal: float | None = None,
    baseline: bool = True,
    progress: Callable[[int, int, float], None] | None = None,
    **fields: Any,
) -> Worst:
    """Search the schedules of ``workload`` for the one with the largest ``metric``; a :class:`Worst`.

    ``run`` and keywords named after :class:`~vmapsim.loader.Run`'s fields (``kernel="6.3"``,
    ``cpus=8``, ``workers=...``) describe the machine, as for :func:`~vmapsim.simulate`.  ``strategy``
    is a name of :data:`STRATEGIES` or a strategy value; ``budget`` caps the schedules run; ``seed``
    makes the search repeatable (the same arguments give the same Worst); ``goal`` stops a search at the
    first schedule whose metric reaches it (the guided search then shrinks it).  With ``baseline`` (and a
    FIFO run) the first evaluation is the run as given: the jobs' own arrival times and the run's seeded
    jitter, so the worst found is never below the seeded run (an exhaustive search runs only its grid).
    ``progress(done, budget, best)`` is called after each evaluation.
    Runtime complexity: ``budget`` runs of the workload.
    """
    if run is not None and not isinstance(run, Run):
        raise InvalidArgument(f"run={show(run)}: expected a Run")
    unknown = sorted(set(fields) - {f.name for f in attrs.fields(Run)})
    if unknown:
        raise InvalidArgument(f"worst_case() has no option {unknown[0]!r}")
    run = attrs.evolve(run or Run(), **fields)
    if isinstance(workload, str | bytes) or not isinstance(workload, Sequence) or not workload:
        raise InvalidArgument(f"workload={show(workload)}: expected a non-empty sequence of requests or jobs")
    integer("budget", budget, 1)
    integer("seed", seed)
    if goal is not None:
        number("goal", goal)
    m = _metric(metric)
    if isinstance(strategy, str) and strategy not in STRATEGIES:
        raise InvalidArgument(f"strategy={strategy!r}: expected one of {', '.join(STRATEGIES)}")
    chosen: Strategy = STRATEGIES[strategy] if isinstance(strategy, str) else strategy
    if not callable(getattr(chosen, "search", None)):
        raise InvalidArgument(f"strategy={show(strategy)}: expected a strategy's name or value")
    space = space if space is not None else Space()
    if not isinstance(space, Space):
        raise InvalidArgument(f"space={show(space)}: expected a Space")
    items = list(workload)
    span = space.span if space.span is not None else _span(items, run)
    problem = _Problem(items, run, m, space, span, budget, goal, progress)
    with contextlib.suppress(_Found):  # the goal was reached
        if baseline and not isinstance(chosen, Exhaustive) and run.scheduler == Fifo():
            # the seeded run as a schedule: Kernel draws its jitter from random.Random(run.seed)
            own = tuple(float(getattr(item, "time", 0.0)) for item in items)
            problem.evaluate(_Probe(own, jitter=run.costs.jitter, seed=run.seed))
        chosen.search(problem, seed)
    best = problem.found or problem.best
    if best is None:
        raise VmapsimError("the search ran no schedule")  # only a custom strategy that evaluates nothing
    value, schedule, result = best
    name = getattr(chosen, "name", type(chosen).__name__)
    return Worst(value, schedule, result, tuple(problem.values), m.name, name, tuple(items), run)


def _span(items: list[Request | Job], run: Run) -> float:
    """The workload's own arrival window; if every job arrives at 0, how long its seeded run takes."""
    latest = max(float(getattr(item, "time", 0.0)) for item in items)
    if latest > 0:
        return latest
    r = simulate(items, run)
    return max((o.end for o in r.outcomes), default=0.0)
