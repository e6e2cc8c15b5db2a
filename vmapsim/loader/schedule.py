"""A schedule: one point of a run's freedom in time, as a plain value that replays exactly.

A seeded run fixes three things the kernel leaves to chance: when each job arrives, how long each stage
takes (the cost model's duration times a factor), and which of the tasks runnable at one instant runs first.
A :class:`Schedule` names all three, so ``simulate(jobs, schedule=s)`` gives the same
:class:`~vmapsim.loader.result.Result` every time, and ``s.to_json()`` carries it to another run, another
machine, or ``vmapsim boot --schedule FILE``.

>>> from vmapsim import simulate
>>> from vmapsim.loader import Request, Schedule
>>> jobs = [Request("loop", cpu=c) for c in range(3)]
>>> s = Schedule(arrivals=(0.0, 0.001, 0.0), factors=(1.2, 0.9), choices=(1,))
>>> a = simulate(jobs, cpus=3, catalog="debian-6.12-amd64", kernel="6.3", schedule=s)
>>> a == simulate(jobs, cpus=3, catalog="debian-6.12-amd64", kernel="6.3", schedule=Schedule.from_json(s.to_json()))
True
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import attrs

from vmapsim.checks import integer, load_json, number, random_seed, read_file, show
from vmapsim.engine import Ordered, Scheduler
from vmapsim.errors import InvalidArgument, ParseError

__all__ = ["MAX_SCHEDULE_BYTES", "SCHEMA", "Schedule", "Timing", "retime"]

#: The ``schema`` value a schedule file carries; a file with another is refused.
SCHEMA = "vmapsim-schedule/1"
# A schedule file of a few thousand jobs and their ties is well under this.
#: The largest schedule file read: a search over 8192 CPUs writes a few MiB.
MAX_SCHEDULE_BYTES = 64 << 20


def _floats(name: str, values: Sequence[Any], lo: float, hi: float | None = None) -> tuple[float, ...]:
    if isinstance(values, str | bytes) or not isinstance(values, Sequence):
        raise InvalidArgument(f"{name}={show(values)}: expected a sequence of numbers")
    return tuple(number(f"{name}[{i}]", v, lo, hi) for i, v in enumerate(values))


def _arrivals(values: Sequence[Any] | None) -> tuple[float, ...] | None:
    return None if values is None else _floats("arrivals", values, 0.0)


def _factors(values: Sequence[Any]) -> tuple[float, ...]:
    # a factor far from 1 is a typo, not a schedule: durations stay within 1/100 to 100 times the cost model
    return _floats("factors", values, 0.01, 100.0)


def _ints(values: Sequence[Any]) -> tuple[int, ...]:
    if isinstance(values, str | bytes) or not isinstance(values, Sequence):
        raise InvalidArgument(f"choices={show(values)}: expected a sequence of integers")
    return tuple(integer(f"choices[{i}]", v, 0) for i, v in enumerate(values))


class Timing(Protocol):
    """What :func:`~vmapsim.simulate` takes as ``schedule=``: arrivals, a factor source and a scheduler.

    :class:`Schedule` is the value; a search (:mod:`vmapsim.explore`) passes its own, which draws and
    records what the run asks for and turns it into a :class:`Schedule`.
    """

    @property
    def arrivals(self) -> tuple[float, ...] | None:
        """Each item's start time, or None to keep the items' own."""
        ...

    def factor_source(self) -> Callable[[], float]:
        """A fresh source of duration factors for one run."""
        ...

    def scheduler(self) -> Scheduler:
        """The scheduler of the run's tie-breaks."""
        ...


