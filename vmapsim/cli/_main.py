"""The ``vmapsim`` parser, its commands in order, and :func:`main`."""

from __future__ import annotations

import argparse
import gc
import importlib
import sys
from collections.abc import Sequence
from typing import NoReturn

from vmapsim.cli._io import writable, write
from vmapsim.cli._options import conflict
from vmapsim.cli._parser import Parser, one_line
from vmapsim.errors import VmapsimError
from vmapsim.loader import PathConflict
from vmapsim.report import version

__all__ = ["commands", "main", "parser"]

#: The commands, in the order ``vmapsim --help`` lists them; each is the module ``vmapsim.cli._<name>``.
_COMMANDS = ("demo", "info", "replay", "vmallocinfo", "lsmod", "scan", "load", "boot", "worst", "machine", "sweep",
             "compare")  # fmt: skip


def parser(only: str | None = None) -> argparse.ArgumentParser:
    """The ``vmapsim`` parser with every command, or with command ``only`` alone (its module alone is
    imported: a command pays for no other's)."""
    p = Parser(prog="vmapsim", description="Model the Linux vmalloc/vmap address space and the module loader: "
               "start with 'vmapsim boot' (the udev storm of a 255-CPU server under each kernel and fix).")
    p.add_argument("--version", action=_Version, nargs=0, default=argparse.SUPPRESS,
                   help="show program's version number and exit")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", help="run 'vmapsim COMMAND --help' for its options")
    for name in _COMMANDS:
        if only is None or name == only:
            importlib.import_module(f"vmapsim.cli._{name}").add(sub)
    return p


class _Version(argparse.Action):
    """``--version``: the installed version, looked up only when asked for (``importlib.metadata``'s import
    would cost every command 15 ms)."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: object,
                 option_string: str | None = None) -> NoReturn:  # fmt: skip
        print(f"vmapsim {version()}")
        parser.exit()


def _command(argv: Sequence[str]) -> str | None:
    """The command ``argv`` names, if it names one before asking for the top-level help."""
    for word in argv:
        if word in ("-h", "--help"):
            return None
        if not word.startswith("-"):
            return word if word in _COMMANDS else None
    return None


def commands() -> list[tuple[str, argparse.ArgumentParser]]:
    """Every command of ``vmapsim`` as ``(name, parser)``, nested ones included (``vmapsim machine capture``),
    for references generated from the parser.  Runtime complexity: O(commands).

    >>> [name for name, _ in commands()][-1]
    'vmapsim compare'
    """
    out: list[tuple[str, argparse.ArgumentParser]] = []

    def walk(p: argparse.ArgumentParser, path: str) -> None:
        out.append((path, p))
        for name, child in getattr(p, "children", {}).items():
            walk(child, f"{path} {name}")

    walk(parser(), "vmapsim")
    return out


def program() -> NoReturn:
    """The ``vmapsim`` program: :func:`main` on ``sys.argv``, then exit with its status.

    What the command built is left to the process's end: frozen out of the cyclic collector, whose last
    pass at exit would otherwise walk every object of the runs (about 50 ms of a small command).
    """
    status = main()
    gc.freeze()
    sys.exit(status)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (2 on bad input, one line on stderr)."""
    words = sys.argv[1:] if argv is None else list(argv)
    p = parser(_command(words))
    args = p.parse_args(words)
    if args.command is None:  # bare vmapsim: what it can do
        p.print_help()
        return 0
    status = 0
    target = getattr(args, "output", None)
    # One command runs several simulations; between them the cyclic collector would only re-scan
    # the catalog and each run's results (simulate() pauses it during a run).
    enabled = gc.isenabled()
    gc.disable()
    try:
        if target not in (None, "-"):
            writable(target)  # a bad name is refused before minutes of simulation
        text = args.run(args)
        if isinstance(text, tuple):
            text, status = text
    except PathConflict as e:  # in the options' own words
        print(f"vmapsim: error: {one_line(str(conflict(e)))}", file=sys.stderr)
        return 2
    except (VmapsimError, OSError) as e:
        print(f"vmapsim: error: {one_line(str(e))}", file=sys.stderr)
        return 2
    finally:
        if enabled:
            gc.enable()
    if target in (None, "-"):
        sys.stdout.write(text)
        return status
    try:
        write(target, text.encode())
    except VmapsimError as e:
        print(f"vmapsim: error: {one_line(str(e))}", file=sys.stderr)
        return 2
    return status
