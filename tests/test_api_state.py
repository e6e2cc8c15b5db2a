"""Stateful proof that a failing call of the public API changes nothing, beyond the space.

``tests/test_failing_calls.py`` holds the vmalloc space to it; this machine holds everything else a user
keeps between calls: a kernel's module counters (``ModuleStats``), execmem's ROX cache and the space under
it, a catalog grown with images of one's own, a machine, a sweep grid and its table, a schedule. Good
calls change them; between good calls one failing call of every kind the API has -- a constructor, a
setter, a builder, a ``from_json``, a parser, a resume, a simulation given a bad value -- must raise a
typed :class:`~vmapsim.VmapsimError`, and the whole world must pickle to the same bytes after as before.
The registries a bad call could reach (presets, layouts, load paths, proposals, strategies, the shipped
catalogs) are compared at the end of every run.
"""

from __future__ import annotations

import math
import pickle
from collections.abc import Callable
from typing import Any

import attrs
import pytest
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from vmapsim import Catalog, Grid, Machine, Request, Scenario, VmapsimError, VmapSpace, layouts, simulate, sweep
from vmapsim.execmem import RoxCache
from vmapsim.explore import PCT, STRATEGIES, Exhaustive, Guided, RandomSearch, worst_case
from vmapsim.loader import PIPELINES, PROPOSALS, ModuleStats, Schedule, pipelines
from vmapsim.loader.stages import ConcurrencyLimit
from vmapsim.loader.stats import FAIL_DUP_MOD_BECOMING, FAIL_DUP_MOD_LOAD, FailurePoint
from vmapsim.modules import KernelConfig
from vmapsim.profiles import kernel_release
from vmapsim.scenario import image_spec
from vmapsim.sweeps import Table
from vmapsim.units import PAGE_SIZE
from vmapsim.workloads import PRESETS
from vmapsim.workloads.kmod import kmod_version

#: Values no field takes as they are: wrong types, non-finite, huge, empty, negative, unpicklable.
BAD: list[Any] = [None, -1, math.nan, math.inf, "", "x", 10**5000, -(10**5000), [], True, 1.5, b"4096", object()]

_FULL = Catalog.builtin("debian-6.12-amd64")
_SMALL = Catalog(_FULL.kernel, _FULL.config, {n: _FULL[n] for n in ("loop", "dm_mod", "msr")})
_GRID = Grid(machines=("qemu-kvm",), cpus=(1, 2), pipelines=("v6.3",), seeds=1)
_TABLE = sweep(_GRID, executor="serial")


def _registries() -> bytes:
    builtin = {name: Catalog.builtin(name).to_csv() for name in Catalog.builtins()}
    return pickle.dumps((PRESETS, layouts.LAYOUTS, PIPELINES, PROPOSALS, sorted(STRATEGIES), builtin))


_REGISTRIES = _registries()


@attrs.define
class World:
    """What a user holds between calls."""

    stats: ModuleStats
    rox: RoxCache
    carves: list[int]
    catalog: Catalog
    machine: Machine
    schedule: Schedule


Draw = Callable[[st.SearchStrategy[Any]], Any]
Failing = Callable[[World, Draw], Callable[[], object]]


def _bad(draw: Draw) -> Any:
    return draw(st.sampled_from(BAD))


def _evolve(value_of: Callable[[World], Any], *, ok: tuple[Any, ...] = (), skip: tuple[str, ...] = ()) -> Failing:
    """A constructor given one bad field: a value of BAD the field cannot take ("x" names things; True, None
    and [] are values of flags, optional fields and tuples; ``ok`` lists others)."""

    def make(w: World, draw: Draw) -> Callable[[], object]:
        value = value_of(w)
        field = draw(st.sampled_from([f for f in attrs.fields(type(value)) if f.init and f.name not in skip]))
        kind = field.type if isinstance(field.type, str) else getattr(field.type, "__name__", str(field.type))
        takes = (*ok, "x", *((True,) if kind == "bool" else ()), *((None,) if "None" in kind else ()),
                 *(([],) if kind.startswith("tuple") else ()))  # fmt: skip
        bad = draw(st.sampled_from([b for b in BAD if not any(b is o or (type(b) in (str, list) and b == o)
                                                               for o in takes)]))  # fmt: skip
        return lambda: attrs.evolve(value, **{field.name.lstrip("_"): bad})

    return make


def _text_of(draw: Draw, good: str) -> str:
    """A near miss of a good document that no reader may take: cut short, doubled, or with a NUL inside."""
    body = good.rstrip()
    i = draw(st.integers(0, len(body) - 1))
    text: str = draw(st.sampled_from([body[:i], body + body, body[:i] + "\x00" + body[i:]]))
    return text


