"""argparse as vmapsim's commands use it: one-line errors (exit 2), defaults in the help, checked numbers."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any, NoReturn

from vmapsim import checks, profiles
from vmapsim.errors import InvalidArgument

__all__ = ["Help", "Parser", "finite", "integer", "kernel_versions", "one_line"]


def one_line(message: str) -> str:
    """``message`` on one line, at most 500 characters (what an error prints)."""
    return " ".join(message.split())[:500]


class Help(argparse.HelpFormatter):
    """Help that shows each option's default, unless its text already says it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        shown = action.default not in (None, False, argparse.SUPPRESS) and action.option_strings
        return f"{text} (default: %(default)s)" if shown and "default" not in text else text


class Parser(argparse.ArgumentParser):
    """argparse with errors as one line, ``vmapsim: error: ...``, exit status 2 (no usage block)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", Help)
        super().__init__(*args, **kwargs)
        #: The subcommands, by name, as they are added (what :func:`vmapsim.cli.commands` walks).
        self.children: dict[str, argparse.ArgumentParser] = {}

    def add_subparsers(self, **kwargs: Any) -> Any:
        """argparse's, remembering each subcommand's parser in :attr:`children`."""
        action = super().add_subparsers(**kwargs)
        add = action.add_parser

        def add_parser(name: str, **options: Any) -> argparse.ArgumentParser:
            sub: argparse.ArgumentParser = add(name, **options)
            self.children[name] = sub
            return sub

        action.add_parser = add_parser  # type: ignore[method-assign]  # wrap, to see each one added
        return action

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"vmapsim: error: {one_line(message)} (see '{self.prog} --help')\n")


def integer(lo: int, hi: int | None = None) -> Callable[[str], int]:
    """An argparse type: a whole number in ``[lo, hi]``."""
    return _option(lambda t: checks.parse_number(t, what="value", decimal=True), checks.integer, "a whole number", lo,
                   hi)  # fmt: skip


def finite(lo: float, hi: float | None = None) -> Callable[[str], float]:
    """An argparse type: a finite number in ``[lo, hi]``."""
    return _option(float, checks.number, "a finite number", lo, hi)


def kernel_versions(text: str) -> str:
    """An argparse type: kernel versions, comma-separated, each one :func:`vmapsim.profiles.kernel_release`
    accepts (so every command's ``--kernel`` refuses an empty, malformed, too old or too new version with
    the same message); the text as given."""
    for version in text.split(","):
        try:
            profiles.kernel_release(version)
        except InvalidArgument as e:
            raise argparse.ArgumentTypeError(str(e)) from None
    return text


def _option(
    kind: Callable[[str], Any], check: Callable[..., Any], what: str, lo: float, hi: float | None
) -> Callable[[str], Any]:
    def parse(token: str) -> Any:
        try:
            # float() and int() read other scripts' digits too ("٣" is 3); the kernel reads ASCII alone
            return check("value", kind(token) if token.isascii() and len(token) <= checks.MAX_DIGITS else None, lo, hi)
        except (ValueError, InvalidArgument):
            span = f"from {_num(lo)} to {_num(hi)}" if hi is not None else f">= {_num(lo)}"
            raise argparse.ArgumentTypeError(f"{checks.show(token)}: expected {what} {span}") from None

    return parse


def _num(v: float) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)
