"""What a run produced: per-request outcomes, failures, stats, peaks (the values simulate() returns).

>>> AllocationFailure(0.5, 3, 8192, "text", "vmap allocation ... failed").request
3
"""

from __future__ import annotations

import enum
import functools
from typing import Any

import attrs
import cattrs

from vmapsim.checks import conversion_error, show, strict_converter
from vmapsim.errors import InvalidArgument
from vmapsim.loader.metrics import METRICS
from vmapsim.loader.request import Request
from vmapsim.loader.stats import ModuleStats
from vmapsim.modules.image import ModuleImage
from vmapsim.space import VmapSpace
from vmapsim.units import hex_repr

__all__ = ["CORE_KINDS", "INIT_KINDS", "Allocation", "AllocationFailure", "AllocationKind", "AllocationRecord",
           "Outcome", "Result"]  # fmt: skip


class AllocationKind(enum.StrEnum):
    """What one of a load's vmap areas is for (``kernel/module/main.c``, ``mm/execmem.c``).

    ``kernel_read_file()``'s buffer of the module file (``finit_module(2)``); ``init_module(2)``'s copy of
    the image userspace passed (``copy_module_from_user()``); the decompressor's scratch
    (``module_decompress()``: xz's dictionary, zlib's workspace); the ``vmap()`` of the decompressed pages;
    each module memory type (``enum mod_mem_type``, 6.4+, ac3b43283923), or before 6.4 the core and init
    layouts (``struct module_layout``); and a 2 MiB ROX chunk of execmem's cache (6.15+, 64f6a4e10c05).

    >>> AllocationKind("init_text") in INIT_KINDS, AllocationKind.TEXT == "text"
    (True, True)
    """

    KERNEL_READ_FILE = "kernel_read_file"
    COPY_MODULE_FROM_USER = "copy_module_from_user"
    MODULE_DECOMPRESS = "module_decompress"
    VMAP = "vmap"
    TEXT = "text"
    DATA = "data"
    RODATA = "rodata"
    RO_AFTER_INIT = "ro_after_init"
    INIT_TEXT = "init_text"
    INIT_DATA = "init_data"
    INIT_RODATA = "init_rodata"
    CORE = "core"
    INIT = "init"
    EXECMEM_CHUNK = "execmem_chunk"

    def __repr__(self) -> str:
        return repr(self.value)  # a kind prints as the kernel's name for it, as areas and tables show it


#: Module memory that stays allocated while the module is loaded (both loader generations).
CORE_KINDS = frozenset({AllocationKind.TEXT, AllocationKind.DATA, AllocationKind.RODATA,
                        AllocationKind.RO_AFTER_INIT, AllocationKind.CORE})  # fmt: skip
#: Module memory ``do_free_init()`` frees once the module's init has run.
INIT_KINDS = frozenset({AllocationKind.INIT_TEXT, AllocationKind.INIT_DATA, AllocationKind.INIT_RODATA,
                        AllocationKind.INIT})  # fmt: skip


@attrs.define
class Allocation:
    """One vmap area a load holds while it runs: what for, where, how big (guard included), when.

    ``freed`` is set when the area goes; :meth:`record` is its frozen form for the result.
    """

    kind: AllocationKind
    addr: int = attrs.field(repr=hex_repr)
    size: int
    region: str
    allocated: float
    freed: float | None = None

    def record(self) -> AllocationRecord:
        """The frozen :class:`AllocationRecord` of this area.  Runtime complexity: O(1)."""
        return AllocationRecord(self.kind, self.addr, self.size, self.region, self.allocated, self.freed)


@attrs.frozen
class AllocationRecord:
    """One area a request held: ``kind`` (e.g. ``kernel_read_file``, ``vmap``, ``text``), address, size with guard.

    >>> AllocationRecord("text", 0xffffffffc0000000, 8192, "modules", 0.0, None).region
    'modules'
    """

    kind: AllocationKind
    addr: int = attrs.field(repr=hex_repr)
    size: int
    region: str
    allocated: float
    freed: float | None


@attrs.frozen
class AllocationFailure:
    """An allocation that failed after purge and retry: when, for which request, and the kernel's warning."""

    time: float
    request: int
    size: int
    kind: AllocationKind
    message: str


@attrs.frozen
class Outcome:
    """What one request got: the syscall's return (0 or -errno), its span, its areas and its stage timeline."""

    request: Request
    module: str
    ret: int
    start: float
    end: float
    allocations: tuple[AllocationRecord, ...]
    timeline: tuple[tuple[float, str], ...]


