"""A small deterministic discrete-event engine: time, tasks as generators, schedulers, shared CPUs.

Tasks are generators that yield engine commands: :class:`Delay` (sleep for a
duration) or :class:`Wait` (block until an :class:`Event` fires).  When several
tasks can run at the same instant, a scheduler picks which goes next:
:class:`Fifo`, :class:`Seeded` (random with a seed), :class:`Ordered` (an
explicit list of choices) or :class:`Drawn` (choices drawn by Hypothesis, so a
failing interleaving shrinks).  Same tasks and same scheduler give the same run.
Tasks contend for a :class:`Semaphore` and share CPUs through :class:`Processors`;
how long the loader's steps take is :mod:`vmapsim.loader.costs`' business.

>>> log = []
>>> def worker(name, engine):
...     log.append((engine.now, name, "start"))
...     yield Delay(1.5)
...     log.append((engine.now, name, "end"))
>>> eng = Engine(Ordered([1, 0]))
>>> eng.spawn(worker("a", eng)); eng.spawn(worker("b", eng)); eng.run()
>>> log
[(0.0, 'b', 'start'), (0.0, 'a', 'start'), (1.5, 'b', 'end'), (1.5, 'a', 'end')]
"""

from __future__ import annotations

import heapq
import random
from collections import deque
from collections.abc import Callable, Generator, Iterable
from typing import Any, NamedTuple, Protocol

import attrs

from vmapsim.checks import integer
from vmapsim.errors import InvalidArgument

__all__ = [
    "Chooser",
    "Delay",
    "Drawn",
    "Engine",
    "Event",
    "Fifo",
    "Ordered",
    "Processors",
    "Scheduler",
    "Seeded",
    "Semaphore",
    "Task",
    "Wait",
]


class Delay(NamedTuple):
    """Command: resume this task ``seconds`` later.

    A named tuple rather than an attrs value: one is made at every yield, and a
    tuple is the cheapest immutable value Python has.

    >>> Delay(0.5).seconds
    0.5
    """

    seconds: float


@attrs.define(eq=False)
class Event:
    """Something tasks wait for; :meth:`Engine.fire` wakes every waiter at the current instant.

    >>> Event("loaded").fired
    False
    """

    name: str = ""
    fired: bool = False
    _waiters: list[Task] = attrs.field(factory=list)


class Wait(NamedTuple):
    """Command: block until ``event`` fires (at once if it already has).

    >>> Wait(Event("x")).event.name
    'x'
    """

    event: Event


Command = Delay | Wait
Task = Generator[Command, None, None]
#: What a scheduler value starts for one run: ``choose(n)`` returns an index in ``range(n)``.
Chooser = Callable[[int], int]


class Scheduler(Protocol):
    """Picks which of ``n`` tasks runnable at the same instant runs next (index into them, by arrival).

    A scheduler is a value: :meth:`chooser` starts a fresh sequence of choices
    for each run, so the same scheduler replays the same interleaving.
    """

    def chooser(self) -> Chooser:
        """A fresh ``choose(n)`` for one run."""
        ...


def _first(n: int) -> int:
    return 0


@attrs.frozen
class Fifo:
    """The task that became runnable first runs first.

    >>> Fifo().chooser()(3)
    0
    """

    def chooser(self) -> Chooser:
        """Always 0.  Runtime complexity: O(1) per choice."""
        return _first


@attrs.frozen
class Seeded:
    """Uniformly random choices from a generator seeded afresh for every run.

    >>> s = Seeded(7)
    >>> [s.chooser()(10) for _ in range(2)]      # each run starts the same sequence
    [5, 5]
    """

    seed: int = 0

    def chooser(self) -> Chooser:
        """``random.Random(seed).randrange``.  Runtime complexity: O(1) per choice."""
        return random.Random(self.seed).randrange


def _as_tuple(choices: Iterable[int]) -> tuple[int, ...]:
    return tuple(choices)


