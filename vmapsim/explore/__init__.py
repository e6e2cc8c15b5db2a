"""The worst case, searched for: arrival times, stage durations and tie-breaks that pin the most.

A seeded run is one schedule of many. :func:`worst_case` searches the schedules of a workload (its jobs'
arrival times within a window, every stage's duration within the cost model's bounds, every tie-break of
the engine) for the one that maximises a metric of the :class:`~vmapsim.loader.result.Result`, and
returns it as a :class:`~vmapsim.loader.schedule.Schedule` that ``simulate(..., schedule=...)`` and
``vmapsim boot --schedule FILE`` replay exactly.

>>> from vmapsim.loader import Request
>>> jobs = [Request("loop", cpu=c) for c in range(3)]
>>> w = worst_case(jobs, kernel="6.3", cpus=3, catalog="debian-6.12-amd64", budget=8, strategy="random")
>>> w.evaluations, w.value == max(w.values), w.replay() == w.result
(8, True, True)

The search space (:class:`Space`), the strategies (:class:`RandomSearch`, :class:`PCT`,
:class:`Exhaustive`, :class:`Guided`) are values, the metrics those of :data:`vmapsim.loader.METRICS`; docs/explore.md
compares the strategies.
"""

from vmapsim.explore.problem import SearchTooLarge, Space
from vmapsim.explore.search import PCT, STRATEGIES, Exhaustive, Guided, RandomSearch, Strategy
from vmapsim.explore.worst import Worst, worst_case

__all__ = [
    "PCT",
    "STRATEGIES",
    "Exhaustive",
    "Guided",
    "RandomSearch",
    "SearchTooLarge",
    "Space",
    "Strategy",
    "Worst",
    "worst_case",
]
