"""Module catalogs: real module trees scanned into sizes, dependencies and aliases.

``Catalog.scan(path)`` reads every ``.ko``, ``.ko.xz``, ``.ko.zst`` and ``.ko.gz``
under a ``lib/modules/<kver>`` tree (or a package root holding one, or any
directory of modules), in parallel, and replays the loader's layout for each;
``Catalog.builtin("debian-6.12-amd64")`` loads a catalog shipped with vmapsim.

>>> cat = Catalog.builtin("debian-6.12-amd64")
>>> cat["kvm_intel"].core_size, cat.generation
(417792, 'module_memory')
>>> [m.name for m in cat.closure("kvm_intel")]
['irqbypass', 'kvm', 'kvm_intel']
"""

from __future__ import annotations

import csv
import fnmatch
import io
import json
import lzma
import os
import re
import sys
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from importlib import resources
from pathlib import Path
from typing import Any, TextIO

import attrs

from vmapsim.errors import InvalidArgument, ModuleFileError
from vmapsim.modules.compression import compression_of, decompress
from vmapsim.modules.elf import parse_elf, split_signature
from vmapsim.modules.layout import MEMORY_TYPES, KernelConfig, layout_module

__all__ = ["CSV_COLUMNS", "Catalog", "ModuleImage", "ScanProblem", "UnknownModule", "progress_bar", "read_module"]

#: The per-CPU device modaliases udev sees for ACPI processor objects.
ACPI_PROCESSOR_MODALIASES = ("acpi:ACPI0007:", "acpi:LNXCPU:")
#: Columns of ``vmapsim scan --csv``: those of ../shared/data/*.csv, in that order.
CSV_COLUMNS = (
    "name", "path", "compression", "file_size", "decompressed_size", "text", "rodata", "ro_after_init", "data",
    "init_text", "init_data", "alloc_total", "depends", "aliases", "alias_count", "percpu_alias", "init_rodata",
    "percpu", "not_loaded_alloc", "btf", "ksym_core", "ksym_init", "plt_core", "plt_init", "est_core_alloc",
    "est_init_alloc", "est_allocs", "softdeps", "modinfo_name",
)  # fmt: skip
# The order est_allocs lists the 6.4+ memory types in.
_CSV_TYPES = ("text", "rodata", "ro_after_init", "data", "init_text", "init_rodata", "init_data")
_MAX_CSV_ALIASES = 20
_FORMAT = "vmapsim-catalog"


class UnknownModule(InvalidArgument):
    """A module name the catalog does not have."""


@attrs.frozen
class ScanProblem:
    """A file the scanner skipped: its path (relative to the tree) and why."""

    path: str
    reason: str


@attrs.frozen
class ModuleImage:
    """One module as the loader sees it: file sizes, section groups, allocations, metadata.

    ``legacy`` is the (core, init) ``module_alloc()`` pair of kernels up to 6.3;
    ``memory`` the seven 6.4+ allocations in ``layout.MEMORY_TYPES`` order (0:
    empty type, no allocation).  Sizes are bytes.

    >>> m = Catalog.builtin("debian-6.1-amd64")["kvm_intel"]
    >>> m.legacy, m.depends
    ((380928, 61440), ('kvm',))
    """

    name: str
    path: str
    compression: str
    file_size: int
    decompressed_size: int
    signature_size: int
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
    btf: int
    ksym_core: int
    ksym_init: int
    legacy: tuple[int, int]
    memory: tuple[int, ...]
    depends: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()
    softdeps: tuple[str, ...] = ()
    vermagic: str = ""
    modinfo_name: str = ""
    plt_core: int = 0
    plt_init: int = 0

    @property
    def core_size(self) -> int:
        """Bytes that stay allocated while the module is loaded (lsmod's Size), 6.4+ layout.

        Runtime complexity: O(1).
        """
        return sum(self.memory[:4])

    def allocations(self, generation: str) -> tuple[tuple[str, int], ...]:
        """The module-area allocations ``move_module()`` makes, as ``(type, bytes)`` pairs.

        ``generation`` is ``"module_layout"`` (≤ 6.3: core, init) or
        ``"module_memory"`` (≥ 6.4: each non-empty type, in ``enum mod_mem_type``
        order).  Runtime complexity: O(1).
        """
        if generation == "module_layout":
            return tuple((t, n) for t, n in zip(("core", "init"), self.legacy, strict=True) if n)
        if generation == "module_memory":
            return tuple((t, n) for t, n in zip(MEMORY_TYPES, self.memory, strict=True) if n)
        raise InvalidArgument(f"generation {generation!r}: expected 'module_layout' or 'module_memory'")


