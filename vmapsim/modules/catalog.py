"""Module catalogs: real module trees scanned into sizes, dependencies and aliases.

``Catalog.scan(path)`` reads every ``.ko``, ``.ko.xz``, ``.ko.zst`` and ``.ko.gz``
under a ``lib/modules/<kver>`` tree (or a package root holding one, or any
directory of modules), in parallel, and replays the loader's layout for each;
``Catalog.builtin("debian-6.12-amd64")`` loads a catalog shipped with vmapsim.

>>> cat = Catalog.builtin("debian-6.12-amd64")
>>> cat["kvm_intel"].core_size, cat.generation
(417792, <Generation.MODULE_MEMORY: 'module_memory'>)
>>> [m.name for m in cat.closure("kvm_intel")]
['irqbypass', 'kvm', 'kvm_intel']
"""

from __future__ import annotations

import csv
import io
import json
import lzma
import os
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import attrs

from vmapsim.checks import load_json, read_file, show, text
from vmapsim.errors import InvalidArgument
from vmapsim.modules.alias import AliasIndex, kmod_fnmatch
from vmapsim.modules.image import ModuleImage
from vmapsim.modules.layout import MEMORY_TYPES, Generation, KernelConfig
from vmapsim.modules.scan import ScanProblem, kernel_version, scan_tree

__all__ = ["ACPI_PROCESSOR_MODALIASES", "CSV_COLUMNS", "MAX_CATALOG_BYTES", "Catalog", "UnknownModule", "check_image"]

