"""Scanning a module tree: every ``.ko``, ``.ko.xz``, ``.ko.zst`` and ``.ko.gz`` file read and laid out.

:func:`read_module` turns one file's bytes into a
:class:`~vmapsim.modules.image.ModuleImage` (decompress, strip the signature,
parse the ELF, replay the loader's layout); :func:`scan_tree` does that for a
whole ``lib/modules/<kver>`` tree (or a package root holding one, or any
directory of modules) in a process pool, keeping every good file and a
:class:`ScanProblem` for every bad one.

>>> read_module(b"not a module", "bad.ko", KernelConfig())
Traceback (most recent call last):
...
vmapsim.errors.ModuleFileError: bad.ko: not an ELF file
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterable
from pathlib import Path

import attrs

from vmapsim.checks import integer, read_file, release, show, usable_cpus
from vmapsim.errors import InvalidArgument, ModuleFileError, VmapsimError
from vmapsim.modules.compression import MAX_MODULE_BYTES, compression_of, decompress
from vmapsim.modules.elf import ElfImage, parse_elf, split_signature
from vmapsim.modules.image import ModuleImage
from vmapsim.modules.layout import ARCHES, KernelConfig, layout_module

__all__ = ["ScanProblem", "kernel_version", "read_module", "scan_tree"]


@attrs.frozen
class ScanProblem:
    """A file the scanner skipped: its path (relative to the tree) and why."""

    path: str
    reason: str


def read_module(data: bytes, rel: str, config: KernelConfig, btf_name: str = ".BTF") -> ModuleImage:
    """Decompress, strip the signature, parse and lay out one module file's bytes.

    ``rel`` is its path relative to the tree (it names the module: basename
    without ``.ko*``, ``-`` replaced by ``_``).  Raises :class:`ModuleFileError`,
    also for a module of another architecture than ``config``'s, which the
    kernel refuses (``elf_check_arch()`` in ``elf_validity_check()``).
    Runtime complexity: O(file size + symbols).
    """
    base = os.path.basename(rel)
    kind, raw, sig, image = _unpack(data, rel)
    if image.machine != config.arch:
        raise ModuleFileError(rel, f"{_elf_name(image.machine)} ELF, not {config.arch} (elf_check_arch())")
    lay = layout_module(image, config, rel)
    info: dict[str, list[str]] = {}
    for key, value in image.modinfo:
        info.setdefault(key, []).append(value)
    btf = image.section(btf_name, alloc=False)

    def one(key: str) -> str:
        return info.get(key, [""])[0]

    # Every size the layout replay produced carries over under the same name; core/init become ``legacy``.
    sizes = attrs.asdict(lay, recurse=False)
    legacy = (sizes.pop("core"), sizes.pop("init"))
    return ModuleImage(
        name=base[: base.index(".ko")].replace("-", "_"),
        path=rel,
        compression=kind,
        file_size=len(data),
        decompressed_size=len(raw),
        signature_size=sig,
        btf=image.sections[btf].size if btf else 0,
        legacy=legacy,
        depends=tuple(d for d in one("depends").split(",") if d),
        aliases=tuple(info.get("alias", ())),
        softdeps=tuple(info.get("softdep", ())),
        vermagic=one("vermagic"),
        modinfo_name=one("name"),
        **sizes,
    )


def _unpack(data: bytes, rel: str) -> tuple[str, bytes, int, ElfImage]:
    """A module file's compression, decompressed bytes, signature length and parsed ELF."""
    kind = compression_of(os.path.basename(rel))
    if kind is None:
        raise ModuleFileError(rel, "not a module file name (.ko, .ko.xz, .ko.zst, .ko.gz)")
    raw = decompress(data, kind, rel)
    elf, sig = split_signature(raw)
    return kind, raw, sig, parse_elf(elf, rel)


#: How ``readelf -h`` names each machine vmapsim knows (its ``Machine:`` line), for messages.
_ELF_NAMES = {"x86_64": "x86-64", "arm64": "AArch64", "riscv": "RISC-V", "i386": "Intel 80386", "arm": "ARM",
              "ppc64": "PowerPC64", "s390": "IBM S/390"}  # fmt: skip


def _elf_name(machine: str) -> str:
    return _ELF_NAMES.get(machine, machine)


def _modules_machine(files: list[str], tree: Path) -> tuple[str, str] | None:
    """The ELF machine of the first module file that parses, with that file (relative to ``tree``); None
    when none does (every file is then a problem of the scan)."""
    for f in files:
        rel = os.path.relpath(f, tree)
        try:
            return _unpack(_module_bytes(f), rel)[3].machine, rel
        except (VmapsimError, MemoryError):
            continue
    return None


