"""The loader's section layout, replayed: how much module memory ``load_module()`` asks for.

Mirrors ``layout_and_allocate()`` in kernel/module/main.c: the ``.modinfo``,
``__versions`` and ``.data..percpu`` sections lose SHF_ALLOC;
``.data..ro_after_init`` and ``__jump_table`` gain SHF_RO_AFTER_INIT, and from
6.16 ``.static_call_sites`` too (``module_mark_ro_after_init()``);
``layout_sections()`` places each SHF_ALLOC section in mask order (text,
read-only, ro-after-init, writable), each at its ``sh_addralign``;
``layout_symtab()`` (kernel/module/kallsyms.c) appends the core kallsyms copy and
puts the full symbol and string tables, ``struct mod_kallsyms`` and the type
table in init data.  Then, for the two loader generations:

* up to 6.3 (``module_layout``): one core and one init area, page-rounded by
  ``strict_align()`` after text, read-only, ro-after-init and at the end when
  ``CONFIG_STRICT_MODULE_RWX``; ``move_module()`` calls ``module_alloc()`` twice;
* from 6.4 (``module_memory``): one running size per memory type, and
  ``move_module()`` allocates ``PAGE_ALIGN(size)`` for each non-empty type.

>>> KernelConfig().kallsyms_all, MEMORY_TYPES[0], Generation.MODULE_MEMORY == "module_memory"
(True, 'text', True)
"""

from __future__ import annotations

import enum

import attrs

from vmapsim.checks import flag, member, release, show
from vmapsim.errors import InvalidArgument, ModuleFileError
from vmapsim.modules.elf import SHF_ALLOC, SHF_EXECINSTR, SHF_RO_AFTER_INIT, SHF_WRITE, ElfImage
from vmapsim.units import page_align

__all__ = [
    "ARCHES",
    "MEMORY_TYPES",
    "TEXT_TYPES",
    "Generation",
    "KernelConfig",
    "ModuleLayout",
    "kernel_of",
    "layout_module",
    "ro_after_init_sections",
]


class Generation(enum.StrEnum):
    """The loader's module-memory generation: how ``move_module()`` (``kernel/module/main.c``) allocates.

    ``MODULE_LAYOUT`` (up to 6.3): ``struct module_layout`` ``core_layout``/``init_layout``, one
    ``module_alloc()`` each; ``MODULE_MEMORY`` (6.4+, ac3b43283923 "module: replace module_layout with
    module_memory"): ``mod->mem[]``, one allocation per non-empty ``enum mod_mem_type``.  Each member
    equals its old name (``Generation.MODULE_LAYOUT == "module_layout"``).

    >>> Generation.of("module_layout") is Generation.MODULE_LAYOUT
    True
    """

    MODULE_LAYOUT = "module_layout"
    MODULE_MEMORY = "module_memory"

    @classmethod
    def of(cls, value: object) -> Generation:
        """``value`` if it is a Generation, else the one it names; :class:`InvalidArgument` naming anything
        else.  Runtime complexity: O(1).

        >>> Generation.of("module_memory") is Generation.MODULE_MEMORY
        True
        >>> Generation.of("core")
        Traceback (most recent call last):
        ...
        vmapsim.errors.InvalidArgument: generation='core': expected one of module_layout, module_memory
        """
        return member("generation", value, cls)


#: The architectures whose module layout :func:`layout_module` replays (as ``uname -m`` and
#: :attr:`ElfImage.machine <vmapsim.modules.elf.ElfImage.machine>` name them): x86-64's, and arm64's
#: with its PLTs; another's ``module_frob_arch_sections()`` (riscv's GOT and PLTs) is not modelled.
ARCHES = ("x86_64", "arm64")
#: ``enum mod_mem_type`` order (include/linux/module.h, 6.4+).
MEMORY_TYPES = ("text", "data", "rodata", "ro_after_init", "init_text", "init_data", "init_rodata")
#: The memory types ``mod_mem_type_is_text()`` names (``include/linux/module.h``): execmem's text ranges.
TEXT_TYPES = ("text", "init_text")
_TEXT, _DATA, _RODATA, _RO_AFTER_INIT, _INIT_TEXT, _INIT_DATA, _INIT_RODATA = range(7)
# layout_sections() masks: (flags that must be set, flags that must be clear); ARCH_SHF_SMALL is 0.
_MASKS = ((SHF_EXECINSTR | SHF_ALLOC, 0), (SHF_ALLOC, SHF_WRITE), (SHF_RO_AFTER_INIT | SHF_ALLOC, 0),
          (SHF_WRITE | SHF_ALLOC, 0), (SHF_ALLOC, 0))  # fmt: skip
