"""vmapsim.strategies: the public Hypothesis strategies and VmapSpaceMachine, used as a user would."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import invariant

from vmapsim import InvalidArgument, VmapSpace, layouts, simulate, worst_case
from vmapsim.loader import Schedule
from vmapsim.modules import Catalog
from vmapsim.strategies import (
    Operation,
    VmapSpaceMachine,
    catalogs,
    module_images,
    operations,
    requests,
    schedules,
    workloads,
)

CAT = Catalog.builtin("debian-6.12-amd64")


class DeepChecks(VmapSpaceMachine):
    """The public machine, subclassed as a user would, with the space's private deep check added."""

    @invariant()
    def deep(self) -> None:
        if self.space is not None:
            self.space._check()


DeepChecks.TestCase.settings = settings(max_examples=40, stateful_step_count=30, deadline=None)
TestDeepChecks = DeepChecks.TestCase


class OnX86(VmapSpaceMachine):
    """A subclass that only changes the layout: the big x86-64 windows, where nothing runs out."""

    layout = layouts.X86_64


OnX86.TestCase.settings = settings(max_examples=15, stateful_step_count=30, deadline=None)
TestOnX86 = OnX86.TestCase


@settings(max_examples=30, deadline=None)
@given(cat=catalogs(max_size=6))
def test_a_drawn_catalog_holds_what_its_modules_depend_on(cat: Catalog) -> None:
    for m in cat:
        assert all(dep.name in cat for dep in cat.closure(m.name))
        assert CAT[m.name] == m


@settings(max_examples=25, deadline=None)
@given(data=st.data(), jobs=workloads(cpus=3, max_size=5))
def test_any_schedule_of_any_workload_replays_exactly(data: st.DataObject, jobs: list[Any]) -> None:
    schedule = data.draw(schedules(items=len(jobs)))
    kw: dict[str, Any] = {"cpus": 3, "catalog": CAT, "kernel": data.draw(st.sampled_from(["6.3", "6.4", "6.12"]))}
    first = simulate(jobs, schedule=schedule, **kw)
    assert simulate(jobs, schedule=Schedule.from_json(schedule.to_json()), **kw) == first
    assert sorted(o.start for o in first.outcomes) == sorted(schedule.arrivals or ())  # each job at its arrival


@settings(max_examples=10, deadline=None)
@given(jobs=workloads(cpus=2, max_size=4), seed=st.integers(0, 100))
def test_the_worst_of_any_workload_replays_and_tops_every_value_tried(jobs: list[Any], seed: int) -> None:
    w = worst_case(jobs, cpus=2, catalog=CAT, kernel="6.3", budget=3, strategy="random", seed=seed)
    assert w.replay() == w.result and w.value == max(w.values)


@settings(max_examples=30, deadline=None)
@given(ops=st.lists(operations(max_pages=50), max_size=30))
def test_operations_apply_on_any_space_without_an_untyped_error(ops: list[Operation]) -> None:
    space, live = VmapSpace(layouts.i386(vmalloc=8 << 20), cpus=2), []
    for op in ops:
        op.apply(space, live)
    space._check()
    assert all(space.find_area(addr) is not None for _, addr, _ in live)


@settings(max_examples=20)
@given(m=module_images(), r=requests(cpus=3, max_time=0.5))
def test_modules_and_requests_lie_within_their_bounds(m: Any, r: Any) -> None:
    assert m.name in CAT and r.module in ("loop", "dm_mod", "msr") and 0 <= r.cpu < 3 and 0 <= r.time <= 0.5


@pytest.mark.parametrize(
    "make,needle",
    [
        (lambda: operations(max_pages=0), "max_pages"),
        (lambda: catalogs(catalog=3), "catalog=3"),
        (lambda: catalogs(min_size=3, max_size=2), "max_size"),
        (lambda: module_images(catalog="no-such"), "no-such"),
        (lambda: requests(cpus=0), "cpus"),
        (lambda: requests(modules="loop"), "modules='loop'"),
        (lambda: requests(modules=[]), "modules=\\[\\]"),
        (lambda: workloads(max_size=-1), "max_size"),
        (lambda: schedules(items=-1), "items"),
        (lambda: schedules(items=2, bound=1.5), "bound"),
        (lambda: Operation("mmap"), "name='mmap'"),
        (lambda: Operation("vmalloc", size=0), "size"),
    ],
)
def test_strategy_arguments_are_checked_when_called(make: Any, needle: str) -> None:
    with pytest.raises(InvalidArgument, match=needle):
        make()