@attrs.frozen
class Schedule:
    """When each job arrives, each stage's duration factor, and each tie-break, for one run.

    ``arrivals``: the start time of each request or job, in the order they are given to
    :func:`~vmapsim.simulate` (None keeps their own times).  ``factors``: the cost model's
    durations are multiplied by these in the order the run asks for them (every stage of every load
    that takes time, as the kernel runs them); once they are used up, by ``1 ± jitter`` drawn from
    ``random.Random(seed)`` (``jitter=0``: exactly the cost model).  A schedule replaces the run's own
    jitter: the run's ``costs.jitter`` and ``seed`` no longer spread durations.  ``choices``: the
    scheduler's picks among tasks runnable at one instant, in turn (:class:`~vmapsim.engine.Ordered`),
    FIFO once used up.

    Runtime complexity: O(len) to build and to serialise.

    >>> Schedule(arrivals=(0.0, 0.5)).factor_source()()
    1.0
    >>> Schedule(factors=(0.5,), jitter=0.25, seed=3).factor_source()()
    0.5
    """

    arrivals: tuple[float, ...] | None = attrs.field(default=None, converter=_arrivals)
    factors: tuple[float, ...] = attrs.field(default=(), converter=_factors)
    choices: tuple[int, ...] = attrs.field(default=(), converter=_ints)
    jitter: float = 0.0
    seed: int = 0

    def __attrs_post_init__(self) -> None:
        # below 1: no stage may take zero or negative time (as CostModel.jitter)
        number("jitter", self.jitter, 0, 0.99)
        random_seed("seed", self.seed)

    def factor_source(self) -> Callable[[], float]:
        """A fresh source of duration factors for one run: ``factors`` in turn, then the seeded jitter.

        Runtime complexity: O(1) per factor.
        """
        given, jitter, rng = iter(self.factors), self.jitter, random.Random(self.seed)

        def factor() -> float:
            f = next(given, None)
            if f is not None:
                return f
            return 1 + jitter * (2 * rng.random() - 1) if jitter else 1.0

        return factor

    def scheduler(self) -> Scheduler:
        """``choices`` as an :class:`~vmapsim.engine.Ordered` scheduler.  Runtime complexity: O(1)."""
        return Ordered(self.choices)

    def to_json(self) -> str:
        """The schedule as one line of JSON (``schema`` first).  Runtime complexity: O(len).

        >>> Schedule(arrivals=(0.0,), choices=(2,)).to_json()
        '{"schema": "vmapsim-schedule/1", "arrivals": [0.0], "factors": [], "choices": [2], "jitter": 0.0, "seed": 0}'
        """
        return json.dumps({"schema": SCHEMA, **attrs.asdict(self)})

    @classmethod
    def from_json(cls, data: str | bytes, *, source: str = "schedule") -> Schedule:
        """Read :meth:`to_json`'s text; :class:`~vmapsim.errors.ParseError` naming what is wrong.

        Runtime complexity: O(len).
        """
        doc = load_json(data, source=source, max_bytes=MAX_SCHEDULE_BYTES)
        if not isinstance(doc, dict):
            raise ParseError(f"{source}: expected a JSON object, found {type(doc).__name__}")
        if doc.get("schema") != SCHEMA:
            raise ParseError(f"{source}: schema {show(doc.get('schema'))} is not {SCHEMA!r}")
        fields = {k: v for k, v in doc.items() if k != "schema"}
        unknown = sorted(set(fields) - set(attrs.fields_dict(cls)))
        if unknown:
            raise ParseError(f"{source}: unknown field {unknown[0]!r}")
        try:
            return cls(**fields)
        except InvalidArgument as e:
            raise ParseError(f"{source}: {e}") from None

    def save(self, path: str | Path) -> None:
        """Write :meth:`to_json` to ``path``.  Runtime complexity: O(len)."""
        Path(path).write_text(self.to_json() + "\n")

    @classmethod
    def load(cls, path: str | Path) -> Schedule:
        """Read a schedule file written by :meth:`save`.  Runtime complexity: O(len)."""
        return cls.from_json(read_file(path, MAX_SCHEDULE_BYTES, what="schedule"), source=str(path))


def retime(items: Sequence[Any], arrivals: Sequence[float] | None) -> list[Any]:
    """``items`` (requests or jobs) with their ``time`` set to ``arrivals`` (None: unchanged).

    Runtime complexity: O(items).

    >>> from vmapsim.loader import Request
    >>> [r.time for r in retime([Request("loop"), Request("loop")], (0.5, 0.0))]
    [0.5, 0.0]
    """
    if arrivals is None:
        return list(items)
    if len(arrivals) != len(items):
        raise InvalidArgument(
            f"the schedule has {len(arrivals)} arrivals but the run has {len(items)} requests and jobs"
        )
    out = []
    for i, (item, t) in enumerate(zip(items, arrivals, strict=True)):
        if not attrs.has(type(item)) or "time" not in attrs.fields_dict(type(item)):
            raise InvalidArgument(f"item {i} ({show(item)}) has no time for the schedule to set")
        out.append(attrs.evolve(item, time=t))
    return out