#: The per-CPU device modaliases udev sees for ACPI processor objects.
ACPI_PROCESSOR_MODALIASES = ("acpi:ACPI0007:", "acpi:LNXCPU:")
#: Columns of ``vmapsim scan --csv``: those of the reference tables in tests/data/reference, in that order.
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
class Catalog:
    """A set of modules from one kernel build, with the lookups a loader model needs.

    ``generation`` is the loader layout of that kernel (``"module_layout"`` up to
    6.3, ``"module_memory"`` from 6.4), read from the modules' vermagic;
    ``problems`` lists the files a scan skipped; ``order`` is depmod's order of
    the modules (the tree's ``modules.order``), in which kmod lists the modules
    a modalias resolves to.
    """

    kernel: str
    config: KernelConfig
    modules: dict[str, ModuleImage]
    problems: tuple[ScanProblem, ...] = ()
    order: tuple[str, ...] = ()
    #: Where a scan took the kernel configuration from (a file, the given config, or the defaults).
    config_source: str = attrs.field(default="", eq=False)
    # Built on first use (a frozen value memoises into mutable holders).
    _alias_index: list[AliasIndex] = attrs.field(factory=list, init=False, eq=False, repr=False)
    _closures: dict[str, tuple[ModuleImage, ...]] = attrs.field(factory=dict, init=False, eq=False, repr=False)
    _rank: dict[str, int] = attrs.field(factory=dict, init=False, eq=False, repr=False)

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

    def with_images(self, images: Iterable[ModuleImage]) -> Catalog:
        """This catalog with ``images`` added, each replacing a module of its name.  Runtime: O(n).

        >>> cat = Catalog.builtin("debian-6.12-amd64")
        >>> big = cat.with_images([cat["loop"].resized("big_loop", text=1 << 20)])
        >>> big["big_loop"].memory[0], len(big) == len(cat) + 1
        (1048576, True)
        """
        added = list(images)
        for j, image in enumerate(added):
            check_image(f"images[{j}]", image)  # what a saved catalog would refuse, refused before it is added
        modules = {**self.modules, **{image.name.replace("-", "_"): image for image in added}}
        return attrs.evolve(self, modules=modules, config_source=self.config_source)

    def __iter__(self) -> Iterator[ModuleImage]:
        """Modules in name order.  Runtime complexity: O(n log n)."""
        return iter(sorted(self.modules.values(), key=lambda m: m.name))

    def __len__(self) -> int:
        """Number of modules.  Runtime complexity: O(1)."""
        return len(self.modules)

    @property
    def generation(self) -> Generation:
        """:attr:`~Generation.MODULE_MEMORY` for 6.4+ kernels, else :attr:`~Generation.MODULE_LAYOUT`.

        Runtime complexity: O(n).
        """
        versions = {kernel_version(m.vermagic) for m in self.modules.values() if m.vermagic}
        key = max(versions) if versions else kernel_version(self.kernel)
        return Generation.MODULE_MEMORY if key >= (6, 4) else Generation.MODULE_LAYOUT

    def match_alias(self, modalias: str) -> list[str]:
        """Names of modules with an alias matching ``modalias``, as kmod's fnmatch() matches them.

        In kmod's order: libkmod's alias index returns matches by priority,
        which depmod sets from ``modules.order`` (``index_searchwild()``,
        ``add_value()``); modules the catalog has no order for come last, by
        name.  Runtime complexity: O(total aliases) for the first
        lookup (it builds the :class:`~vmapsim.modules.alias.AliasIndex`), then
        O(prefix lengths + candidates).

        >>> Catalog.builtin("debian-6.12-amd64").match_alias("pci:v00008086d000010D3sv00008086sd0000A01Fbc02sc00i00")
        ['e1000e']
        """
        text("modalias", modalias)
        if not self._alias_index:
            self._alias_index.append(AliasIndex((a, m.name) for m in self.modules.values() for a in m.aliases))
            self._rank.update((name, i) for i, name in enumerate(self.order))
        last = len(self._rank)
        return sorted(self._alias_index[0].match(modalias), key=lambda n: (self._rank.get(n, last), n))

    def closure(self, name: str) -> list[ModuleImage]:
        """``name`` and its ``depends=`` closure, dependencies first: the order modprobe loads them.

        Runtime complexity: O(closure size) the first time per name, then O(1) plus the copy.
        """
        key = name.replace("-", "_") if isinstance(name, str) else ""
        cached = self._closures.get(key)
        if cached is not None:
            return list(cached)
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
        self._closures[key] = tuple(order)
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
        arch: str | None = None,
        jobs: int | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> Catalog:
        """Read every module file under ``path``, in ``jobs`` processes (default, and at most: the usable CPUs).

        ``path`` is a ``lib/modules/<kver>`` directory, a package root holding
        one, or any directory of module files.  The architecture is the
        modules' own, from their ELF header's machine (one of :data:`ARCHES
        <vmapsim.modules.layout.ARCHES>`, else :class:`InvalidArgument`); ``arch``
        checks it.  The kernel configuration comes from the tree's
        ``boot/config-*`` (Debian 12) or ``usr/lib/modules/<kver>/config``
        (Debian 13's backports) when there is one, else ``config``, else
        Debian's defaults for that architecture; ``config_source`` says which
        (``arch``, or a config, of another architecture than the modules' is
        :class:`InvalidArgument`).  The kernel is the tree's ``<kver>``, else (a
        bare directory) the release the modules' vermagic names most often.  Bad
        files, and modules of another architecture, are skipped and listed in
        ``problems``; a missing path, or one with no module file, raises
        :class:`InvalidArgument`.  ``progress(done, total)`` is called as files
        finish.  Runtime complexity: O(total bytes / jobs).
        """
        images, problems, kernel, found, order, source = scan_tree(path, config=config, arch=arch, jobs=jobs,
                                                                   progress=progress)  # fmt: skip
        if not kernel:  # a bare directory: the release the modules' vermagic names most often
            releases = Counter(m.vermagic.split()[0] for m in images if m.vermagic.split())
            kernel = min(releases, key=lambda r: (-releases[r], r)) if releases else ""
        return cls(kernel or "unknown", found, {m.name: m for m in images}, tuple(problems), order, source)

    def to_csv(self) -> str:
        """One row per module with :data:`CSV_COLUMNS` (aliases cut to the first 20, as in the reference tables).

        Runtime complexity: O(n).
        """
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(CSV_COLUMNS)
        gen = self.generation
        for m in self:
            if gen is Generation.MODULE_LAYOUT:
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
            "order": list(self.order),
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

        The file is checked field by field against :class:`ModuleImage` (names and
        types), within size limits, before a catalog is built.  Runtime complexity: O(n).
        """
        if not isinstance(path, str | os.PathLike):
            raise InvalidArgument(f"path={show(path)}: expected a catalog file's path")
        # the file is xz, smaller than the JSON it holds: the JSON's limit bounds it too
        return cls.from_bytes(read_file(path, MAX_CATALOG_BYTES, what="catalog"), source=str(path))

    @classmethod
    def from_bytes(cls, raw: bytes, *, source: str = "catalog") -> Catalog:
        """A catalog from the bytes of a file :meth:`save` wrote (what :meth:`load` reads from a path);
        :class:`InvalidArgument` naming ``source`` if they are not one.  Runtime complexity: O(n).

        >>> Catalog.from_bytes(b"not xz", source="<stdin>")
        Traceback (most recent call last):
        ...
        vmapsim.errors.InvalidArgument: <stdin>: not a readable vmapsim catalog (Input format not supported by decoder)
        """
        if not isinstance(raw, bytes):
            raise InvalidArgument(f"raw={show(raw)}: expected a catalog file's bytes")
        try:
            doc = load_json(_expand(raw), source=source, max_bytes=MAX_CATALOG_BYTES)
            return cls._from_doc(doc)
        except (lzma.LZMAError, ValueError, MemoryError) as e:  # ParseError and InvalidArgument are ValueErrors
            raise InvalidArgument(f"{source}: not a readable vmapsim catalog ({str(e)[:200]})") from None

    @classmethod
    def _from_doc(cls, doc: object) -> Catalog:
        if not isinstance(doc, dict) or doc.get("format") != _FORMAT or doc.get("version") != 1:
            raise ValueError("not a vmapsim catalog (version 1)")
        kernel, config, fields, rows = (doc.get(k) for k in ("kernel", "config", "fields", "modules"))
        text("kernel", kernel)
        want = {f.name: f.type for f in attrs.fields(ModuleImage)}
        if not isinstance(fields, list) or sorted(map(str, fields)) != sorted(want) or len(set(fields)) != len(want):
            raise ValueError(f"fields {show(fields)}: expected the fields of ModuleImage")
        cfg_types = {f.name: f.type for f in attrs.fields(KernelConfig)}
        if not isinstance(config, dict) or set(config) != set(cfg_types):
            raise ValueError(f"config {show(config)}: expected the fields of KernelConfig")
        cfg = KernelConfig(**{k: _value(f"config.{k}", cfg_types[k], v) for k, v in config.items()})
        if not isinstance(rows, list):
            raise ValueError(f"modules {show(rows)}: expected a list of rows")
        modules: dict[str, ModuleImage] = {}
        for i, row in enumerate(rows):
            if not isinstance(row, list) or len(row) != len(fields):
                raise ValueError(f"module row {i}: expected {len(fields)} values")
            m = _image(f"module row {i}", ModuleImage(**dict(zip(fields, row, strict=True))))
            if m.name in modules:
                raise ValueError(f"module row {i}: name {show(m.name)} is repeated")
            modules[m.name] = m
        order = doc.get("order", [])  # catalogs saved before the order was kept have none
        if not isinstance(order, list) or not all(isinstance(n, str) for n in order):
            raise ValueError(f"order {show(order)}: expected a list of module names")
        return cls(kernel, cfg, modules, order=tuple(order))  # type: ignore[arg-type]

    @classmethod
    def _from_trusted(cls, doc: dict[str, Any]) -> Catalog:
        """A shipped catalog's document, built as written: lists become tuples, nothing else is checked (the
        package's own catalogs, which tests/test_modules.py checks field by field)."""
        fields = doc["fields"]
        lists = [i for i, f in enumerate(fields) if f in _TUPLE_FIELDS]
        # save() writes the class's own field order, so a row goes in by position, the cheapest call there is
        assert fields == [f.name for f in attrs.fields(ModuleImage)], "a shipped catalog is written by save()"
        modules: dict[str, ModuleImage] = {}
        for row in doc["modules"]:
            for i in lists:
                row[i] = tuple(row[i])
            m = ModuleImage(*row)
            modules[m.name] = m
        config: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in doc["config"].items()}
        return cls(doc["kernel"], KernelConfig(**config), modules, order=tuple(doc.get("order", ())))

    @staticmethod
    def builtins() -> list[str]:
        """Names of the catalogs shipped with vmapsim.  Runtime complexity: O(1).

        >>> Catalog.builtins()  # doctest: +NORMALIZE_WHITESPACE
        ['debian-5.10-amd64', 'debian-6.1-amd64', 'debian-6.12-amd64', 'debian-6.12-arm64', 'debian-7.3-amd64',
         'debian13-6.12-amd64']
        """
        data = resources.files("vmapsim") / "data"
        return sorted(p.name.removesuffix(".json.xz") for p in data.iterdir() if p.name.endswith(".json.xz"))

    @staticmethod
    def builtin(name: str) -> Catalog:
        """A shipped catalog by name (see :meth:`builtins`), read once per process.

        Runtime complexity: O(n) the first time, O(1) after.
        """
        if name not in Catalog.builtins():
            raise InvalidArgument(f"unknown catalog {name!r}; shipped: {', '.join(Catalog.builtins())}")
        return _builtin(name)


