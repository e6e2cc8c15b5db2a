"""Sweeps: a grid of machines × CPU counts × kernels × pipelines × kmod versions × seeds, on any executor.

Each point of a :class:`Grid` is one udev coldplug, a :class:`~vmapsim.Scenario` run exactly as
``vmapsim boot --seed S`` runs it;
runs are independent and deterministic, so :func:`sweep` returns the same :class:`Table` whichever
executor ran it (serial, a process pool, any ``concurrent.futures.Executor``, or a Dask cluster) and in
whatever order the results came back.

>>> grid = Grid(machines=("qemu-kvm",), cpus=(2, 4), pipelines=("v6.3", "v6.4"), seeds=2)
>>> table = sweep(grid, executor="serial")
>>> len(table.rows), [c["pipeline"] for c in table.cells()][:2]
(8, ['v6.3', 'v6.4'])
>>> table == sweep(grid, executor="serial")
True
"""

from vmapsim.sweeps.exhaustion import exhaustion_cpus
from vmapsim.sweeps.grid import MAX_RUNS, RUN_PARAMETERS, Grid, Point, run_point, sweep
from vmapsim.sweeps.table import PARAMETERS, Table, compare

__all__ = [
    "MAX_RUNS",
    "PARAMETERS",
    "RUN_PARAMETERS",
    "Grid",
    "Point",
    "Table",
    "compare",
    "exhaustion_cpus",
    "run_point",
    "sweep",
]
