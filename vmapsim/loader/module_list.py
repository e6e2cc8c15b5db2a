"""The kernel's ``modules`` list: one record per loading or loaded module, its state and its waiters.

States are :class:`ModuleState`, the kernel's ``enum module_state``: ``UNFORMED``
(added by ``add_unformed_module()``), ``COMING`` (``complete_formation()``),
``LIVE`` (init returned 0) and ``GOING`` (init failed).  Reaching LIVE or GOING,
or leaving the list, wakes everyone sleeping on ``module_wq``.

>>> from vmapsim.engine import Engine
>>> mods = ModuleList(Engine())
>>> rec = ModuleRecord("loop", ModuleState.UNFORMED, owner=0)
>>> mods.add(rec); mods.state_of("loop") == "UNFORMED"
True
"""

from __future__ import annotations

import enum
from collections.abc import Generator

import attrs

from vmapsim.engine import Engine, Event, Wait
from vmapsim.loader.errno import EBUSY, EEXIST
from vmapsim.loader.result import Allocation

__all__ = ["ModuleList", "ModuleRecord", "ModuleState"]


class ModuleState(enum.StrEnum):
    """``enum module_state`` (``include/linux/module.h``): where a module is in its life.

    ``LIVE`` (``MODULE_STATE_LIVE``: init returned 0), ``COMING`` (``MODULE_STATE_COMING``: fully
    formed, running init), ``GOING`` (``MODULE_STATE_GOING``: init failed or being unloaded) and
    ``UNFORMED`` (``MODULE_STATE_UNFORMED``, 3.8+: on the list, still being set up).  Each member
    equals its name, as ``/sys/module/<name>/initstate`` shows it in upper case.

    >>> ModuleState.LIVE == "LIVE", [str(s) for s in ModuleState]
    (True, ['LIVE', 'COMING', 'GOING', 'UNFORMED'])
    """

    LIVE = "LIVE"
    COMING = "COMING"
    GOING = "GOING"
    UNFORMED = "UNFORMED"

# Enum members bound once: reading one off its Enum class costs about 50 ns on Python 3.11, and these
# are read for every stage of every load.
_STATE_COMING = ModuleState.COMING
_STATE_GOING = ModuleState.GOING
_STATE_LIVE = ModuleState.LIVE
_STATE_UNFORMED = ModuleState.UNFORMED


@attrs.define(eq=False)
class ModuleRecord:
    """An entry of the ``modules`` list: name, state, the request that owns it, its areas, a wake-up event.

    ``areas`` are its module-memory allocations.
    """

    name: str
    state: ModuleState
    owner: int
    areas: list[Allocation] = attrs.field(factory=list)
    changed: Event = attrs.field(factory=Event)


@attrs.define(eq=False)
class ModuleList:
    """``modules`` and ``module_wq``: lookups by name, state changes that wake waiters.

    Runtime complexity: O(1) per operation, plus the waiters woken.
    """

    engine: Engine
    _records: dict[str, ModuleRecord] = attrs.field(factory=dict, init=False)

    def get(self, name: str) -> ModuleRecord | None:
        """The record of ``name`` (``find_module_all()``), or None."""
        return self._records.get(name)

    def state_of(self, name: str) -> ModuleState | None:
        """The state of ``name``, or None when it is not on the list."""
        rec = self._records.get(name)
        return None if rec is None else rec.state

    def add(self, rec: ModuleRecord) -> None:
        """Link a record (``add_unformed_module()`` after its checks)."""
        self._records[rec.name] = rec

    def set_state(self, rec: ModuleRecord, state: ModuleState) -> None:
        """Change a module's state; LIVE and GOING wake everyone waiting on it (``module_wq``)."""
        rec.state = state
        if state in (_STATE_LIVE, _STATE_GOING):
            self.engine.fire(rec.changed)
            rec.changed = Event(rec.name)

    def remove(self, rec: ModuleRecord) -> None:
        """Unlink a module from the list (if it is the one linked) and wake its waiters."""
        if self._records.get(rec.name) is rec:
            del self._records[rec.name]
        self.engine.fire(rec.changed)

    def live(self) -> tuple[str, ...]:
        """Names of LIVE modules, sorted."""
        return tuple(sorted(n for n, m in self._records.items() if m.state == _STATE_LIVE))

    def patient_check(self, name: str) -> Generator[Wait, None, int]:
        """``module_patient_check_exists()``: wait out UNFORMED/COMING; then 0, -EEXIST (LIVE) or -EBUSY.

        The caller counts the duplicate (``try_add_failed_module()``) when the result is not 0.
        """
        old = self._records.get(name)
        if old is None:
            return 0
        if old.state in (_STATE_UNFORMED, _STATE_COMING):
            yield Wait(old.changed)
            old = self._records.get(name)
        return -(EEXIST if old is not None and old.state == _STATE_LIVE else EBUSY)
