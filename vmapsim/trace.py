"""The kernel's own vmalloc trace: parse it, replay it on a space, report agreement.

Two forms are read from ftrace text (``/sys/kernel/tracing/trace``):

* 6.x trace events ``events/vmalloc`` -- ``alloc_vmap_area``,
  ``free_vmap_area_noflush`` and ``purge_vmap_area_lazy``
  (``include/trace/events/vmalloc.h``);
* the kprobes older kernels (6.1) need: an entry probe and a return probe on
  ``alloc_vmap_area``, and entry probes on ``free_vmap_area_noflush`` and
  ``__purge_vmap_area_lazy`` (any probe names), written to
  ``/sys/kernel/tracing/kprobe_events`` as (x86-64 argument registers)::

    p:vm_alloc alloc_vmap_area size=%di align=%si vstart=%dx vend=%cx
    r:vm_alloc_ret alloc_vmap_area va_start=+0($retval):x64
    p:vm_free free_vmap_area_noflush va_start=+0(%di):x64 va_end=+8(%di):x64
    p:vm_purge __purge_vmap_area_lazy start=%di end=%si

:func:`replay` applies the events to a space (usually one rebuilt with
:func:`vmapsim.procfs.restore` from the vmallocinfo snapshot taken when tracing
began) and reports, for every allocation, whether vmapsim picks the same
address or fails the same way.

>>> line = ("insmod-70 [000] ..... 1.5: alloc_vmap_area: va_start: 18446683600570023936 "
...         "size=8192 align=4096 vstart=0xffffc90000000000 vend=0xffffe8ffffffffff failed=0")
>>> e = parse_trace(line)[0]
>>> e.kind, hex(e.addr), e.size, e.cpu
('alloc', '0xffffc90000000000', 8192, 0)
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Iterable

import attrs

from vmapsim.checks import MAX_DIGITS, lines, parse_number, show
from vmapsim.errors import InvalidArgument, ParseError, VmapAllocationError
from vmapsim.space import VmapSpace
from vmapsim.units import PAGE_SIZE, hex_repr

__all__ = ["MAX_TRACE_BYTES", "PROGRESS_STEP", "Disagreement", "ReplayReport", "TraceEvent", "parse_trace", "replay"]


@attrs.frozen
class TraceEvent:
    """One allocator event: ``kind`` is ``"alloc"``, ``"free"`` or ``"purge"``.

    For ``alloc``: ``addr`` (None when ``failed``), ``size`` (guard included),
    ``align``, ``vstart``, ``vend``.  For ``free``: ``addr``.  For ``purge``:
    ``addr``/``end`` bound the purged range when the trace says so.
    ``line`` is the 1-based line number in the trace text; ``pid`` the task's pid.
    ``returned`` is when a kprobe-traced allocation returned (its ``time`` is
    its entry; None for the 6.x event, which fires once the area is chosen).
    """

    kind: str
    cpu: int
    time: float
    task: str
    addr: int | None = attrs.field(default=None, repr=hex_repr)
    size: int = 0
    align: int = 0
    vstart: int = attrs.field(default=0, repr=hex_repr)
    vend: int = attrs.field(default=0, repr=hex_repr)
    failed: bool = False
    end: int | None = None
    line: int = 0
    pid: int = 0
    returned: float | None = None


# "<task>-<pid> [(tgid)] [<cpu>] [<flags>] <time>: <event>: <body>"
_HEAD = re.compile(
    r"^\s*(?P<task>.+?)-(?P<pid>\d+)\s+(?:\(\s*[\d-]+\)\s+)?\[(?P<cpu>\d+)\]\s+(?:\S+\s+)?"
    r"(?P<time>\d+\.\d+):\s+(?P<event>[\w.]+):\s?(?P<body>.*)$"
)
_KV = re.compile(r"(\w+)[=:]\s*(\(fault\)|0x[0-9a-fA-F]+|-?\d+)")
_PROBE_AT = re.compile(r"^\((?P<where>[^)]*)\)")


#: Longest trace line read; the kernel's trace_seq page caps one event's text at 4 KiB.
MAX_LINE = 4096
#: The most trace text :func:`parse_trace` reads: about 1.8 million ftrace lines, thousands of times the
#: boots captured under QEMU (tens of KiB); docs/usage.md gives a replay's time and memory at the limit.
MAX_TRACE_BYTES = 256 << 20


def _fields(body: str, source: str, line: int) -> dict[str, int | None]:
    out: dict[str, int | None] = {}
    for key, value in _KV.findall(body):
        out[key] = None if value == "(fault)" else parse_number(value, what=key, source=source, line=line, signed=True)
    return out


def parse_trace(text: str, *, source: str = "trace") -> list[TraceEvent]:
    """Allocator events of ftrace text, in order; other events and comments are skipped.

    A kprobe return of ``alloc_vmap_area`` is joined to the entry before it by
    the same task (pid): the allocation may sleep, and a kretprobe fires on the
    CPU the task returns on, not the one it entered on; the event keeps the
    entry's CPU, time and line.  A return whose ``va_start`` faulted (an
    ``ERR_PTR``) is a failed allocation.  A malformed allocator line raises :class:`ParseError`
    naming ``source`` and the line; anything but text, :class:`InvalidArgument`.  Runtime complexity: O(n).
    """
    if not isinstance(text, str):
        raise InvalidArgument(f"{source}: text={show(text)}: expected the trace's text")
    if len(text) > MAX_TRACE_BYTES:
        raise ParseError(f"{len(text)} characters is more than the limit of {MAX_TRACE_BYTES}", source=source)
    events: list[TraceEvent] = []
    pending: dict[int, tuple[int, dict[str, int | None], float, str, int]] = {}  # pid -> the entry
    for lineno, raw in enumerate(lines(text), 1):
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        if len(raw) > MAX_LINE:  # ftrace lines are short; a long one would only slow the pattern down
            if "vmap_area" in raw:
                raise ParseError(f"allocator line of {len(raw)} characters (at most {MAX_LINE})", source=source,
                                 line=lineno)  # fmt: skip
            continue
        m = _HEAD.match(raw)
        if m is None:
            continue
        task, event, body = m["task"].strip(), m["event"], m["body"]
        cpu = parse_number(m["cpu"], what="CPU", source=source, line=lineno)
        pid = parse_number(m["pid"], what="pid", source=source, line=lineno)
        if len(m["time"]) > MAX_DIGITS:
            raise ParseError(f"time {show(m['time'])} has more than {MAX_DIGITS} digits", source=source, line=lineno)
        time = float(m["time"])
        f = _fields(body, source, lineno)
        where = _PROBE_AT.match(body)
        try:
            if event == "alloc_vmap_area":
                failed = bool(f["failed"])
                events.append(
                    _page_aligned(TraceEvent(
                        "alloc",
                        cpu,
                        time,
                        task,
                        None if failed else f["va_start"],
                        _int(f["size"]),
                        _int(f["align"]),
                        _int(f["vstart"]),
                        _int(f["vend"]),
                        failed,
                        line=lineno,
                        pid=pid,
                    ), source)
                )
            elif event == "free_vmap_area_noflush":
                events.append(TraceEvent("free", cpu, time, task, _int(f["va_start"]), line=lineno, pid=pid))
            elif event == "purge_vmap_area_lazy":
                events.append(
                    TraceEvent("purge", cpu, time, task, f.get("start"), end=f.get("end"), line=lineno, pid=pid)
                )
            elif where is not None:
                loc = where["where"]
                if loc.endswith("<- alloc_vmap_area"):
                    if pid not in pending:
                        raise ParseError(
                            f"kprobe return of alloc_vmap_area without its entry by pid {pid}", source=source,
                            line=lineno,
                        )  # fmt: skip
                    eline, args, etime, etask, ecpu = pending.pop(pid)
                    addr = f.get("va_start")
                    events.append(
                        _page_aligned(TraceEvent(
                            "alloc",
                            ecpu,
                            etime,
                            etask,
                            addr,
                            _int(args["size"]),
                            _int(args["align"]),
                            _int(args["vstart"]),
                            _int(args["vend"]),
                            addr is None,
                            line=eline,
                            pid=pid,
                            returned=time,
                        ), source)
                    )
                elif loc.startswith("alloc_vmap_area+"):
                    pending[pid] = (lineno, f, time, task, cpu)
                elif loc.startswith("free_vmap_area_noflush+"):
                    events.append(
                        TraceEvent(
                            "free", cpu, time, task, _int(f["va_start"]), end=f.get("va_end"), line=lineno, pid=pid
                        )
                    )
                elif loc.startswith("__purge_vmap_area_lazy+"):
                    events.append(
                        TraceEvent("purge", cpu, time, task, f.get("start"), end=f.get("end"), line=lineno, pid=pid)
                    )
        except (KeyError, TypeError):
            raise ParseError(f"{event} line lacks a field: {raw.strip()[:100]!r}", source=source, line=lineno) from None
    return events


def _page_aligned(ev: TraceEvent, source: str) -> TraceEvent:
    """``ev`` if its size and address are page aligned, as every vmap area is (``alloc_vmap_area()`` in
    mm/vmalloc.c, returns -EINVAL for ``offset_in_page(size)`` from 5.18, BUG()s before, and its vmalloc-family
    callers pass a ``PAGE_ALIGN()``ed size and an ``align`` of at least PAGE_SIZE); else :class:`ParseError` naming
    the line."""
    for what, value in (("size", ev.size), ("va_start", ev.addr)):
        if value is not None and value % PAGE_SIZE:
            raise ParseError(f"alloc_vmap_area {what} {value:#x} is not page aligned: no vmap area is", source=source,
                             line=ev.line)  # fmt: skip
    return ev


def _int(value: int | None) -> int:
    if value is None:
        raise TypeError("missing value")
    return value


@attrs.frozen
class Disagreement:
    """An allocation where vmapsim and the kernel differ: ``model`` is vmapsim's address (None: failed)."""

    event: TraceEvent
    model: int | None


