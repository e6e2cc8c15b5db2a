"""``python -m vmapsim``: the command line."""

import sys

from vmapsim.cli import main

sys.exit(main())
