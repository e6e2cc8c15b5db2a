"""A load request: what userspace asks of ``finit_module(2)`` or ``init_module(2)``.

>>> Request("loop", cpu=2).syscall
<Syscall.FINIT_MODULE: 'finit_module'>
>>> Request("loop", syscall="init_module").syscall is Syscall.INIT_MODULE
True
>>> Request("loop", syscall=Syscall.INIT_MODULE)
Request(module='loop', cpu=0, time=0.0, path=None, inode=None, syscall='init_module', init_errno=0, after=None)
"""

from __future__ import annotations

import enum

import attrs

from vmapsim.checks import member
from vmapsim.modules.image import ModuleImage

__all__ = ["SYSCALLS", "Request", "Syscall"]


class Syscall(enum.StrEnum):
    """The two syscalls that load a module (``kernel/module/main.c``, ``SYSCALL_DEFINE3``).

    ``FINIT_MODULE``: ``finit_module(fd, ...)`` (3.8+), the kernel reads the file itself
    (``kernel_read_file()``) and, from 6.4 with ``MODULE_INIT_COMPRESSED_FILE``, decompresses it;
    ``INIT_MODULE``: ``init_module(umod, len, ...)``, userspace hands over the image it read (and
    decompressed), which the kernel copies (``copy_module_from_user()``).  Each member equals its
    name (``Syscall.INIT_MODULE == "init_module"``).

    >>> [str(s) for s in Syscall]
    ['finit_module', 'init_module']
    """

    FINIT_MODULE = "finit_module"
    INIT_MODULE = "init_module"

    @classmethod
    def of(cls, value: object) -> Syscall:
        """``value`` if it is a Syscall, else the one it names (``insmod`` names none: an
        :class:`InvalidArgument` says so).  Runtime complexity: O(1).

        >>> Syscall.of("init_module") is Syscall.INIT_MODULE, Syscall.of(Syscall.FINIT_MODULE).value
        (True, 'finit_module')
        """
        return member("syscall", value, cls)


#: The two load syscalls' names (kernel/module/main.c), as plain strings.
SYSCALLS = tuple(s.value for s in Syscall)


def _syscall(value: object) -> Syscall:
    return value if type(value) is Syscall else Syscall.of(value)  # every load makes a Request


def _by_name(value: Syscall) -> str:
    # A request prints as before the enum: syscall='init_module', which the converter takes back.
    return repr(value.value)


@attrs.frozen
class Request:
    """One load request: which module, on which CPU, when, from which file, by which syscall.

    ``module`` is a :class:`~vmapsim.modules.ModuleImage` or a catalog name;
    ``path``/``inode`` identify the file (default: the module's path; same
    inode = same file for the 6.5 idempotent check); ``syscall`` is
    :attr:`Syscall.FINIT_MODULE` (kernel reads and, for compressed files, decompresses)
    or :attr:`Syscall.INIT_MODULE` (userspace already decompressed it), or its name,
    converted once (:class:`InvalidArgument` for another); ``init_errno``
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
    syscall: Syscall = attrs.field(default=Syscall.FINIT_MODULE, converter=_syscall, repr=_by_name)
    init_errno: int = 0
    after: int | None = None
