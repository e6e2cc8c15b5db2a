"""The modules a live kernel holds: ``/proc/modules`` (or ``lsmod``'s output), checked against a catalog.

``/proc/modules`` is ``m_show()`` in ``kernel/module/procfs.c``: name, size, use count, users,
state, address (zeroed for readers without ``CAP_SYSLOG``).  The size is the module's core memory:
on 6.4+ the sum of its ``mod->mem[]`` core types (text, data, rodata, ro_after_init), up to 6.3
``core_layout.size`` -- what :attr:`ModuleImage.core_size` and the first of ``legacy`` predict.

>>> text = "loop 32768 0 - Live 0xffffffffc0a00000\\nmsr 12288 0 - Live 0x0000000000000000\\n"
>>> [(m.name, m.size, m.address and hex(m.address)) for m in parse_proc_modules(text)]
[('loop', 32768, '0xffffffffc0a00000'), ('msr', 12288, None)]
"""

from __future__ import annotations

import re

import attrs

from vmapsim.checks import parse_number, show
from vmapsim.errors import InvalidArgument, ParseError
from vmapsim.modules.catalog import Catalog
from vmapsim.units import hex_repr

__all__ = ["MAX_PROC_MODULES_BYTES", "LoadedModule", "SizeCheck", "check_sizes", "parse_proc_modules"]

#: Largest /proc/modules or lsmod text read (a kernel with every module of a distribution loaded is < 1 MiB).
MAX_PROC_MODULES_BYTES = 16 << 20
# A module name as the kernel takes it: ASCII letters, digits, - and _, a digit first too (8139too,
# 3c59x), shorter than MODULE_NAME_LEN (64 - sizeof(unsigned long), the NUL included).
_NAME = re.compile(r"[A-Za-z0-9_-]{1,55}")


@attrs.frozen
class LoadedModule:
    """One module of ``/proc/modules``: its name, core size, use count, state and (if shown) address."""

    name: str
    size: int
    refcount: int
    state: str = "Live"
    address: int | None = attrs.field(default=None, repr=hex_repr)


def parse_proc_modules(text: str, *, source: str = "modules") -> list[LoadedModule]:
    """The modules of ``/proc/modules`` text, or of ``lsmod``'s (its ``Module Size Used by`` header
    says which); :class:`~vmapsim.errors.ParseError` naming ``source`` and the line otherwise.
    Runtime complexity: O(lines).

    >>> [m.name for m in parse_proc_modules("Module  Size  Used by\\nkvm_intel 413696 0\\nkvm 1388544 1 kvm_intel\\n")]
    ['kvm_intel', 'kvm']
    """
    if not isinstance(text, str):
        raise InvalidArgument(f"text={show(text)}: expected the file's text")
    if len(text) > MAX_PROC_MODULES_BYTES:
        raise ParseError(f"{len(text)} characters is more than the limit of {MAX_PROC_MODULES_BYTES}", source=source)
    out = []
    lines = text.splitlines()
    lsmod = bool(lines) and lines[0].split()[:3] == ["Module", "Size", "Used"]
    for lineno, line in enumerate(lines[1:] if lsmod else lines, 2 if lsmod else 1):
        words = line.split()
        if not words:
            continue
        if len(words) < (3 if lsmod else 5) or not _NAME.fullmatch(words[0]):
            raise ParseError(f"not a {'lsmod' if lsmod else '/proc/modules'} line: {show(line)}", source=source,
                             line=lineno)  # fmt: skip
        size = parse_number(words[1], what="size", source=source, line=lineno)
        refs = parse_number(words[2], what="use count", source=source, line=lineno) if words[2] != "-" else 0
        state, address = "Live", None
        if not lsmod:
            state = words[4]
            if state not in ("Live", "Loading", "Unloading"):
                raise ParseError(f"unknown module state {show(state)}", source=source, line=lineno)
            if len(words) > 5 and words[5].startswith("0x"):
                address = parse_number(words[5], what="address", source=source, line=lineno) or None
        out.append(LoadedModule(words[0], size, refs, state, address))
    return out


@attrs.frozen
class SizeCheck:
    """A loaded module's size beside the catalog's core size for it (``None``: not in the catalog)."""

    name: str
    live: int
    catalog: int | None

    @property
    def agrees(self) -> bool:
        """Whether the catalog predicts the live size exactly.  Runtime complexity: O(1)."""
        return self.catalog == self.live


def check_sizes(catalog: Catalog, loaded: list[LoadedModule]) -> list[SizeCheck]:
    """Each loaded module's live size beside the catalog's prediction for its kernel's loader.

    Runtime complexity: O(modules).

    >>> cat = Catalog.builtin("debian-6.12-amd64")
    >>> check_sizes(cat, parse_proc_modules(f"loop {cat['loop'].core_size} 0 - Live 0x0\\n"))[0].agrees
    True
    """
    if not isinstance(catalog, Catalog):
        raise InvalidArgument(f"catalog={show(catalog)}: expected a Catalog")
    if not isinstance(loaded, list) or not all(isinstance(m, LoadedModule) for m in loaded):
        raise InvalidArgument(f"loaded={show(loaded)}: expected a list of LoadedModule (parse_proc_modules())")
    # generation reads every module's vermagic: asked once, not once a module
    memory = catalog.generation == "module_memory"
    out = []
    for m in loaded:
        if m.name not in catalog:
            out.append(SizeCheck(m.name, m.size, None))
            continue
        image = catalog[m.name]
        predicted = image.core_size if memory else image.legacy[0]
        out.append(SizeCheck(m.name, m.size, predicted))
    return out