@attrs.frozen
class ReplayReport:
    """What a replay found: allocations compared, the disagreements, frees of unknown areas.

    >>> ReplayReport(allocs=3, disagreements=(), unknown_frees=()).agreement
    1.0
    """

    allocs: int
    disagreements: tuple[Disagreement, ...]
    unknown_frees: tuple[TraceEvent, ...]
    #: Allocations the kernel served from another CPU's 6.9+ node pool than the trace line's CPU names: the
    #: task moved between node_alloc()'s raw_smp_processor_id() and the trace event.  They agree.
    other_node: tuple[TraceEvent, ...] = ()

    @property
    def agreed(self) -> int:
        """Allocations where vmapsim chose exactly what the kernel chose.  Runtime: O(1)."""
        return self.allocs - len(self.disagreements)

    @property
    def agreement(self) -> float:
        """Fraction of allocations that agree (1.0 when there were none).  Runtime: O(1)."""
        return self.agreed / self.allocs if self.allocs else 1.0

    def summary(self) -> str:
        """One line: agreed / compared, and how many frees named unknown areas.  Runtime: O(1)."""
        moved = f", {len(self.other_node)} from another CPU's node pool" if self.other_node else ""
        return (
            f"{self.agreed}/{self.allocs} allocations agree ({self.agreement:.1%}{moved}); "
            f"{len(self.unknown_frees)} frees of areas unknown to the model"
        )


def replay(events: Iterable[TraceEvent], space: VmapSpace, *,
           progress: Callable[[int, int], None] | None = None) -> ReplayReport:
    """Apply a kernel trace to ``space`` and compare every allocation.

    Purges happen only where the trace has one (the space's own drain and
    retry are off during the replay); a purge right after a failed
    allocation is the full reclaim (pools emptied on 6.9+).  After a
    disagreement the kernel's choice is applied, so each later allocation is
    judged from the kernel's state.  The event's CPU picks the 6.9+ vmap node.
    A kprobe trace lists allocations in the order they *returned*; when one
    entered while an earlier-listed one was still inside ``alloc_vmap_area()``
    and got exactly the address vmapsim offers the earlier one, the two are
    replayed in the other order (the kernel served it first), and so on along
    a chain until the offer is the traced address (on 32 CPUs whole groups are
    traced at one clock tick and listed by CPU).  A purge's
    trace line fires after it has put the areas back in the free tree
    (``__purge_vmap_area_lazy()``), so when an allocation got an address only
    a purge running on another CPU at that moment could have freed, that
    purge is replayed first.
    A bad event raises :class:`InvalidArgument` and leaves ``space`` as it was.
    ``progress(done, total)`` is called every :data:`PROGRESS_STEP` events and at the end.
    Runtime complexity: O(e log n) for e events, plus a copy of the space.
    """
    if progress is not None and not callable(progress):
        raise InvalidArgument(f"progress={show(progress)}: expected a callable or None")
    if not isinstance(space, VmapSpace):
        raise InvalidArgument(f"space={show(space)}: expected a VmapSpace")
    if isinstance(events, str | bytes) or not isinstance(events, Iterable):
        raise InvalidArgument(f"events={show(events)}: expected trace events (see parse_trace())")
    events = list(events)
    for ev in events:  # every event checked before the first is applied
        if not isinstance(ev, TraceEvent) or ev.kind not in ("alloc", "free", "purge"):
            raise InvalidArgument(f"{show(ev)}: expected a TraceEvent from parse_trace()")
        if ev.cpu >= space.cpus:
            raise InvalidArgument(f"trace line {ev.line}: CPU {ev.cpu} but the space has {space.cpus} CPUs")
    # A bad event found only when applied (e.g. a size outside every window) undoes the replay.
    with space.transaction():
        return _replay(events, space, progress or _quiet)


