"""The ``vmapsim-cli`` directive: every command and option of ``vmapsim``, from its own argument parser.

Generated at build time, so the reference cannot drift from the program.
"""

from __future__ import annotations

import argparse
from typing import Any

from docutils import nodes
from sphinx.util.docutils import SphinxDirective


class CliReference(SphinxDirective):
    """Render ``vmapsim --help`` and each command's ``--help`` as sections."""

    def run(self) -> list[nodes.Node]:
        from vmapsim.cli import commands

        out: list[nodes.Node] = []
        for path, parser in commands():
            section = nodes.section(ids=[nodes.make_id(path)])
            section += nodes.title(text=path)
            parser.formatter_class = lambda prog: parser_formatter(prog)
            section += nodes.literal_block(text=parser.format_help(), language="text")
            out.append(section)
        return out


def parser_formatter(prog: str) -> argparse.HelpFormatter:
    from vmapsim.cli import Help

    return Help(prog, width=100)


def setup(app: Any) -> dict[str, Any]:
    app.add_directive("vmapsim-cli", CliReference)
    return {"parallel_read_safe": True}
