"""The versioned JSON documents, CSV text, and sizes in human units.

Every ``--json`` output is one :func:`document`: the schema name and version, vmapsim's version, every
parameter of the run, the units and the notes (the table's footnotes), then the command's own data;
``docs/output.md`` lists each command's fields and ``vmapsim/schema.json`` is their JSON Schema.

>>> human_bytes(745783296), human_bytes(2761617408), human_bytes(1023)
('711.2 MiB', '2.57 GiB', '1023 B')
"""

from __future__ import annotations

import csv
import functools
import io
import json
import re
import textwrap
from collections.abc import Mapping, Sequence
from importlib import resources
from typing import Any

from vmapsim.units import GiB, KiB, MiB

__all__ = ["SCHEMA_VERSION", "UNITS", "WIDTH", "amount", "csv_text", "document", "human_bytes", "json_text", "plural",
           "schema", "version", "wrap"]

#: The version of every ``vmapsim-<command>`` document; bumped when a field changes meaning or goes.
SCHEMA_VERSION = 3
#: What each document's numbers are in.
UNITS = {"bytes": "bytes", "time": "seconds", "addresses": "integers (kernel virtual addresses)"}


#: The columns a command's text fits in by default: a terminal's, and a mail's to a kernel list.
WIDTH = 100


def human_bytes(n: int) -> str:
    """``n`` bytes in binary units, as a person reads them (PiB/TiB/GiB with two decimals, MiB/KiB with one).

    Runtime complexity: O(1).

    >>> human_bytes(0), human_bytes(3 << 20), human_bytes(1536), human_bytes(25 << 49)
    ('0 B', '3.0 MiB', '1.5 KiB', '12.50 PiB')
    """
    if n < 0:
        return f"-{human_bytes(-n)}"
    if n >= 1 << 50:
        return f"{n / (1 << 50):.2f} PiB"
    if n >= 1024 * GiB:
        return f"{n / (1024 * GiB):.2f} TiB"
    if n >= GiB:
        return f"{n / GiB:.2f} GiB"
    for unit, size in (("MiB", MiB), ("KiB", KiB)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"


def amount(value: float, unit: str, *, raw: bool = False) -> str:
    """A figure in its unit as text: bytes in :func:`human_bytes` (as a byte count when ``raw``: the
    commands' ``--bytes``), whole numbers without decimals, others to six significant digits.

    Runtime complexity: O(1).

    >>> amount(14372864, "bytes"), amount(14372864, "bytes", raw=True), amount(2.5, "calls")
    ('13.7 MiB', '14372864', '2.5')
    """
    if unit == "bytes" and not raw:
        return human_bytes(round(value))
    return str(int(value)) if value == int(value) else f"{value:.6g}"


def plural(n: int, noun: str) -> str:
    """``n`` and ``noun``, in the plural unless ``n`` is 1 (nouns that add an ``s``).

    Runtime complexity: O(1).


    >>> plural(1, "device"), plural(4, "seed"), plural(0, "CPU")
    ('1 device', '4 seeds', '0 CPUs')
    """
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


_SIZE = re.compile(r"(\d) (B|KiB|MiB|GiB|TiB|PiB)\b")


def wrap(text: str, first: str = "", indent: str = "", width: int = WIDTH) -> list[str]:
    """``text`` as lines of at most ``width`` columns: the first after ``first``, the rest after ``indent``
    (a word longer than a line stays whole, and a size with its unit).  Runtime complexity: O(len(text)).

    >>> wrap("note: " + "word " * 30, indent="  ", width=40)[:2]
    ['note: word word word word word word word', '  word word word word word word word']
    >>> wrap("the median was 2.4 MiB", width=18)
    ['the median was', '2.4 MiB']
    """
    # a size's number and unit stay on one line: joined by a no-break space while the lines are made
    kept = _SIZE.sub("\\1\u00a0\\2", text)
    lines = textwrap.wrap(kept, width, initial_indent=first, subsequent_indent=indent, break_long_words=False,
                          break_on_hyphens=False) or [first.rstrip()]  # fmt: skip
    return [line.replace("\u00a0", " ") for line in lines]


def document(command: str, parameters: Mapping[str, Any], data: Mapping[str, Any],
             notes: Sequence[str] = ()) -> dict[str, Any]:  # fmt: skip
    """The JSON document of ``vmapsim <command> --json``: schema, versions, parameters, units, notes, data.

    Runtime complexity: O(1) beyond ``data``.

    >>> doc = document("demo", {"cpus": 4}, {"vmallocinfo": []})
    >>> doc["schema"], doc["parameters"], doc["notes"]
    ('vmapsim-demo/3', {'cpus': 4}, [])
    """
    return {"schema": f"vmapsim-{command}/{SCHEMA_VERSION}", "vmapsim": version(), "parameters": dict(parameters),
            "units": UNITS, "notes": list(notes), **data}  # fmt: skip


def json_text(command: str, parameters: Mapping[str, Any], data: Mapping[str, Any], notes: Sequence[str] = ()) -> str:
    """:func:`document` as the text ``--json`` prints: indented, one trailing newline.  Runtime: O(data).

    >>> json_text("info", {}, {})[:30]
    '{\\n "schema": "vmapsim-info/3",'
    """
    return json.dumps(document(command, parameters, data, notes), indent=1, allow_nan=False) + "\n"


@functools.cache
def version() -> str:
    """vmapsim's version, as installed (pyproject.toml's, the one source of it).  Runtime complexity: O(1).

    >>> version().count(".") >= 2
    True
    """
    import importlib.metadata  # here, not at import: it costs a tenth of vmapsim's import time

    try:
        return importlib.metadata.version("vmapsim")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


def csv_text(rows: Sequence[Mapping[str, Any]]) -> str:
    """Rows as CSV with a header (None as an empty field); :func:`csv.DictReader` reads it back.

    Runtime complexity: O(cells).

    >>> print(csv_text([{"pipeline": "v6.4", "same_as": None}]), end="")
    pipeline,same_as
    v6.4,
    """
    out = io.StringIO()
    if rows:
        writer = csv.DictWriter(out, list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return out.getvalue()


def schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of every ``--json`` document, ``$defs`` by command.

    Runtime complexity: O(1) (read once).

    >>> sorted(schema()["$defs"])[:3]
    ['boot', 'compare', 'demo']
    """
    loaded: dict[str, Any] = json.loads((resources.files("vmapsim") / "schema.json").read_text())
    return loaded
