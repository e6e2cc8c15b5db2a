"""What the commands print: bytes in human units, the storm's verdicts, and the versioned JSON documents.

Every ``--json`` output is one :func:`document`: the schema name and version,
vmapsim's version, every parameter of the run, the units and the notes (the
table's footnotes), then the command's own data; ``docs/output.md`` lists each
command's fields and ``vmapsim/schema.json`` is their JSON Schema.

>>> human_bytes(745783296), human_bytes(2761617408), human_bytes(1023)
('711.2 MiB', '2.57 GiB', '1023 B')
"""

from __future__ import annotations

import csv
import functools
import io
import json
from collections.abc import Mapping, Sequence
from importlib import resources
from typing import Any

import attrs

from vmapsim.loader import METRICS, Pipeline, Result
from vmapsim.units import GiB, KiB, MiB

__all__ = ["SCHEMA_VERSION", "UNITS", "StormRow", "about", "csv_text", "document", "figures", "human_bytes", "schema",
           "storm_rows", "version"]

#: The version of every ``vmapsim-<command>`` document; bumped when a field changes meaning or goes.
SCHEMA_VERSION = 2
#: What each document's numbers are in.
UNITS = {"bytes": "bytes", "time": "seconds", "addresses": "integers (kernel virtual addresses)"}

# One line on what each named path does, for the legend (the kernel commit or the thread it comes from).
_ABOUT = {
    "v6.3": "duplicates are refused only by add_unformed_module(), after their module memory is allocated",
    "v6.4": "early_mod_check() refuses a duplicate before layout_and_allocate() (064f4536d139)",
    "v6.5": "concurrent finit_module() of one file wait for the first and share its result (9b9879fc0327)",
    "kread-dedup": "a second read of a path being loaded fails with -EBUSY before allocating (RFC, unmerged)",
    "page-list": "read and decompress into pages, vmap() only after the existence check (proposal, unmerged)",
    "exclusive-deny": "a second reader of a file being read gets -ETXTBSY (9828ed3f695a, reverted)",
    "concurrency-limit": "at most 50 loads past a limiter at once (a sketch in the thread, unmerged)",
}