FAILING: dict[str, Failing] = {
    # constructors of the values a user builds, one bad field each
    "Region": lambda w, d: lambda: layouts.Region(d(st.sampled_from(["", "v"])), *d(st.sampled_from(
        [(0x3000, 0x1000), (-1, 0x1000), (0x1000, 1 << 64), (0x1000, 0x1000), (None, 0x1000), (1.5, 2.5)]))),
    "Layout": _evolve(lambda w: layouts.X86_64),
    "KernelConfig": _evolve(lambda w: KernelConfig()),
    "ConcurrencyLimit": lambda w, d: lambda: ConcurrencyLimit(d(st.sampled_from([0, -1, 10**6, 1.5, None, "8"]))),
    "Pipeline": _evolve(lambda w: pipelines.V6_5, skip=("proposal", "generation", "summary")),
    "ModuleStats": _evolve(lambda w: w.stats),
    "Machine": _evolve(lambda w: w.machine, skip=("cpus", "release", "jitter", "cost_jitter", "name", "catalog",
                                                  "cpu_modalias", "file_factor")),
    "Machine name or release": lambda w, d: lambda: attrs.evolve(w.machine, **d(st.sampled_from(
        [{"name": ""}, {"catalog": ""}, {"release": ""}, {"release": "x"}, {"release": "6"}, {"release": "²6.1"}]))),
    "Scenario": lambda w, d: lambda: Scenario(**d(st.sampled_from([
        {"cpus": 0}, {"cpus": 10**6}, {"cpus": "8"}, {"seed": -1}, {"seed": 1.5}, {"kmod": 35}, {"kmod": "abc"},
        {"jitter": -1.0}, {"jitter": math.nan}, {"cost_jitter": 1.0}, {"kernel": "7.4"}, {"kernel": ""},
        {"pipeline": "v6.2"}, {"machine": "nope"}, {"lockstep": 1}, {"images": "x"}]))),
    "Grid": lambda w, d: lambda: attrs.evolve(_GRID, **d(st.sampled_from([
        {"cpus": b"4096"}, {"cpus": ()}, {"cpus": (0,)}, {"seeds": 0}, {"seeds": (-1,)}, {"seeds": 10**30},
        {"kmods": "34"}, {"kmods": (35,)}, {"pipelines": ("v6.2",)}, {"machines": ("nope",)}, {"max_runs": 0},
        {"max_runs": 10**30}, {"jitter": math.inf}, {"layout": "vax"}, {"module_align": 3}]))),
    "Schedule": _evolve(lambda w: w.schedule),
    "strategies": lambda w, d: lambda: d(st.sampled_from([PCT, Exhaustive, Guided, RandomSearch]))(
        **{"name": d(st.sampled_from(["", None, 3]))}),
    "Exhaustive probes / PCT depth": lambda w, d: lambda: d(st.sampled_from([
        lambda: Exhaustive(probes=d(st.sampled_from([0, 10**7, 1.5]))), lambda: PCT(depth=d(st.sampled_from([0, 10**7])))]))(),  # noqa: E501
    # setters and builders of held values
    "auto_purge": lambda w, d: lambda: setattr(w.rox.space, "auto_purge", d(st.sampled_from([b for b in BAD if b is not True]))),  # noqa: E501
    "add_duplicate": lambda w, d: lambda: w.stats.add_duplicate(d(st.sampled_from(["", None, 5, "kvm"])),
                                                                d(st.sampled_from([0, 4, -1, None, 1.5]))),
    "count_failure": lambda w, d: lambda: w.stats.count_failure(
        d(st.sampled_from(["nope", None, 3, FailurePoint.DUP])), length=d(st.sampled_from([-1, 1.5, None, 10**30]))),
    "with_images": lambda w, d: lambda: w.catalog.with_images([_evolve(lambda w: w.catalog["loop"], ok=("",))(w, d)()]),
    "with_images of a non-image": lambda w, d: lambda: w.catalog.with_images([_bad(d)]),
    "a catalog's unknown module": lambda w, d: lambda: w.catalog[d(st.sampled_from(["nope", "", "loop\x00"]))],
    "timing": lambda w, d: lambda: w.machine.timing(**{d(st.sampled_from(["jitter", "cost_jitter"])): d(st.sampled_from([-1.0, math.nan, math.inf, "x", True]))}),  # noqa: E501
    "rox add": lambda w, d: lambda: w.rox.add(d(st.sampled_from([0x1000, -1, None, 1 << 64, *w.rox.chunks]))),
    "rox alloc": lambda w, d: lambda: w.rox.alloc(d(st.sampled_from([0, -1, None, 1.5, 1 << 70])), 0, 1 << 64),
    # readers of documents and text
    "Machine.from_json": lambda w, d: lambda: Machine.from_json(_text_of(d, w.machine.to_json())),
    "Schedule.from_json": lambda w, d: lambda: Schedule.from_json(_text_of(d, w.schedule.to_json())),
    "Table.from_json": lambda w, d: lambda: Table.from_json(_text_of(d, _TABLE.to_json())),
    "ModuleStats.parse": lambda w, d: lambda: ModuleStats.parse(_text_of(d, w.stats.render()) + "\nx"),
    "image_spec": lambda w, d: lambda: image_spec(d(st.sampled_from(["", "x", "big=loop:text=-1", "big=nope:text=1K", "big=loop:text=2²K", "big=loop:text=1K,text"])), w.catalog),  # noqa: E501
    "pipeline names": lambda w, d: lambda: pipelines.by_name(d(st.sampled_from(["", "v6.2", "concurrency-limit:0", "concurrency-limit:²", None]))),  # noqa: E501
    "kernel releases": lambda w, d: lambda: kernel_release(d(st.sampled_from(["", "7.4", "5.3", "x", "²6.1", "6"]))),
    "kmod versions": lambda w, d: lambda: kmod_version(d(st.sampled_from([0, 35, "abc", None, 1.5, True]))),
    # work given a bad argument
    "check_resume": lambda w, d: lambda: attrs.evolve(_GRID, **{d(st.sampled_from(["jitter", "cost_jitter"])): 0.5}).check_resume(_TABLE),  # noqa: E501
    "simulate": lambda w, d: lambda: simulate([Request("loop", **d(st.sampled_from([{"cpu": 2}, {"cpu": -1}, {"time": math.nan}, {"time": -1.0}, {"after": 0}, {"init_errno": 4096}, {"path": 3}])))], cpus=2, space=w.rox.space, catalog=w.catalog),  # noqa: E501
    "simulate an image": lambda w, d: lambda: simulate([Request(attrs.evolve(w.catalog["loop"], memory=(4096,)))], cpus=2, space=w.rox.space),  # noqa: E501
    "worst_case": lambda w, d: lambda: worst_case(["loop"], budget=d(st.sampled_from([0, -1, 1.5])), baseline=d(st.sampled_from(["no", None]))),  # noqa: E501
}  # fmt: skip


