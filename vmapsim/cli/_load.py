"""``vmapsim load``: modules loaded on every CPU at once under each load path, side by side."""

from __future__ import annotations

import argparse
from typing import Any

from vmapsim import report
from vmapsim.cli import _options, _storm
from vmapsim.cli._io import STDIN, label, note, read
from vmapsim.loader.request import Syscall
from vmapsim.scenario import Loads, storm
from vmapsim.workloads import read_requests
from vmapsim.workloads.requests import MAX_REQUEST_BYTES

__all__ = ["add", "run"]


def add(sub: Any) -> None:
    """Register ``vmapsim load`` and its options."""
    ld = sub.add_parser("load", help="load modules on every CPU at once under each pipeline; compare")
    ld.add_argument("module", nargs="*", help="module names or modaliases (every CPU loads each)")
    ld.add_argument("--requests", help="also run the requests of a JSON-lines or .csv file (time, cpu, module, ...); "
                    "'-' reads standard input, JSON lines if its first line starts with '{', else CSV")  # fmt: skip
    _options.simulation(ld, cpus=8)
    ld.add_argument("--syscall", default="finit_module", choices=[str(s) for s in Syscall],
                    help="what userspace calls: finit_module (kmod >= 31, the file) or init_module (kmod < 31, the "
                    "decompressed image)")  # fmt: skip
    ld.add_argument("--lockstep", action="store_true", help="every heavy stage takes the same time (callers stay in "
                    "step)")  # fmt: skip
    ld.add_argument("--no-deps", action="store_true", help="load only the modules named, as insmod does (default: "
                    "their dependencies first, skipping live modules, as modprobe does)")  # fmt: skip
    _options.output(ld, csv="one row per load path", wide=True)
    ld.set_defaults(run=run)


def run(args: argparse.Namespace) -> str:
    """Load the modules (and requests) under every load path asked for; the table, JSON or CSV."""
    requests: tuple[Any, ...] = ()
    if args.requests:
        fmt = "auto" if args.requests == STDIN else "csv" if args.requests.endswith(".csv") else "jsonl"
        text = read(args.requests, MAX_REQUEST_BYTES)
        requests = tuple(read_requests(text, fmt=fmt, source=label(args.requests)))
    workload = Loads(tuple(args.module), requests, args.syscall, deps=not args.no_deps)
    base = _options.base(args, workload)
    scenarios = storm(base, _options.kernels(args), _options.pipelines(args))
    catalog, layout, cpus = base.catalog_used, base.run.layout, base.run.cpus
    modules = workload.names(catalog)
    missing = workload.missing(catalog)
    jobs = len(scenarios[0].jobs())
    done = _storm.run_all(scenarios, jobs)
    (part,) = _storm.sections(scenarios, done, by_files=False)
    stats = [d[1]["stats"] for d in done]
    table_notes = _storm.notes(scenarios, [part], stats=args.stats)
    # simplify_symbols() is not modelled: say what a real kernel would do
    missing_notes = [f"{m} needs {', '.join(deps)}, which --no-deps does not load; vmapsim does not resolve symbols, "
                     "where a kernel would fail the load with -ENOENT" for m, deps in missing]  # fmt: skip
    notes = table_notes + missing_notes
    note(*notes)  # on stderr whatever the output; the JSON holds them too, the text those that explain rows
    if args.json or args.csv:
        params = {"modules": modules, "requests": args.requests, "cpus": cpus,
                  "catalog": args.catalog or scenarios[0].catalog_name,
                  "catalog_kernel": _storm.catalogs(scenarios), "kernel": args.kernel,
                  "pipelines": list(_storm.paths(scenarios)), "syscall": args.syscall, "deps": not args.no_deps,
                  "lockstep": args.lockstep, "seed": args.seed, "layout": layout.name,
                  "module_align": args.module_align, "images": list(args.image)}  # fmt: skip
        data = [{k: v for k, v in row.to_dict().items() if k != "kmod"} for row in part.rows]
        if args.stats:
            for d, st in zip(data, stats, strict=True):
                d["stats"] = {**st.to_dict(), "text": st.render()}
        if args.json:
            return report.json_text("load", params, {"windows": {r.name: r.size for r in layout.regions},
                                                     "runs": data}, notes)  # fmt: skip
        flat = {k: v for k, v in params.items() if k not in ("modules", "pipelines")}
        return report.csv_text([{**flat, "modules": " ".join(modules), **{k: v for k, v in d.items() if k != "stats"},
                                 **_storm.stats_columns(d)} for d in data])  # fmt: skip
    what = []
    if modules:
        deps = "" if args.no_deps else ", dependencies first (modprobe)"
        what.append(f"{', '.join(modules)} on each of {report.plural(cpus, 'CPU')}{deps}")
    if args.requests:
        what.append(f"{report.plural(len(requests), 'request')} from {label(args.requests)}")
    size, w = _options.sizes(args), _storm.width(scenarios)
    header = (f"{report.plural(jobs, 'job')}: {'; '.join(what)}; {_storm.catalogs(scenarios)}, {args.syscall}(2), "
              f"{layout.name}, MODULE_ALIGN {size(args.module_align)}, {'lockstep' if args.lockstep else 'timed'}, "
              f"seed {args.seed}")
    lines = [*_storm.lines(header, args.wide, "# ", "#   "),
             *report.table(part.rows, w, size, wide=args.wide, shared=layout.shared_modules)]
    lines += ["", report.LEGEND, *report.path_lines(_storm.paths(scenarios), w, wide=args.wide)]
    lines += _storm.footnotes(scenarios, table_notes, args.wide)
    for row, st in zip(part.rows if args.stats else (), stats, strict=False):
        lines.append(f"\n# /sys/kernel/debug/modules/stats after {row.pipeline}\n{st.render()}".rstrip("\n"))
    return "\n".join(lines) + "\n"
