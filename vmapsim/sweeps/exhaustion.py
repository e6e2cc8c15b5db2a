"""Where a coldplug starts to run out of a window: the CPU count, found by bisection."""

from __future__ import annotations

from vmapsim.checks import NR_CPUS_MAX, integer
from vmapsim.sweeps.grid import Grid, Point, run_point
from vmapsim.units import PAGE_SIZE

__all__ = ["exhaustion_cpus"]


def exhaustion_cpus(
    machine: str,
    *,
    kernel: str | None = None,
    pipeline: str | None = None,
    kmod: int | None = None,
    seeds: int = 1,
    lo: int = 1,
    hi: int = 4096,
    jitter: float | None = None,
    cost_jitter: float | None = None,
    module_align: int = PAGE_SIZE,
    layout: str | None = None,
) -> int | None:
    """Where a coldplug of ``machine`` starts to run out of a window: a CPU count in ``[lo, hi]`` whose run
    has an allocation failure (in any of ``seeds`` seeds) while one CPU fewer has none (or it is ``lo``);
    None when ``hi`` CPUs have none.  Found by bisection.  Failure is not monotone in the CPU count (each
    count times its loads differently: intel-server in i386's window fails at 35 CPUs, not at 36 to 41, and
    from 42 on almost always), so this is the boundary bisection lands on, not always the fewest failing
    count; more ``seeds`` smooth it.  Runtime: O(seeds · log(hi - lo)) runs, the largest of ``hi`` CPUs.

    >>> exhaustion_cpus("qemu-kvm", pipeline="v6.3", hi=8) is None
    True
    """
    Grid(machines=(machine,), cpus=(lo,), kernels=(kernel,), pipelines=(pipeline,), kmods=(kmod,), seeds=seeds,
         jitter=jitter, cost_jitter=cost_jitter, module_align=module_align, layout=layout)  # every argument checked
    integer("hi", hi, lo, NR_CPUS_MAX)

    def fails(cpus: int) -> bool:
        rows = (run_point(Point(machine, cpus, kernel, pipeline, kmod, s), jitter, cost_jitter, module_align, layout)
                for s in range(seeds))  # fmt: skip
        return any(row["allocation_failures"] for row in rows)

    if not fails(hi):
        return None
    while lo < hi:  # invariant: hi fails; every count below lo does not
        mid = (lo + hi) // 2
        if fails(mid):
            hi = mid
        else:
            lo = mid + 1
    return hi
