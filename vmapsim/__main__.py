"""``python -m vmapsim``: the command line."""

from vmapsim.cli import program

program()
