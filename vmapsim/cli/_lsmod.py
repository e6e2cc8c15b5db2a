"""``vmapsim lsmod``: a catalog's module sizes checked against a live system's /proc/modules."""

from __future__ import annotations

import argparse
from typing import Any

import attrs

from vmapsim import report
from vmapsim.cli import _options
from vmapsim.cli._io import label, read
from vmapsim.errors import InvalidArgument
from vmapsim.modules import Catalog, check_sizes, parse_proc_modules
from vmapsim.modules.proc_modules import MAX_PROC_MODULES_BYTES

__all__ = ["PROC_MODULES", "add", "run"]

#: The live file read when no FILE is given.
PROC_MODULES = "/proc/modules"


def add(sub: Any) -> None:
    """Register ``vmapsim lsmod``."""
    lm = sub.add_parser("lsmod", help="check a catalog's module sizes against a live system's /proc/modules or lsmod")
    lm.add_argument("file", nargs="?", default=PROC_MODULES, help="a copy of /proc/modules, or lsmod's output; "
                    "'-' reads standard input (default: this machine's /proc/modules)")  # fmt: skip
    lm.add_argument("--catalog", default="debian-6.12-amd64", help="a shipped catalog name or a saved catalog file "
                    "('-': standard input)")  # fmt: skip
    _options.output(lm, csv="one row per module")
    lm.set_defaults(run=run)


def run(args: argparse.Namespace) -> tuple[str, int]:
    """Each module's live size beside the catalog's (exit 1 on a difference)."""
    given = _options.catalog(args.catalog)
    if isinstance(given, Catalog):
        catalog = given
    else:
        catalog = Catalog.builtin(args.catalog) if args.catalog in Catalog.builtins() else Catalog.load(args.catalog)
    live = parse_proc_modules(read(args.file, MAX_PROC_MODULES_BYTES), source=label(args.file))
    checks_ = check_sizes(catalog, live)
    if not checks_:
        raise InvalidArgument(f"{label(args.file)} lists no modules: nothing to check")
    known = [c for c in checks_ if c.catalog is not None]
    agree = sum(c.agrees for c in known)
    unknown = [c.name for c in checks_ if c.catalog is None]
    status = 0 if agree == len(known) else 1
    modules = [attrs.asdict(c) | {"agrees": c.agrees} for c in checks_]
    if args.json:
        return report.json_text("lsmod", {"file": args.file, "catalog": args.catalog, "catalog_kernel": catalog.kernel},
                     {"modules": modules, "agree": agree, "compared": len(known), "not_in_catalog": unknown}), status
    if args.csv:
        return report.csv_text(modules), status
    extra = f"; {len(unknown)} not in the catalog" if unknown else ""
    lines = report.wrap(f"{label(args.file)} against the {catalog.kernel} catalog ({catalog.generation} sizes): "
                        f"sizes agree for {agree} of {report.plural(len(known), 'module')}{extra}", "# ", "#   ")
    wrong = [c for c in known if not c.agrees]
    if wrong:
        size = _options.sizes(args)
        lines.append(f"{'module':24} {'live':>10} {'catalog':>10} {'difference':>11}")
        for c in wrong:
            d = c.live - (c.catalog or 0)
            difference = ("+" if d > 0 else "") + size(d)
            lines.append(f"{c.name:24} {size(c.live):>10} {size(c.catalog or 0):>10} {difference:>11}")
    if unknown:
        lines += report.wrap(" ".join(unknown), "not in the catalog: ", "  ")
    if wrong:
        lines += report.wrap("sizes differ where the file comes from another build than the catalog's (scan its "
                             "modules: vmapsim scan /lib/modules/$(uname -r) --save FILE, then --catalog FILE), or "
                             "where vmapsim's section layout departs from the kernel's (docs/fidelity.md)")
    return "\n".join(lines) + "\n", status