def read_module(data: bytes, rel: str, config: KernelConfig, btf_name: str = ".BTF") -> ModuleImage:
    """Decompress, strip the signature, parse and lay out one module file's bytes.

    ``rel`` is its path relative to the tree (it names the module: basename
    without ``.ko*``, ``-`` replaced by ``_``).  Raises :class:`ModuleFileError`.
    Runtime complexity: O(file size + symbols).
    """
    base = os.path.basename(rel)
    kind = compression_of(base)
    if kind is None:
        raise ModuleFileError(rel, "not a module file name (.ko, .ko.xz, .ko.zst, .ko.gz)")
    raw = decompress(data, kind, rel)
    elf, sig = split_signature(raw)
    image = parse_elf(elf, rel)
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


def _scan_one(job: tuple[str, str, KernelConfig]) -> ModuleImage | ScanProblem:
    path, rel, config = job
    try:
        return read_module(Path(path).read_bytes(), rel, config)
    except ModuleFileError as e:
        return ScanProblem(rel, e.reason)
    except OSError as e:
        return ScanProblem(rel, f"cannot read: {e.strerror}")


def _version_key(vermagic: str) -> tuple[int, int]:
    m = re.match(r"(\d+)\.(\d+)", vermagic)
    return (int(m.group(1)), int(m.group(2))) if m else (0, 0)