def _module_bytes(path: str) -> bytes:
    """A module file's bytes: no module decompresses to less than its file, so a file over the module limit
    is refused by its size, before a byte of it is read."""
    return read_file(path, MAX_MODULE_BYTES, what="module file")


def _scan_one(job: tuple[str, str, KernelConfig]) -> ModuleImage | ScanProblem:
    path, rel, config = job
    try:
        return read_module(_module_bytes(path), rel, config)
    except ModuleFileError as e:
        return ScanProblem(rel, e.reason)
    except MemoryError:
        return ScanProblem(rel, "ran out of memory reading it")
    except VmapsimError as e:
        return ScanProblem(rel, str(e))


def kernel_version(vermagic: str) -> tuple[int, int]:
    """(major, minor) at the start of a vermagic or release string; (0, 0) if none.

    >>> kernel_version("6.12.117+deb12-amd64 SMP preempt mod_unload modversions ")
    (6, 12)
    """
    try:
        return release(vermagic)
    except InvalidArgument:
        return (0, 0)


def scan_tree(
    path: str | os.PathLike[str],
    *,
    config: KernelConfig | None = None,
    arch: str | None = None,
    jobs: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[list[ModuleImage], list[ScanProblem], str, KernelConfig, tuple[str, ...], str]:
    """Read every module file under ``path``: (images, problems, release, config, depmod order, config source).

    The order is the tree's ``modules.order`` (the build's link order, which
    depmod keeps as each module's priority), as module names; empty without one.
    The architecture is the modules' own (the ELF machine of the first that
    reads); ``arch``, a config found or ``config`` naming another is refused.
    The config source is the file the config was read from, or says it was
    the ``config`` given or the defaults, and for which architecture.
    See :meth:`vmapsim.modules.Catalog.scan`.  Runtime complexity: O(total bytes / jobs).
    """
    if not isinstance(path, str | os.PathLike):
        raise InvalidArgument(f"path={show(path)}: expected a directory's path")
    root = Path(path)
    if not root.is_dir():
        raise InvalidArgument(f"{root}: no such directory")
    if config is not None and not isinstance(config, KernelConfig):
        raise InvalidArgument(f"config={show(config)}: expected a KernelConfig")
    if arch is not None and arch not in ARCHES:
        raise InvalidArgument(f"arch={show(arch)}: expected one of {', '.join(ARCHES)}, or None for the modules' own")
    if jobs is not None:
        integer("jobs", jobs, 1, 1024)
    problems: list[ScanProblem] = []
    tree, kernel, found_config, source = _find_tree(root, problems)
    files = _module_files(tree, problems)
    if not files:
        raise InvalidArgument(f"{root}: no module files (.ko, .ko.xz, .ko.zst, .ko.gz) found")
    given = "the given config" if config else ""
    config, source = _config(files, tree, arch, found_config or config, source or given)
    jobs_list = [(f, os.path.relpath(f, tree), config) for f in files]
    workers = min(jobs or usable_cpus(), usable_cpus())  # more processes than CPUs only share them
    if workers == 1 or len(files) < 64:
        results = _collect(map(_scan_one, jobs_list), len(files), progress)
    else:
        from concurrent.futures import ProcessPoolExecutor  # here: every command imports this module

        with ProcessPoolExecutor(workers) as pool:
            results = _collect(pool.map(_scan_one, jobs_list, chunksize=32), len(files), progress)
    images: list[ModuleImage] = []
    seen: dict[str, ModuleImage] = {}
    for r in results:
        if isinstance(r, ScanProblem):
            problems.append(r)
        elif r.name in seen:
            problems.append(ScanProblem(r.path, f"duplicate module name {r.name} (kept {seen[r.name].path})"))
        else:
            seen[r.name] = r
            images.append(r)
    if not images:
        raise InvalidArgument(f"{root}: no readable module among {len(files)} files ({problems[0].reason})")
    return images, problems, kernel, config, _order(tree, problems), source


def _config(
    files: list[str], tree: Path, arch: str | None, config: KernelConfig | None, source: str
) -> tuple[KernelConfig, str]:
    """The config the modules are laid out with, and where it came from: the modules' ELF machine decides the
    architecture, and ``arch`` or a ``config`` (from ``source``) of another is refused, as kmod's insmod would
    meet ``elf_check_arch()``.  Without a config, Debian's defaults for that architecture."""
    found = _modules_machine(files, tree)
    if found is None:  # no file reads: each is a problem of the scan, whatever it is laid out as
        machine = arch or (config.arch if config else "x86_64")
    else:
        machine, example = found
        elf = f"{_elf_name(machine)} ELF (e.g. {example})"
        if machine not in ARCHES:
            raise InvalidArgument(f"the modules are {elf}: vmapsim lays out {' and '.join(ARCHES)} modules only")
        if arch is not None and arch != machine:
            raise InvalidArgument(f"arch {arch} was asked for, but the modules are {elf}")
        if config is not None and config.arch != machine:
            raise InvalidArgument(f"{source} is an {config.arch} config, but the modules are {elf}")
    if config is None:
        debian = {"x86_64": "amd64"}.get(machine, machine)
        return KernelConfig(arch=machine), f"Debian {debian} defaults (no .config given or found)"
    return config, f"{source} ({config.arch})"


#: Largest modules.order or kernel .config read (a distribution's are well under 1 MiB).
_MAX_TEXT_BYTES = 16 << 20


def _order(tree: Path, problems: list[ScanProblem]) -> tuple[str, ...]:
    """Module names in ``modules.order`` (``kernel/arch/x86/crypto/aesni-intel.ko`` -> ``aesni_intel``)."""
    path = tree / "modules.order"
    try:
        text = read_file(path, _MAX_TEXT_BYTES, what="modules.order") if path.exists() else b""
    except InvalidArgument as e:
        problems.append(ScanProblem(str(path), str(e)))
        return ()
    lines = text.decode(errors="replace").splitlines()
    names = (os.path.basename(line.strip()) for line in lines if ".ko" in line)
    return tuple(dict.fromkeys(n[: n.index(".ko")].replace("-", "_") for n in names))


def _collect(
    results: Iterable[ModuleImage | ScanProblem], total: int, progress: Callable[[int, int], None] | None
) -> list[ModuleImage | ScanProblem]:
    out = []
    for i, r in enumerate(results, 1):
        out.append(r)
        if progress is not None:
            progress(i, total)
    return out


def _module_files(tree: Path, problems: list[ScanProblem]) -> list[str]:
    """Every module file under ``tree``, symlinked directories followed; what cannot be read is a problem."""
    files: list[str] = []
    seen: set[tuple[int, int]] = set()

    def unreadable(e: OSError) -> None:
        problems.append(ScanProblem(os.path.relpath(e.filename or tree, tree), f"cannot read directory: {e.strerror}"))

    for top, dirs, names in os.walk(tree, onerror=unreadable, followlinks=True):
        st = os.stat(top)
        if (st.st_dev, st.st_ino) in seen:  # a symlink back up the tree: walked already
            problems.append(ScanProblem(os.path.relpath(top, tree), "walked already (a symlink to it, or a loop)"))
            dirs.clear()
            continue
        seen.add((st.st_dev, st.st_ino))
        dirs.sort()
        for name in names:
            if compression_of(name) is None:
                continue
            full = os.path.join(top, name)
            rel = os.path.relpath(full, tree)
            try:
                mode = os.stat(full).st_mode
            except OSError as e:
                problems.append(ScanProblem(rel, f"cannot read: {e.strerror}"))
                continue
            if stat.S_ISREG(mode):
                files.append(full)
            else:
                problems.append(ScanProblem(rel, "not a regular file"))
    return sorted(files)


def _find_tree(root: Path, problems: list[ScanProblem]) -> tuple[Path, str, KernelConfig | None, str]:
    """The directory to scan, the kernel release, and the config found beside it with the file it came from.

    Debian 12 ships the config as ``boot/config-<kver>``; Debian 13's backports
    (``linux-base-<kver>``) as ``usr/lib/modules/<kver>/config``.
    """
    tree, kernel = root, ""
    if (root / "lib" / "modules").is_dir() or (root / "usr" / "lib" / "modules").is_dir():
        base = root / "lib" / "modules" if (root / "lib" / "modules").is_dir() else root / "usr" / "lib" / "modules"
        trees = sorted(p for p in base.iterdir() if p.is_dir())
        if trees:
            tree, kernel = trees[0], trees[0].name
    elif root.parent.name == "modules":
        kernel = root.name
    places = [sorted(boot.glob(f"config-{kernel}" if kernel else "config-*")) if boot.is_dir() else []
              for boot in (root / "boot", root.parent.parent.parent / "boot")]  # fmt: skip
    places.append([tree / "config"])
    for found in places:
        candidates = [c for c in found if c.is_file()]
        if candidates:
            try:
                text = read_file(candidates[0], _MAX_TEXT_BYTES, what="kernel config").decode(errors="replace")
            except InvalidArgument as e:
                problems.append(ScanProblem(str(candidates[0]), f"cannot read the kernel config: {e}"))
                continue
            if candidates[0].name.startswith("config-"):
                kernel = kernel or candidates[0].name.removeprefix("config-")
            return tree, kernel, KernelConfig.from_text(text), str(candidates[0])
    return tree, kernel, None, ""
