"""The kernel's module load path: requests, stages, pipelines, CONFIG_MODULE_STATS, and simulate().

One module per concept: :mod:`~vmapsim.loader.request` (what userspace asks),
:mod:`~vmapsim.loader.kernel` (the machine the stages act on, ``struct load_info``),
:mod:`~vmapsim.loader.module_list` (the ``modules`` list and its states),
:mod:`~vmapsim.loader.stages` (each step of ``load_module()``),
:mod:`~vmapsim.loader.idempotent` (6.5's idempotent ``finit_module()``),
:mod:`~vmapsim.loader.load_module` (a request through the stages and the error paths),
:mod:`~vmapsim.loader.pipelines` (kernel variants and proposals as data),
:mod:`~vmapsim.loader.stats` (``CONFIG_MODULE_STATS``), :mod:`~vmapsim.loader.result`
and :mod:`~vmapsim.loader.run` (:class:`Run` and :func:`simulate`).

>>> from vmapsim.loader import PIPELINES, PROPOSALS, for_kernel
>>> list(PIPELINES)
['v6.3', 'v6.4', 'v6.5', 'kread-dedup', 'page-list', 'exclusive-deny', 'concurrency-limit']
>>> list(PROPOSALS), for_kernel("6.12", "page-list").name
(['kread-dedup', 'page-list', 'exclusive-deny', 'concurrency-limit'], '6.12+page-list')
"""

from vmapsim.loader import stages
from vmapsim.loader.costs import QEMU_TCG, QEMU_TCG_SHARED, Cost, CostModel
from vmapsim.loader.load_module import Job, Loader
from vmapsim.loader.metrics import METRICS, Measured, Metric, default_metric, metric, metric_on
from vmapsim.loader.module_list import ModuleState
from vmapsim.loader.pipelines import (
    PIPELINES,
    PROPOSALS,
    RELEASED,
    Change,
    PathConflict,
    Pipeline,
    Proposal,
    concurrency_limit,
    exclusive_deny,
    for_kernel,
    load_path,
    selection,
)
from vmapsim.loader.request import Request, Syscall
from vmapsim.loader.result import AllocationFailure, AllocationKind, AllocationRecord, Outcome, Result
from vmapsim.loader.run import DEFAULT_KERNEL, Run, simulate
from vmapsim.loader.schedule import Schedule
from vmapsim.loader.stages import ReadDedup
from vmapsim.loader.stats import FailurePoint, ModuleStats

__all__ = [
    "DEFAULT_KERNEL",
    "METRICS",
    "PIPELINES",
    "PROPOSALS",
    "QEMU_TCG",
    "QEMU_TCG_SHARED",
    "RELEASED",
    "AllocationFailure",
    "AllocationKind",
    "AllocationRecord",
    "Change",
    "Cost",
    "CostModel",
    "FailurePoint",
    "Job",
    "Loader",
    "Measured",
    "Metric",
    "ModuleState",
    "ModuleStats",
    "Outcome",
    "PathConflict",
    "Pipeline",
    "Proposal",
    "ReadDedup",
    "Request",
    "Result",
    "Run",
    "Schedule",
    "Syscall",
    "concurrency_limit",
    "default_metric",
    "exclusive_deny",
    "for_kernel",
    "load_path",
    "metric",
    "metric_on",
    "selection",
    "simulate",
    "stages",
]
