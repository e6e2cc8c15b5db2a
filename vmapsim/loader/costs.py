"""How long the load path's steps take: :class:`Cost` names them, :class:`CostModel` times them.

Each :class:`Cost` is one kind of work ``load_module()`` does and is timed by the
:class:`CostModel` field of the same name, in the unit that field is given in:
a bandwidth (bytes per second), a fixed time, seconds per page or seconds per
unit.  Which unit each cost has, and which costs are "heavy" (the ones
``lockstep`` gives its ``step``), is data, not code.
:data:`QEMU_TCG` and :data:`QEMU_TCG_SHARED` are the costs calibrated on real
boots under QEMU.

>>> CostModel().duration(Cost.READ, 2_000_000), CostModel(lockstep=True).duration(Cost.COPY, 10**9)
(0.001, 0.0)
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Callable, Mapping
from typing import NamedTuple

import attrs

from vmapsim.checks import CPUS_LIMIT, flag, integer, number, show
from vmapsim.errors import InvalidArgument
from vmapsim.units import PAGE_SHIFT

__all__ = ["QEMU_TCG", "QEMU_TCG_SHARED", "Cost", "CostModel"]


class Cost(enum.StrEnum):
    """The work of the load path a :class:`CostModel` times, named after the field that times it.

    Each is a step of ``kernel/module/main.c`` (v6.12; 7.3 for execmem) or of what it calls:
    ``READ`` ``kernel_read_file()`` (``fs/kernel_read_file.c``) or ``copy_module_from_user()``;
    ``DECOMPRESS`` ``module_decompress()`` (``kernel/module/decompress.c``); ``SIGNATURE``
    ``module_sig_check()`` (``kernel/module/signing.c``: hashing, then one verification); ``COPY``
    ``move_module()``'s section copy; ``INIT`` the module's init through ``do_one_initcall()`` in
    ``do_init_module()``; ``RCU_GRACE`` the ``synchronize_rcu()`` before ``do_free_init()`` frees the
    init areas; ``WORKQUEUE`` the latency of a queued work item (``init_free_wq``, execmem's clean-up);
    ``POPULATE`` ``__vmalloc_area_node()`` allocating and mapping pages; ``LAYOUT``
    ``layout_and_allocate()``'s work before its first allocation; ``IPI`` the cross-CPU flushes of
    ``complete_formation()``'s ``module_enable_rodata_ro()``/``module_enable_text_rox()``, per online
    CPU; ``ROX_FILL`` execmem's ``execmem_fill_trapping_insns()`` and ``set_memory_rox()`` on a new chunk
    (``mm/execmem.c``, 6.15+).  Each member equals its old name (``Cost.READ == "read"``).

    >>> [c.value for c in Cost][:4]
    ['read', 'decompress', 'signature', 'copy']
    """

    READ = "read"
    DECOMPRESS = "decompress"
    SIGNATURE = "signature"
    COPY = "copy"
    INIT = "init"
    RCU_GRACE = "rcu_grace"
    WORKQUEUE = "workqueue"
    POPULATE = "populate"
    LAYOUT = "layout"
    IPI = "ipi"
    ROX_FILL = "rox_fill"


class _Unit(enum.Enum):
    """The unit a :class:`CostModel` field is given in, which says how a cost's seconds follow from it.

    ``BYTES_PER_SECOND``: ``n / rate`` for ``n`` bytes; ``SECONDS``: the field itself, whatever ``n``;
    ``SECONDS_PER_PAGE``: ``(n >> PAGE_SHIFT) * field`` for ``n`` bytes; ``SECONDS_PER_UNIT``:
    ``n * field`` (bytes for ``layout``, online CPUs for ``ipi``).
    """

    BYTES_PER_SECOND = "bytes/s"
    SECONDS = "s"
    SECONDS_PER_PAGE = "s/page"
    SECONDS_PER_UNIT = "s/unit"


class _Rule(NamedTuple):
    """How a :class:`CostModel` times one :class:`Cost`: its field's ``unit``; whether it is ``heavy``
    (``lockstep`` gives it ``step``, every other cost none); ``plus``, a field of fixed seconds added."""

    unit: _Unit
    heavy: bool = False
    plus: str | None = None


# Every cost's rule: the unit of its CostModel field, whether it is heavy, what is added.
_RULES: dict[Cost, _Rule] = {
    Cost.READ: _Rule(_Unit.BYTES_PER_SECOND, heavy=True),
    Cost.DECOMPRESS: _Rule(_Unit.BYTES_PER_SECOND, heavy=True),
    Cost.SIGNATURE: _Rule(_Unit.BYTES_PER_SECOND, heavy=True, plus="verify"),
    Cost.COPY: _Rule(_Unit.BYTES_PER_SECOND),
    Cost.INIT: _Rule(_Unit.SECONDS, heavy=True),
    Cost.RCU_GRACE: _Rule(_Unit.SECONDS),
    Cost.WORKQUEUE: _Rule(_Unit.SECONDS),
    Cost.POPULATE: _Rule(_Unit.SECONDS_PER_PAGE),
    Cost.LAYOUT: _Rule(_Unit.SECONDS_PER_UNIT),
    Cost.IPI: _Rule(_Unit.SECONDS_PER_UNIT),
    Cost.ROX_FILL: _Rule(_Unit.SECONDS_PER_PAGE),
}
# duration()'s view of _RULES: the field as a plain str (an exact str is what attribute lookup caches) and
# the unit, per cost; a cost's plain name finds the same entry (a StrEnum hashes as its value).
_LOOKUP: dict[str, tuple[str, _Unit, bool, str | None]] = {
    c.value: (c.value, r.unit, r.heavy, r.plus) for c, r in _RULES.items()
}
_BANDWIDTHS = tuple(c.value for c, r in _RULES.items() if r.unit is _Unit.BYTES_PER_SECOND)
_TIMES = (*(c.value for c, r in _RULES.items() if r.unit is not _Unit.BYTES_PER_SECOND), "step", "verify")


def _fixed(seconds: float, nbytes: int) -> float:
    return seconds


def _rate_plus(rate: float, seconds: float, nbytes: int) -> float:
    return nbytes / rate + seconds


def _per_page(seconds: float, nbytes: int) -> float:
    return (nbytes >> PAGE_SHIFT) * seconds


def _per_unit(seconds: float, nbytes: int) -> float:
    return nbytes * seconds


_BY_UNIT = {_Unit.SECONDS: _fixed, _Unit.SECONDS_PER_PAGE: _per_page,
            _Unit.SECONDS_PER_UNIT: _per_unit}  # fmt: skip


@attrs.frozen
class CostModel:
    """How long each :class:`Cost` of the load path takes, in seconds.

    Bandwidths are bytes per second: ``read`` (kernel_read_file from page
    cache), ``decompress`` (output bytes), ``signature`` (hashing for
    module_sig_check), ``copy`` (move_module's section copy and relocation);
    ``verify`` the fixed cost of one signature verification, ``init`` a
    module's init function, ``rcu_grace`` one synchronize_rcu() and
    ``workqueue`` the latency before a queued work item runs.

    Three costs shape the race of duplicates and are 0 unless calibrated:
    ``populate``, the seconds per page ``__vmalloc_area_node()`` spends
    allocating and mapping a module-memory area before the next one is asked
    for; ``layout``, the seconds per byte of the image ``layout_and_allocate()``
    spends before its first allocation (``check_modinfo()``,
    ``layout_sections()``, ``layout_symtab()``); with the section copy they are
    the window between 6.4's early check and ``add_unformed_module()``.  And
    ``ipi``, the seconds of work per online CPU in ``complete_formation()``:
    making module memory read-only and executable flushes every CPU's TLB and
    text patching syncs every CPU.  ``rox_fill``, the seconds per page execmem
    spends on a new ROX chunk before it joins the cache
    (``execmem_fill_trapping_insns()``, ``set_memory_rox()``; 6.15+ x86-64),
    the time concurrent misses have to populate chunks of their own.

    ``jitter`` spreads every duration uniformly by up to that fraction either
    way (drawn from the run's seed), as real CPUs never run two loads in
    perfect step.  ``processors``: how many processors the CPU-bound stages
    (read, decompress, signature, copy, populate, layout, ipi, init) share by
    processor sharing (:class:`~vmapsim.engine.Processors`); None gives every load a
    processor of its own.  With ``lockstep`` every heavy cost (read,
    decompress, signature, init) takes exactly ``step`` seconds and bookkeeping
    takes none: requests that arrive together stay together, so on 6.4+ the
    early check stops every duplicate and none reaches the second one.  That
    is one schedule, not the worst case.

    >>> CostModel().duration(Cost.READ, 2_000_000) > 0, CostModel(lockstep=True).duration(Cost.COPY, 10**9)
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
    populate: float = 0.0
    layout: float = 0.0
    ipi: float = 0.0
    processors: int | None = None
    rox_fill: float = 0.0
    #: Each cost's timer, built once from the fields (``duration()`` runs for every stage of every load).
    _timers: dict[str, Callable[[int], float]] = attrs.field(init=False, eq=False, repr=False)

    def __attrs_post_init__(self) -> None:
        for name in _BANDWIDTHS:
            if not number(name, getattr(self, name), 0) > 0:
                raise InvalidArgument(f"{name}={getattr(self, name)!r}: a bandwidth must be above 0 bytes/s")
        for name in _TIMES:
            number(name, getattr(self, name), 0)
        if self.processors is not None:
            integer("processors", self.processors, 1, CPUS_LIMIT)
        number("jitter", self.jitter, 0, 0.99)  # below 1: no stage may take zero or negative time
        flag("lockstep", self.lockstep)
        object.__setattr__(self, "_timers", {name: self._timer(*rule) for name, rule in _LOOKUP.items()})

    def _timer(self, field: str, unit: _Unit, heavy: bool, plus: str | None) -> Callable[[int], float]:
        """The function of ``nbytes`` one cost's rule gives, with this model's values bound (partials of
        module functions: a CostModel still pickles)."""
        if self.lockstep:
            return functools.partial(_fixed, self.step if heavy else 0.0)
        value: float = getattr(self, field)
        if plus is not None:  # a rate plus fixed seconds (the signature's hash, then its verification)
            assert unit is _Unit.BYTES_PER_SECOND, unit
            return functools.partial(_rate_plus, value, getattr(self, plus))
        if unit is _Unit.BYTES_PER_SECOND:  # nbytes / value, exactly, without a Python frame per call
            return value.__rtruediv__
        return functools.partial(_BY_UNIT[unit], value)

    @property
    def timers(self) -> Mapping[str, Callable[[int], float]]:
        """Each cost's function of ``nbytes`` (by :class:`Cost`, or its name), the values bound: what
        :meth:`duration` calls, for a caller that times every stage of every load.  Runtime: O(1).

        >>> CostModel(read=1e6).timers[Cost.READ](2 * 10**6)
        2.0
        """
        return self._timers

    def duration(self, cost: Cost, nbytes: int = 0) -> float:
        """Seconds ``cost`` takes on ``nbytes`` (bytes; online CPUs for :attr:`Cost.IPI`), by its rule.

        A cost's name (``"read"``) is taken too; any other name raises :class:`InvalidArgument`.
        Runtime complexity: O(1).

        >>> CostModel(signature=1e6, verify=0.5).duration(Cost.SIGNATURE, 10**6)
        1.5
        >>> CostModel(populate=1e-3).duration("populate", 8192)
        0.002
        """
        timer = self._timers.get(cost)
        if timer is None:
            raise InvalidArgument(f"cost {show(cost)}: not one of {', '.join(Cost)}")
        return timer(nbytes)


#: Costs calibrated on Debian's 6.12 kernel under QEMU TCG (tests/data/qemu-6.12-1cpu.txt): decompression
#: about 6 MB/s, ~16 ms per signature verification, ~18 ms from init's end to the freeing of init memory.
QEMU_TCG = CostModel(read=1e9, decompress=6e6, signature=1e9, copy=1e9, init=0.004, rcu_grace=0.017,
                     workqueue=0.001, verify=0.016)  # fmt: skip
#: The same machine with its vCPUs sharing the host's 2 cores, calibrated on N concurrent loads of dm-mod at 2
#: and 4 vCPUs (23 boots in tests/data/timing; python -m tests.realkernel.timing): CPU-bound stages share 2
#: processors; ~25 ms of per-load work before layout, 12 MB/s xz, 10 ms of init, 16 ms per online CPU of
#: cross-CPU flushes as module memory goes read-only and executable, 5 us per module page, +-25% jitter;
#: on 7.3, 61 us per page (31 ms) to fill a new 2 MiB ROX chunk and make it ROX.
#: The 8- and 16-vCPU boots test it (tests/test_timing.py, docs/fidelity.md).
QEMU_TCG_SHARED = CostModel(read=1e9, decompress=12e6, signature=1e9, copy=3e8, init=0.01, rcu_grace=0.017,
                            workqueue=0.001, verify=0.025, jitter=0.25, populate=5e-6, ipi=0.016,
                            processors=2, rox_fill=6.08e-5)  # fmt: skip
