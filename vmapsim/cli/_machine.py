"""``vmapsim machine capture``: a machine file of this machine (or a copied root)."""

from __future__ import annotations

import argparse
from typing import Any

import attrs

from vmapsim import report
from vmapsim.cli import _options
from vmapsim.cli._io import note
from vmapsim.cli._parser import integer
from vmapsim.workloads import capture
from vmapsim.workloads.kmod import KMOD_NEWEST

__all__ = ["add", "run"]


def add(sub: Any) -> None:
    """Register ``vmapsim machine`` and its actions."""
    mc = sub.add_parser("machine", help="machine files: capture this machine (or a copied root) for --machine FILE")
    msub = mc.add_subparsers(dest="action", metavar="ACTION", required=True, help="what to do with a machine file")
    cap = msub.add_parser("capture", help="write a machine file: CPU and device modaliases, CPUs, RAM, kmod, kernel")
    cap.add_argument("--root", default="/", help="the system's root: / for this machine, or a copy of its /sys, "
                     "/proc and /var/lib/dpkg")  # fmt: skip
    cap.add_argument("--name", help="the machine's name (default: its hostname)")
    cap.add_argument("--kmod", type=integer(1, KMOD_NEWEST), help="kmod's version (default: kmod --version, or dpkg's)")
    cap.add_argument("--ram", type=integer(1, 1 << 24), help="RAM in GiB (default: /proc/meminfo's MemTotal)")
    _options.output(cap, json=False, sizes=False)
    cap.set_defaults(run=run)


def run(args: argparse.Namespace) -> str:
    """Capture the machine; its file, written or printed."""
    machine, notes = capture(args.root, name=args.name, kmod=args.kmod)
    if args.ram is not None:
        machine = attrs.evolve(machine, ram=args.ram << 30)
    note(*notes)
    if args.output not in (None, "-"):  # the file is written by vmapsim.cli.main; say what it holds
        note(f"{args.output}: {machine.name}, {machine.cpus or '?'} CPUs, {machine.ram >> 30} GiB, kmod "
             f"{machine.kmod}, kernel {machine.release or '?'}, {report.plural(len(machine.devices), 'device')}; "
             f"simulate its boot with: vmapsim boot --machine {args.output}")  # fmt: skip
    return machine.to_json()