@attrs.frozen
class Result:
    """Everything a run produced; equal inputs and seed give an equal Result.

    ``peak_pinned`` is the true figure per window (busy + lazy + pooled bytes at
    their highest); ``stats`` is what CONFIG_MODULE_STATS would report;
    ``space`` is the final address space (not compared; None in a Result read back by :meth:`from_dict`).
    """

    pipeline: str
    outcomes: tuple[Outcome, ...]
    failures: tuple[AllocationFailure, ...]
    stats: ModuleStats
    peak_pinned: dict[str, int]
    live: tuple[str, ...]
    space: VmapSpace | None = attrs.field(default=None, eq=False, repr=False)
    #: (time, pinned bytes per window in ``space.regions`` order) after each change.
    pinned_over_time: tuple[tuple[float, tuple[int, ...]], ...] = attrs.field(default=(), eq=False, repr=False)
    #: window -> the instant its pinned bytes first reached their peak (rerun with ``until`` to see it).
    peak_time: dict[str, float] = attrs.field(factory=dict, eq=False, repr=False)

    @property
    def reads(self) -> int:
        """How many requests made a read buffer (``kernel_read_file``).  Runtime complexity: O(n)."""
        read = AllocationKind.KERNEL_READ_FILE
        return sum(any(a.kind == read for a in o.allocations) for o in self.outcomes)

    def metrics(self) -> dict[str, int]:
        """The run's figures under the names of :data:`~vmapsim.loader.metrics.METRICS` (each metric's
        ``meaning`` and ``unit`` say what it is).  Runtime complexity: O(n).
        """
        return {name: int(m.measure(self)) for name, m in METRICS.items()}

    def to_dict(self) -> dict[str, Any]:
        """The Result as plain data (JSON-ready: dicts, lists, strings, numbers, None), all but ``space``,
        whose own plain form is its /proc/vmallocinfo (:func:`vmapsim.procfs.render_vmallocinfo`).
        :meth:`from_dict` reads it back.  Runtime complexity: O(n).

        >>> r = Result("v6.4", (), (), ModuleStats(), {"modules": 8192}, ("loop",))
        >>> r.to_dict()["peak_pinned"], Result.from_dict(r.to_dict()) == r
        ({'modules': 8192}, True)
        """
        data: dict[str, Any] = _converter().unstructure(self)
        return data

    @classmethod
    def from_dict(cls, data: object) -> Result:
        """A Result from :meth:`to_dict`'s plain data (its ``space`` None); :class:`InvalidArgument` naming
        the first field that is missing or of the wrong type.  Runtime complexity: O(n).
        """
        try:
            result: Result = _converter().structure(data, cls)
        except (cattrs.BaseValidationError, InvalidArgument, TypeError, ValueError, AttributeError) as e:
            raise InvalidArgument(f"not a vmapsim Result ({show(conversion_error(e))})") from None
        return result

    def leaks(self) -> list[AllocationRecord]:
        """Areas still held after the run that no LIVE module owns (should be empty).  Runtime: O(n)."""
        out = []
        for o in self.outcomes:
            for a in o.allocations:
                owned = a.region == "modules" or a.kind in CORE_KINDS
                # a ROX chunk is execmem's cache's, whichever load populated it
                cache = a.kind == AllocationKind.EXECMEM_CHUNK
                if a.freed is None and not cache and not (o.ret == 0 and o.module in self.live and owned):
                    out.append(a)
        return out


@functools.cache
def _converter() -> cattrs.Converter:
    """cattrs between Results and plain data: tuples as lists, a request's module a name or an image (made
    on first use: 4 ms that a command printing no Result would spend at import)."""
    conv = strict_converter()
    conv.register_unstructure_hook(Result, cattrs.gen.make_dict_unstructure_fn(
        Result, conv, space=cattrs.gen.override(omit=True)))  # fmt: skip
    conv.register_structure_hook(Result, cattrs.gen.make_dict_structure_fn(
        Result, conv, space=cattrs.gen.override(omit=True), _cattrs_forbid_extra_keys=True))  # fmt: skip

    def module(value: object, _: object) -> ModuleImage | str:
        if isinstance(value, str):
            return value
        image: ModuleImage = conv.structure(value, ModuleImage)
        return image

    conv.register_structure_hook(ModuleImage | str, module)
    return conv

