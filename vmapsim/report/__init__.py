"""What the commands print: sizes in human units, the storm's tables and verdicts, the versioned documents.

* :mod:`~vmapsim.report.documents` -- the ``--json`` envelope (:func:`document`), CSV text,
  :func:`human_bytes`, vmapsim's version and the JSON Schema of every document;
* :mod:`~vmapsim.report.storm` -- a storm's rows (:class:`StormRow`), verdicts computed from what each
  load path changes, section headings, the table, its legend and notes.

>>> human_bytes(745783296), human_bytes(2761617408), human_bytes(1023)
('711.2 MiB', '2.57 GiB', '1023 B')
"""

from vmapsim.report.documents import (
    SCHEMA_VERSION,
    UNITS,
    WIDTH,
    amount,
    csv_text,
    document,
    human_bytes,
    json_text,
    plural,
    schema,
    version,
    wrap,
)
from vmapsim.report.storm import (
    LEGEND,
    Section,
    StormRow,
    about,
    beside,
    figures,
    heading,
    init_module_note,
    path_lines,
    same_sections,
    stats_note,
    storm_rows,
    table,
)

__all__ = [
    "LEGEND",
    "SCHEMA_VERSION",
    "UNITS",
    "WIDTH",
    "Section",
    "StormRow",
    "about",
    "amount",
    "beside",
    "csv_text",
    "document",
    "figures",
    "heading",
    "human_bytes",
    "init_module_note",
    "json_text",
    "path_lines",
    "plural",
    "same_sections",
    "schema",
    "stats_note",
    "storm_rows",
    "table",
    "version",
    "wrap",
]
