"""The options the simulating commands share, and the one place they become a :class:`~vmapsim.Scenario`."""

from __future__ import annotations

import argparse
import functools
from collections.abc import Callable
from typing import Any

import attrs

from vmapsim import checks, report
from vmapsim.cli._io import STDIN, label, names, read_bytes
from vmapsim.cli._parser import finite, integer, kernel_versions
from vmapsim.errors import InvalidArgument
from vmapsim.loader import PathConflict, Schedule
from vmapsim.modules import Catalog
from vmapsim.modules.catalog import MAX_CATALOG_BYTES
from vmapsim.scenario import Coldplug, Loads, Scenario
from vmapsim.workloads import Machine, find_machine
from vmapsim.workloads.kmod import KMOD_NEWEST
from vmapsim.workloads.udev import MAX_MACHINE_BYTES

__all__ = ["amounts", "catalog", "coldplug", "conflict", "figure", "kernels", "machine", "output", "pipelines",
           "scenario", "schedule", "simulation", "sizes"]


def simulation(p: argparse.ArgumentParser, *, cpus: int | None, one_path: bool = False) -> None:
    """Options every simulating subcommand shares (``one_path``: the command runs one load path)."""
    p.add_argument("--catalog", help="a shipped catalog name or a saved catalog file, '-' for standard input "
                   "(default: the kernel's shipped catalog, the nearest release's if none ships; without --kernel the "
                   "machine's)")  # fmt: skip
    mine = "" if cpus else "; default: the machine file's CPUs, else 255"
    p.add_argument("--cpus", type=integer(1, checks.NR_CPUS_MAX), default=cpus,
                   help=f"online CPUs (1 to {checks.NR_CPUS_MAX}){mine}")  # fmt: skip
    if one_path:
        p.add_argument("--kernel", type=kernel_versions, help="a kernel version: its own load path, allocator, "
                       "messages and shipped modules (default: the machine file's release, else 6.3's path)")
        p.add_argument("--pipeline", help="a proposal on the kernel's path, or v6.3/v6.4/v6.5 (6.3's, 6.4's, 6.5's "
                       "own path); concurrency-limit:N limits loads to N at once (default: the kernel's own path)")
    else:
        p.add_argument("--kernel", type=kernel_versions, help="kernel version(s), comma-separated: each one's own "
                       "load path, allocator, messages and shipped modules, with the proposals of --pipeline on top "
                       "(default: the machine file's release, else the released paths v6.3, v6.4, v6.5 and the "
                       "proposals as posted)")  # fmt: skip
        p.add_argument("--pipeline", default="all", help="a pipeline name, a comma-separated list, or 'all': a "
                       "proposal (on each --kernel), v6.3/v6.4/v6.5 (6.3's, 6.4's, 6.5's own path); "
                       "concurrency-limit:N limits loads to N at once")  # fmt: skip
    p.add_argument("--layout", help="a layout name (default: the machine's, else x86_64)")
    p.add_argument("--module-align", type=integer(4096, 1 << 30), default=4096,
                   help="MODULE_ALIGN (32768 with generic KASAN)")  # fmt: skip
    p.add_argument("--seed", type=integer(0), default=0,
                   help="seeds uevent arrival jitter and stage-duration jitter: the same seed, the same answer")
    p.add_argument("--stats", action="store_true", help="print each pipeline's CONFIG_MODULE_STATS text")
    p.add_argument("--image", action="append", default=[], metavar="NAME[=BASE]:TYPE=SIZE,...",
                   help="a module of your own sizes (repeatable): BASE's image (default: NAME's) with the given memory "
                   "types (text, data, rodata, ro_after_init, init_text, init_data, init_rodata) resized, e.g. a "
                   "KASAN build: big_kasan=kvm_intel:text=2436K,init_text=304K")  # fmt: skip


def output(p: argparse.ArgumentParser, *, json: bool = True, csv: str | None = None, sizes: bool = True,
           wide: bool = False) -> None:  # fmt: skip
    """The output options every command shares: ``--json`` (and, where the command has rows, ``--csv``,
    which ``csv`` describes) print a document on standard output instead of the text; ``-o FILE`` puts
    whatever would be printed in a file, atomically; ``--bytes`` prints sizes as byte counts; ``--wide``
    lays a table out one line per row, however long.  ``json`` False: the output is a JSON file already
    (``machine capture``)."""
    fmt = p.add_mutually_exclusive_group() if json or csv else p  # argparse cannot show an empty group
    if json:
        fmt.add_argument("--json", action="store_true", help="print the JSON document (docs/output.md) instead of "
                         "the text")  # fmt: skip
    if csv:
        fmt.add_argument("--csv", action="store_true", help=f"print CSV instead of the text: {csv}")
    p.add_argument("-o", "--output", metavar="FILE", help="write the output to FILE (all or nothing) instead of "
                   "standard output; - is standard output")  # fmt: skip
    if sizes:
        p.add_argument("--bytes", action="store_true", help="print sizes as byte counts, not in KiB/MiB/GiB")
    if wide:
        p.add_argument("--wide", action="store_true", help="one line per row, verdicts inline (wider than 100 "
                       "columns)")  # fmt: skip


