"""The search strategies, as values: random sampling, PCT-style priorities, exhaustive enumeration, and
Hypothesis-guided search."""

from __future__ import annotations

import itertools
import math
import random
import statistics
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, Protocol

import attrs

from vmapsim.checks import integer, show, text
from vmapsim.errors import InvalidArgument
from vmapsim.explore.problem import Probe, Problem, SearchTooLarge, arrival_draw, probe
from vmapsim.loader.load_module import Job
from vmapsim.loader.request import Request
from vmapsim.loader.run import simulate

__all__ = ["MAX_PROBES", "PCT", "STRATEGIES", "Exhaustive", "Guided", "RandomSearch", "Strategy"]

#: The most random paths a strategy's parameter asks for (Exhaustive's ``probes``, PCT's ``depth``): each is
#: a run, so a larger number is a typo, not a plan.
MAX_PROBES = 1_000_000


def _name(value: object) -> None:
    if not text("name", value):
        raise InvalidArgument("a strategy's name is empty")


class Strategy(Protocol):
    """A search strategy: evaluates up to ``problem.budget`` schedules, deterministically for ``seed``."""

    @property
    def name(self) -> str:
        """The strategy's name in reports."""
        ...

    def search(self, problem: Problem, seed: int) -> None:
        """Evaluate schedules of ``problem`` (its ``evaluate``) until the budget is spent or the space is."""
        ...


@attrs.frozen
class RandomSearch:
    """Independent uniform samples: each job's arrival in the window, each factor within the bound, each
    tie-break among the runnable tasks.  Runtime: ``budget`` runs.

    >>> RandomSearch().name
    'random'
    """

    name: str = "random"

    def __attrs_post_init__(self) -> None:
        _name(self.name)

    def search(self, problem: Problem, seed: int) -> None:
        """``budget`` independent samples from ``random.Random(seed)``."""
        rng = random.Random(seed)
        arrival = arrival_draw(problem, rng)
        while problem.left > 0:
            problem.evaluate(probe(problem, rng, tuple(arrival() for _ in problem.items)))


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
        integer("depth", self.depth, 1, MAX_PROBES)
        _name(self.name)

    def search(self, problem: Problem, seed: int) -> None:
        """``budget`` samples from ``random.Random(seed)``."""
        rng = random.Random(seed)
        arrival = arrival_draw(problem, rng)
        n = len(problem.items)
        while problem.left > 0:
            arrivals = [0.0] * n
            for i in rng.sample(range(n), min(n, self.depth - 1)):
                arrivals[i] = arrival()
            problem.evaluate(probe(problem, rng, tuple(arrivals)))


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

    def __attrs_post_init__(self) -> None:
        integer("probes", self.probes, 1, MAX_PROBES)
        _name(self.name)

    def search(self, problem: Problem, seed: int) -> None:
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
                probe = Probe(tuple(arrivals), prefix=prefix)
                problem.evaluate(probe)
                if not problem.space.ties:
                    break
                prefix = _next_prefix(probe.choices, probe.widths)
                if not prefix:
                    break

    def estimate(self, problem: Problem, seed: int) -> float:
        """The space's size: arrival grids × the mean tie-tree size of ``probes`` random paths.  O(probes) runs.

        The probe runs are not counted as evaluations.
        """
        grids = float(len(problem.grid())) ** len(problem.items)
        if not problem.space.ties or grids > problem.budget:
            return grids
        rng = random.Random(seed)
        arrival = arrival_draw(problem, rng)
        sizes = []
        for _ in range(self.probes):
            probe = Probe(tuple(arrival() for _ in problem.items), draw_choice=rng.randrange)
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
# (hypothesis.internal.constants_ast: every imported module outside site-packages and the standard library),
# which would make a search's schedules depend on what else the program imported and on where vmapsim is
# installed. So every number the guided search draws is an integer in a range no literal is likely to fall
# in (from 987,654,321,123 up, small enough to keep 448 arrivals inside Hypothesis' limit on the size of an
# example), shifted back to 0: the draws keep Hypothesis' shrinking toward 0 and its targeting.  The start
# is a product, not a literal: run from a source tree, this module is such a module, and a literal start
# would be the one constant in the range (tests/test_explore.py holds the search to that).
_OFFSET = 987_654_321 * 1000 + 123


def _draw_below(data: Any, n: int) -> int:
    """A number in ``range(n)``, drawn by Hypothesis without its constants."""
    from hypothesis import strategies as st

    return int(data.draw(st.integers(_OFFSET, _OFFSET + n - 1))) - _OFFSET


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

    def __attrs_post_init__(self) -> None:
        integer("fine", self.fine, 0, MAX_PROBES)
        _name(self.name)

    def search(self, problem: Problem, seed: int) -> None:
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
            value = problem.evaluate(Probe(arrivals, draw_factor, draw_choice, jitter=jitter, seed=jitter_seed))
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


