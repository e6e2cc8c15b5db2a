"""Checks at every public boundary, in one style: what was passed, and what was expected.

Every public function and constructor of vmapsim checks its arguments with these
helpers before it changes anything, so a bad value raises
:class:`~vmapsim.errors.InvalidArgument` naming the argument and the value, and
every parser reads numbers and JSON through :func:`parse_number` and
:func:`load_json`, so bad text raises :class:`~vmapsim.errors.ParseError`
naming the source and the line.  ``bool`` is never accepted as a number
(``True`` is an ``int`` to Python, never a size or a CPU to the kernel).

>>> integer("cpus", 4, 1, NR_CPUS_MAX)
4
>>> integer("cpus", True, 1, NR_CPUS_MAX)
Traceback (most recent call last):
...
vmapsim.errors.InvalidArgument: cpus=True: expected an integer from 1 to 8192
"""

from __future__ import annotations

import enum
import json
import math
import os
import re
import stat
from collections.abc import Callable, Iterator, Mapping
from typing import TypeVar

import cattrs

from vmapsim.errors import InvalidArgument, ParseError

__all__ = [
    "CPUS_LIMIT",
    "MAX_DIGITS",
    "MAX_SEED",
    "NR_CPUS_MAX",
    "address",
    "by_value_or_name",
    "conversion_error",
    "errno_pairs",
    "flag",
    "integer",
    "lines",
    "load_json",
    "number",
    "parse_number",
    "random_seed",
    "read_file",
    "release",
    "show",
    "strict_converter",
    "strings",
    "text",
]

