"""``/proc/vmallocinfo`` as the kernel prints it (``s_show()`` ≤ 6.8, ``vmalloc_info_show()`` 6.9+, in
``mm/vmalloc.c``), read back from real text (hashed or zeroed ``%pK`` pointers, ``unpurged vm_area`` lines)
or from the crash utility's ``kmem -v`` listing of a vmcore, and :func:`restore`: a space rebuilt from a
snapshot with real addresses.  :mod:`vmapsim.procfs` shows them at work.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import attrs

from vmapsim.checks import flag, lines, parse_number, show
from vmapsim.errors import InvalidArgument, ParseError
from vmapsim.layouts import Layout
from vmapsim.profiles import DEFAULT, KernelProfile
from vmapsim.space import (
    VM_ALLOC,
    VM_DMA_COHERENT,
    VM_IOREMAP,
    VM_MAP,
    VM_USERMAP,
    VMAP_RAM,
    VmapArea,
    VmapSpace,
)
from vmapsim.units import hex_repr

__all__ = [
    "MAX_VMALLOCINFO_BYTES",
    "VmallocInfoRecord",
    "is_crash_kmem_v",
    "parse_vmallocinfo",
    "render_vmallocinfo",
    "restore",
]


# Flag words in the order s_show() prints them, with the vm_struct bit each stands for.
_FLAG_WORDS: tuple[tuple[str, int], ...] = (
    ("ioremap", VM_IOREMAP),
    ("vmalloc", VM_ALLOC),
    ("vmap", VM_MAP),
    ("user", VM_USERMAP),
    ("dma-coherent", VM_DMA_COHERENT),
)
_KNOWN_WORDS = {w for w, _ in _FLAG_WORDS} | {"vpages", "sparse"}


@attrs.frozen
class VmallocInfoRecord:
    """One line of /proc/vmallocinfo.

    ``kind`` is ``"vm"`` (an area with a ``vm_struct``), ``"vm_map_ram"`` or
    ``"unpurged"``; ``start``/``end`` are None when the pointers were hashed or
    zeroed by ``kptr_restrict`` (``size`` is always real); ``numa`` holds the
    ``N<node>=<pages>`` counts.  A row of crash's ``kmem -v`` is a ``"vm"``
    record with its range and size only (no caller, pages or flags).
    """

    start: int | None = attrs.field(repr=hex_repr)
    end: int | None = attrs.field(repr=hex_repr)
    size: int
    kind: str = "vm"
    caller: str | None = None
    pages: int = 0
    phys: int | None = attrs.field(default=None, repr=hex_repr)
    flags: tuple[str, ...] = ()
    numa: tuple[tuple[int, int], ...] = ()

    @property
    def vm_flags(self) -> int:
        """The ``vm_struct`` flag bits the flag words stand for.  Runtime complexity: O(1)."""
        bits = 0
        for word, bit in _FLAG_WORDS:
            if word in self.flags:
                bits |= bit
        return bits


def _ptr(value: int, bits: int) -> str:
    return f"0x{value:0{bits // 4}x}"


def _area_line(area: VmapArea, bits: int, numa: bool, restricted: bool, vm_map_ram_all: bool) -> str | None:
    start, end = (0, 0) if restricted else (area.start, area.end)
    head = f"{_ptr(start, bits)}-{_ptr(end, bits)} {area.size:7d}"
    if not area.vm_flags:
        if area.va_flags & VMAP_RAM or vm_map_ram_all:
            return f"{head} vm_map_ram"
        return None
    parts = [head]
    if area.caller:
        parts.append(area.caller)
    if area.nr_pages:
        parts.append(f"pages={area.nr_pages}")
    if area.phys:
        parts.append(f"phys={_ptr(area.phys, bits)}")
    parts += [word for word, bit in _FLAG_WORDS if area.vm_flags & bit]
    if area.pages_area is not None:
        parts.append("vpages")
    if numa and area.nr_pages:
        parts.append(f"N0={area.nr_pages}")
    return " ".join(parts)


def render_vmallocinfo(space: VmapSpace, *, numa: bool = True, restricted: bool = False) -> str:
    """The text of /proc/vmallocinfo for ``space``, as its kernel profile prints it.

    ``numa`` adds the ``N0=`` page counts (``CONFIG_NUMA``, as Debian builds);
    ``restricted`` prints zeroed pointers, as a reader without CAP_SYSLOG sees
    under ``kptr_restrict=1``.  Up to 6.8 lines are sorted by address and
    lazily freed neighbours are shown merged (5.11+; up to 5.10 one line per area,
    newest first, and up to 5.15 none after a last area without a ``vm_struct``);
    from 6.9 they come node by node, one ``unpurged`` line per freed area.
    Runtime complexity: O(n log n).
    """
    bits = space.layout.bits
    vm_map_ram_all = not space.profile.vmap_ram_flag
    busy = space.areas()
    lazy = space.lazy_areas()
    nodes = space.nr_vmap_nodes if space.profile.node_pools else 1
    out: list[str] = []
    if space.profile.purge_newest_first:  # show_purge_info() walks the llist: newest first
        ordered_busy = busy
        ordered_lazy: list[tuple[int, int]] = [(a.start, a.end) for a in reversed(space.lazy_areas_as_freed())]
    elif nodes == 1:
        ordered_busy = busy
        ordered_lazy = []
        for a in lazy:
            if space.profile.coalesce_lazy and ordered_lazy and ordered_lazy[-1][1] == a.start:
                ordered_lazy[-1] = (ordered_lazy[-1][0], a.end)
            else:
                ordered_lazy.append((a.start, a.end))
    else:
        # 6.9+: busy areas are sharded by addr_to_node(); lazy ones sit on their vmap node.
        ordered_busy = sorted(busy, key=lambda a: ((a.start // (16 * 4096)) % nodes, a.start))
        ordered_lazy = [
            (a.start, a.end)
            for a in sorted(lazy, key=lambda a: (a.node if a.node >= 0 else (a.start // (16 * 4096)) % nodes, a.start))
        ]
    for area in ordered_busy:
        line = _area_line(area, bits, numa, restricted, vm_map_ram_all)
        if line is not None:
            out.append(line)
    if space.profile.purge_info_after_vm and ordered_busy and not ordered_busy[-1].vm_flags:
        ordered_lazy = []  # s_show() returned after the last area's vm_map_ram line, before show_purge_info()
    for s, e in ordered_lazy:
        ps, pe = (0, 0) if restricted else (s, e)
        out.append(f"{_ptr(ps, bits)}-{_ptr(pe, bits)} {e - s:7d} unpurged vm_area")
    return "".join(line + "\n" for line in out)


_LINE = re.compile(r"^0x([0-9a-fA-F]+)-0x([0-9a-fA-F]+)\s+(\d+)(.*)$")
_NUMA = re.compile(r"^N(\d+)=(\d+)$")
# crash's kmem -v (dump_vmap_area() in crash's memory.c): a header, then per vmap_area that has a vm_struct
# "VMAP_AREA  VM_STRUCT  START - END  SIZE", pointers in bare hex, END = START + SIZE, SIZE = va_end - va_start
# in decimal (the guard page included, as /proc/vmallocinfo counts it).
_CRASH_HEADER = re.compile(r"^VMAP_AREA\s+VM_STRUCT\s+ADDRESS RANGE\s+SIZE$")
_CRASH_ROW = re.compile(r"^[0-9a-fA-F]+\s+[0-9a-fA-F]+\s+([0-9a-fA-F]+)\s+-\s+([0-9a-fA-F]+)\s+(\d+)$")
_CRASH_PROMPT = "crash>"


#: Largest /proc/vmallocinfo text read (256 MiB: millions of areas).
MAX_VMALLOCINFO_BYTES = 256 << 20


def parse_vmallocinfo(
    text: str, *, source: str = "vmallocinfo", max_bytes: int = MAX_VMALLOCINFO_BYTES
) -> list[VmallocInfoRecord]:
    """Records of real /proc/vmallocinfo text, or of crash's ``kmem -v`` (blank lines are skipped).

    Pointers are kept only when they are real (``end - start == size``);
    hashed (``kptr_restrict=0``) or zeroed ones become None.  Text that
    :func:`is_crash_kmem_v` recognises is read as crash prints it: each row an
    area with a ``vm_struct`` (``vm_map_ram`` and lazily freed areas are not
    listed), with real pointers and no caller or flags.  A line that is
    neither raises :class:`ParseError` naming ``source`` and the line.
    Runtime complexity: O(n) in the text.

    >>> r = parse_vmallocinfo("0x0000000012345678-0x00000000deadbeef    8192 f+0x1/0x2 pages=1 vmalloc N0=1")[0]
    >>> r.start, r.size, r.caller, r.flags
    (None, 8192, 'f+0x1/0x2', ('vmalloc',))
    >>> crash = ("   VMAP_AREA         VM_STRUCT                 ADDRESS RANGE                SIZE\\n"
    ...          "ffff8c0e40135e40  ffff8c0e4013c340  ffffc90000000000 - ffffc90000005000    20480\\n")
    >>> r = parse_vmallocinfo(crash)[0]
    >>> hex(r.start), r.size, r.kind, r.caller
    ('0xffffc90000000000', 20480, 'vm', None)
    """
    if not isinstance(text, str):
        raise InvalidArgument(f"text={show(text)}: expected the file's text")
    if len(text) > max_bytes:
        raise ParseError(f"{len(text)} characters is more than the limit of {max_bytes}", source=source)
    if is_crash_kmem_v(text):
        return _parse_crash(text, source)
    records = []
    for lineno, raw in enumerate(lines(text), 1):
        line = raw.strip()
        if not line:
            continue
        m = _LINE.match(line)
        if m is None:
            raise ParseError(f"not a vmallocinfo line: {show(raw)}", source=source, line=lineno)
        start, end, size = _span(m, source, lineno)
        real = end - start == size
        rest = m.group(4).split()
        kw: dict[str, object] = {}
        if rest == ["unpurged", "vm_area"]:
            kw["kind"] = "unpurged"
        elif rest == ["vm_map_ram"]:
            kw["kind"] = "vm_map_ram"
        else:
            flags: list[str] = []
            numa: list[tuple[int, int]] = []
            i = 0
            if rest and not (
                rest[0].startswith(("pages=", "phys=")) or rest[0] in _KNOWN_WORDS or _NUMA.match(rest[0])
            ):
                caller = rest[0]
                i = 1
                if i < len(rest) and rest[i].startswith("[") and rest[i].endswith("]"):
                    caller += " " + rest[i]  # %pS of a symbol in a module: "sym+0x1/0x2 [mod]"
                    i += 1
                kw["caller"] = caller
            for tok in rest[i:]:
                if tok.startswith("pages="):
                    kw["pages"] = parse_number(tok[6:], what="pages", source=source, line=lineno)
                elif tok.startswith("phys="):
                    hexa = tok[5:] if tok[5:7].lower() == "0x" else "0x" + tok[5:]  # %pa prints 0x; be lenient
                    kw["phys"] = parse_number(hexa, what="phys", source=source, line=lineno)
                elif tok in _KNOWN_WORDS:
                    flags.append(tok)
                elif (nm := _NUMA.match(tok)) is not None:
                    node = parse_number(nm.group(1), what="node", source=source, line=lineno)
                    numa.append((node, parse_number(nm.group(2), what=f"N{node}", source=source, line=lineno)))
                else:
                    raise ParseError(f"unexpected field {show(tok)}", source=source, line=lineno)
            kw["flags"] = tuple(flags)
            kw["numa"] = tuple(numa)
        records.append(
            VmallocInfoRecord(start if real else None, end if real else None, size, **kw)  # type: ignore[arg-type]
        )
    return records


def is_crash_kmem_v(text: str) -> bool:
    """Whether ``text`` is the crash utility's ``kmem -v`` listing: its first line (past blank ones and
    ``crash>`` prompt lines, such as ``crash> kmem -v`` copied with it) is the ``VMAP_AREA VM_STRUCT
    ADDRESS RANGE SIZE`` header or a row.  Runtime complexity: O(n) in the text, O(1) for most.

    >>> is_crash_kmem_v("crash> kmem -v\\n   VMAP_AREA         VM_STRUCT                 ADDRESS RANGE       SIZE\\n")
    True
    >>> is_crash_kmem_v("0xffffc90000000000-0xffffc90000005000   20480 f+0x1/0x2 vmap\\n")
    False
    """
    if not isinstance(text, str):
        raise InvalidArgument(f"text={show(text)}: expected the file's text")
    for raw in lines(text):
        line = raw.strip()
        if line and not line.startswith(_CRASH_PROMPT):
            return bool(_CRASH_HEADER.match(line) or _CRASH_ROW.match(line))
    return False


def _span(m: re.Match[str], source: str, lineno: int) -> tuple[int, int, int]:
    """A line's start and end (hex, without their 0x) and size (decimal), as both formats print them."""
    return (parse_number("0x" + m.group(1), what="start", source=source, line=lineno),
            parse_number("0x" + m.group(2), what="end", source=source, line=lineno),
            parse_number(m.group(3), what="size", source=source, line=lineno))  # fmt: skip