#: How many events :func:`replay` applies between two calls of its ``progress``.
PROGRESS_STEP = 1 << 16


def _quiet(done: int, total: int) -> None:
    pass


def _replay(events: list[TraceEvent], space: VmapSpace, progress: Callable[[int, int], None]) -> ReplayReport:
    saved = space.auto_purge
    space.auto_purge = False
    allocs = 0
    bad: list[Disagreement] = []
    unknown: list[TraceEvent] = []
    last_failed = False
    done: set[int] = set()  # allocations already replayed out of trace order
    moved: list[TraceEvent] = []

    def model(ev: TraceEvent) -> int | None:
        return _offer(space, ev, ev.cpu)

    def judge(ev: TraceEvent, got: int | None) -> None:
        # on a disagreement the kernel's choice is applied, so later allocations start from its state
        if got != ev.addr:
            if got is not None:
                space.free_vmap_area(got, lazy=False)
            if _from_other_node(space, ev):
                moved.append(ev)
                return
            bad.append(Disagreement(ev, got))
            if ev.addr is not None:
                space.replay_alloc(ev.addr, ev.size, cpu=ev.cpu)

    try:
        for i, ev in enumerate(events):
            if not i % PROGRESS_STEP:
                progress(i, len(events))
            if i in done:
                continue
            if ev.kind == "alloc":
                allocs += 1
                got = model(ev)
                while got is not None and got != ev.addr:
                    # A kprobe trace lists allocations by return; one that entered during ev's span took the
                    # lock first and got what vmapsim offers ev: replay it first, then offer ev again. On
                    # many CPUs whole chains of them did (all traced at one clock tick).
                    j = _served_first(events, i, got, done)
                    if j is None:
                        break
                    space.free_vmap_area(got, lazy=False)
                    allocs += 1
                    done.add(j)
                    judge(events[j], model(events[j]))
                    got = model(ev)
                k = _purge_in_flight(events, i, space.cpus, done) if got != ev.addr else None
                if k is not None and _offer_after_purge(space, ev, got) == ev.addr:
                    if got is not None:
                        space.free_vmap_area(got, lazy=False)
                    done.add(k)
                    space.replay_purge(full_decay=False)
                    got = model(ev)
                judge(ev, got)
                last_failed = ev.addr is None
            elif ev.kind == "free":
                if ev.addr is None or not space.replay_free(ev.addr):
                    unknown.append(ev)
            else:
                space.replay_purge(full_decay=last_failed)
                last_failed = False
    finally:
        space.auto_purge = saved
    progress(len(events), len(events))
    return ReplayReport(allocs, tuple(bad), tuple(unknown), tuple(moved))


