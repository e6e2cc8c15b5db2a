"""Idempotent ``finit_module()`` (6.5+, commit 9b9879fc0327): concurrent loads of one file share one result.

``idempotent_init_module()`` looks the file's inode up in a hash of loads in
flight.  The first caller loads the module; every caller that finds an entry
sleeps in ``idempotent_wait_for_completion()`` -- allocating nothing -- and
returns the first caller's result when ``idempotent_complete()`` wakes it.
:class:`Idempotent` wraps a whole load that way; its table is the run's
:attr:`Kernel.in_flight <vmapsim.loader.kernel.Kernel.in_flight>`.

>>> Idempotent().name
'idempotent'
"""

from __future__ import annotations

from collections.abc import Callable, Generator

import attrs

from vmapsim.engine import Delay, Event, Task, Wait
from vmapsim.loader.kernel import InFlight, Kernel, LoadInfo

__all__ = ["Idempotent"]


@attrs.frozen
class Idempotent:
    """The 6.5 wrapper around ``load_module()`` for ``finit_module()`` calls.

    Runtime complexity: O(1) per call, plus the waiters woken.
    """

    name = "idempotent"

    def run(self, info: LoadInfo, k: Kernel, load: Callable[[], Generator[Delay | Wait, None, object]]) -> Task:
        """Wait for a load of the same file in flight, or run ``load()`` and hand its result to the waiters."""
        table = k.in_flight
        req = info.request
        cookie = req.inode or req.path or info.image.path
        other = table.get(cookie)
        if other is not None:  # idempotent_wait_for_completion(): allocate nothing, share the result
            info.timeline.append((k.engine.now, "idempotent_wait"))
            yield Wait(other.done)
            info.ret, info.end = other.ret, k.engine.now
            return
        mine = table[cookie] = InFlight(Event(cookie))
        yield from load()
        mine.ret = info.ret  # idempotent_complete(): hand the result to every waiter
        del table[cookie]
        k.engine.fire(mine.done)