def _parse_crash(text: str, source: str) -> list[VmallocInfoRecord]:
    """Records of crash's ``kmem -v``: prompt lines and blank ones skipped, the header at most once and
    before every row."""
    records: list[VmallocInfoRecord] = []
    for lineno, raw in enumerate(lines(text), 1):
        line = raw.strip()
        if not line or line.startswith(_CRASH_PROMPT):
            continue
        if _CRASH_HEADER.match(line):
            if records:
                raise ParseError("crash's kmem -v header after its rows: one listing at a time", source=source,
                                 line=lineno)  # fmt: skip
            continue
        m = _CRASH_ROW.match(line)
        if m is None:
            raise ParseError(f"not a row of crash's kmem -v: {show(raw)}", source=source, line=lineno)
        start, end, size = _span(m, source, lineno)
        if end - start != size:  # crash prints END as START + SIZE
            raise ParseError(f"range {start:#x}-{end:#x} is not SIZE {size} bytes", source=source, line=lineno)
        records.append(VmallocInfoRecord(start, end, size))
    return records


def restore(
    records: Iterable[VmallocInfoRecord],
    layout: Layout,
    *,
    cpus: int = 1,
    profile: KernelProfile = DEFAULT,
    nr_cpus_config: int = 8192,
    auto_purge: bool = True,
    percpu_only: bool = False,
) -> VmapSpace:
    """A space holding a snapshot's areas: busy ones busy, ``unpurged`` ones lazy.

    Every record must carry real addresses (read the file as root with
    ``kptr_restrict=1``), else :class:`InvalidArgument`.  ``vm_map_ram`` lines
    become bare ``VMAP_RAM`` areas (a block's free/dirty state is not in the
    file).  ``percpu_only`` keeps only the percpu chunks: for a trace taken
    from boot, which rebuilds every other area itself, while
    ``pcpu_get_vm_areas()`` never goes through ``alloc_vmap_area()`` and so
    never appears in it.  Anything but records is :class:`InvalidArgument` too.  Runtime complexity: O(n log n).

    >>> from vmapsim import layouts
    >>> text = "0xffffc90000000000-0xffffc90000002000    8192 x+0x0/0x1 pages=1 vmalloc\\n"
    >>> restore(parse_vmallocinfo(text), layouts.X86_64).areas()[0].nr_pages
    1
    """
    space = VmapSpace(layout, cpus=cpus, profile=profile, nr_cpus_config=nr_cpus_config, auto_purge=auto_purge)
    try:
        records = list(records)
    except TypeError:
        raise InvalidArgument(f"records={show(records)}: expected VmallocInfoRecords (parse_vmallocinfo())") from None
    for i, r in enumerate(records, 1):
        if not isinstance(r, VmallocInfoRecord):
            raise InvalidArgument(f"record {i}: {show(r)} is not a VmallocInfoRecord (parse_vmallocinfo())")
    if flag("percpu_only", percpu_only):
        records = [r for r in records if (r.caller or "").startswith("pcpu_get_vm_areas")]
    if profile.purge_newest_first:  # the file lists vmap_purge_list newest first: free them oldest first
        records = [r for r in records if r.kind != "unpurged"] + [r for r in records if r.kind == "unpurged"][::-1]
    for i, r in enumerate(records, 1):
        if r.start is None:
            raise InvalidArgument(
                f"record {i} has hashed or zeroed pointers: read /proc/vmallocinfo as root with kptr_restrict=1"
            )
    arrays = _page_arrays(records, layout.bits // 8)
    nested = set(arrays.values())
    # Page arrays first, so that each vmalloc names an area that is already there.
    for i, r in sorted(enumerate(records), key=lambda ir: ir[0] not in nested):
        assert r.start is not None
        if r.kind == "unpurged":
            space.reserve(r.start, r.size, vm_flags=0, lazy=True)
        elif r.kind == "vm_map_ram":
            space.reserve(r.start, r.size, vm_flags=0, va_flags=VMAP_RAM)
        else:
            array = arrays.get(i, 0 if "vpages" in r.flags else None)
            space.reserve(
                r.start,
                r.size,
                caller=r.caller,
                vm_flags=r.vm_flags,
                nr_pages=r.pages,
                phys=r.phys or 0,
                pages_area=None if array is None else (records[array].start if array else 0),
                nested=i in nested,
            )
    return space


def _page_arrays(records: list[VmallocInfoRecord], ptr_size: int) -> dict[int, int]:
    """Match each ``vpages`` vmalloc to its page-array vmalloc: same caller, the array's size.

    ``__vmalloc_area_node()`` allocates the array right after the area itself
    but at the lowest free fit, so it may lie anywhere; the first unclaimed
    vmalloc of the right caller and page count is taken.
    """
    out: dict[int, int] = {}
    claimed: set[int] = set()
    for i, r in enumerate(records):
        if "vpages" not in r.flags:
            continue
        want = -(-r.pages * ptr_size // 4096)
        for k, c in enumerate(records):
            if k != i and k not in claimed and c.caller == r.caller and c.pages == want and "vmalloc" in c.flags:
                out[i] = k
                claimed.add(k)
                break
    return out