def _expand(raw: bytes) -> bytes:
    """A catalog's xz stream expanded in 1 MiB steps into one buffer, refused as soon as it passes
    :data:`MAX_CATALOG_BYTES` (one call growing its own output would peak at twice the bound)."""
    xz, out, feed = lzma.LZMADecompressor(), bytearray(), raw
    while not xz.eof:
        step = xz.decompress(feed, max_length=min(1 << 20, MAX_CATALOG_BYTES + 1 - len(out)))
        feed = b""
        out += step
        if len(out) > MAX_CATALOG_BYTES:
            raise ValueError(f"more than {MAX_CATALOG_BYTES} bytes")
        if not step and xz.needs_input:
            raise ValueError("truncated")
    return bytes(out)


#: Largest catalog read, decompressed (64 MiB: a whole distribution kernel's 4,000+ modules take 2 MiB,
#: and parsing JSON costs several times its size, so a larger bound would let a small xz file cost GBs).
MAX_CATALOG_BYTES = 64 << 20
_SCALARS: dict[str, type] = {"str": str, "int": int, "bool": bool}


def _value(what: str, kind: object, value: object) -> Any:
    """``value`` checked against a field's annotation (``int``, ``str``, ``bool``, ``tuple[...]``), as a string or,
    once something (cattrs) has resolved the class's annotations, as the type itself."""
    kind = kind.__name__ if isinstance(kind, type) else str(kind)
    if kind.startswith("tuple["):
        inner = kind[6:-1].split(", ")
        if not isinstance(value, list):
            raise ValueError(f"{what}={show(value)}: expected a list")
        fixed = inner[-1] != "..."
        if fixed and len(value) != len(inner):
            raise ValueError(f"{what}={show(value)}: expected {len(inner)} values")
        return tuple(_value(what, inner[i] if fixed else inner[0], v) for i, v in enumerate(value))
    want = _SCALARS[kind]
    if type(value) is not want or (want is int and not 0 <= value < 1 << 63):  # type: ignore[operator]
        raise ValueError(f"{what}={show(value)}: expected {'a size' if want is int else kind}")
    return value


