"""A sweep's result: one row per run, each cell's seed spread, the rows as CSV, JSON and Parquet, and
load paths compared cell by cell."""

from __future__ import annotations

import csv
import io
import math
import statistics
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from vmapsim.checks import NR_CPUS_MAX, integer, load_json, random_seed, text
from vmapsim.errors import InvalidArgument, ParseError
from vmapsim.loader import METRICS
from vmapsim.report import SCHEMA_VERSION, json_text

__all__ = ["MAX_TABLE_BYTES", "PARAMETERS", "SCHEMA", "Table", "compare"]

#: The columns of a point, in a row's order.
#: The largest table of rows read (``sweep --resume``): a row is about 380 bytes of JSON, so MAX_RUNS rows fit.
MAX_TABLE_BYTES = 1 << 30
PARAMETERS = ("machine", "cpus", "kernel", "pipeline", "kmod", "seed")
#: The metrics of each run, after the parameters.
SCHEMA = f"vmapsim-sweep/{SCHEMA_VERSION}"
#: Earlier versions :meth:`Table.from_json` still reads (``--resume`` of an older file).
_READABLE = ("vmapsim-sweep/1", "vmapsim-sweep/2", SCHEMA)

# What each column of a row holds, checked as a file is read: a bad value found later (a list as
# cpus) would fail far from the file, in cells() or a plot.
_COLUMNS: dict[str, Callable[[str, object], object]] = {
    "machine": text,
    "cpus": lambda name, v: integer(name, v, 1, NR_CPUS_MAX),
    "kernel": lambda name, v: text(name, v, optional=True),
    "pipeline": text,
    "kmod": lambda name, v: v if v is None else integer(name, v, 1),
    "seed": random_seed,
    **dict.fromkeys(METRICS, lambda name, v: integer(name, v, 0)),
}

# Student's t quantiles for a two-sided 95% interval, by degrees of freedom (then the normal's 1.96).
_T95 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
        2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
        2.045, 2.042)  # fmt: skip


