"""A load request: what userspace asks of ``finit_module(2)`` or ``init_module(2)``.

>>> Request("loop", cpu=2).syscall
'finit_module'
"""

from __future__ import annotations

import attrs

from vmapsim.modules.image import ModuleImage

__all__ = ["SYSCALLS", "Request"]

#: The two load syscalls (kernel/module/main.c).
SYSCALLS = ("finit_module", "init_module")


@attrs.frozen
class Request:
    """One load request: which module, on which CPU, when, from which file, by which syscall.

    ``module`` is a :class:`~vmapsim.modules.ModuleImage` or a catalog name;
    ``path``/``inode`` identify the file (default: the module's path; same
    inode = same file for the 6.5 idempotent check); ``syscall`` is
    ``"finit_module"`` (kernel reads and, for compressed files, decompresses)
    or ``"init_module"`` (userspace already decompressed it); ``init_errno``
    makes the module's init function fail with that errno; ``after`` is the
    index of a request that must return first (as modprobe loads a module's
    dependencies one after the other), then this one starts at once or at
    ``time``, whichever is later.
    """

    module: ModuleImage | str
    cpu: int = 0
    time: float = 0.0
    path: str | None = None
    inode: str | None = None
    syscall: str = "finit_module"
    init_errno: int = 0
    after: int | None = None
