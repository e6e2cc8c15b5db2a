"""A small deterministic discrete-event engine: time, tasks as generators, schedulers, costs.

Tasks are generators that yield engine commands: :class:`Delay` (sleep for a
duration) or :class:`Wait` (block until an :class:`Event` fires).  When several
tasks can run at the same instant, a scheduler picks which goes next:
:class:`Fifo`, :class:`Seeded` (random with a seed), :class:`Ordered` (an
explicit list of choices) or :class:`Drawn` (choices drawn by Hypothesis, so a
failing interleaving shrinks).  Same tasks and same scheduler give the same run.

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
from collections.abc import Callable, Generator, Sequence

import attrs

from vmapsim.errors import InvalidArgument

__all__ = [
    "QEMU_TCG",
    "CostModel",
    "Delay",
    "Drawn",
    "Engine",
    "Event",
    "Fifo",
    "Ordered",
    "Scheduler",
    "Seeded",
    "Task",
    "Wait",
]


@attrs.frozen
class Delay:
    """Command: resume this task ``seconds`` later."""

    seconds: float


@attrs.define(eq=False)
class Event:
    """Something tasks wait for; :meth:`Engine.fire` wakes every waiter at the current instant."""

    name: str = ""
    fired: bool = False
    _waiters: list[Task] = attrs.field(factory=list)


@attrs.frozen
class Wait:
    """Command: block until ``event`` fires (at once if it already has)."""

    event: Event


Command = Delay | Wait
Task = Generator[Command, None, None]


class Scheduler:
    """Picks which of ``n`` tasks runnable at the same instant runs next (index into them, by arrival)."""

    def choose(self, n: int) -> int:
        """Return an index in ``range(n)``."""
        raise NotImplementedError


@attrs.define
class Fifo(Scheduler):
    """The task that became runnable first runs first.

    >>> Fifo().choose(3)
    0
    """

    def choose(self, n: int) -> int:
        """Always 0.  Runtime complexity: O(1)."""
        return 0


@attrs.define
class Seeded(Scheduler):
    """Uniformly random choices from a seeded generator.

    >>> Seeded(7).choose(10) == Seeded(7).choose(10)
    True
    """

    seed: int = 0
    _rng: random.Random = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def choose(self, n: int) -> int:
        """A random index.  Runtime complexity: O(1)."""
        return self._rng.randrange(n)


@attrs.define
class Ordered(Scheduler):
    """An explicit list of choices, each taken modulo the number runnable; FIFO once used up.

    >>> s = Ordered([2, 5]); [s.choose(3), s.choose(3), s.choose(3)]
    [2, 2, 0]
    """

    choices: Sequence[int]
    _at: int = attrs.field(default=0, init=False)

    def choose(self, n: int) -> int:
        """The next listed choice, modulo ``n``.  Runtime complexity: O(1)."""
        if self._at >= len(self.choices):
            return 0
        c = self.choices[self._at]
        self._at += 1
        return c % n


@attrs.define
class Drawn(Scheduler):
    """Choices drawn by a callable such as ``lambda n: data.draw(st.integers(0, n - 1))``.

    With Hypothesis' ``data`` object, a failing interleaving shrinks to a minimal one.
    """

    draw: Callable[[int], int]

    def choose(self, n: int) -> int:
        """Whatever ``draw(n)`` returns, checked to lie in ``range(n)``.  Runtime: O(draw)."""
        c = self.draw(n)
        if not 0 <= c < n:
            raise InvalidArgument(f"scheduler drew {c}, outside 0..{n - 1}")
        return c


@attrs.define
class Engine:
    """Runs tasks in simulated time; ``now`` is the current instant in seconds.

    Runtime complexity: O(e log e) for e scheduled resumptions, plus the
    scheduler's choices among tasks runnable at the same instant.
    """

    scheduler: Scheduler = attrs.field(factory=Fifo)
    now: float = 0.0
    _heap: list[tuple[float, int, Task]] = attrs.field(factory=list)
    _ready: list[Task] = attrs.field(factory=list)
    _seq: int = 0

    def spawn(self, task: Task, at: float | None = None) -> None:
        """Start ``task`` at time ``at`` (default: now).  Runtime complexity: O(log e)."""
        when = self.now if at is None else at
        if when < self.now:
            raise InvalidArgument(f"cannot start a task at {when}, before now ({self.now})")
        self._push(when, task)

    def fire(self, event: Event) -> None:
        """Mark ``event`` fired and make every waiter runnable now.  Runtime: O(waiters)."""
        event.fired = True
        waiters, event._waiters = event._waiters, []
        self._ready.extend(waiters)

    def run(self, until: float | None = None) -> None:
        """Run until no task is left (or simulated time passes ``until``)."""
        while self._ready or self._heap:
            if not self._ready:
                when = self._heap[0][0]
                if until is not None and when > until:
                    return
                self.now = when
                while self._heap and self._heap[0][0] == when:
                    self._ready.append(heapq.heappop(self._heap)[2])
            i = self.scheduler.choose(len(self._ready)) if len(self._ready) > 1 else 0
            task = self._ready.pop(i)
            self._step(task)

    def _push(self, when: float, task: Task) -> None:
        heapq.heappush(self._heap, (when, self._seq, task))
        self._seq += 1

    def _step(self, task: Task) -> None:
        while True:
            try:
                cmd = next(task)
            except StopIteration:
                return
            # A zero delay takes no time and gives no other task a turn: the task simply goes on.
            if not (isinstance(cmd, Delay) and cmd.seconds == 0):
                break
        if isinstance(cmd, Delay):
            if cmd.seconds < 0:
                raise InvalidArgument(f"negative delay {cmd.seconds}")
            self._push(self.now + cmd.seconds, task)
        elif cmd.event.fired:
            self._ready.append(task)
        else:
            cmd.event._waiters.append(task)


@attrs.frozen
class CostModel:
    """How long each loader stage takes, in seconds.

    Bandwidths are bytes per second: ``read`` (kernel_read_file from page
    cache), ``decompress`` (output bytes), ``signature`` (hashing for
    module_sig_check), ``copy`` (move_module's section copy and relocation);
    ``verify`` the fixed cost of one signature verification, ``init`` a
    module's init function, ``rcu_grace`` one synchronize_rcu() and
    ``workqueue`` the latency before a queued work item runs.  ``jitter``
    spreads every duration uniformly by up to that fraction either way (drawn
    from the run's seed), as real CPUs never run two loads in perfect step.  With
    ``lockstep`` every heavy stage (read, decompress, signature, init) takes
    exactly ``step`` seconds and bookkeeping takes none: requests that arrive
    together stay together, the worst case for overlap.

    >>> CostModel().duration("read", 2_000_000) > 0, CostModel(lockstep=True).duration("copy", 10**9)
    (True, 0.0)
    """

    read: float = 2e9
    decompress: float = 2e8
    signature: float = 1e9
    copy: float = 5e9
    init: float = 0.002
    rcu_grace: float = 0.02
    workqueue: float = 0.001
    lockstep: bool = False
    step: float = 0.01
    verify: float = 0.0005
    jitter: float = 0.0

    def duration(self, stage: str, nbytes: int = 0) -> float:
        """Seconds for ``stage`` on ``nbytes`` bytes.  Runtime complexity: O(1)."""
        if self.lockstep:
            return self.step if stage in ("read", "decompress", "signature", "init") else 0.0
        rates = {"read": self.read, "decompress": self.decompress, "signature": self.signature, "copy": self.copy}
        if stage in rates:
            return nbytes / rates[stage] + (self.verify if stage == "signature" else 0.0)
        fixed = {"init": self.init, "rcu_grace": self.rcu_grace, "workqueue": self.workqueue}
        if stage in fixed:
            return fixed[stage]
        raise InvalidArgument(f"unknown stage {stage!r} for the cost model")


#: Costs calibrated on Debian's 6.12 kernel under QEMU TCG (tests/data/qemu-6.12-1cpu.txt): decompression
#: about 6 MB/s, ~16 ms per signature verification, ~18 ms from init's end to the freeing of init memory.
QEMU_TCG = CostModel(read=1e9, decompress=6e6, signature=1e9, copy=1e9, init=0.004, rcu_grace=0.017,
                     workqueue=0.001, verify=0.016)  # fmt: skip
