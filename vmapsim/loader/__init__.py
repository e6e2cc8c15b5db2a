"""The kernel's module load path: stages, pipelines, CONFIG_MODULE_STATS, and simulate().

>>> from vmapsim.loader import PIPELINES
>>> list(PIPELINES)
['v6.3', 'v6.4', 'v6.5', 'kread-dedup', 'page-list', 'exclusive-deny', 'concurrency-limit']
"""

from vmapsim.loader import stages
from vmapsim.loader.pipelines import PIPELINES, Pipeline, concurrency_limit, exclusive_deny
from vmapsim.loader.simulate import AllocationFailure, AllocationRecord, Modprobe, Outcome, Result, simulate
from vmapsim.loader.stages import Request
from vmapsim.loader.stats import ModuleStats

__all__ = [
    "PIPELINES",
    "AllocationFailure",
    "AllocationRecord",
    "Modprobe",
    "ModuleStats",
    "Outcome",
    "Pipeline",
    "Request",
    "Result",
    "concurrency_limit",
    "exclusive_deny",
    "simulate",
    "stages",
]
