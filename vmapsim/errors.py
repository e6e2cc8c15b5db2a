"""The exception hierarchy of vmapsim.

Every error vmapsim raises on purpose derives from :class:`VmapsimError`, so a
caller can catch them all with one ``except`` clause.  A failed call leaves every
structure exactly as it was, except where the kernel itself changes state before
failing (an allocation failure purges the lazy areas first, as
``alloc_vmap_area()`` does); those cases are documented on the method.
"""

from __future__ import annotations

__all__ = [
    "InvalidArgument",
    "ModuleFileError",
    "ParseError",
    "UnknownAddress",
    "VmapAllocationError",
    "VmapsimError",
]


class VmapsimError(Exception):
    """Base class of every error vmapsim raises.

    >>> issubclass(InvalidArgument, VmapsimError)
    True
    """


class InvalidArgument(VmapsimError, ValueError):
    """A bad size, alignment, window, count or name; the message names the value.

    The kernel returns ``-EINVAL`` (or hits a ``BUG_ON``) for the same inputs in
    ``alloc_vmap_area()``.

    >>> isinstance(InvalidArgument("size 0"), ValueError)
    True
    """


class UnknownAddress(InvalidArgument):
    """An address that names no live area: never allocated, or freed already.

    The kernel WARNs ("Trying to vfree() nonexistent vm area") and does nothing.
    """


class VmapAllocationError(VmapsimError):
    """No free range fits, even after the purge-and-retry of ``alloc_vmap_area()``.

    ``message`` is the warning line the chosen kernel version prints, ``size``
    the guard-inclusive, page-aligned size that was asked for, and
    ``vstart``/``vend`` the window searched.

    >>> e = VmapAllocationError("vmap allocation for size 8192 failed: use vmalloc=<size> to increase size",
    ...                         size=8192, vstart=0, vend=4096)
    >>> e.size
    8192
    """

    def __init__(self, message: str, *, size: int, vstart: int, vend: int) -> None:
        super().__init__(message)
        self.message = message
        self.size = size
        self.vstart = vstart
        self.vend = vend


class ParseError(VmapsimError, ValueError):
    """Text that is not what the parser expects; names the source and line number.

    >>> str(ParseError("bad line", source="vmallocinfo", line=3))
    'vmallocinfo:3: bad line'
    """

    def __init__(self, message: str, *, source: str = "<text>", line: int = 0) -> None:
        super().__init__(f"{source}:{line}: {message}")
        self.source = source
        self.line = line


class ModuleFileError(VmapsimError, ValueError):
    """A module file that cannot be read: corrupt, truncated, not ELF, unknown compression.

    ``path`` names the file and ``reason`` says what is wrong with it.

    >>> str(ModuleFileError("m/x.ko", "not an ELF file"))
    'm/x.ko: not an ELF file'
    """

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason
