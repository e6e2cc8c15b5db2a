"""``vmapsim scan``: a module tree read into a catalog."""

from __future__ import annotations

import argparse
from typing import Any

from vmapsim import report
from vmapsim.cli._io import note, progress_bar, read, write
from vmapsim.cli._parser import integer
from vmapsim.modules import ARCHES, Catalog, KernelConfig

__all__ = ["add", "run"]


def add(sub: Any) -> None:
    """Register ``vmapsim scan``."""
    c = sub.add_parser("scan", help="read a module tree into a catalog (sizes, allocations, deps, aliases)")
    c.add_argument("path", help="lib/modules/<kver>, an extracted package root, or any directory of modules")
    c.add_argument("--csv", help="write one row per module to this CSV file")
    c.add_argument("--save", help="write the catalog (xz-compressed JSON) to this file")
    c.add_argument("--jobs", type=integer(1, 1024), help="worker processes (default: all CPUs)")
    c.add_argument(
        "--config",
        help="the kernel's .config, when the tree has no boot/config-* ('-': standard input; default: Debian's "
        "options for the modules' architecture)",
    )
    c.add_argument("--arch", choices=ARCHES, help="the architecture the modules must be built for (default: their "
                   "ELF header's; another is refused)")  # fmt: skip
    c.add_argument("--json", action="store_true", help="machine-readable JSON summary instead of the text")
    c.set_defaults(run=run)


def run(args: argparse.Namespace) -> str:
    """Scan the tree; write the CSV and catalog asked for; a summary."""
    config = KernelConfig.from_text(read(args.config), args.arch) if args.config else None
    catalog = Catalog.scan(args.path, config=config, arch=args.arch, jobs=args.jobs,
                           progress=progress_bar("scanning", "file"))  # fmt: skip
    if args.csv:
        write(args.csv, catalog.to_csv().encode())
    if args.save:
        catalog.save(args.save)
    gen = catalog.generation
    total = sum(sum(n for _, n in m.allocations(gen)) for m in catalog)
    releases = sorted({m.vermagic.split()[0] for m in catalog if m.vermagic.split()} - {catalog.kernel})
    notes = []
    if releases:
        notes.append(f"modules of other kernels too ({', '.join(releases)}): a catalog is one kernel build's")
    note(*notes)
    if args.json:
        params = {"path": args.path, "config": args.config, "arch": args.arch, "csv": args.csv, "save": args.save}
        data = {"kernel": catalog.kernel, "generation": gen, "config_source": catalog.config_source,
                "modules": len(catalog), "file_bytes": sum(m.file_size for m in catalog),
                "decompressed_bytes": sum(m.decompressed_size for m in catalog), "module_area_bytes": total,
                "problems": [{"path": p.path, "reason": p.reason} for p in catalog.problems]}  # fmt: skip
        return report.json_text("scan", params, data, notes)
    out = [
        f"{len(catalog)} modules of {catalog.kernel} ({gen} loader), {len(catalog.problems)} skipped; "
        f"{sum(m.file_size for m in catalog)} file bytes, {sum(m.decompressed_size for m in catalog)} decompressed, "
        f"{total} bytes of module-area allocations if all were loaded",
        f"kernel config: {catalog.config_source}",
    ]
    out += [f"skipped {p.path}: {p.reason}" for p in catalog.problems]
    return "\n".join(out) + "\n"