_CORE_TYPE = (_TEXT, _RODATA, _RO_AFTER_INIT, _DATA, -1)
_INIT_TYPE = (_INIT_TEXT, _INIT_RODATA, -1, _INIT_DATA, -1)
#: The sections ``layout_and_allocate()`` gives SHF_RO_AFTER_INIT up to 6.15 (two ``find_sec()`` look-ups in
#: ``kernel/module/main.c``): ``__ro_after_init`` data, and the jump labels written only while the module loads.
_RO_AFTER_INIT_SECTIONS = (".data..ro_after_init", "__jump_table")
#: From 6.16 the list is ``module_mark_ro_after_init()``'s (``kernel/module/strict_rwx.c``, f7984942630b) and
#: holds ``.static_call_sites`` too (60b57b9cb002 "module: Make .static_call_sites read-only after init", both
#: merged with modules-6.16-rc1), under ``CONFIG_HAVE_STATIC_CALL_INLINE``: only objtool's ``--static-call``
#: pass, run with that option alone (``scripts/Makefile.lib``), writes the section, so a module that has it was
#: built for such a kernel (x86-64).  The sites then leave ``MOD_DATA`` for ``MOD_RO_AFTER_INIT``: a module with
#: no other ro-after-init section gets one more allocation, and ``data`` may shrink by a page.
_RO_AFTER_INIT_SECTIONS_6_16 = (*_RO_AFTER_INIT_SECTIONS, ".static_call_sites")
_STATIC_CALL_SITES_RO = (6, 16)
_MOD_KALLSYMS = 32  # sizeof(struct mod_kallsyms) on 64-bit (aligned to 8)
_MOD_KALLSYMS_32 = 16  # and on 32-bit (aligned to 4)


@attrs.frozen
class KernelConfig:
    """The kernel configuration the layout depends on (from ``boot/config-*`` when scanned).

    Defaults are Debian's amd64 kernels: ``CONFIG_KALLSYMS_ALL=y``,
    ``CONFIG_STRICT_MODULE_RWX=y``, ``CONFIG_MODULE_UNLOAD=y``.
    """

    arch: str = "x86_64"
    kallsyms_all: bool = True
    strict_rwx: bool = True
    module_unload: bool = True

    def __attrs_post_init__(self) -> None:
        if self.arch not in ARCHES:
            raise InvalidArgument(f"arch={show(self.arch)}: expected one of {', '.join(ARCHES)}")
        for name in ("kallsyms_all", "strict_rwx", "module_unload"):
            flag(name, getattr(self, name))

    @classmethod
    def from_text(cls, text: str, arch: str | None = None) -> KernelConfig:
        """Read the options from a kernel ``.config`` text; ``arch`` None takes the one it selects
        (``CONFIG_ARM64``, ``CONFIG_RISCV``, else x86_64).  Runtime complexity: O(n).

        >>> KernelConfig.from_text("CONFIG_KALLSYMS_ALL=y\\n# CONFIG_STRICT_MODULE_RWX is not set\\n").strict_rwx
        False
        >>> KernelConfig.from_text("CONFIG_ARM64=y\\n").arch
        'arm64'
        """
        on = {line.split("=", 1)[0] for line in text.splitlines() if line.endswith(("=y", "=m"))}
        if arch is None:
            arch = "arm64" if "CONFIG_ARM64" in on else "riscv" if "CONFIG_RISCV" in on else "x86_64"
        return cls(
            arch=arch,
            kallsyms_all="CONFIG_KALLSYMS_ALL" in on,
            strict_rwx="CONFIG_STRICT_MODULE_RWX" in on,
            module_unload="CONFIG_MODULE_UNLOAD" in on,
        )


@attrs.frozen
class ModuleLayout:
    """One module's sizes: raw section groups, kallsyms, and both generations' allocations.

    Group sums follow the loader's buckets (init by name, then EXEC, !WRITE,
    RO_AFTER_INIT, WRITE); ``init_data`` includes ``init_rodata``.
    ``core``/``init`` are the two ``module_alloc()`` sizes up to 6.3; ``memory``
    the seven page-aligned 6.4+ sizes in ``MEMORY_TYPES`` order.
    """

    text: int
    rodata: int
    ro_after_init: int
    data: int
    init_text: int
    init_data: int
    init_rodata: int
    percpu: int
    not_loaded_alloc: int
    alloc_total: int
    ksym_core: int
    ksym_init: int
    core: int
    init: int
    memory: tuple[int, int, int, int, int, int, int]
    plt_core: int = 0
    plt_init: int = 0


def _init_section(name: str, config: KernelConfig) -> bool:
    """``module_init_layout_section()``: ``.init*``, and ``.exit*`` without MODULE_UNLOAD."""
    return name.startswith(".init") or (not config.module_unload and name.startswith(".exit"))


