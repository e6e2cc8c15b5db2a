"""Reading a kernel module's ELF file: section headers, symbols, .modinfo, appended signature.

Parsed by hand with :mod:`struct` rather than with pyelftools: the scanner reads
every symbol of every module of a distribution (millions of them) to replay the
loader's kallsyms sizing, and ``struct.iter_unpack`` does that about a hundred
times faster than pyelftools' per-symbol objects, which keeps a 4230-module tree
well under the 30 s budget.  Only what ``load_module()`` itself reads is parsed:
the ELF header, section headers and names, the symbol table and ``.modinfo``.

>>> split_signature(b"ELF" + bytes(12) + MARKER)
(b'ELF', 40)
"""

from __future__ import annotations

import struct

import attrs

from vmapsim.errors import ModuleFileError

__all__ = [
    "MARKER",
    "SHF_ALLOC",
    "SHF_EXECINSTR",
    "SHF_RO_AFTER_INIT",
    "SHF_WRITE",
    "ElfImage",
    "Section",
    "parse_elf",
    "parse_modinfo",
    "split_signature",
]

# Section flags (include/uapi/linux/elf.h) and the loader's own SHF_RO_AFTER_INIT.
SHF_WRITE = 0x1
SHF_ALLOC = 0x2
SHF_EXECINSTR = 0x4
SHF_RO_AFTER_INIT = 0x00200000
SHT_NOBITS = 8
SHT_SYMTAB = 2
SHT_RELA = 4
_AARCH64_BRANCHES = (282, 283)  # R_AARCH64_JUMP26, R_AARCH64_CALL26
#: The marker ``module_sig_check()`` looks for at the very end of a signed module.
MARKER = b"~Module signature appended~\n"
# struct module_signature: algo, hash, id_type, signer_len, key_id_len, __pad[3], __be32 sig_len.
_SIG_INFO = struct.Struct(">5B3xI")
_MACHINES = {3: "i386", 62: "x86_64", 183: "arm64", 243: "riscv", 40: "arm", 21: "ppc64", 22: "s390"}


@attrs.frozen
class Section:
    """One section header, with its name resolved.  ``flags`` are the file's ``sh_flags``."""

    name: str
    type: int
    flags: int
    size: int
    addralign: int
    offset: int
    link: int


@attrs.frozen
class ElfImage:
    """What the loader reads of a module's ELF file.

    ``sym_shndx[i]``/``sym_namelen[i]`` are symbol i's section index and name
    length (-1 when ``st_name`` is 0); ``symtab``/``strtab`` index the symbol
    table and its string table (0 when absent); ``sym_size`` is
    ``sizeof(Elf_Sym)``.
    """

    bits: int
    machine: str
    sections: tuple[Section, ...]
    symtab: int
    strtab: int
    sym_shndx: tuple[int, ...]
    sym_namelen: tuple[int, ...]
    modinfo: tuple[tuple[str, str], ...]
    #: arm64 only: per RELA section, (target section, ((type, symbol, addend), ...)) of its
    #: R_AARCH64_JUMP26/CALL26 relocations -- what module_frob_arch_sections() counts PLTs from.
    branch_relocs: tuple[tuple[int, tuple[tuple[int, int, int], ...]], ...] = ()

    @property
    def sym_size(self) -> int:
        """``sizeof(Elf_Sym)``: 24 on 64-bit, 16 on 32-bit.  Runtime complexity: O(1)."""
        return 24 if self.bits == 64 else 16

    def section(self, name: str, *, alloc: bool = True) -> int:
        """Index of the first section called ``name`` (with SHF_ALLOC, as ``find_sec()``), or 0.

        Runtime complexity: O(sections).
        """
        for i, s in enumerate(self.sections):
            if s.name == name and (not alloc or s.flags & SHF_ALLOC):
                return i
        return 0


def split_signature(data: bytes) -> tuple[bytes, int]:
    """The module without its appended signature, and the signature's length (0 if unsigned).

    The length covers the signature, its ``struct module_signature`` and the
    marker, as ``mod_verify_sig()`` strips them.  Runtime complexity: O(1).
    """
    if not data.endswith(MARKER) or len(data) < len(MARKER) + _SIG_INFO.size:
        return data, 0
    end = len(data) - len(MARKER)
    sig_len = _SIG_INFO.unpack_from(data, end - _SIG_INFO.size)[5]
    total = len(MARKER) + _SIG_INFO.size + sig_len
    if total > len(data):
        return data, 0
    return data[: len(data) - total], total


def parse_modinfo(raw: bytes) -> tuple[tuple[str, str], ...]:
    """``key=value`` pairs of a ``.modinfo`` section, in file order.  Runtime complexity: O(n).

    >>> parse_modinfo(b"license=GPL\\x00\\x00alias=pci:v*\\x00")
    (('license', 'GPL'), ('alias', 'pci:v*'))
    """
    out = []
    for item in raw.split(b"\0"):
        if b"=" in item:
            key, _, value = item.decode("utf-8", "replace").partition("=")
            out.append((key, value))
    return tuple(out)