@attrs.frozen
class Ordered:
    """An explicit list of choices, each taken modulo the number runnable; FIFO once used up.

    >>> choose = Ordered([2, 5]).chooser(); [choose(3), choose(3), choose(3)]
    [2, 2, 0]
    """

    choices: tuple[int, ...] = attrs.field(converter=_as_tuple)

    def chooser(self) -> Chooser:
        """The listed choices in turn.  Runtime complexity: O(1) per choice."""
        it = iter(self.choices)
        return lambda n: next(it, 0) % n


@attrs.frozen
class Drawn:
    """Choices drawn by a callable such as ``lambda n: data.draw(st.integers(0, n - 1))``.

    With Hypothesis' ``data`` object, a failing interleaving shrinks to a minimal one.

    >>> Drawn(lambda n: n - 1).chooser()(4)
    3
    """

    draw: Callable[[int], int]

    def chooser(self) -> Chooser:
        """Whatever ``draw(n)`` returns, checked to lie in ``range(n)``.  Runtime: O(draw)."""

        def choose(n: int) -> int:
            c = self.draw(n)
            if not isinstance(c, int) or not 0 <= c < n:
                raise InvalidArgument(f"scheduler drew {c!r}, outside 0..{n - 1}")
            return c

        return choose


@attrs.define(eq=False)
class Semaphore:
    """At most ``limit`` holders at once; the others wait in arrival order (a counting semaphore).

    A woken waiter checks again, so a task that became runnable at the same
    instant may take the unit first -- as with the kernel's wait queues.
    Runtime complexity: O(1) per acquire and release.

    >>> eng = Engine(); sem = Semaphore(1); log = []
    >>> def user(name):
    ...     yield from sem.acquire(); log.append((eng.now, name)); yield Delay(1.0); sem.release(eng)
    >>> eng.spawn(user("a")); eng.spawn(user("b")); eng.run(); log
    [(0.0, 'a'), (1.0, 'b')]
    """

    limit: int
    _used: int = attrs.field(default=0, init=False)
    _waiters: list[Event] = attrs.field(factory=list, init=False)

    def acquire(self) -> Generator[Wait, None, None]:
        """Take a unit, waiting while every unit is held."""
        while self._used >= self.limit:
            ev = Event("semaphore")
            self._waiters.append(ev)
            yield Wait(ev)
        self._used += 1

    def release(self, engine: Engine) -> None:
        """Give a unit back and wake the longest waiter."""
        self._used -= 1
        if self._waiters:
            engine.fire(self._waiters.pop(0))


@attrs.define(eq=False)
class Processors:
    """``count`` processors shared by CPU-bound work: egalitarian processor sharing.

    :meth:`compute` does ``work`` seconds of one-processor work; while ``k``
    jobs are in progress each runs at ``min(1, count / k)`` of a processor, so
    concurrent loads slow each other down once they outnumber the processors
    (a guest's vCPUs under QEMU TCG share the host's cores; on real hardware
    ``count`` is the machine's CPUs).  Runtime complexity: O(k) per start and
    end of a job.

    >>> eng, cpu, log = Engine(), Processors(1), []
    >>> def job(name, work):
    ...     yield from cpu.compute(eng, work); log.append((name, eng.now))
    >>> eng.spawn(job("a", 1.0)); eng.spawn(job("b", 1.0)); eng.run(); log
    [('a', 2.0), ('b', 2.0)]
    """

    count: int
    _jobs: dict[int, list[Any]] = attrs.field(factory=dict, init=False)  # id -> [work left, its Event]
    _since: float = attrs.field(default=0.0, init=False)
    _epoch: int = attrs.field(default=0, init=False)
    _ids: int = attrs.field(default=0, init=False)

    def __attrs_post_init__(self) -> None:
        integer("count", self.count, 1)

    def compute(self, engine: Engine, work: float) -> Generator[Wait, None, None]:
        """Do ``work`` seconds of one-processor work, sharing the processors with the jobs in progress."""
        if work <= 0:
            return
        self._advance(engine.now)
        done = Event("computed")
        self._jobs[self._ids] = [work, done]
        self._ids += 1
        self._reschedule(engine)
        yield Wait(done)

    def _rate(self) -> float:
        return min(1.0, self.count / len(self._jobs)) if self._jobs else 1.0

    def _advance(self, now: float) -> None:
        step = (now - self._since) * self._rate()
        if step:
            for job in self._jobs.values():
                job[0] -= step
        self._since = now

    def _reschedule(self, engine: Engine) -> None:
        # Only the latest timer counts: a start or an end changes every job's finishing time.
        self._epoch += 1
        if self._jobs:
            soonest = max(0.0, min(job[0] for job in self._jobs.values()))
            engine.spawn(self._timer(engine, self._epoch), at=engine.now + soonest / self._rate())

    def _timer(self, engine: Engine, epoch: int) -> Generator[Wait, None, None]:
        if epoch == self._epoch:
            self._advance(engine.now)
            for key in [k for k, job in self._jobs.items() if job[0] <= _DONE]:
                engine.fire(self._jobs.pop(key)[1])
            self._reschedule(engine)
        yield from ()


# Work left below this (seconds) is done: float rounding of the shared rate leaves crumbs.
_DONE = 1e-12


@attrs.define
class Engine:
    """Runs tasks in simulated time; ``now`` is the current instant in seconds.

    Runtime complexity: O(e log e) for e scheduled resumptions, plus the
    scheduler's choices among tasks runnable at the same instant.
    """

    scheduler: Scheduler = attrs.field(factory=Fifo)
    now: float = 0.0
    # Tasks due at each future instant, in the order they were scheduled, and a heap of those
    # instants: many tasks often share one, and a heap of floats compares faster than of tuples.
    _due: dict[float, list[Task]] = attrs.field(factory=dict)
    _times: list[float] = attrs.field(factory=list)
    _ready: deque[Task] = attrs.field(factory=deque)
    _choose: Chooser = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self._choose = self.scheduler.chooser()

    def spawn(self, task: Task, at: float | None = None) -> None:
        """Start ``task`` at time ``at`` (default: now).  Runtime complexity: O(log e)."""
        when = self.now if at is None else at
        if when < self.now:
            raise InvalidArgument(f"cannot start a task at {when}, before now ({self.now})")
        self._at(when, task)

    def fire(self, event: Event) -> None:
        """Mark ``event`` fired and make every waiter runnable now.  Runtime: O(waiters)."""
        event.fired = True
        waiters, event._waiters = event._waiters, []
        self._ready.extend(waiters)

    def run(self, until: float | None = None) -> None:
        """Run until no task is left (or simulated time passes ``until``)."""
        due, times, ready, choose = self._due, self._times, self._ready, self._choose
        push, pop = heapq.heappush, heapq.heappop
        now = self.now
        while ready or times:
            if not ready:
                now = times[0]
                if until is not None and now > until:
                    return
                pop(times)
                self.now = now
                ready.extend(due.pop(now))
            if len(ready) == 1:
                task = ready.popleft()
            else:
                i = choose(len(ready))
                if i:
                    task = ready[i]
                    del ready[i]
                else:
                    task = ready.popleft()
            # Step the task: a zero delay takes no time and gives no other task a turn.
            for cmd in task:
                if isinstance(cmd, Delay):
                    seconds = cmd[0]
                    if seconds == 0:
                        continue
                    if seconds < 0:
                        raise InvalidArgument(f"negative delay {seconds}")
                    when = now + seconds
                    bucket = due.get(when)
                    if bucket is None:
                        due[when] = [task]
                        push(times, when)
                    else:
                        bucket.append(task)
                elif cmd.event.fired:
                    ready.append(task)
                else:
                    cmd.event._waiters.append(task)
                break

    def _at(self, when: float, task: Task) -> None:
        bucket = self._due.get(when)
        if bucket is None:
            self._due[when] = [task]
            heapq.heappush(self._times, when)
        else:
            bucket.append(task)
