"""What a search found (:class:`Worst`), and :func:`worst_case`, the search itself."""

from __future__ import annotations

import contextlib
import itertools
import statistics
from collections.abc import Callable, Sequence
from typing import Any

import attrs

from vmapsim.checks import flag, integer, number, random_seed, show
from vmapsim.engine import Fifo
from vmapsim.errors import InvalidArgument, VmapsimError
from vmapsim.explore.problem import Found, Probe, Problem, Space
from vmapsim.explore.search import STRATEGIES, Exhaustive, Strategy
from vmapsim.loader.load_module import Job
from vmapsim.loader.metrics import Metric, metric_on
from vmapsim.loader.request import Request
from vmapsim.loader.result import Result
from vmapsim.loader.run import Run, simulate
from vmapsim.loader.schedule import Schedule

__all__ = ["Worst", "worst_case"]


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

    def summary(self, as_text: Callable[[float], str] | None = None) -> str:
        """One line: the worst value, the distribution over the search, and when the worst was first found
        (each value as ``as_text`` writes it: the commands give sizes in human units).

        Runtime complexity: O(evaluations log evaluations).
        """
        fmt = as_text or _fmt
        v = sorted(self.values)
        return (
            f"{self.metric}: worst {fmt(self.value)} after {self.first} of {self.evaluations} evaluations "
            f"({self.strategy}; reached {self.hits}×); min {fmt(v[0])}, median {fmt(statistics.median(v))}"
        )


def _fmt(x: float) -> str:
    return str(int(x)) if x == int(x) else f"{x:.6g}"


def worst_case(
    workload: Sequence[Request | Job],
    run: Run | None = None,
    *,
    metric: str | Metric | Callable[[Result], float] = "peak_modules",
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
    random_seed("seed", seed)
    flag("baseline", baseline)
    if progress is not None and not callable(progress):
        raise InvalidArgument(f"progress={show(progress)}: expected a callable(done, budget, best) or None")
    if goal is not None:
        number("goal", goal)
    m = metric_on(metric, run.layout)
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
    problem = Problem(items, run, m, space, span, budget, goal, progress)
    with contextlib.suppress(Found):  # the goal was reached
        if baseline and not isinstance(chosen, Exhaustive) and run.scheduler == Fifo():
            # the seeded run as a schedule: Kernel draws its jitter from random.Random(run.seed)
            own = tuple(float(getattr(item, "time", 0.0)) for item in items)
            problem.evaluate(Probe(own, jitter=run.costs.jitter, seed=run.seed))
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
