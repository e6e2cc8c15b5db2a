"""The reorganised API: Run and its keyword shortcut, schedulers as values, find_area, the replay interface."""

from __future__ import annotations

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.helpers import snapshot
from vmapsim import InvalidArgument, VmapSpace, layouts, simulate
from vmapsim.engine import Delay, Engine, Ordered, Seeded, Semaphore
from vmapsim.loader import Request, Run
from vmapsim.loader.costs import CostModel
from vmapsim.loader.kernel import Kernel
from vmapsim.loader.pipelines import V6_4
from vmapsim.loader.stages import ConcurrencyLimit
from vmapsim.modules import Generation
from vmapsim.workloads import Modprobe

CAT = "debian-6.12-amd64"


def _reqs() -> list[Request | Modprobe]:
    return [*(Request("dm_mod", cpu=c, time=c * 1e-4) for c in range(4)), Modprobe(("kvm_intel",), cpu=1)]


def test_a_run_value_and_its_keyword_shortcut_give_equal_results() -> None:
    run = Run(pipeline="v6.4", cpus=4, catalog=CAT, costs=CostModel(jitter=0.2), seed=5, workers=1)
    by_value = simulate(_reqs(), run)
    by_keywords = simulate(_reqs(), pipeline="v6.4", cpus=4, catalog=CAT, costs=CostModel(jitter=0.2), seed=5,
                           workers=1)  # fmt: skip
    assert by_value == by_keywords
    assert by_value.pinned_over_time == by_keywords.pinned_over_time
    # keywords override the run's fields
    assert simulate(_reqs(), run, pipeline="v6.3").pipeline == "v6.3"


def test_an_unknown_simulate_option_is_named() -> None:
    with pytest.raises(InvalidArgument, match="'cpu'"):
        simulate(_reqs(), cpu=4)


def test_one_scheduler_value_replays_the_same_interleaving() -> None:
    together = [Request("dm_mod", cpu=c) for c in range(4)]  # lockstep: the scheduler picks the winner
    run = Run(pipeline="v6.3", cpus=4, catalog=CAT, scheduler=Seeded(7), costs=CostModel(lockstep=True))
    first, second = simulate(together, run), simulate(together, run)
    assert first == second and first.pinned_over_time == second.pinned_over_time
    winners = {tuple(o.ret for o in simulate(together, run, scheduler=Ordered(c)).outcomes) for c in ([0], [3])}
    assert len(winners) == 2  # choices matter, so the replay above is not vacuous


def test_workers_limit_how_many_jobs_run_at_once() -> None:
    jobs = [Modprobe((m,), cpu=c) for c, m in enumerate(("loop", "msr", "irqbypass"))]
    free = simulate(jobs, cpus=3, catalog=CAT)
    one = simulate(jobs, cpus=3, catalog=CAT, workers=1)
    assert [o.start for o in free.outcomes] == [0.0, 0.0, 0.0]
    assert len(one.outcomes) == 3
    assert all(b.start >= a.end for a, b in zip(one.outcomes, one.outcomes[1:], strict=False))
    # with one worker a second job for a LIVE module skips it, as kmod does
    again = simulate([Modprobe(("loop",), cpu=0), Modprobe(("loop",), cpu=1)], cpus=2, catalog=CAT, workers=1)
    assert len(again.outcomes) == 1


def test_a_job_is_checked_before_anything_runs() -> None:
    space = VmapSpace(layouts.X86_64, cpus=2)
    before = snapshot(space)
    with pytest.raises(InvalidArgument, match="CPU 5"):
        simulate([Request("loop"), Modprobe(("loop",), cpu=5)], cpus=2, catalog=CAT, space=space)
    assert snapshot(space) == before


def test_semaphore_wakes_waiters_in_order() -> None:
    eng, sem, log = Engine(), Semaphore(2), []

    def user(name: str, hold: float):  # type: ignore[no-untyped-def]
        yield from sem.acquire()
        log.append((eng.now, name))
        yield Delay(hold)
        sem.release(eng)

    for name, hold in (("a", 1.0), ("b", 2.0), ("c", 1.0), ("d", 1.0)):
        eng.spawn(user(name, hold))
    eng.run()
    assert log == [(0.0, "a"), (0.0, "b"), (1.0, "c"), (2.0, "d")]


def test_kernel_state_is_typed_per_stage_and_per_run() -> None:
    k = Kernel(VmapSpace(layouts.X86_64), Engine(), CostModel(), V6_4)
    a, b = ConcurrencyLimit(4), ConcurrencyLimit(4)  # equal values, two stages: two limiters
    assert k.limiter(a, 4) is k.limiter(a, 4) and k.limiter(a, 4) is not k.limiter(b, 4)
    other = Kernel(VmapSpace(layouts.X86_64), Engine(), CostModel(), V6_4)
    assert other.limiter(a, 4) is not k.limiter(a, 4)
    assert other.reads is not k.reads and other.in_flight is not k.in_flight
    assert k.generation is Generation.MODULE_MEMORY  # the name is converted once
    with pytest.raises(InvalidArgument, match="'core'"):
        attrs.evolve(V6_4, generation="core")  # a path's generation is converted once, by name


@given(st.lists(st.integers(1, 40), min_size=1, max_size=25), st.data())
def test_find_area_finds_the_area_holding_any_address(pages: list[int], data: st.DataObject) -> None:
    space = VmapSpace(layouts.X86_64, cpus=2)
    starts = [space.vmalloc(n * 4096) for n in pages]
    for a in data.draw(st.lists(st.sampled_from(starts), unique=True)):
        space.vfree(a)
    for area in space.areas():
        for addr in (area.start, area.end - 1, data.draw(st.integers(area.start, area.end - 1))):
            assert space.find_area(addr) == area
    for lazy in space.lazy_areas():
        assert space.find_area(lazy.start) is None  # find_vmap_area() searches the busy tree only
    for lo, hi in space.free_ranges("vmalloc")[:3]:
        assert space.find_area(lo) is None and space.find_area(hi - 1) is None


def test_find_area_rejects_a_non_address() -> None:
    with pytest.raises(InvalidArgument):
        VmapSpace(layouts.X86_64).find_area("0x1000")  # type: ignore[arg-type]


def test_replay_interface_takes_exactly_the_kernels_range_or_nothing() -> None:
    space = VmapSpace(layouts.X86_64, cpus=2)
    a = space.vmalloc(8192)
    target = layouts.X86_64.vmalloc.start + (1 << 30)
    assert space.replay_alloc(target, 3 * 4096, cpu=1)
    assert space.find_area(target + 4096) is not None
    before = snapshot(space)
    assert not space.replay_alloc(a, 4096, cpu=0)  # busy: the model does not hold it free
    assert not space.replay_free(a + 4096)  # no area starts there
    assert snapshot(space) == before
    assert space.replay_free(a) and space.find_area(a) is None
    space.replay_purge(full_decay=False)
    assert space.lazy_areas() == []
    space._check()