def figure(p: argparse.ArgumentParser, *, plot: str, series: str) -> None:
    """``--plot FILE`` (the figure ``plot`` describes) and ``--series FILE`` (the CSV of what it draws, whose
    rows ``series`` describes): the same two options wherever a command draws."""
    p.add_argument("--plot", metavar="FILE", help=f"write {plot} to this .png, .svg or .pdf (needs matplotlib)")
    p.add_argument("--series", metavar="FILE", help=f"write what --plot draws to this CSV file: {series}; needs no "
                   "matplotlib")  # fmt: skip


def sizes(args: argparse.Namespace) -> Callable[[int], str]:
    """How the command writes a size: a byte count with ``--bytes``, else in human units."""
    return str if args.bytes else report.human_bytes


def amounts(args: argparse.Namespace, unit: str) -> Callable[[float], str]:
    """How the command writes a figure in ``unit`` (:func:`vmapsim.report.amount`; ``--bytes`` as counts)."""
    return functools.partial(report.amount, unit=unit, raw=args.bytes)


def coldplug(p: argparse.ArgumentParser, *, one_path: bool = False) -> None:
    """The options of a udev coldplug (``boot``, and ``worst`` with ``one_path``)."""
    simulation(p, cpus=None, one_path=one_path)
    p.add_argument(
        "--machine",
        default="intel-server",
        help="a preset (vmapsim info lists them; kdevops is the guest of the 2023 thread's figures), a machine "
        "file (vmapsim machine capture), or a file of the machine's modaliases: "
        "cat /sys/devices/system/cpu/modalias /sys/bus/*/devices/*/modalias > FILE ('-': either, on standard "
        "input)",
    )
    p.add_argument("--ram", type=integer(1, 1 << 24), help="the machine's RAM in GiB (sets udev's worker limit)")
    p.add_argument("--kmod", type=integer(1, KMOD_NEWEST), help="kmod's release (default: the machine's, 30 as in "
                   "Debian 12)")  # fmt: skip
    p.add_argument("--jitter", type=finite(0), help="uevent arrivals spread over this many seconds (default: the "
                   "machine's calibrated value, else 0.05)")  # fmt: skip
    p.add_argument("--cost-jitter", type=finite(0, 0.99), help="stage durations vary by this fraction (default: the "
                   "machine's calibrated value, else 0.25)")  # fmt: skip


def scenario(args: argparse.Namespace, *, kernel: str | None = None, pipeline: str | None = None,
             workload: Loads | None = None) -> Scenario:
    """The scenario the options describe (before ``--kernel`` and ``--pipeline`` lists pick its load paths:
    :func:`~vmapsim.scenario.storm`).  Runtime complexity: that of resolving it (a catalog read once)."""
    found: Any = None
    if workload is None:
        found = machine(args.machine)
        if args.ram is not None:
            found = attrs.evolve(found, ram=args.ram << 30)
    return Scenario(found, cpus=args.cpus, kernel=kernel, pipeline=pipeline, kmod=getattr(args, "kmod", None),
                    seed=args.seed,
                    jitter=getattr(args, "jitter", None), cost_jitter=getattr(args, "cost_jitter", None),
                    lockstep=getattr(args, "lockstep", False), layout=args.layout, module_align=args.module_align,
                    catalog=catalog(args.catalog), images=tuple(args.image),
                    schedule=schedule(getattr(args, "schedule", None)), workload=workload or Coldplug())  # fmt: skip


def machine(spec: str) -> Machine:
    """``--machine``: a preset, a file, or ``-``: a machine file or modalias list on standard input."""
    if spec == STDIN:
        return Machine.from_text(read_bytes(spec, MAX_MACHINE_BYTES), name="stdin", source=label(spec))
    return find_machine(spec)


def catalog(spec: str | None) -> Catalog | str | None:
    """``--catalog``: ``-`` read from standard input (a saved catalog), else the name or file as given (which
    the library resolves, keeping a shipped catalog's name)."""
    if spec == STDIN:
        return Catalog.from_bytes(read_bytes(spec, MAX_CATALOG_BYTES), source=label(spec))
    return spec


def schedule(spec: str | None) -> Schedule | None:
    """``--schedule``: a schedule file, or ``-``: one on standard input (its parser bounds its size)."""
    if spec == STDIN:
        return Schedule.from_json(read_bytes(spec), source=label(spec))
    return Schedule.load(spec) if spec else None


def base(args: argparse.Namespace, workload: Loads | None = None) -> Scenario:
    """The scenario ``boot``/``load`` build their storm from: the first ``--kernel`` and the first named
    ``--pipeline`` (so a machine file's release is not resolved where the options replace it)."""
    first_pipeline = None if args.pipeline == "all" else names(args.pipeline)[0]
    return scenario(args, kernel=names(args.kernel)[0], pipeline=first_pipeline, workload=workload)


def kernels(args: argparse.Namespace) -> list[str | None] | None:
    """The kernels ``--kernel`` lists (None: the scenario's own, from the machine's release)."""
    return list(names(args.kernel)) if args.kernel else None


def pipelines(args: argparse.Namespace) -> str | tuple[str | None, ...]:
    """The pipelines ``--pipeline`` lists, or ``"all"``."""
    return "all" if args.pipeline == "all" else names(args.pipeline)


def conflict(e: PathConflict) -> InvalidArgument:
    """A load-path conflict in the options' own words."""
    return InvalidArgument(f"--kernel {e.kernel} and --pipeline {e.pipeline} disagree: {e.why}")
