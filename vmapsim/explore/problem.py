"""What a worst-case search works on: the space of schedules it may try, one evaluation's probe of it, and
the problem that runs a schedule and keeps the worst."""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence

import attrs

from vmapsim.checks import integer, number, show
from vmapsim.engine import Chooser, Scheduler
from vmapsim.errors import InvalidArgument
from vmapsim.loader.load_module import Job
from vmapsim.loader.metrics import Metric
from vmapsim.loader.request import Request
from vmapsim.loader.result import Result
from vmapsim.loader.run import Run, simulate
from vmapsim.loader.schedule import Schedule

# Probe, Problem, Found, arrival_draw and probe serve the strategies and worst_case() of this package.
__all__ = ["SearchTooLarge", "Space"]


class SearchTooLarge(InvalidArgument):
    """An exhaustive search whose space is larger than its budget; ``estimate`` is the space's size."""

    def __init__(self, message: str, estimate: float) -> None:
        super().__init__(message)
        self.estimate = estimate


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


@attrs.frozen
class _Recording:
    """A probe's tie-breaks as a scheduler: its own ``choose``, which records and checks each choice."""

    choose: Chooser

    def chooser(self) -> Chooser:
        return self.choose


@attrs.define
class Probe:
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
            if not 0 <= c < n:  # Drawn's check, here: a run makes thousands of choices
                raise InvalidArgument(f"scheduler drew {c!r}, outside 0..{n - 1}")
            out.append(c)
            widths.append(n)
            return c

        return _Recording(choose)

    def schedule(self) -> Schedule:
        choices = list(self.choices)
        while choices and choices[-1] == 0:  # FIFO once the listed choices run out
            choices.pop()
        return Schedule(self.arrivals, tuple(self.factors), tuple(choices), self.jitter, self.seed)


@attrs.define
class Problem:
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

    def evaluate(self, probe: Probe) -> float:
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
            raise Found
        return float(value)


def arrival_draw(problem: Problem, rng: random.Random) -> Callable[[], float]:
    if problem.space.slots is not None:
        grid = problem.grid()
        return lambda: rng.choice(grid)
    return lambda: rng.uniform(0.0, problem.span)


def probe(problem: Problem, rng: random.Random, arrivals: tuple[float, ...]) -> Probe:
    """A probe whose factors (as a seed: compact to save) and tie-breaks come from ``rng``."""
    return Probe(
        arrivals,
        draw_choice=rng.randrange if problem.space.ties else None,
        jitter=problem.space.bound,
        seed=rng.getrandbits(32),
    )


class Found(Exception):
    """Raised inside Hypothesis' test to stop the search at the goal (and let it shrink the schedule)."""