def check_image(what: str, image: object) -> ModuleImage:
    """``image`` if it is a :class:`ModuleImage` a saved catalog would hold (every field of its annotated
    type, sizes from 0 to 2**63, a name, a size per memory type); else :class:`InvalidArgument` naming
    ``what`` and the field.  Runtime complexity: O(fields).

    >>> import attrs
    >>> check_image("mine", attrs.evolve(Catalog.builtin("debian-6.12-amd64")["loop"], text=-1))
    Traceback (most recent call last):
    ...
    vmapsim.errors.InvalidArgument: mine text=-1: expected a size
    """
    if not isinstance(image, ModuleImage):
        raise InvalidArgument(f"{what}: {show(image)} is not a ModuleImage")
    try:
        _image(what, image)
    except ValueError as e:
        raise InvalidArgument(str(e)) from None
    return image


def _image(what: str, image: ModuleImage) -> ModuleImage:
    """``image`` if every field has its annotated type (sizes from 0 to 2**63), its name is not empty and it
    has a size per memory type; else :class:`ValueError` naming ``what`` and the field.  Runtime: O(fields)."""
    fixed = {}
    for f in attrs.fields(ModuleImage):
        fixed[f.name] = _value(f"{what} {f.name}", f.type, _jsonable(getattr(image, f.name)))
    if not image.name:
        raise ValueError(f"{what}: name {show(image.name)} is empty")
    if len(image.memory) != len(MEMORY_TYPES):
        raise ValueError(f"{what} memory={show(image.memory)}: expected {len(MEMORY_TYPES)} sizes, one per type of "
                         f"{', '.join(MEMORY_TYPES)}")  # fmt: skip
    return ModuleImage(**fixed)


def _jsonable(value: object) -> object:
    return list(value) if isinstance(value, tuple) else value


def _percpu_kinds(aliases: tuple[str, ...]) -> str:
    kinds = set()
    for a in aliases:
        if a.startswith("cpu:type:"):
            kinds.add("arm64cpu" if a.startswith(("cpu:type:aarch64", "cpu:type:*")) else "x86cpu")
        elif any(kmod_fnmatch(m, a) for m in ACPI_PROCESSOR_MODALIASES):
            kinds.add("acpi-processor")
    return ";".join(sorted(kinds))


@cache
def _builtin(name: str) -> Catalog:
    raw = (resources.files("vmapsim") / "data" / f"{name}.json.xz").read_bytes()
    return Catalog._from_trusted(json.loads(lzma.decompress(raw)))


#: The fields of ModuleImage that a JSON document holds as lists.
_TUPLE_FIELDS = frozenset(f.name for f in attrs.fields(ModuleImage) if str(f.type).startswith("tuple["))
