"""``vmapsim scan``: a module tree read into a catalog."""

from __future__ import annotations

import argparse
from typing import Any

from vmapsim import report
from vmapsim.cli import _options
from vmapsim.cli._io import note, progress_bar, read, workers, writable
from vmapsim.cli._parser import integer
from vmapsim.modules import ARCHES, Catalog, KernelConfig

__all__ = ["add", "run"]


def add(sub: Any) -> None:
    """Register ``vmapsim scan``."""
    c = sub.add_parser("scan", help="read a module tree into a catalog (sizes, allocations, deps, aliases)")
    c.add_argument("path", help="lib/modules/<kver>, an extracted package root, or any directory of modules")
    c.add_argument("--save", metavar="FILE", help="write the catalog (xz-compressed JSON) to this file")
    c.add_argument("--workers", type=integer(1, 4096), help="worker processes (default, and at most: the usable CPUs)")
    c.add_argument(
        "--config",
        help="the kernel's .config, when the tree has no boot/config-* ('-': standard input; default: Debian's "
        "options for the modules' architecture)",
    )
    c.add_argument("--arch", choices=ARCHES, help="the architecture the modules must be built for (default: their "
                   "ELF header's; another is refused)")  # fmt: skip
    _options.output(c, csv="one row per module (the columns of docs/modules.md)")
    c.set_defaults(run=run)


def run(args: argparse.Namespace) -> str:
    """Scan the tree; save the catalog if asked; a summary, the JSON summary, or one CSV row per module."""
    if args.save:
        writable(args.save)
    config = KernelConfig.from_text(read(args.config), args.arch) if args.config else None
    catalog = Catalog.scan(args.path, config=config, arch=args.arch, jobs=workers(args.workers),
                           progress=progress_bar("scanning", "file"))  # fmt: skip
    if args.save:
        catalog.save(args.save)
    gen = catalog.generation
    total = sum(sum(n for _, n in m.allocations(gen)) for m in catalog)
    notes = []
    releases = sorted({m.vermagic.split()[0] for m in catalog if m.vermagic.split()} - {catalog.kernel})
    if releases:
        notes.append(f"modules of other kernels too ({', '.join(releases)}): a catalog is one kernel build's")
    note(*notes)  # a warning about the tree: on stderr whatever the output
    if args.json:
        params = {"path": args.path, "config": args.config, "arch": args.arch, "save": args.save}
        data = {"kernel": catalog.kernel, "generation": gen, "config_source": catalog.config_source,
                "modules": len(catalog), "file_bytes": sum(m.file_size for m in catalog),
                "decompressed_bytes": sum(m.decompressed_size for m in catalog), "module_area_bytes": total,
                "problems": [{"path": p.path, "reason": p.reason} for p in catalog.problems]}  # fmt: skip
        return report.json_text("scan", params, data, notes)
    if args.csv:
        return catalog.to_csv()
    size = _options.sizes(args)
    out = [
        *report.wrap(f"{report.plural(len(catalog), 'module')} of {catalog.kernel} ({gen} loader), "
                     f"{len(catalog.problems)} skipped; "
                     f"files {size(sum(m.file_size for m in catalog))}, decompressed "
                     f"{size(sum(m.decompressed_size for m in catalog))}, module-area allocations "
                     f"{size(total)} if all were loaded", "", "  "),
        f"kernel config: {catalog.config_source}",
    ]
    out += [f"skipped {p.path}: {p.reason}" for p in catalog.problems]
    return "\n".join(out) + "\n"
