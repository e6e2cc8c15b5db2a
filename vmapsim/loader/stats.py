"""CONFIG_MODULE_STATS: the kernel's module-load counters, kept by its own rules (kernel/module/stats.c).

>>> s = ModuleStats()
>>> s.bump_becoming(5000, compressed_len=1000)
>>> s.add_duplicate("kvm", FAIL_DUP_MOD_LOAD); s.add_duplicate("kvm", FAIL_DUP_MOD_BECOMING)
>>> print(s.render(), end="")  # doctest: +NORMALIZE_WHITESPACE
         Mods ever loaded	0
     Mods failed on kread	0
Mods failed on decompress	0
  Mods failed on becoming	1
      Mods failed on load	0
        Total module size	0
      Total mod text size	0
       Failed kread bytes	0
  Failed decompress bytes	0
    Failed becoming bytes	6000
        Failed kmod bytes	0
 Virtual mem wasted bytes	6000
  Avg fail becoming bytes	6000
Duplicate failed modules:
              Module-name	 How-many-times	                   Reason
                      kvm	              2	          Becoming & Load
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any

import attrs

from vmapsim.checks import integer, member, parse_number, show, text
from vmapsim.errors import InvalidArgument, ParseError
from vmapsim.profiles import release

__all__ = [
    "FAIL_DUP_MOD_BECOMING",
    "FAIL_DUP_MOD_LOAD",
    "MAX_STATS_CHARS",
    "STATS_FIRST",
    "FailurePoint",
    "ModuleStats",
    "has_stats",
]

#: The most text :meth:`ModuleStats.parse` reads: the kernel's file is a few KiB (its table of duplicates
#: is cut at 112 modules' worth of lines).
MAX_STATS_CHARS = 1 << 20
#: The first release with ``CONFIG_MODULE_STATS`` (df3e764d8e5c, "module: add debug stats to help identify
#: memory pressure", merged for 6.4).
STATS_FIRST = (6, 4)


def has_stats(kernel: str) -> bool:
    """Whether ``kernel`` has ``CONFIG_MODULE_STATS`` (its /sys/kernel/debug/modules/stats): 6.4 and later.
    Before it, the counters vmapsim keeps are what 6.4's would count on the same run.

    Runtime complexity: O(1).

    >>> has_stats("6.3"), has_stats("6.12.117+deb12-amd64")
    (False, True)
    """
    return release(kernel) >= STATS_FIRST

#: ``FAIL_DUP_MOD_BECOMING``: a duplicate caught by early_mod_check() (6.4+), before layout.
FAIL_DUP_MOD_BECOMING = 1
#: ``FAIL_DUP_MOD_LOAD``: a duplicate caught by add_unformed_module(), after layout.
FAIL_DUP_MOD_LOAD = 2
_MAX_FAILED_MOD_PRINT = 112


class FailurePoint(enum.StrEnum):
    """Where a load failed, which picks the counter of ``kernel/module/stats.c`` (6.4+) that counts it.

    ``KREAD``: reading the module failed (``kernel_read_file()`` for ``finit_module()``,
    ``copy_module_from_user()`` for ``init_module()``): ``failed_kreads``, and ``invalid_kread_bytes``
    for what init_module(2) was given.  ``DECOMPRESS``: ``module_decompress()`` failed:
    ``failed_decompress`` and ``invalid_decompress_bytes``.  ``BECOMING``: a failure before
    ``layout_and_allocate()`` succeeded, ``mod_stat_bump_becoming()``.  ``DUP``: a duplicate found by
    ``module_patient_check_exists()``, counted by ``enum fail_dup_mod_reason``: ``FAIL_DUP_MOD_BECOMING``
    (``early_mod_check()``, before layout) as becoming, ``FAIL_DUP_MOD_LOAD`` (``add_unformed_module()``,
    after layout) by ``mod_stat_bump_invalid()``.  ``INIT``: the module's init failed
    (``do_init_module()``), which no counter counts.  Each member equals its old name
    (``FailurePoint.DUP == "dup"``); :meth:`ModuleStats.count_failure` counts by it.

    >>> FailurePoint("becoming") is FailurePoint.BECOMING
    True
    """

    KREAD = "kread"
    DECOMPRESS = "decompress"
    BECOMING = "becoming"
    DUP = "dup"
    INIT = "init"

    @classmethod
    def of(cls, value: object) -> FailurePoint:
        """``value`` if it is a FailurePoint, else the one it names; :class:`InvalidArgument` naming anything
        else.  Runtime complexity: O(1).

        >>> FailurePoint.of("load")
        Traceback (most recent call last):
        ...
        vmapsim.errors.InvalidArgument: point='load': expected one of kread, decompress, becoming, dup, init
        """
        return member("point", value, cls)




# The counters render() prints, by their label, in its order.
_FIELDS = (
    ("Mods ever loaded", "modcount"),
    ("Mods failed on kread", "failed_kreads"),
    ("Mods failed on decompress", "failed_decompress"),
    ("Mods failed on becoming", "failed_becoming"),
    ("Mods failed on load", "failed_load_modules"),
    ("Total module size", "total_mod_size"),
    ("Total mod text size", "total_text_size"),
    ("Failed kread bytes", "invalid_kread_bytes"),
    ("Failed decompress bytes", "invalid_decompress_bytes"),
    ("Failed becoming bytes", "invalid_becoming_bytes"),
    ("Failed kmod bytes", "invalid_mod_bytes"),
)


_ULONG_MAX = (1 << 64) - 1  # the kernel's counters are unsigned longs


def _amount(name: str, value: object) -> None:
    if type(value) is not int or not 0 <= value <= _ULONG_MAX:
        integer(name, value, 0, _ULONG_MAX)


_REASONS = FAIL_DUP_MOD_BECOMING | FAIL_DUP_MOD_LOAD


def _reason(name: str, value: object) -> None:
    integer(name, value, 1, _REASONS)


def _div_round_up(a: int, b: int) -> int:
    return -(-a // b)


@attrs.define
class ModuleStats:
    """The counters of /sys/kernel/debug/modules/, under the kernel's names.

    ``duplicates`` maps a module name to [count, reason mask], newest first as
    ``try_add_failed_module()`` keeps them (``list_add_rcu`` at the head).
    """

    modcount: int = 0
    failed_kreads: int = 0
    failed_decompress: int = 0
    failed_becoming: int = 0
    failed_load_modules: int = 0
    total_mod_size: int = 0
    total_text_size: int = 0
    invalid_kread_bytes: int = 0
    invalid_decompress_bytes: int = 0
    invalid_becoming_bytes: int = 0
    invalid_mod_bytes: int = 0
    duplicates: dict[str, list[int]] = attrs.field(factory=dict)

    def __attrs_post_init__(self) -> None:
        for _, name in _FIELDS:
            _amount(name, getattr(self, name))
        if not isinstance(self.duplicates, dict):
            raise InvalidArgument(f"duplicates={show(self.duplicates)}: expected a dict of name -> [count, reason]")
        for name, entry in self.duplicates.items():
            if not text("duplicates name", name) or not isinstance(entry, list) or len(entry) != 2:
                raise InvalidArgument(f"duplicates[{show(name)}]={show(entry)}: expected [count, reason mask]")
            _amount(f"duplicates[{name!r}] count", entry[0])
            _reason(f"duplicates[{name!r}] reason", entry[1])

    @property
    def wasted_bytes(self) -> int:
        """``Virtual mem wasted bytes``: the four invalid_* counters summed.  Runtime: O(1)."""
        return (
            self.invalid_kread_bytes
            + self.invalid_decompress_bytes
            + self.invalid_becoming_bytes
            + self.invalid_mod_bytes
        )

    def bump_becoming(self, length: int, compressed_len: int = 0) -> None:
        """``mod_stat_bump_becoming()``: a failure before layout_and_allocate() succeeded."""
        self.failed_becoming += 1
        self.invalid_becoming_bytes += length + compressed_len

    def bump_invalid(self, length: int, compressed_len: int = 0) -> None:
        """``mod_stat_bump_invalid()``: a failure after layout, counted as twice the length."""
        self.failed_load_modules += 1
        self.invalid_mod_bytes += 2 * length + compressed_len

    def bump_decompress(self, compressed_len: int) -> None:
        """A failed ``module_decompress()``: its input length is wasted."""
        self.failed_decompress += 1
        self.invalid_decompress_bytes += compressed_len

    def bump_kread(self, length: int = 0) -> None:
        """A failed read: counted, with the ``length`` wasted (init_module(2)'s; a failed
        ``kernel_read_file()`` of finit_module(2) counts no bytes in the latest tree)."""
        self.failed_kreads += 1
        self.invalid_kread_bytes += length

    def count_failure(
        self, point: FailurePoint, *, length: int, compressed_len: int = 0, read_bytes: int = 0,
        past_layout: bool = False,
    ) -> None:  # fmt: skip
        """Count a load that failed at ``point`` as ``load_module()``'s error path does.

        ``length`` is ``info->len``; ``compressed_len`` the compressed file's length (0 when the kernel
        did not decompress it); ``read_bytes`` what a failed read wasted (see :meth:`bump_kread`);
        ``past_layout`` whether ``layout_and_allocate()`` had succeeded, which makes a duplicate a
        "load" failure rather than a "becoming" one.  Runtime complexity: O(1).

        >>> s = ModuleStats()
        >>> s.count_failure(FailurePoint.DUP, length=4096, past_layout=True)
        >>> s.count_failure(FailurePoint.DUP, length=4096, compressed_len=1000)
        >>> s.failed_load_modules, s.invalid_mod_bytes, s.failed_becoming, s.invalid_becoming_bytes
        (1, 8192, 1, 5096)
        """
        count = _COUNT.get(point) if type(point) is FailurePoint else None
        if (count is None or type(length) is not int or type(compressed_len) is not int
                or type(read_bytes) is not int or not 0 <= length <= _ULONG_MAX
                or not 0 <= compressed_len <= _ULONG_MAX or not 0 <= read_bytes <= _ULONG_MAX):
            # the checks one by one, naming the bad value (every failed load passes the test above)
            for name, value in (("length", length), ("compressed_len", compressed_len), ("read_bytes", read_bytes)):
                _amount(name, value)
            count = _COUNT[FailurePoint.of(point)]
        count(self, length, compressed_len, read_bytes, past_layout)

    def add_loaded(self, sizes: int, text: int) -> None:
        """A module went LIVE: ``modcount``, ``total_mod_size`` and ``total_text_size`` grow."""
        self.modcount += 1
        self.total_mod_size += sizes
        self.total_text_size += text

    def add_duplicate(self, name: str, reason: int) -> None:
        """``try_add_failed_module()``: count a duplicate of ``name`` caught at ``reason``
        (:data:`FAIL_DUP_MOD_BECOMING` or :data:`FAIL_DUP_MOD_LOAD`).  Runtime complexity: O(1) for a name
        already counted, else O(names): the newest goes first.

        >>> s = ModuleStats()
        >>> s.add_duplicate("kvm", FAIL_DUP_MOD_LOAD); s.add_duplicate("kvm", FAIL_DUP_MOD_BECOMING)
        >>> s.duplicates
        {'kvm': [2, 3]}
        """
        if type(name) is not str or not name or type(reason) is not int or not 0 < reason <= _REASONS:
            if not text("name", name):
                raise InvalidArgument("add_duplicate(): the module name is empty")
            _reason("reason", reason)
        entry = self.duplicates.get(name)
        if entry is None:
            self.duplicates = {name: [1, reason], **self.duplicates}
        else:
            entry[0] += 1
            entry[1] |= reason

    @classmethod
    def parse(cls, text: str, *, source: str = "modules/stats") -> ModuleStats:
        """Counters from a real ``/sys/kernel/debug/modules/stats`` (the inverse of :meth:`render`).

        The averages are derived, so they are read and checked against the totals; the
        ``Duplicate failed modules`` table is read back in its order.  Anything else raises
        :class:`~vmapsim.errors.ParseError` naming ``source`` and the line.  Runtime complexity: O(lines).

        >>> s = ModuleStats(modcount=3, total_mod_size=40960, total_text_size=8192)
        >>> s.add_duplicate("kvm", FAIL_DUP_MOD_LOAD)
        >>> ModuleStats.parse(s.render()) == s
        True
        """
        if not isinstance(text, str):
            raise InvalidArgument(f"text={show(text)}: expected the file's text")
        if len(text) > MAX_STATS_CHARS:
            raise ParseError(f"{len(text)} characters is more than a stats file holds", source=source)
        fields = {label: name for label, name in _FIELDS}
        averages = {"Average mod size", "Average mod text size", "Avg fail kread bytes", "Avg fail becoming bytes",
                    "Avg fail decomp bytes", "Average fail load bytes", "Virtual mem wasted bytes"}  # fmt: skip
        values: dict[str, int] = {}
        stats = cls()
        lines = text.splitlines()
        reasons = {"Becoming": FAIL_DUP_MOD_BECOMING, "Load": FAIL_DUP_MOD_LOAD,
                   "Becoming & Load": FAIL_DUP_MOD_BECOMING | FAIL_DUP_MOD_LOAD}  # fmt: skip
        table = False
        for lineno, line in enumerate(lines, 1):
            if not line.strip():
                continue
            if line.strip() == "Duplicate failed modules:":
                table = True
                continue
            cells = [c.strip() for c in line.split("\t")]
            if table:
                if cells == ["Module-name", "How-many-times", "Reason"]:
                    continue
                if len(cells) != 3 or cells[2] not in reasons:
                    raise ParseError(f"not a duplicate-module line: {show(line)}", source=source, line=lineno)
                stats.duplicates[cells[0]] = [parse_number(cells[1], what="count", source=source, line=lineno,
                                                           lo=1, hi=_ULONG_MAX),
                                              reasons[cells[2]]]  # fmt: skip
                continue
            if len(cells) != 2 or (cells[0] not in fields and cells[0] not in averages):
                raise ParseError(f"not a modules/stats line: {show(line)}", source=source, line=lineno)
            values[cells[0]] = parse_number(cells[1], what=cells[0], source=source, line=lineno, hi=_ULONG_MAX)
        missing = [label for label in fields if label not in values]
        if missing:
            raise ParseError(f"no {missing[0]!r} line: not a modules/stats file", source=source)
        for label, name in _FIELDS:
            setattr(stats, name, values[label])
        if values.get("Virtual mem wasted bytes", stats.wasted_bytes) != stats.wasted_bytes:
            raise ParseError("'Virtual mem wasted bytes' is not the sum of the four failed-bytes lines", source=source)
        return stats

    def counters(self) -> list[tuple[str, int]]:
        """The counters as /sys/kernel/debug/modules/stats labels them, in its order (the wasted bytes last).

        Runtime complexity: O(1).

        >>> ModuleStats(modcount=2).counters()[0]
        ('Mods ever loaded', 2)
        """
        return [(label, getattr(self, name)) for label, name in _FIELDS] + [("Virtual mem wasted bytes",
                                                                             self.wasted_bytes)]  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        """Every counter and the duplicates table as plain data, with the derived ``wasted_bytes``.

        Runtime complexity: O(duplicates).
        """
        return {**attrs.asdict(self), "wasted_bytes": self.wasted_bytes}

    def render(self) -> str:
        """The exact text of /sys/kernel/debug/modules/stats (``read_file_mod_stats()``).

        Runtime complexity: O(duplicates).
        """
        lines = self.counters()
        n = self.modcount
        if n and self.total_mod_size:
            lines.append(("Average mod size", _div_round_up(self.total_mod_size, n)))
        if n and self.total_text_size:
            lines.append(("Average mod text size", _div_round_up(self.total_text_size, n)))
        for label, count, total in (
            ("Avg fail kread bytes", self.failed_kreads, self.invalid_kread_bytes),
            ("Avg fail becoming bytes", self.failed_becoming, self.invalid_becoming_bytes),
            ("Avg fail decomp bytes", self.failed_decompress, self.invalid_decompress_bytes),
            ("Average fail load bytes", self.failed_load_modules, self.invalid_mod_bytes),
        ):
            if count and total:
                lines.append((label, _div_round_up(total, count)))
        out = [f"{label:>25}\t{value}\n" for label, value in lines]
        if self.duplicates:
            out.append("Duplicate failed modules:\n")
            out.append(f"{'Module-name':>25}\t{'How-many-times':>15}\t{'Reason':>25}\n")
            reasons = {
                FAIL_DUP_MOD_BECOMING: "Becoming",
                FAIL_DUP_MOD_LOAD: "Load",
                FAIL_DUP_MOD_BECOMING | FAIL_DUP_MOD_LOAD: "Becoming & Load",
            }
            for i, (name, (count, mask)) in enumerate(self.duplicates.items(), 1):
                if i >= _MAX_FAILED_MOD_PRINT:  # the kernel stops (with a WARN) at 112
                    break
                out.append(f"{name:>25}\t{count:>15}\t{reasons.get(mask, 'Bug-on-stats'):>25}\n")
        return "".join(out)


# Each failure point's counter, as load_module()'s error path bumps it: (stats, length, compressed length,
# bytes a failed read wasted, whether layout_and_allocate() had succeeded).
def _kread(s: ModuleStats, length: int, compressed_len: int, read_bytes: int, past_layout: bool) -> None:
    s.bump_kread(read_bytes)


def _decompress(s: ModuleStats, length: int, compressed_len: int, read_bytes: int, past_layout: bool) -> None:
    s.bump_decompress(compressed_len)


def _becoming(s: ModuleStats, length: int, compressed_len: int, read_bytes: int, past_layout: bool) -> None:
    s.bump_becoming(length, compressed_len)


def _dup(s: ModuleStats, length: int, compressed_len: int, read_bytes: int, past_layout: bool) -> None:
    # FAIL_DUP_MOD_BECOMING before layout, FAIL_DUP_MOD_LOAD after: load_module()'s free_copy label
    # counts becoming only while no module was allocated.
    (s.bump_invalid if past_layout else s.bump_becoming)(length, compressed_len)


def _init(s: ModuleStats, length: int, compressed_len: int, read_bytes: int, past_layout: bool) -> None:
    """do_init_module()'s failure path bumps no counter."""


# The counter load_module()'s error path bumps for a failure at each point.
_COUNT: dict[FailurePoint, Callable[[ModuleStats, int, int, int, bool], None]] = {
    FailurePoint.KREAD: _kread,
    FailurePoint.DECOMPRESS: _decompress,
    FailurePoint.BECOMING: _becoming,
    FailurePoint.DUP: _dup,
    FailurePoint.INIT: _init,
}