def _align(n: int, a: int) -> int:
    a = a or 1
    return (n + a - 1) // a * a


def kernel_of(image: ElfImage) -> tuple[int, int]:
    """(major, minor) of the kernel a module was built for, from its ``.modinfo`` ``vermagic``; (0, 0) without
    one.  Runtime complexity: O(modinfo entries).
    """
    vermagic = next((value for key, value in image.modinfo if key == "vermagic"), "")
    try:
        return release(vermagic)
    except InvalidArgument:
        return (0, 0)


def ro_after_init_sections(kernel: tuple[int, int]) -> tuple[str, ...]:
    """The section names the loader of ``kernel`` (major, minor) marks SHF_RO_AFTER_INIT before
    ``layout_sections()``.  Runtime complexity: O(1).

    >>> ro_after_init_sections((6, 12))
    ('.data..ro_after_init', '__jump_table')
    >>> ro_after_init_sections((7, 3))[-1]
    '.static_call_sites'
    """
    return _RO_AFTER_INIT_SECTIONS_6_16 if kernel >= _STATIC_CALL_SITES_RO else _RO_AFTER_INIT_SECTIONS


def layout_module(
    image: ElfImage, config: KernelConfig, path: str = "<module>", kernel: tuple[int, int] | None = None
) -> ModuleLayout:
    """Replay ``layout_and_allocate()`` on a parsed module.  Runtime complexity: O(sections + symbols).

    ``kernel`` (major, minor) is the loader replayed; None takes the module's own ``vermagic``
    (:func:`kernel_of`), and a module without one is laid out as before 6.16.
    A module without a symbol table gets no kallsyms space (the kernel would
    refuse it in ``setup_load_info()``).
    """
    if kernel is None:
        kernel = kernel_of(image)
    secs = image.sections
    flags = [s.flags for s in secs]
    alloc_total = sum(s.size for s in secs if s.flags & SHF_ALLOC)
    # The loader's view of each section: sizes and alignments that module_frob_arch_sections() may change.
    sizes = [s.size for s in secs]
    aligns = [s.addralign for s in secs]
    plt_core = plt_init = 0
    if config.arch == "arm64":
        plt_core, plt_init = _arm64_plts(image, sizes, aligns, flags, path)
    not_loaded = 0
    for name in (".modinfo", "__versions"):  # rewrite_section_headers(): never copied
        i = image.section(name)
        if i:
            flags[i] &= ~SHF_ALLOC
            not_loaded += secs[i].size
    pcpu = image.section(".data..percpu")  # allocated per CPU by percpu_modalloc() instead
    if pcpu:
        flags[pcpu] &= ~SHF_ALLOC
    marked = ro_after_init_sections(kernel)
    if kernel >= _STATIC_CALL_SITES_RO:  # module_mark_ro_after_init(): every section of a listed name
        for i in range(1, len(secs)):
            if secs[i].name in marked:
                flags[i] |= SHF_RO_AFTER_INIT
    else:  # find_sec(): the first SHF_ALLOC section of each name
        for name in marked:
            i = image.section(name)
            if i:
                flags[i] |= SHF_RO_AFTER_INIT
    is_init = [_init_section(s.name, config) for s in secs]

    groups = dict.fromkeys(("text", "rodata", "ro_after_init", "data", "init_text", "init_data", "init_rodata"), 0)
    for i, s in enumerate(secs):
        f = flags[i]
        if not f & SHF_ALLOC:
            continue
        if is_init[i]:
            groups["init_text" if f & SHF_EXECINSTR else "init_data"] += s.size
            if not f & (SHF_EXECINSTR | SHF_WRITE):
                groups["init_rodata"] += s.size
        elif f & SHF_EXECINSTR:
            groups["text"] += s.size
        elif not f & SHF_WRITE:
            groups["rodata"] += s.size
        elif f & SHF_RO_AFTER_INIT:
            groups["ro_after_init"] += s.size
        else:
            groups["data"] += s.size

    # layout_sections(): place each section once, in mask order, core then init.
    placed = [False] * len(secs)
    mem = [0] * 7
    core_legacy = init_legacy = 0
    for init_pass in (False, True):
        for m, (need, refuse) in enumerate(_MASKS):
            mtype = (_INIT_TYPE if init_pass else _CORE_TYPE)[m]
            for i in range(len(secs)):
                f = flags[i]
                if f & need != need or f & refuse or placed[i] or is_init[i] != init_pass:
                    continue
                placed[i] = True
                if init_pass:
                    init_legacy = _align(init_legacy, aligns[i]) + sizes[i]
                else:
                    core_legacy = _align(core_legacy, aligns[i]) + sizes[i]
                if mtype >= 0:  # a MOD_INVALID bucket is skipped with a WARN
                    mem[mtype] = _align(mem[mtype], aligns[i]) + sizes[i]
            # strict_align() points of the 6.3 layout_sections().
            if config.strict_rwx and (m in (0, 1, 4) or (m == 2 and not init_pass)):
                if init_pass:
                    init_legacy = page_align(init_legacy)
                else:
                    core_legacy = page_align(core_legacy)

    # layout_symtab(): the core kallsyms copy and the init-time tables.
    ksym_core = ksym_init = 0
    if image.symtab:
        symsect, strsect = secs[image.symtab], secs[image.strtab]
        eligible = [
            bool(flags[k] & SHF_ALLOC) and not is_init[k] and (config.kallsyms_all or bool(flags[k] & SHF_EXECINSTR))
            for k in range(len(secs))
        ]
        if config.kallsyms_all and pcpu:
            eligible[pcpu] = True
        shnum = len(secs)
        ndst = strtab_size = 0
        for i, (shndx, namelen) in enumerate(zip(image.sym_shndx, image.sym_namelen, strict=True)):
            if i == 0 or (namelen >= 0 and 0 < shndx < shnum and eligible[shndx]):
                ndst += 1
                strtab_size += max(namelen, 0) + 1
        nsrc = len(image.sym_shndx)
        kallsyms = _MOD_KALLSYMS if image.bits == 64 else _MOD_KALLSYMS_32
        ksym_core = ndst * image.sym_size + strtab_size + ndst
        ksym_init = symsect.size + strsect.size + kallsyms + nsrc

        def add_tables(init_size: int, core_size: int) -> tuple[int, int]:
            init_size = _align(init_size, symsect.addralign) + symsect.size
            core_size = _align(core_size, symsect.addralign) + ndst * image.sym_size + strtab_size + ndst
            init_size = _align(init_size, strsect.addralign) + strsect.size
            init_size = _align(init_size, 8 if image.bits == 64 else 4) + kallsyms + nsrc
            return init_size, core_size

        init_legacy, core_legacy = add_tables(init_legacy, core_legacy)
        mem[_INIT_DATA], mem[_DATA] = add_tables(mem[_INIT_DATA], mem[_DATA])
        if config.strict_rwx:
            core_legacy, init_legacy = page_align(core_legacy), page_align(init_legacy)
    memory = tuple(page_align(x) if x else 0 for x in mem)
    return ModuleLayout(
        **groups,
        percpu=secs[pcpu].size if pcpu else 0,
        not_loaded_alloc=not_loaded,
        alloc_total=alloc_total,
        ksym_core=ksym_core,
        ksym_init=ksym_init,
        core=core_legacy,
        init=init_legacy,
        memory=memory,  # type: ignore[arg-type]
        plt_core=plt_core,
        plt_init=plt_init,
    )