class PublicApiFailingCallsChangeNothing(RuleBasedStateMachine):
    """Good calls change the world; every failing call leaves all of it byte-for-byte as it was."""

    def __init__(self) -> None:
        super().__init__()
        space = VmapSpace(layouts.X86_64_NOKASLR, cpus=2)
        self.world = World(ModuleStats(), RoxCache(space), [], _SMALL, PRESETS["qemu-kvm"], Schedule())
        self.kinds: set[str] = set()

    @rule(name=st.sampled_from(["loop", "kvm", "8139too"]), reason=st.sampled_from([FAIL_DUP_MOD_BECOMING,
                                                                                       FAIL_DUP_MOD_LOAD]))  # fmt: skip
    def a_duplicate(self, name: str, reason: int) -> None:
        self.world.stats.add_duplicate(name, reason)
        self.world.stats.count_failure(FailurePoint.DUP, length=PAGE_SIZE, past_layout=reason == FAIL_DUP_MOD_LOAD)

    @rule(size=st.integers(1, 3 << 20))
    def an_execmem_carve(self, size: int) -> None:
        rox, window = self.world.rox, self.world.rox.space.layout.modules
        addr = rox.alloc(size, window.start, window.end)
        if addr is None:
            chunk = rox.populate(size, window.start, window.end)
            rox.add(chunk)
            addr = rox.alloc(size, window.start, window.end)
        assert addr is not None
        self.world.carves.append(addr)

    @rule(data=st.data())
    def a_carve_freed(self, data: st.DataObject) -> None:
        if self.world.carves:
            addr = self.world.carves.pop(data.draw(st.integers(0, len(self.world.carves) - 1)))
            assert self.world.rox.free(addr)
            self.world.rox.clean()

    @rule(text=st.integers(1, 1 << 22), n=st.integers(0, 3))
    def an_image_of_ones_own(self, text: int, n: int) -> None:
        cat = self.world.catalog
        self.world.catalog = cat.with_images([cat["loop"].resized(f"mine{n}", text=text)])

    @rule(cpus=st.integers(1, 64), kmod=st.sampled_from([28, 30, 34]))
    def another_machine(self, cpus: int, kmod: int) -> None:
        self.world.machine = attrs.evolve(self.world.machine, cpus=cpus, kmod=kmod)

    @rule(arrivals=st.lists(st.floats(0, 1), max_size=4), seed=st.integers(0, 2**64 - 1))
    def another_schedule(self, arrivals: list[float], seed: int) -> None:
        self.world.schedule = Schedule(arrivals=tuple(arrivals), seed=seed)

    @rule(name=st.sampled_from(sorted(FAILING)), data=st.data())
    def failing_call(self, name: str, data: st.DataObject) -> None:
        call = FAILING[name](self.world, data.draw)
        before = pickle.dumps(self.world)
        with pytest.raises(VmapsimError):
            call()
        assert pickle.dumps(self.world) == before, name
        self.kinds.add(name)

    @invariant()
    def consistent(self) -> None:
        self.world.rox.space._check()