def _from_other_node(space: VmapSpace, ev: TraceEvent) -> bool:
    """Whether another CPU's node pool gives exactly the kernel's choice; if so it is taken from there.

    Only 6.9+ pools can differ by CPU, and only for a VA sitting in a pool: node_alloc() picks the node
    from the CPU the task was on then, the trace line shows the CPU it was on when the event fired.
    Each CPU is tried on a copy, so the space changes only when one matches.
    """
    if ev.addr is None or not space.profile.node_pools or space.cpus == 1:
        return False
    if (ev.addr, ev.addr + ev.size) not in space.pooled_ranges():
        return False
    for cpu in range(space.cpus):
        if cpu != ev.cpu and _offer(copy.deepcopy(space), ev, cpu) == ev.addr:
            _offer(space, ev, cpu)
            return True
    return False


def _offer(space: VmapSpace, ev: TraceEvent, cpu: int) -> int | None:
    """The address vmapsim allocates for ``ev``'s request on ``cpu`` (None: it fails)."""
    try:
        return space.alloc_vmap_area(ev.size, align=ev.align, vstart=ev.vstart, vend=ev.vend, cpu=cpu).start
    except VmapAllocationError:
        return None


def _purge_in_flight(events: list[TraceEvent], i: int, cpus: int, done: set[int]) -> int | None:
    """The index of a purge another CPU was inside when ``events[i]`` fired, if any.

    That is another CPU's first event after ``events[i]``, being a purge not replayed yet (``done``):
    nothing else ran on that CPU in between, so the purge may already have put its areas back.
    """
    seen = {events[i].cpu}
    for j in range(i + 1, len(events)):
        if len(seen) == cpus:
            return None
        other = events[j]
        if other.cpu not in seen:
            if other.kind == "purge" and j not in done:
                return j
            seen.add(other.cpu)
    return None


def _offer_after_purge(space: VmapSpace, ev: TraceEvent, got: int | None) -> int | None:
    """What vmapsim would offer ``ev`` had the lazy areas been purged first (tried on a copy)."""
    trial = copy.deepcopy(space)
    if got is not None:
        trial.free_vmap_area(got, lazy=False)
    trial.replay_purge(full_decay=False)
    return _offer(trial, ev, ev.cpu)


def _served_first(events: list[TraceEvent], i: int, got: int | None, done: set[int]) -> int | None:
    """A later kprobe-traced allocation, not yet replayed, that entered before ``events[i]`` returned and got
    ``got``, if any.

    Only allocations up to the next free or purge are considered: those the kernel could have served
    before ``events[i]`` without anything else changing in between.
    """
    ev = events[i]
    if got is None or ev.returned is None:
        return None
    for j in range(i + 1, len(events)):
        other = events[j]
        if other.kind != "alloc" or other.time > ev.returned:
            return None
        if other.addr == got and j not in done:
            return j
    return None
