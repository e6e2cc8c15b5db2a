"""Request files: load requests as JSON lines or CSV (time, cpu, module, path, syscall).

>>> read_requests('{"module": "loop", "cpu": 1}')[0].cpu
1
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable

from vmapsim.errors import InvalidArgument, ParseError
from vmapsim.loader import Request
from vmapsim.loader.request import SYSCALLS

__all__ = ["read_requests", "write_requests"]

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


def read_requests(text: str, *, fmt: str = "jsonl", source: str = "requests") -> list[Request]:
    """Parse what :func:`write_requests` writes; a malformed line raises :class:`ParseError`.

    Runtime complexity: O(n).
    """
    pairs: list[tuple[int, dict[str, object]]] = []
    if fmt == "jsonl":
        for i, raw in enumerate(text.splitlines(), 1):
            if raw.strip():
                try:
                    pairs.append((i, json.loads(raw)))
                except json.JSONDecodeError as e:
                    raise ParseError(f"not JSON: {e.msg}", source=source, line=i) from None
    elif fmt == "csv":
        try:
            pairs = [(i, dict(row)) for i, row in enumerate(csv.DictReader(io.StringIO(text)), 2)]
        except csv.Error as e:
            raise ParseError(f"not CSV: {e}", source=source) from None
    else:
        raise InvalidArgument(f"request format {fmt!r}: expected 'jsonl' or 'csv'")
    out = []
    for line, row in pairs:
        try:
            syscall = str(row.get("syscall") or "finit_module")
            if syscall not in SYSCALLS or not row.get("module"):
                raise ValueError(f"bad module/syscall {row.get('module')!r}/{syscall!r}")
            out.append(
                Request(
                    str(row["module"]),
                    cpu=int(str(row.get("cpu", 0))),
                    time=float(str(row.get("time", 0.0))),
                    path=str(row["path"]) if row.get("path") else None,
                    syscall=syscall,
                )
            )
        except (ValueError, TypeError, AttributeError) as e:
            raise ParseError(str(e), source=source, line=line) from None
    return out
