"""/proc/vmallocinfo and the meminfo Vmalloc lines: render exactly, parse real ones.

Rendering follows ``s_show()`` (≤ 6.8) / ``vmalloc_info_show()`` (6.9+) in
``mm/vmalloc.c``; parsing accepts real text, including hashed or zeroed ``%pK``
pointers (``kptr_restrict``) and ``unpurged vm_area`` lines, and the crash
utility's ``kmem -v`` listing of a vmcore; :func:`restore`
rebuilds a :class:`~vmapsim.VmapSpace` from a snapshot with real addresses.

>>> from vmapsim import VmapSpace, layouts
>>> s = VmapSpace(layouts.X86_64)
>>> _ = s.vmalloc(8192, caller="demo+0x10/0x40")
>>> print(render_vmallocinfo(s), end="")
0xffffc90000000000-0xffffc90000003000   12288 demo+0x10/0x40 pages=2 vmalloc N0=2
>>> [r.size for r in parse_vmallocinfo(render_vmallocinfo(s))]
[12288]
"""

from vmapsim.procfs.meminfo import parse_meminfo, render_meminfo
from vmapsim.procfs.summary import NEXT_SIZES, VmallocInfoSummary, summarize_vmallocinfo
from vmapsim.procfs.vmallocinfo import (
    MAX_VMALLOCINFO_BYTES,
    VmallocInfoRecord,
    is_crash_kmem_v,
    parse_vmallocinfo,
    render_vmallocinfo,
    restore,
)

__all__ = [
    "MAX_VMALLOCINFO_BYTES",
    "NEXT_SIZES",
    "VmallocInfoRecord",
    "VmallocInfoSummary",
    "is_crash_kmem_v",
    "parse_meminfo",
    "parse_vmallocinfo",
    "render_meminfo",
    "render_vmallocinfo",
    "restore",
    "summarize_vmallocinfo",
]
