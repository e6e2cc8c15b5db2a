"""/proc/meminfo's Vmalloc lines (``fs/proc/meminfo.c``): render them, and read a real meminfo."""

from __future__ import annotations

from vmapsim.checks import lines, parse_number, show
from vmapsim.errors import InvalidArgument, ParseError
from vmapsim.space import VmapSpace

__all__ = ["parse_meminfo", "render_meminfo"]


def render_meminfo(space: VmapSpace) -> str:
    """The three Vmalloc lines of /proc/meminfo (``fs/proc/meminfo.c``).

    ``VmallocTotal`` is ``(VMALLOC_END - VMALLOC_START) >> 10``, ``VmallocUsed``
    the pages backing vmalloc() (not guard pages, lazy areas or vmap), and
    ``VmallocChunk`` is always 0.  Runtime complexity: O(1).

    >>> from vmapsim import VmapSpace, layouts
    >>> print(render_meminfo(VmapSpace(layouts.X86_64)), end="")
    VmallocTotal:   34359738367 kB
    VmallocUsed:           0 kB
    VmallocChunk:          0 kB
    """
    total = space.layout.vmalloc.size >> 10
    used = space.nr_vmalloc_pages * 4
    return f"VmallocTotal:   {total:8d} kB\nVmallocUsed:    {used:8d} kB\nVmallocChunk:   {0:8d} kB\n"


def parse_meminfo(text: str) -> dict[str, int]:
    """The ``Vmalloc*`` fields of /proc/meminfo text, in kB.  Runtime complexity: O(n).

    >>> parse_meminfo("MemTotal: 1 kB\\nVmallocUsed:   12 kB\\n")
    {'VmallocUsed': 12}
    """
    if not isinstance(text, str):
        raise InvalidArgument(f"text={show(text)}: expected the file's text")
    out = {}
    for lineno, line in enumerate(lines(text), 1):
        key, _, value = line.partition(":")
        if key.startswith("Vmalloc"):
            words = value.split()
            if not words:
                raise ParseError(f"{key} has no value", source="meminfo", line=lineno)
            out[key] = parse_number(words[0], what=key, source="meminfo", line=lineno)
    return out