_PLT_ENTRY = 12  # sizeof(struct plt_entry): adrp, add, br
_NR_FTRACE_PLTS = 1  # 6.x with CONFIG_DYNAMIC_FTRACE


def _arm64_plts(image: ElfImage, sizes: list[int], aligns: list[int], flags: list[int], path: str) -> tuple[int, int]:
    """``module_frob_arch_sections()`` of arm64 (with KASLR): size .plt, .init.plt and the ftrace trampoline.

    Each branch relocation to a symbol outside its own section needs a PLT
    entry; identical (type, symbol, addend) entries with addend 0 share one.
    The Cortex-A53 erratum 843419 slack depends on the boot CPU and is left out.
    """
    names = [s.name for s in image.sections]
    if ".plt" not in names or ".init.plt" not in names:
        raise ModuleFileError(path, "module PLT section(s) missing")
    counts = [0, 0]
    for dst, relocs in image.branch_relocs:
        if not image.sections[dst].flags & SHF_EXECINSTR:
            continue
        needs = sorted(r for r in relocs if image.sym_shndx[r[1]] != dst)
        n = sum(1 for k, r in enumerate(needs) if r[2] != 0 or k == 0 or needs[k - 1] != r)
        counts[image.sections[dst].name.startswith(".init")] += n
    for name, n in ((".plt", counts[0]), (".init.plt", counts[1])):
        i = names.index(name)
        sizes[i], aligns[i], flags[i] = (n + 1) * _PLT_ENTRY, 64, SHF_EXECINSTR | SHF_ALLOC
    if ".text.ftrace_trampoline" in names:
        i = names.index(".text.ftrace_trampoline")
        sizes[i], aligns[i], flags[i] = _NR_FTRACE_PLTS * _PLT_ENTRY, 4, SHF_EXECINSTR | SHF_ALLOC
    return sizes[names.index(".plt")], sizes[names.index(".init.plt")]