def test_failing_calls_of_the_public_api_change_nothing() -> None:
    seen: set[str] = set()

    class Recording(PublicApiFailingCallsChangeNothing):
        def teardown(self) -> None:
            seen.update(self.kinds)

    Recording.TestCase().runTest()
    assert seen == set(FAILING), set(FAILING) - seen  # a proof only for the kinds it reached
    assert _registries() == _REGISTRIES  # nothing shared was touched either


_CAT = Catalog.builtin("debian-6.12-amd64")


# Constructors and calls that once took a bad value silently (or raised a bare Python error), each with the
# words its typed error must now say.
@pytest.mark.parametrize(
    ("call", "needle"),
    [
        (lambda: layouts.Region("vmalloc", 0x3000, 0x1000), r"\[0x3000, 0x1000\) is empty"),
        (lambda: layouts.Region("vmalloc", "x", None), "start='x'"),
        (lambda: attrs.evolve(layouts.X86_64, vmalloc=layouts.Region("v", 0x1001, 0x3000)), "not page aligned"),
        (lambda: attrs.evolve(layouts.X86_64, bits=48), "bits=48: expected 32 or 64"),
        (lambda: KernelConfig(arch="vax"), "arch='vax'"),
        (lambda: KernelConfig(strict_rwx=1), "strict_rwx=1"),  # type: ignore[arg-type]
        (lambda: ConcurrencyLimit(-1), "limit=-1"),
        (lambda: attrs.evolve(pipelines.V6_5, stages=(1,)), "expected a tuple of stages"),
        (lambda: attrs.evolve(pipelines.V6_5, kernel="x"), "kernel version 'x'"),
        (lambda: ModuleStats(modcount="x"), "modcount='x'"),  # type: ignore[arg-type]
        (lambda: ModuleStats(duplicates={"kvm": [1, 9]}), "reason=9"),
        (lambda: ModuleStats().add_duplicate("kvm", -3), "reason=-3"),
        (lambda: ModuleStats().count_failure("nope", length=1), "point='nope'"),  # type: ignore[arg-type]
        (lambda: ModuleStats().count_failure(FailurePoint.DUP, length=-1), "length=-1"),
        (lambda: attrs.evolve(PRESETS["qemu-kvm"], name=""), "name is empty"),
        (lambda: attrs.evolve(PRESETS["qemu-kvm"], release="x"), "kernel version 'x'"),
        (lambda: Grid(seeds=10**5000), "seeds="),
        (lambda: Grid(cpus=b"4096"), "cpus=b'4096'"),  # type: ignore[arg-type]
        (lambda: Grid(max_runs=10**30), "max_runs="),
        (lambda: Scenario(seed=-1), "seed=-1"),
        (lambda: Scenario(images=""), "images=''"),  # type: ignore[arg-type]
        (lambda: Schedule(seed=-1), "seed=-1"),
        (lambda: Exhaustive(probes=10**30), "probes="),
        (lambda: RandomSearch(name=""), "name is empty"),
        (lambda: simulate([Request(attrs.evolve(_CAT["loop"], memory=(4096,)))], cpus=2), "request 0 module memory"),
        (lambda: simulate([Request(attrs.evolve(_CAT["loop"], text=-5))], cpus=2), "request 0 module text=-5"),
    ],
)
def test_constructors_refuse_what_they_once_took(call: Callable[[], object], needle: str) -> None:
    with pytest.raises(VmapsimError, match=needle):
        call()
