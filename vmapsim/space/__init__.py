"""The kernel's vmap address space (mm/vmalloc.c), one module per concept.

* :mod:`~vmapsim.space.area` -- ``vmap_area``/``vm_struct`` values, their flags, window usage;
* :mod:`~vmapsim.space.vmap_area` -- the allocator core: free tree, busy and lazy trees, purge;
* :mod:`~vmapsim.space.view` -- :class:`VmapState`: reading a space, snapshots, trace replay;
* :mod:`~vmapsim.space.space` -- :class:`VmapSpace`: ``alloc_vmap_area()`` and its users
  (vmalloc, vmap, ioremap, vm_map_ram, percpu);
* :mod:`~vmapsim.space.vmap_node` -- the 6.9+ per-node pools;
* :mod:`~vmapsim.space.vmap_block` -- the per-CPU vmap blocks of ``vm_map_ram()``;
* :mod:`~vmapsim.space.percpu` -- the top-down search of ``pcpu_get_vm_areas()``.

>>> from vmapsim import layouts
>>> hex(VmapSpace(layouts.X86_64).vmalloc(1))
'0xffffc90000000000'
"""

from vmapsim.space.area import (
    VM_ALLOC,
    VM_DMA_COHERENT,
    VM_FLUSH_RESET_PERMS,
    VM_IOREMAP,
    VM_MAP,
    VM_USERMAP,
    VMAP_BLOCK,
    VMAP_RAM,
    RegionUsage,
    VmapArea,
)
from vmapsim.space.space import VmapSpace
from vmapsim.space.view import VmapState
from vmapsim.space.vmap_block import VmapBlock

__all__ = [
    "VMAP_BLOCK",
    "VMAP_RAM",
    "VM_ALLOC",
    "VM_DMA_COHERENT",
    "VM_FLUSH_RESET_PERMS",
    "VM_IOREMAP",
    "VM_MAP",
    "VM_USERMAP",
    "RegionUsage",
    "VmapArea",
    "VmapBlock",
    "VmapSpace",
    "VmapState",
]