#: The largest ``CONFIG_NR_CPUS`` the kernel's Kconfig offers (x86-64 ``MAXSMP``: 8192).
NR_CPUS_MAX = 8192
#: The most CPUs vmapsim models at all, with ``nr_cpus_config`` raised explicitly past NR_CPUS_MAX.
CPUS_LIMIT = 1 << 16
#: The largest seed: 64 bits.  Seeds are never negative, because ``random.seed()`` takes an int's absolute
#: value, so -1 would silently repeat seed 1.
MAX_SEED = (1 << 64) - 1
#: Digits a number in any input may have: 2**128 has 39, and no address, size, CPU or count
#: vmapsim models needs more (Python refuses over 4300, and converting long ones is slow).
MAX_DIGITS = 40


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity mask where the system has one, else every CPU):
    the most worker processes worth starting.  Runtime complexity: O(CPUs).
    """
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0)) or 1
    return os.cpu_count() or 1


def show(value: object) -> str:
    """``repr(value)`` for a message: at most 60 characters, and safe for any integer.

    Runtime complexity: O(1) for integers, O(len) otherwise.

    >>> show(10**5000), show("x" * 100)[-5:]
    ('<an integer of 16610 bits>', 'xx...')
    """
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 128:
        return f"<an integer of {value.bit_length()} bits>"
    try:
        r = repr(value)
    except Exception:  # a repr that fails must not hide the error being reported
        r = f"<{type(value).__name__}>"
    return r if len(r) <= 60 else r[:57] + "..."


def integer(name: str, value: object, lo: int | None = None, hi: int | None = None) -> int:
    """``value`` if it is an ``int`` (not ``bool``) in ``[lo, hi]``; else :class:`InvalidArgument`.

    Runtime complexity: O(1).

    >>> integer("size", 4096, 1)
    4096
    >>> integer("size", 1.5, 1)
    Traceback (most recent call last):
    ...
    vmapsim.errors.InvalidArgument: size=1.5: expected an integer >= 1
    """
    if type(value) is not int and (not isinstance(value, int) or isinstance(value, bool)):
        raise InvalidArgument(f"{name}={show(value)}: expected {_range('an integer', lo, hi)}")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise InvalidArgument(f"{name}={show(value)}: expected {_range('an integer', lo, hi)}")
    return int(value)


def random_seed(name: str, value: object) -> int:
    """``value`` if it is a seed: an ``int`` from 0 to :data:`MAX_SEED`.  Runtime complexity: O(1).

    >>> random_seed("seed", -1)
    Traceback (most recent call last):
    ...
    vmapsim.errors.InvalidArgument: seed=-1: expected an integer from 0 to 18446744073709551615
    """
    return integer(name, value, 0, MAX_SEED)


def address(name: str, value: object) -> int:
    """``value`` if it is a 64-bit address (an ``int`` in ``[0, 2**64)``).  Runtime complexity: O(1).

    >>> address("addr", -1)
    Traceback (most recent call last):
    ...
    vmapsim.errors.InvalidArgument: addr=-1: expected an integer from 0 to 18446744073709551615
    """
    if type(value) is int and 0 <= value < 1 << 64:
        return value
    return integer(name, value, 0, (1 << 64) - 1)


def flag(name: str, value: object) -> bool:
    """``value`` if it is a ``bool``; else :class:`InvalidArgument`.  Runtime complexity: O(1).

    >>> flag("lazy", 1)
    Traceback (most recent call last):
    ...
    vmapsim.errors.InvalidArgument: lazy=1: expected True or False
    """
    if not isinstance(value, bool):
        raise InvalidArgument(f"{name}={show(value)}: expected True or False")
    return value


def number(name: str, value: object, lo: float | None = None, hi: float | None = None) -> float:
    """``value`` as a float if it is a finite real number (not ``bool``) in ``[lo, hi]``.

    Runtime complexity: O(1).

    >>> number("time", 2, 0)
    2.0
    >>> number("time", float("nan"), 0)
    Traceback (most recent call last):
    ...
    vmapsim.errors.InvalidArgument: time=nan: expected a finite number >= 0
    """
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if ok and isinstance(value, int) and value.bit_length() > 1000:
        ok = False  # beyond float's range
    if ok:
        f = float(value)  # type: ignore[arg-type]
        if math.isfinite(f) and (lo is None or f >= lo) and (hi is None or f <= hi):
            return f
    raise InvalidArgument(f"{name}={show(value)}: expected {_range('a finite number', lo, hi)}")


def text(name: str, value: object, *, optional: bool = False) -> str | None:
    """``value`` if it is a ``str`` (or None, when ``optional``); else :class:`InvalidArgument`.

    Runtime complexity: O(1).

    >>> text("caller", 123)
    Traceback (most recent call last):
    ...
    vmapsim.errors.InvalidArgument: caller=123: expected a string
    """
    if isinstance(value, str) or (optional and value is None):
        return value
    raise InvalidArgument(f"{name}={show(value)}: expected a string{' or None' if optional else ''}")


def strings(name: str, value: object, *, empty: bool = True) -> tuple[str, ...]:
    """``value`` if it is a tuple of ``str`` (non-empty unless ``empty``); else :class:`InvalidArgument`.

    A lone string is refused: it would otherwise be read as a tuple of its characters.
    Runtime complexity: O(n).

    >>> strings("devices", "pci:v00008086")
    Traceback (most recent call last):
    ...
    vmapsim.errors.InvalidArgument: devices='pci:v00008086': expected a tuple of strings
    """
    if not isinstance(value, tuple) or not (empty or value):
        raise InvalidArgument(f"{name}={show(value)}: expected a {'' if empty else 'non-empty '}tuple of strings")
    for i, item in enumerate(value):
        text(f"{name}[{i}]", item)
    return value


T = TypeVar("T")


def by_value_or_name(name: str, value: object, table: Mapping[str, T], kind: type[T], what: str) -> T:
    """``value`` if it is a ``kind``, or the entry of ``table`` it names; else :class:`InvalidArgument`.

    ``what`` says what the names are, for the message.  Runtime complexity: O(1).

    >>> by_value_or_name("machine", "vm", {"kvm": 1}, int, "presets")
    Traceback (most recent call last):
    ...
    vmapsim.errors.InvalidArgument: machine='vm': not one of the presets: kvm
    """
    if isinstance(value, str) and not isinstance(value, kind):
        if value not in table:
            raise InvalidArgument(f"{name}={show(value)}: not one of the {what}: {', '.join(table)}")
        return table[value]
    if not isinstance(value, kind):
        raise InvalidArgument(f"{name}={show(value)}: expected a {kind.__name__} or the name of one of the {what}")
    return value


E = TypeVar("E", bound=enum.StrEnum)


def member(name: str, value: object, kind: type[E]) -> E:
    """``value`` if it is a member of the kernel enum ``kind``, else the member its name names;
    :class:`InvalidArgument` naming anything else.  Runtime complexity: O(members).

    >>> import enum
    >>> class Mode(enum.StrEnum):
    ...     ON = "on"
    >>> member("mode", "on", Mode) is Mode.ON
    True
    >>> member("mode", "off", Mode)
    Traceback (most recent call last):
    ...
    vmapsim.errors.InvalidArgument: mode='off': expected one of on
    """
    if isinstance(value, kind):
        return value
    if isinstance(value, str):
        for m in kind:
            if m.value == value:
                return m
    raise InvalidArgument(f"{name}={show(value)}: expected one of {', '.join(m.value for m in kind)}")


def errno_pairs(name: str, value: object) -> tuple[tuple[str, int], ...]:
    """``value`` if it is a tuple of ``(module, errno)`` pairs, errno in 1..4095 (``MAX_ERRNO``).

    Runtime complexity: O(n).

    >>> errno_pairs("fails", (("amd64_edac", 19),))
    (('amd64_edac', 19),)
    """
    if not isinstance(value, tuple):
        raise InvalidArgument(f"{name}={show(value)}: expected (module, errno) pairs")
    for pair in value:
        if not isinstance(pair, tuple) or len(pair) != 2 or not isinstance(pair[0], str):
            raise InvalidArgument(f"{name}: {show(pair)}: expected a (module, errno) pair")
        integer("errno", pair[1], 1, 4095)
    return value


def _range(kind: str, lo: float | None, hi: float | None) -> str:
    if lo is not None and hi is not None:
        return f"{kind} from {lo:g} to {hi:g}" if isinstance(lo, float) else f"{kind} from {lo} to {hi}"
    if lo is not None:
        return f"{kind} >= {lo:g}"
    if hi is not None:
        return f"{kind} <= {hi:g}"
    return kind


def parse_number(token: str, *, what: str, source: str | None = None, line: int = 0, signed: bool = False,
                 decimal: bool = False, lo: int | None = None, hi: int | None = None) -> int:
    """The one reader of numbers in text: ``0x`` hex (unless ``decimal``) or decimal, ASCII digits only.

    Every number vmapsim reads from a file, a command line or a captured system goes through here,
    because ``str.isdigit()`` and ``int()`` accept other scripts' digits ("²", "٣") differently and
    ``int()`` refuses, or is slow on, thousands of digits.  ``signed`` allows a leading minus; leading
    zeros are read as decimal (``08192`` is 8192, as ``kstrtoul(s, 10)`` reads it); more than
    :data:`MAX_DIGITS` digits, or a value outside ``[lo, hi]``, is refused.  Bad text from a file
    raises :class:`ParseError` naming ``source`` and ``line``; with no ``source`` (an argument),
    :class:`InvalidArgument` naming ``what`` and the text.  Runtime complexity: O(len(token)).

    >>> parse_number("0x2000", what="size", source="trace", line=1), parse_number("08192", what="size",
    ...     source="trace", line=1)
    (8192, 8192)
    >>> parse_number("²", what="--cpus", decimal=True, lo=1)
    Traceback (most recent call last):
    ...
    vmapsim.errors.InvalidArgument: --cpus '²': expected a decimal number >= 1
    """
    t = token.strip() if isinstance(token, str) else ""
    neg = signed and t.startswith("-")
    digits = t[1:] if neg else t
    hexa = not decimal and digits[:2].lower() == "0x"
    body = digits[2:] if hexa else digits
    value = None
    if (_HEX if hexa else _DEC).fullmatch(body):
        value = int(body, 16 if hexa else 10) * (-1 if neg else 1)
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            value = None
    if value is not None:
        return value
    kind = "a decimal number" if decimal else "a number"
    expected = _range(kind, lo, hi) if lo is not None or hi is not None else f"{kind} of at most {MAX_DIGITS} digits"
    if source is None:
        raise InvalidArgument(f"{what} {show(token)}: expected {expected}")
    raise ParseError(f"{what} {show(token)} is not {expected}", source=source, line=line)


# ASCII digits only (``\d`` and ``str.isdigit()`` take other scripts' digits), at most MAX_DIGITS of them
_DEC = re.compile(f"[0-9]{{1,{MAX_DIGITS}}}")
_HEX = re.compile(f"[0-9a-fA-F]{{1,{MAX_DIGITS}}}")


_BREAK = re.compile("\r\n|[\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")  # where str.splitlines() breaks


def lines(text: str) -> Iterator[str]:
    """The lines of ``text`` as ``text.splitlines()`` gives them, one at a time: a reader of a file of
    hundreds of MiB holds one line, not a list of millions.  Runtime complexity: O(len(text)) in all.

    >>> list(lines("a\\r\\nb\\x0cc\\n")) == "a\\r\\nb\\x0cc\\n".splitlines() == ["a", "b", "c"]
    True
    """
    pos = 0
    for m in _BREAK.finditer(text):
        yield text[pos : m.start()]
        pos = m.end()
    if pos < len(text):
        yield text[pos:]


def load_json(data: str | bytes, *, source: str, max_bytes: int, line: int = 0) -> object:
    """JSON within limits, or :class:`ParseError` naming ``source``.

    Limits: at most ``max_bytes`` of text, numbers of at most :data:`MAX_DIGITS`
    digits, no ``NaN``/``Infinity``, nesting no deeper than the parser can go
    (the schemas that read the result accept far less).  :class:`InvalidArgument` naming ``data`` when it
    is not text at all.  Runtime complexity: O(n).

    >>> load_json('{"cpu": 3}', source="requests", max_bytes=100)
    {'cpu': 3}
    >>> load_json('[NaN]', source="requests", max_bytes=100)
    Traceback (most recent call last):
    ...
    vmapsim.errors.ParseError: requests:0: not valid JSON: NaN is not a number
    """
    if not isinstance(data, str | bytes):
        raise InvalidArgument(f"{source}: data={show(data)}: expected JSON text (str or bytes)")
    if len(data) > max_bytes:
        raise ParseError(f"{len(data)} bytes is more than the limit of {max_bytes}", source=source, line=line)
    try:
        return json.loads(data, parse_int=_bounded(int), parse_float=_bounded(float), parse_constant=_constant)
    except ParseError:
        raise
    except _Refused as e:
        raise ParseError(f"not valid JSON: {e}", source=source, line=line) from None
    except RecursionError:
        raise ParseError("not valid JSON: nested too deeply", source=source, line=line) from None
    except (ValueError, UnicodeDecodeError) as e:  # json.JSONDecodeError is a ValueError
        raise ParseError(f"not valid JSON: {str(e)[:100]}", source=source, line=line) from None


class _Refused(Exception):
    """A JSON token the limits refuse (raised inside the decoder's hooks)."""


def _bounded(kind: Callable[[str], object]) -> Callable[[str], object]:
    def convert(token: str) -> object:
        if len(token) > MAX_DIGITS:
            raise _Refused(f"a number of {len(token)} characters (at most {MAX_DIGITS})")
        value = kind(token)
        if isinstance(value, float) and not math.isfinite(value):
            raise _Refused(f"{token} is out of range")
        return value

    return convert


def _constant(token: str) -> object:
    raise _Refused(f"{token} is not a number")


def read_file(path: str | os.PathLike[str], limit: int, *, what: str) -> bytes:
    """The bytes of the regular file ``path``, at most ``limit`` of them: the one reader of a user's file.

    The file is stat'ed before it is opened: anything but a regular file is refused unread (a FIFO
    blocks a read until a writer comes, a device such as /dev/zero never ends, a directory has no
    bytes), and so is one whose size is over ``limit``.  At most ``limit + 1`` bytes are then read,
    because a file can grow after its stat (and /proc files say 0), and more than ``limit`` is refused.
    Every refusal, and a file that cannot be read, is :class:`InvalidArgument` naming ``what`` (``"catalog"``,
    ``"machine file"``...; empty for none) and the path.  Runtime complexity: O(min(size, limit)).

    >>> read_file("/dev/zero", 10, what="schedule")
    Traceback (most recent call last):
    ...
    vmapsim.errors.InvalidArgument: cannot read schedule /dev/zero: it is a character device, not a regular file
    """
    if not isinstance(path, str | os.PathLike):
        raise InvalidArgument(f"path={show(path)}: expected a file's path")
    integer("limit", limit, 0)
    name = f"{what} {os.fspath(path)}" if what else os.fspath(path)
    try:
        _regular(os.stat(path), name, limit)
        # O_NONBLOCK: a path swapped for a FIFO after the stat must not block the open; fstat sees the swap
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
        with os.fdopen(fd, "rb") as f:
            _regular(os.fstat(f.fileno()), name, limit)
            data = f.read(limit + 1)
    except OSError as e:
        raise InvalidArgument(f"cannot read {name}: {e.strerror or e}") from None
    if len(data) > limit:
        raise InvalidArgument(f"{name}: more than {limit} bytes, the most it may hold")
    return data


_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))  # fmt: skip