@attrs.frozen
class Catalog:
    """A set of modules from one kernel build, with the lookups a loader model needs.

    ``generation`` is the loader layout of that kernel (``"module_layout"`` up to
    6.3, ``"module_memory"`` from 6.4), read from the modules' vermagic;
    ``problems`` lists the files a scan skipped.
    """

    kernel: str
    config: KernelConfig
    modules: dict[str, ModuleImage]
    problems: tuple[ScanProblem, ...] = ()

    # ----------------------------------------------------------------- lookups

    def __getitem__(self, name: str) -> ModuleImage:
        """The module called ``name`` (``-`` and ``_`` are the same, as in kmod).  Runtime: O(1)."""
        try:
            return self.modules[name.replace("-", "_")]
        except (KeyError, AttributeError):
            raise UnknownModule(f"no module {name!r} in the {self.kernel} catalog") from None

    def __contains__(self, name: object) -> bool:
        """True when the catalog has a module called ``name``.  Runtime complexity: O(1)."""
        return isinstance(name, str) and name.replace("-", "_") in self.modules

    def __iter__(self) -> Iterator[ModuleImage]:
        """Modules in name order.  Runtime complexity: O(n log n)."""
        return iter(sorted(self.modules.values(), key=lambda m: m.name))

    def __len__(self) -> int:
        """Number of modules.  Runtime complexity: O(1)."""
        return len(self.modules)

    @property
    def generation(self) -> str:
        """``"module_memory"`` for 6.4+ kernels, else ``"module_layout"``.  Runtime: O(n) once."""
        versions = {_version_key(m.vermagic) for m in self.modules.values() if m.vermagic}
        key = max(versions) if versions else _version_key(self.kernel)
        return "module_memory" if key >= (6, 4) else "module_layout"

    def match_alias(self, modalias: str) -> list[str]:
        """Names of modules with an alias matching ``modalias``, as kmod's fnmatch() matches them.

        Sorted by name.  Runtime complexity: O(total aliases).

        >>> Catalog.builtin("debian-6.12-amd64").match_alias("pci:v00008086d000010D3sv00008086sd0000A01Fbc02sc00i00")
        ['e1000e']
        """
        return sorted({m.name for m in self.modules.values() for a in m.aliases if _fnmatch(modalias, a)})

    def closure(self, name: str) -> list[ModuleImage]:
        """``name`` and its ``depends=`` closure, dependencies first: the order modprobe loads them.

        Runtime complexity: O(closure size).
        """
        order: list[ModuleImage] = []
        seen: set[str] = set()

        def visit(mod: ModuleImage, path: tuple[str, ...]) -> None:
            if mod.name in seen:
                return
            if mod.name in path:
                raise InvalidArgument(f"dependency cycle: {' -> '.join((*path, mod.name))}")
            for dep in mod.depends:
                visit(self[dep], (*path, mod.name))
            seen.add(mod.name)
            order.append(mod)

        visit(self[name], ())
        return order

    def percpu_modules(self, cpu_modalias: str, *, acpi: bool = True) -> list[str]:
        """Modules requested once per CPU: matches of the CPU's modalias and of ACPI processor objects.

        ``cpu_modalias`` is /sys/devices/system/cpu/cpu0/modalias (x86
        ``cpu:type:x86,venVVVVfamFFFFmodMMMM:feature:,XXXX,...`` or arm64
        ``cpu:type:aarch64:feature:,XXXX,...``); with ``acpi`` the
        ``acpi:ACPI0007:``/``acpi:LNXCPU:`` objects are matched too.
        Runtime complexity: O(total aliases).
        """
        names = set(self.match_alias(cpu_modalias))
        if acpi:
            for alias in ACPI_PROCESSOR_MODALIASES:
                names.update(self.match_alias(alias))
        return sorted(names)

    # ------------------------------------------------------------- scan, save, load

    @classmethod
    def scan(
        cls,
        path: str | os.PathLike[str],
        *,
        config: KernelConfig | None = None,
        jobs: int | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> Catalog:
        """Read every module file under ``path``, in ``jobs`` processes (default: all CPUs).

        ``path`` is a ``lib/modules/<kver>`` directory, a package root holding
        one, or any directory of module files.  The kernel configuration comes
        from the tree's ``boot/config-*`` when there is one, else ``config`` or
        Debian amd64 defaults.  Bad files are skipped and listed in
        ``problems``; a missing path, or one with no module file, raises
        :class:`InvalidArgument`.  ``progress(done, total)`` is called as files
        finish.  Runtime complexity: O(total bytes / jobs).
        """
        root = Path(path)
        if not root.is_dir():
            raise InvalidArgument(f"{root}: no such directory")
        tree, kernel, found_config = _find_tree(root)
        config = found_config or config or KernelConfig()
        files = sorted(str(p) for p in tree.rglob("*") if compression_of(p.name) is not None and p.is_file())
        if not files:
            raise InvalidArgument(f"{root}: no module files (.ko, .ko.xz, .ko.zst, .ko.gz) found")
        jobs_list = [(f, os.path.relpath(f, tree), config) for f in files]
        results: list[ModuleImage | ScanProblem] = []
        workers = jobs or os.cpu_count() or 1
        if workers == 1 or len(files) < 64:
            mapped: Iterable[ModuleImage | ScanProblem] = map(_scan_one, jobs_list)
            results = _collect(mapped, len(files), progress)
        else:
            with ProcessPoolExecutor(workers) as pool:
                results = _collect(pool.map(_scan_one, jobs_list, chunksize=32), len(files), progress)
        modules: dict[str, ModuleImage] = {}
        problems = []
        for r in results:
            if isinstance(r, ScanProblem):
                problems.append(r)
            elif r.name in modules:
                problems.append(ScanProblem(r.path, f"duplicate module name {r.name} (kept {modules[r.name].path})"))
            else:
                modules[r.name] = r
        if not modules:
            raise InvalidArgument(f"{root}: no readable module among {len(files)} files ({problems[0].reason})")
        return cls(kernel or "unknown", config, modules, tuple(problems))

    def to_csv(self) -> str:
        """One row per module with :data:`CSV_COLUMNS` (aliases cut to the first 20, as in shared/data).

        Runtime complexity: O(n).
        """
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(CSV_COLUMNS)
        gen = self.generation
        for m in self:
            if gen == "module_layout":
                core, init = m.legacy
                allocs = f"core:{core};init:{init}"
            else:
                by_type = dict(zip(MEMORY_TYPES, m.memory, strict=True))
                core, init = m.core_size, sum(m.memory[4:])
                allocs = ";".join(f"{t}:{by_type[t]}" for t in _CSV_TYPES if by_type[t])
            writer.writerow(
                [m.name, m.path, m.compression, m.file_size, m.decompressed_size, m.text, m.rodata,
                 m.ro_after_init, m.data, m.init_text, m.init_data, m.alloc_total, ";".join(m.depends),
                 ";".join(m.aliases[:_MAX_CSV_ALIASES]), len(m.aliases), _percpu_kinds(m.aliases), m.init_rodata,
                 m.percpu, m.not_loaded_alloc, m.btf, m.ksym_core, m.ksym_init, m.plt_core, m.plt_init, core,
                 init, allocs, ";".join(m.softdeps), m.modinfo_name]
            )  # fmt: skip
        return out.getvalue()

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the catalog as xz-compressed JSON (columns, one row per module), all or nothing.

        Runtime complexity: O(n).
        """
        fields = [f.name for f in attrs.fields(ModuleImage)]
        doc = {
            "format": _FORMAT,
            "version": 1,
            "kernel": self.kernel,
            "config": attrs.asdict(self.config),
            "fields": fields,
            "modules": [[_jsonable(getattr(m, f)) for f in fields] for m in self],
        }
        data = json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()
        target = Path(path)
        tmp = target.with_name(target.name + ".part")
        try:  # all or nothing: a partial file never takes the name
            tmp.write_bytes(lzma.compress(data, preset=9))
            tmp.replace(target)
        except OSError as e:
            tmp.unlink(missing_ok=True)
            raise InvalidArgument(f"cannot write catalog {path}: {e.strerror}") from None

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Catalog:
        """Read a catalog written by :meth:`save`; :class:`InvalidArgument` if it is not one.

        Runtime complexity: O(n).
        """
        try:
            raw = Path(path).read_bytes()
        except OSError as e:
            raise InvalidArgument(f"cannot read catalog {path}: {e.strerror}") from None
        return cls._from_bytes(raw, str(path))

    @classmethod
    def _from_bytes(cls, raw: bytes, source: str) -> Catalog:
        try:
            doc = json.loads(lzma.decompress(raw))
            if doc.get("format") != _FORMAT or doc.get("version") != 1:
                raise ValueError("not a vmapsim catalog (version 1)")
            fields = doc["fields"]
            tuples = {"legacy", "memory", "depends", "aliases", "softdeps"}
            modules = {}
            for row in doc["modules"]:
                kw: dict[str, Any] = {f: (tuple(v) if f in tuples else v) for f, v in zip(fields, row, strict=True)}
                m = ModuleImage(**kw)
                modules[m.name] = m
            return cls(doc["kernel"], KernelConfig(**doc["config"]), modules)
        except (lzma.LZMAError, ValueError, KeyError, TypeError) as e:
            raise InvalidArgument(f"{source}: not a readable vmapsim catalog ({e})") from None

    @staticmethod
    def builtins() -> list[str]:
        """Names of the catalogs shipped with vmapsim.  Runtime complexity: O(1).

        >>> Catalog.builtins()
        ['debian-6.1-amd64', 'debian-6.12-amd64', 'debian-6.12-arm64']
        """
        data = resources.files("vmapsim") / "data"
        return sorted(p.name.removesuffix(".json.xz") for p in data.iterdir() if p.name.endswith(".json.xz"))

    @classmethod
    def builtin(cls, name: str) -> Catalog:
        """A shipped catalog by name (see :meth:`builtins`).  Runtime complexity: O(n)."""
        if name not in cls.builtins():
            raise InvalidArgument(f"unknown catalog {name!r}; shipped: {', '.join(cls.builtins())}")
        return cls._from_bytes((resources.files("vmapsim") / "data" / f"{name}.json.xz").read_bytes(), name)


def _jsonable(value: object) -> object:
    return list(value) if isinstance(value, tuple) else value


def _collect(
    results: Iterable[ModuleImage | ScanProblem], total: int, progress: Callable[[int, int], None] | None
) -> list[ModuleImage | ScanProblem]:
    out = []
    for i, r in enumerate(results, 1):
        out.append(r)
        if progress is not None:
            progress(i, total)
    return out


def _find_tree(root: Path) -> tuple[Path, str, KernelConfig | None]:
    """The directory to scan, the kernel release, and the config from a ``boot/config-*`` beside it."""
    tree, kernel = root, ""
    if (root / "lib" / "modules").is_dir() or (root / "usr" / "lib" / "modules").is_dir():
        base = root / "lib" / "modules" if (root / "lib" / "modules").is_dir() else root / "usr" / "lib" / "modules"
        trees = sorted(p for p in base.iterdir() if p.is_dir())
        if trees:
            tree, kernel = trees[0], trees[0].name
    elif root.parent.name == "modules":
        kernel = root.name
    config = None
    for boot in (root / "boot", root.parent.parent.parent / "boot"):
        candidates = sorted(boot.glob(f"config-{kernel}" if kernel else "config-*")) if boot.is_dir() else []
        if candidates:
            text = candidates[0].read_text(errors="replace")
            arch = "arm64" if "CONFIG_ARM64=y" in text else "riscv" if "CONFIG_RISCV=y" in text else "x86_64"
            config = KernelConfig.from_text(text, arch)
            kernel = kernel or candidates[0].name.removeprefix("config-")
            break
    return tree, kernel, config


def _fnmatch(name: str, pattern: str) -> bool:
    """kmod's ``fnmatch(pattern, name, 0)``: glob with ``[!...]`` and ``[^...]`` negation."""
    return fnmatch.fnmatchcase(name, pattern.replace("[^", "[!"))


def _percpu_kinds(aliases: tuple[str, ...]) -> str:
    kinds = set()
    for a in aliases:
        if a.startswith("cpu:type:"):
            kinds.add("arm64cpu" if a.startswith(("cpu:type:aarch64", "cpu:type:*")) else "x86cpu")
        elif any(_fnmatch(m, a) for m in ACPI_PROCESSOR_MODALIASES):
            kinds.add("acpi-processor")
    return ";".join(sorted(kinds))


def progress_bar(stream: TextIO | None = None) -> Callable[[int, int], None] | None:
    """A one-line progress bar on ``stream`` (stderr) when it is a terminal, else None."""
    out = stream or sys.stderr
    if not out.isatty():
        return None

    def show(done: int, total: int) -> None:
        width = 40
        filled = width * done // total
        out.write(f"\rscanning [{'#' * filled}{'.' * (width - filled)}] {done}/{total}")
        if done == total:
            out.write("\n")
        out.flush()

    return show
