"""Figures of simulation results (needs the ``plot`` extra: ``pip install '.[plot]'``).

Each figure draws the rows of :mod:`vmapsim.report.series` -- the rows ``--series`` writes -- so a
figure and its CSV cannot disagree.  A load path keeps one colour, line style and marker in every
panel (the three together survive greyscale printing); a curve equal to an earlier one is drawn once,
and its legend entry names the twins; each figure has one legend.

>>> import importlib.util
>>> importlib.util.find_spec("vmapsim.plot") is not None
True
"""

from vmapsim.plot._boot import boot_figure, pinned_over_time
from vmapsim.plot._common import plot_path
from vmapsim.plot._histograms import allocation_histograms, histogram_figure
from vmapsim.plot._sweep import sweep_curves, sweep_figure

__all__ = ["allocation_histograms", "boot_figure", "histogram_figure", "pinned_over_time", "plot_path", "sweep_curves",
           "sweep_figure"]  # fmt: skip