def _regular(st: os.stat_result, name: str, limit: int) -> None:
    """Refuse what :func:`read_file` must not read: not a regular file, or larger than ``limit``."""
    if not stat.S_ISREG(st.st_mode):
        kind = next((k for test, k in _KINDS if test(st.st_mode)), "an unknown kind of file")
        raise InvalidArgument(f"cannot read {name}: it is {kind}, not a regular file")
    if st.st_size > limit:
        raise InvalidArgument(f"{name}: more than {limit} bytes ({st.st_size}), the most it may hold")


def strict_converter() -> cattrs.Converter:
    """A cattrs Converter between attrs values and plain data that coerces nothing: ``"3"`` is not an int,
    ``1.5`` is not an int, ``True`` is not a number (an int is a float); unknown keys are refused.
    Runtime complexity: O(1).

    >>> strict_converter().structure([1, 2], tuple[int, ...])
    (1, 2)
    """
    conv = cattrs.Converter(forbid_extra_keys=True, detailed_validation=True)

    def exactly(kind: type) -> Callable[[object, object], object]:
        def structure(value: object, _: object) -> object:
            ok = isinstance(value, kind) or (kind is float and type(value) is int)
            if (isinstance(value, bool) and kind is not bool) or not ok:
                raise TypeError(f"{show(value)} is not {kind.__name__}")
            return float(value) if kind is float else value  # type: ignore[arg-type]

        return structure

    for kind in (int, float, str, bool):
        conv.register_structure_hook(kind, exactly(kind))
    # a kernel enum (a StrEnum: Syscall, ModuleState...) is its name in plain data
    conv.register_unstructure_hook(enum.StrEnum, lambda v: v.value)
    return conv


def conversion_error(e: Exception) -> str:
    """What a failed :func:`strict_converter` structuring says: each bad field and why, in one line.

    Runtime complexity: O(errors).
    """
    if isinstance(e, cattrs.BaseValidationError):
        return "; ".join(cattrs.transform_error(e, format_exception=lambda exc, _: str(exc) or type(exc).__name__))
    return str(e)


_RELEASE = re.compile(r"^([0-9]{1,4})\.([0-9]{1,4})(?![0-9])")


def release(version: str) -> tuple[int, int]:
    """``(major, minor)`` of a kernel release such as ``"6.12"`` or ``"6.12.117+deb12-amd64"``.

    Runtime complexity: O(1).

    >>> release("6.12.117+deb12-amd64")
    (6, 12)
    """
    m = _RELEASE.match(text("version", version) or "")
    if m is None:
        raise InvalidArgument(f"kernel version {show(version)}: expected MAJOR.MINOR[...]")
    return parse_number(m[1], what="major", decimal=True), parse_number(m[2], what="minor", decimal=True)