def human_bytes(n: int) -> str:
    """``n`` bytes in binary units, as a person reads them (TiB/GiB with two decimals, MiB/KiB with one).

    Runtime complexity: O(1).

    >>> human_bytes(0), human_bytes(3 << 20), human_bytes(1536)
    ('0 B', '3.0 MiB', '1.5 KiB')
    """
    if n >= 1024 * GiB:
        return f"{n / (1024 * GiB):.2f} TiB"
    if n >= GiB:
        return f"{n / GiB:.2f} GiB"
    for unit, size in (("MiB", MiB), ("KiB", KiB)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"


def about(pipeline: Pipeline) -> str:
    """One line on what a load path does: a named pipeline's, or a kernel's own (by its duplicate handling)
    with the proposal on top.  Runtime complexity: O(stages).

    >>> from vmapsim.loader import for_kernel
    >>> about(for_kernel("6.12"))
    "6.12's own path: idempotent finit_module() (6.5) after early_mod_check() (6.4)"
    >>> about(for_kernel("6.1", "concurrency-limit:8"))
    "6.1's own path: duplicates refused only by add_unformed_module(); with concurrency-limit:8: at most 8 loads ..."
    """
    head, plus, proposal = pipeline.name.partition("+")
    if not plus and head.partition(":")[0] in _ABOUT:  # a named pipeline: a released path or a proposal on 6.4
        return _slots(_ABOUT[head.partition(":")[0]], pipeline)
    own = ("idempotent finit_module() (6.5) after early_mod_check() (6.4)" if pipeline.idempotent else
           "early_mod_check() (6.4)" if pipeline.early_check else "duplicates refused only by add_unformed_module()")
    text = f"{head}'s own path: {own}"  # fmt: skip
    if proposal:
        text += f"; with {proposal}: {_slots(_ABOUT.get(proposal.partition(':')[0], proposal), pipeline)}"
    return text


def _slots(text: str, pipeline: Pipeline) -> str:
    """``text`` with the pipeline's own concurrency limit in place of the sketch's 50."""
    limit = next((st for st in pipeline.stages if st.name == "concurrency_limit"), None)
    return text.replace("at most 50", f"at most {getattr(limit, 'limit', 50)}")


@attrs.frozen
class StormRow:
    """One load path's run in a storm: its figures, and how it compares with the section's first row.

    ``same_as`` names an earlier row with the very same figures (and ``verdict`` says why), ``kmod`` and
    ``syscall`` the userspace that made the requests.
    """

    kmod: int
    syscall: str
    pipeline: str
    metrics: Mapping[str, int]
    reads: int
    first_failure: str | None
    same_as: str | None
    verdict: str

    def to_dict(self) -> dict[str, Any]:
        """The row as plain data (None stays None: JSON ``null``).  Runtime complexity: O(metrics)."""
        return {"kmod": self.kmod, "syscall": self.syscall, "pipeline": self.pipeline, **self.metrics,
                "reads": self.reads, "first_failure": self.first_failure, "same_as": self.same_as,
                "verdict": self.verdict}  # fmt: skip


def figures(result: Result) -> dict[str, Any]:
    """What a storm's table shows of one run: :meth:`Result.metrics`, the reads, the first failure's message.

    Runtime complexity: O(requests).
    """
    first = result.failures[0].message if result.failures else None
    return {**result.metrics(), "reads": result.reads, "first_failure": first}


def storm_rows(kmod: int, syscall: str, runs: Sequence[tuple[str, Pipeline, Mapping[str, Any]]]) -> list[StormRow]:
    """The rows of one userspace path's section: each run's :func:`figures` and a verdict against the first.

    A run whose figures all equal an earlier one's says so, and why: with ``init_module(2)`` a change that
    acts only on ``finit_module(2)`` (6.5's idempotent wait, a read or decompression done differently)
    never runs; any other equal pair had nothing to change on this storm.  Runtime complexity: O(runs²).

    >>> base = {"loads": 2, "ok": 1, "eexist": 1, "other_errors": 0, "peak_vmalloc": 8192, "peak_modules": 4096,
    ...         "allocation_failures": 0, "failed_becoming": 0, "failed_load": 1, "wasted_bytes": 4096,
    ...         "reads": 0, "first_failure": None}
    >>> from vmapsim.loader import PIPELINES as P
    >>> rows = storm_rows(30, "init_module", [("v6.3", P["v6.3"], {**base, "wasted_bytes": 8192}),
    ...                                       ("v6.4", P["v6.4"], base), ("v6.5", P["v6.5"], base)])
    >>> [r.verdict for r in rows]  # doctest: +NORMALIZE_WHITESPACE
    ['the baseline', 'waste 50%, peak modules 100%, vmalloc 100% of v6.3',
     '= v6.4: acts on finit_module(2) only; kmod 30 calls init_module(2)']
    """
    rows: list[StormRow] = []
    for label, pipeline, fig in runs:
        metrics = {k: int(fig[k]) for k in METRICS}
        twin = next((r for r in rows if r.metrics == metrics and r.reads == fig["reads"]), None)
        if twin is not None:
            why = (f"acts on finit_module(2) only; kmod {kmod} calls init_module(2)"
                   if syscall == "init_module" and _finit_only(pipeline) else "nothing for it to change here")
            verdict = f"= {twin.pipeline}: {why}"
        elif not rows:
            verdict = "the baseline" + (f": runs out, {metrics['allocation_failures']} failed allocations"
                                        if metrics["allocation_failures"] else "")  # fmt: skip
        else:
            verdict = _against(metrics, rows[0])
        rows.append(StormRow(kmod, syscall, label, metrics, int(fig["reads"]), fig["first_failure"],
                             twin.pipeline if twin else None, verdict))  # fmt: skip
    return rows


# The changes that only a finit_module(2) call reaches: 6.5's idempotent wait and the read-side proposals.
_FINIT_ONLY = ("kread-dedup", "page-list", "exclusive-deny")


def _finit_only(pipeline: Pipeline) -> bool:
    return pipeline.idempotent or pipeline.name.rpartition("+")[2] in _FINIT_ONLY


def _against(metrics: Mapping[str, int], base: StormRow) -> str:
    parts = []
    if metrics["allocation_failures"]:
        parts.append(f"runs out ({metrics['allocation_failures']} failed allocations)")
    for key, name in (("wasted_bytes", "waste"), ("peak_modules", "peak modules"), ("peak_vmalloc", "vmalloc")):
        was = base.metrics[key]
        parts.append(f"{name} {_percent(metrics[key] / was)}" if was else f"{name} {human_bytes(metrics[key])}")
    return ", ".join(parts) + f" of {base.pipeline}"


def _percent(ratio: float) -> str:
    return "<1%" if 0 < ratio < 0.005 else f"{ratio:.0%}"


def document(command: str, parameters: Mapping[str, Any], data: Mapping[str, Any],
             notes: Sequence[str] = ()) -> dict[str, Any]:  # fmt: skip
    """The JSON document of ``vmapsim <command> --json``: schema, versions, parameters, units, notes, data.

    Runtime complexity: O(1) beyond ``data``.

    >>> doc = document("demo", {"cpus": 4}, {"vmallocinfo": []})
    >>> doc["schema"], doc["parameters"], doc["notes"]
    ('vmapsim-demo/2', {'cpus': 4}, [])
    """
    return {"schema": f"vmapsim-{command}/{SCHEMA_VERSION}", "vmapsim": version(), "parameters": dict(parameters),
            "units": UNITS, "notes": list(notes), **data}  # fmt: skip


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
