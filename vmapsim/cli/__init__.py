"""The ``vmapsim`` command line: a thin shell over the library, one module per command.

Each command module has ``add(subparsers)`` (its options) and ``run(args)``, which turns the options
into library values once (a :class:`~vmapsim.Scenario` for the simulating commands), calls the
library and formats what it returns with :mod:`vmapsim.report`.  Errors print one line and exit 2.

>>> [name for name, _ in commands()][:3]
['vmapsim', 'vmapsim demo', 'vmapsim info']
"""

from vmapsim.cli._main import commands, main, program
from vmapsim.cli._parser import Help

__all__ = ["Help", "commands", "main", "program"]
