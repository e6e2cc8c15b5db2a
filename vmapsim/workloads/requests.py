"""Request files: load requests as JSON lines or CSV (time, cpu, module, path, syscall).

>>> read_requests('{"module": "loop", "cpu": 1}')[0].cpu
1
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable

from vmapsim.checks import CPUS_LIMIT, MAX_DIGITS, integer, load_json, number, show, text
from vmapsim.errors import InvalidArgument, ParseError
from vmapsim.loader import Request
from vmapsim.loader.request import Syscall

__all__ = ["MAX_REQUEST_BYTES", "read_requests", "write_requests"]

_FIELDS = ("time", "cpu", "module", "path", "syscall")


def write_requests(requests: Iterable[Request], *, fmt: str = "jsonl") -> str:
    """Requests as JSON lines or CSV with the fields time, cpu, module, path, syscall.

    Runtime complexity: O(n).

    >>> print(write_requests([Request("loop", cpu=1, time=0.5)], fmt="csv"), end="")
    time,cpu,module,path,syscall
    0.5,1,loop,,finit_module
    """
    rows = []
    for r in requests:
        name = r.module if isinstance(r.module, str) else r.module.name
        rows.append({"time": r.time, "cpu": r.cpu, "module": name, "path": r.path or "", "syscall": r.syscall})
    if fmt == "jsonl":
        return "".join(json.dumps(row, sort_keys=True) + "\n" for row in rows)
    if fmt == "csv":
        out = io.StringIO()
        w = csv.DictWriter(out, _FIELDS, lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
        return out.getvalue()
    raise InvalidArgument(f"request format {fmt!r}: expected 'jsonl' or 'csv'")


#: Largest request file read (64 MiB: over a million requests).
MAX_REQUEST_BYTES = 64 << 20


def read_requests(
    text: str, *, fmt: str = "jsonl", source: str = "requests", max_bytes: int = MAX_REQUEST_BYTES
) -> list[Request]:
    """Parse what :func:`write_requests` writes; anything else raises :class:`ParseError`.

    Each JSON line is one object with the fields of :func:`write_requests`
    (``module`` required); numbers have at most 40 digits, times are finite and
    not negative, CPUs are whole numbers.  ``fmt="auto"`` (for text without a
    file name to go by, such as standard input) reads JSON lines when the first
    line that is not blank starts with ``{``, else CSV.  Runtime complexity: O(n).

    >>> read_requests('{"module": "loop", "time": -1}')
    Traceback (most recent call last):
    ...
    vmapsim.errors.ParseError: requests:1: time=-1: expected a finite number >= 0
    >>> [r.module for r in read_requests("module,cpu\\nloop,3\\n", fmt="auto")]
    ['loop']
    """
    if not isinstance(text, str):
        raise InvalidArgument(f"text={show(text)}: expected the file's text")
    if len(text) > max_bytes:
        raise ParseError(f"{len(text)} characters is more than the limit of {max_bytes}", source=source)
    if fmt == "auto":
        fmt = "jsonl" if text.lstrip()[:1] == "{" else "csv"
    pairs: list[tuple[int, object]] = []
    if fmt == "jsonl":
        for i, raw in enumerate(text.splitlines(), 1):
            if raw.strip():
                pairs.append((i, load_json(raw, source=source, line=i, max_bytes=max_bytes)))
    elif fmt == "csv":
        try:
            reader = csv.DictReader(io.StringIO(text))
            pairs = [(i, dict(row)) for i, row in enumerate(reader, 2)]
        except csv.Error as e:
            raise ParseError(f"not CSV: {e}", source=source) from None
        # a header of other columns is the wrong file even without rows (its rows would be refused)
        unknown = [f for f in reader.fieldnames or () if f not in _FIELDS]
        if unknown:
            raise ParseError(f"unknown column {show(unknown[0])}; the fields are {', '.join(_FIELDS)}", source=source,
                             line=1)  # fmt: skip
    else:
        raise InvalidArgument(f"request format {show(fmt)}: expected 'jsonl', 'csv' or 'auto'")
    out = []
    for line, row in pairs:
        try:
            out.append(_request(row, csv=fmt == "csv"))
        except InvalidArgument as e:
            raise ParseError(str(e), source=source, line=line) from None
    return out


def _request(row: object, *, csv: bool) -> Request:
    if not isinstance(row, dict):
        raise InvalidArgument(f"{show(row)}: expected an object with the fields {', '.join(_FIELDS)}")
    unknown = sorted(set(map(str, row)) - set(_FIELDS))
    if unknown:
        raise InvalidArgument(f"unknown field {show(unknown[0])}; the fields are {', '.join(_FIELDS)}")
    cpu, time = row.get("cpu", 0), row.get("time", 0.0)
    if csv:  # every CSV cell is text; an empty one is the default
        cpu = _csv_number(cpu, "cpu", int) if cpu else 0
        time = _csv_number(time, "time", float) if time else 0.0
    module = row.get("module")
    if not module or not isinstance(module, str):
        raise InvalidArgument(f"module={show(module)}: expected a module name")
    syscall = Syscall.of(row.get("syscall") or Syscall.FINIT_MODULE)  # an empty cell is the default
    path = row.get("path") or None
    return Request(
        module,
        cpu=integer("cpu", cpu, 0, CPUS_LIMIT - 1),
        time=number("time", time, 0),
        path=text("path", path, optional=True),
        syscall=syscall,
    )


def _csv_number(cell: object, name: str, kind: type[int] | type[float]) -> object:
    cell = str(cell).strip()
    if len(cell) > MAX_DIGITS:
        raise InvalidArgument(f"{name}={show(cell)}: more than {MAX_DIGITS} characters")
    try:
        return kind(cell)
    except ValueError:
        raise InvalidArgument(f"{name}={show(cell)}: not a number") from None