def parse_elf(data: bytes, path: str) -> ElfImage:
    """Parse a (decompressed, signature-stripped) module.

    Anything malformed -- not ELF, truncated, offsets out of the file, a bad
    string index -- raises :class:`ModuleFileError` naming ``path`` and the
    reason.  Runtime complexity: O(sections + symbols).
    """
    try:
        return _parse(data, path)
    except (struct.error, IndexError, ValueError) as e:
        if isinstance(e, ModuleFileError):
            raise
        raise ModuleFileError(path, f"corrupt ELF: {e}") from None


def _parse(data: bytes, path: str) -> ElfImage:
    if len(data) < 52 or data[:4] != b"\x7fELF":
        raise ModuleFileError(path, "not an ELF file")
    ei_class, ei_data = data[4], data[5]
    if ei_class not in (1, 2) or ei_data not in (1, 2):
        raise ModuleFileError(path, f"bad ELF class/data bytes {ei_class}/{ei_data}")
    end = "<" if ei_data == 1 else ">"
    bits = 64 if ei_class == 2 else 32
    if bits == 64:
        e_type, e_machine, _, _, _, shoff, _, _, _, _, shentsize, shnum, shstrndx = struct.unpack_from(
            end + "HHIQQQIHHHHHH", data, 16
        )
        shdr = struct.Struct(end + "IIQQQQIIQQ")
    else:
        e_type, e_machine, _, _, _, shoff, _, _, _, _, shentsize, shnum, shstrndx = struct.unpack_from(
            end + "HHIIIIIHHHHHH", data, 16
        )
        shdr = struct.Struct(end + "IIIIIIIIII")
    if e_type != 1:
        raise ModuleFileError(path, f"not a relocatable object (e_type {e_type})")
    if shentsize != shdr.size or shnum == 0 or shoff + shnum * shdr.size > len(data):
        raise ModuleFileError(path, "section header table is truncated or malformed")
    if shstrndx >= shnum:
        raise ModuleFileError(path, f"section name table index {shstrndx} out of range")
    raw = [shdr.unpack_from(data, shoff + i * shdr.size) for i in range(shnum)]
    for i, h in enumerate(raw):
        # (name, type, flags, addr, offset, size, link, info, addralign, entsize) in both classes
        if h[1] != SHT_NOBITS and h[4] + h[5] > len(data):
            raise ModuleFileError(path, f"section {i} runs past the end of the file")
    names = raw[shstrndx]
    strs = data[names[4] : names[4] + names[5]]
    sections = tuple(Section(_cstr(strs, h[0], path), h[1], h[2], h[5], h[8], h[4], h[6]) for h in raw)
    symtab = next((i for i, s in enumerate(sections) if s.type == SHT_SYMTAB), 0)
    shndx: tuple[int, ...] = ()
    namelen: tuple[int, ...] = ()
    strtab = 0
    if symtab:
        sym = sections[symtab]
        strtab = sym.link
        if not 0 < strtab < shnum:
            raise ModuleFileError(path, f"symbol table links to section {strtab}")
        st = sections[strtab]
        strings = data[st.offset : st.offset + st.size]
        if bits == 64:
            fmt, name_at, shndx_at = end + "IBBHQQ", 0, 3
        else:
            fmt, name_at, shndx_at = end + "IIIBBH", 0, 5
        entries = struct.iter_unpack(fmt, data[sym.offset : sym.offset + sym.size - sym.size % struct.calcsize(fmt)])
        pairs = [(e[name_at], e[shndx_at]) for e in entries]
        shndx = tuple(p[1] for p in pairs)
        find = strings.index
        namelen = tuple(find(b"\0", n) - n if n else -1 for n, _ in pairs)
    info = next((s for s in sections if s.name == ".modinfo"), None)
    modinfo = parse_modinfo(data[info.offset : info.offset + info.size]) if info else ()
    machine = _MACHINES.get(e_machine, f"machine-{e_machine}")
    branches = []
    if machine == "arm64" and bits == 64:
        for h in raw:
            if h[1] != SHT_RELA:
                continue
            if not 0 < h[7] < shnum:
                raise ModuleFileError(path, f"relocation section targets section {h[7]}")
            rel = data[h[4] : h[4] + h[5] - h[5] % 24]
            picked = tuple(
                (info_ & 0xFFFFFFFF, info_ >> 32, addend)
                for _, info_, addend in struct.iter_unpack(end + "QQq", rel)
                if info_ & 0xFFFFFFFF in _AARCH64_BRANCHES
            )
            if any(sym >= len(shndx) for _, sym, _ in picked):
                raise ModuleFileError(path, "relocation against a symbol beyond the symbol table")
            branches.append((h[7], picked))
    return ElfImage(bits, machine, sections, symtab, strtab, shndx, namelen, modinfo, tuple(branches))


def _cstr(table: bytes, offset: int, path: str) -> str:
    end = table.find(b"\0", offset)
    if offset >= len(table) or end < 0:
        raise ModuleFileError(path, f"name offset {offset} outside the section name table")
    return table[offset:end].decode("utf-8", "replace")
