"""``vmapsim lsmod``: a catalog's module sizes checked against a live system's /proc/modules."""

from __future__ import annotations

import argparse
from typing import Any

import attrs

from vmapsim import report
from vmapsim.cli import _options
from vmapsim.cli._io import label, read
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
    lm.add_argument("--json", action="store_true", help="machine-readable JSON instead of the text")
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
    known = [c for c in checks_ if c.catalog is not None]
    agree = sum(c.agrees for c in known)
    unknown = [c.name for c in checks_ if c.catalog is None]
    status = 0 if agree == len(known) else 1
    if args.json:
        return report.json_text("lsmod", {"file": args.file, "catalog": args.catalog, "catalog_kernel": catalog.kernel},
                     {"modules": [attrs.asdict(c) | {"agrees": c.agrees} for c in checks_], "agree": agree,
                      "compared": len(known), "not_in_catalog": unknown}), status  # fmt: skip
    lines = [f"# {args.file} against the {catalog.kernel} catalog ({catalog.generation} sizes): {agree} of "
             f"{len(known)} modules' sizes agree" + (f"; {len(unknown)} not in the catalog" if unknown else "")]
    wrong = [c for c in known if not c.agrees]
    if wrong:
        lines.append(f"{'module':24} {'live':>10} {'catalog':>10} {'difference':>11}")
        lines += [f"{c.name:24} {c.live:10d} {c.catalog:10d} {c.live - (c.catalog or 0):+11d}" for c in wrong]
    if unknown:
        lines.append(f"not in the catalog: {' '.join(unknown)}")
    if wrong:
        lines.append("sizes differ where the file comes from another build than the catalog's (scan its modules: "
                     "vmapsim scan /lib/modules/$(uname -r) --save FILE, then --catalog FILE), or where vmapsim's "
                     "section layout departs from the kernel's (docs/fidelity.md)")
    return "\n".join(lines) + "\n", status