@attrs.frozen
class Table:
    """A sweep's result: one row per run (parameters, then metrics), in the grid's order, and the grid's
    ``parameters`` (:meth:`~vmapsim.sweeps.Grid.parameters`; empty for a table built by hand), which
    :meth:`to_json` writes and :meth:`from_json` reads back for a resume to check.  Two tables are equal
    when their rows are.  Runtime complexity: O(1) to build.

    :meth:`cells` gives the seed spread of each cell (every parameter but the seed): min, median, max,
    mean and a 95% confidence interval of the mean (Student's t).
    """

    rows: tuple[dict[str, Any], ...]
    parameters: Mapping[str, Any] = attrs.field(factory=dict, eq=False)

    def cells(self, metric: str = "peak_modules") -> list[dict[str, Any]]:
        """One dict per cell: its parameters, ``n`` and the spread of ``metric``.  Runtime: O(rows log rows).

        >>> rows = [{"machine": "m", "cpus": 1, "kernel": None, "pipeline": "v6.3", "kmod": None, "seed": s,
        ...          "peak_modules": v} for s, v in enumerate([1, 2, 3])]
        >>> Table(tuple(rows)).cells()[0]["median"]
        2
        """
        if metric not in METRICS:
            raise InvalidArgument(f"metric={metric!r}: expected one of {', '.join(METRICS)}")
        groups: dict[tuple[Any, ...], list[Any]] = {}
        for row in self.rows:
            groups.setdefault(tuple(row[k] for k in PARAMETERS if k != "seed"), []).append(row[metric])
        out = []
        for key, values in groups.items():
            n, mean = len(values), statistics.fmean(values)
            half = 0.0
            if n > 1:
                half = (_T95[n - 2] if n - 2 < len(_T95) else 1.96) * statistics.stdev(values) / math.sqrt(n)
            out.append({**dict(zip([k for k in PARAMETERS if k != "seed"], key, strict=True)), "metric": metric,
                        "n": n, "min": min(values), "median": statistics.median(values), "max": max(values),
                        "mean": mean, "ci95": (mean - half, mean + half)})  # fmt: skip
        return out

    def to_csv(self) -> str:
        """The rows as CSV (a header of parameters and metrics; empty for None).  Runtime: O(rows)."""
        out = io.StringIO()
        writer = csv.DictWriter(out, [*PARAMETERS, *METRICS], lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows)
        return out.getvalue()

    def to_json(self, parameters: Mapping[str, Any] | None = None, notes: Sequence[str] = ()) -> str:
        """The rows as a ``vmapsim-sweep`` document (:func:`vmapsim.report.json_text`: the schema, the
        grid's ``parameters`` (None: the table's own), units, ``notes``; ``null`` for None).
        Runtime complexity: O(rows)."""
        params = self.parameters if parameters is None else parameters
        return json_text("sweep", params, {"rows": list(self.rows)}, notes)

    @classmethod
    def from_json(cls, data: str | bytes, *, source: str = "sweep") -> Table:
        """Read :meth:`to_json`'s text (for ``--resume``), its rows and its grid's parameters (none in a
        ``vmapsim-sweep/1`` file); :class:`ParseError` when it is not one, naming the first bad row and column.

        Runtime complexity: O(rows).
        """
        doc = load_json(data, source=source, max_bytes=MAX_TABLE_BYTES)
        if not isinstance(doc, dict) or doc.get("schema") not in _READABLE or not isinstance(doc.get("rows"), list):
            raise ParseError(f"not a vmapsim sweep ({SCHEMA}) JSON file", source=source)
        parameters = doc.get("parameters", {})
        if not isinstance(parameters, dict):
            raise ParseError("its parameters are not a JSON object", source=source)
        for i, row in enumerate(doc["rows"]):
            if not isinstance(row, dict) or set(row) != set(_COLUMNS):
                raise ParseError(f"row {i} does not have the columns {', '.join(sorted(_COLUMNS))}", source=source)
            for column, check in _COLUMNS.items():
                try:
                    check(column, row[column])
                except InvalidArgument as e:
                    raise ParseError(f"row {i}, column {column}: {e}", source=source) from None
        return cls(tuple(doc["rows"]), parameters)

    def to_parquet(self, path: str | Path) -> None:
        """Write the rows to a Parquet file (needs ``pip install '.[sweep]'``: pyarrow).  O(rows)."""
        try:
            import pyarrow as pa  # type: ignore[import-untyped, import-not-found, unused-ignore]
            import pyarrow.parquet as pq  # type: ignore[import-untyped, import-not-found, unused-ignore]
        except ImportError:
            raise InvalidArgument("Parquet output needs pyarrow: pip install '.[sweep]'") from None
        columns = {k: [row[k] for row in self.rows] for k in (*PARAMETERS, *METRICS)}
        pq.write_table(pa.table(columns), str(path))


def compare(table: Table, metric: str = "peak_modules") -> list[dict[str, Any]]:
    """Per cell, each load path's median beside the first one's: the difference and the ratio.

    Cells are grouped by machine, CPUs and kmod; the first load path of the grid in each group is the
    baseline.  The ratio is None where the baseline's median is 0 (no ratio means anything there: a
    layout without a module window of its own, a metric no path moves).  Runtime complexity: O(rows log rows).

    >>> from vmapsim.sweeps import Grid, sweep
    >>> t = sweep(Grid(machines=("qemu-kvm",), cpus=(4,), pipelines=("v6.3", "v6.4")), executor="serial")
    >>> [(c["pipeline"], c["baseline"]) for c in compare(t, "loads")]
    [('v6.4', 'v6.3')]
    """
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for cell in table.cells(metric):
        groups.setdefault((cell["machine"], cell["cpus"], cell["kmod"]), []).append(cell)
    out = []
    for (machine, cpus, kmod), cells in groups.items():
        base = cells[0]
        for c in cells[1:]:
            ratio = c["median"] / base["median"] if base["median"] else None
            out.append({"machine": machine, "cpus": cpus, "kmod": kmod, "metric": metric, "baseline": base["pipeline"],
                        "pipeline": c["pipeline"], "baseline_median": base["median"], "median": c["median"],
                        "difference": c["median"] - base["median"], "ratio": ratio})  # fmt: skip
    return out

