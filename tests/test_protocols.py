"""The kernel's protocols as enums (module states, failure points, syscalls, generations, read dedup, costs):
each member equals its old name, a name is converted once, a bad one is refused by name, and what is
printed or serialised is the same text as before."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vmapsim import InvalidArgument, VmapSpace, engine, layouts, simulate
from vmapsim.loader import (
    QEMU_TCG,
    QEMU_TCG_SHARED,
    Cost,
    CostModel,
    FailurePoint,
    ModuleState,
    ReadDedup,
    Request,
    Result,
    Syscall,
    stages,
)
from vmapsim.loader.kernel import LoadFailed
from vmapsim.loader.stats import ModuleStats
from vmapsim.modules import Catalog, Generation
from vmapsim.workloads import Modprobe, read_requests, syscall_for, write_requests

CAT = "debian-6.12-amd64"


@pytest.mark.parametrize(
    "member,name",
    [(ModuleState.LIVE, "LIVE"), (ModuleState.UNFORMED, "UNFORMED"), (FailurePoint.DUP, "dup"),
     (Syscall.INIT_MODULE, "init_module"), (Generation.MODULE_LAYOUT, "module_layout"), (ReadDedup.PATH, "path"),
     (Cost.RCU_GRACE, "rcu_grace")],
)  # fmt: skip
def test_each_member_equals_and_prints_as_its_old_name(member: str, name: str) -> None:
    assert member == name and hash(member) == hash(name) and {name: 1}[member] == 1
    assert str(member) == f"{member}" == name and json.dumps(member) == json.dumps(name)


def test_a_request_converts_its_syscall_once_and_names_a_bad_one() -> None:
    assert Request("loop", syscall="init_module").syscall is Syscall.INIT_MODULE
    assert Request("loop").syscall is Syscall.FINIT_MODULE
    assert Request("loop", syscall="init_module") == Request("loop", syscall=Syscall.INIT_MODULE)
    for bad in ("bogus", 3, None):
        with pytest.raises(InvalidArgument, match=repr(bad)):
            Request("x", syscall=bad)  # type: ignore[arg-type]
    assert Modprobe(("loop",), syscall="init_module").syscall is Syscall.INIT_MODULE
    with pytest.raises(InvalidArgument, match="'ioctl'"):
        Modprobe(("loop",), syscall="ioctl")  # type: ignore[arg-type]
    assert syscall_for(30, True) is Syscall.INIT_MODULE and syscall_for(31, True) is Syscall.FINIT_MODULE


def test_a_request_round_trips_through_a_result_and_request_files() -> None:
    reqs = [Request("dm_mod", cpu=c, syscall="init_module") for c in range(2)] + [Request("loop", cpu=1)]
    r = simulate(reqs, kernel="6.12", cpus=2, catalog=CAT)
    data = r.to_dict()
    # cattrs hands a StrEnum through as the str it is: the JSON text is the old one
    syscalls = [o["request"]["syscall"] for o in data["outcomes"]]
    assert syscalls == ["init_module", "init_module", "finit_module"] and all(isinstance(s, str) for s in syscalls)
    assert '"syscall": "init_module"' in json.dumps(data)
    back = Result.from_dict(json.loads(json.dumps(data)))
    assert back == Result.from_dict(data) and back.outcomes == r.outcomes
    assert [o.request.syscall for o in back.outcomes] == [Syscall.INIT_MODULE, Syscall.INIT_MODULE,
                                                         Syscall.FINIT_MODULE]  # fmt: skip
    assert back.outcomes[0].request.syscall is Syscall.INIT_MODULE
    for fmt in ("jsonl", "csv"):
        text = write_requests(reqs, fmt=fmt)
        assert "Syscall" not in text and read_requests(text, fmt=fmt) == reqs
    assert write_requests([reqs[0]], fmt="csv") == "time,cpu,module,path,syscall\n0.0,0,dm_mod,,init_module\n"


def test_module_states_are_enums_all_along_the_path() -> None:
    r = simulate([Request("loop"), Request("msr", init_errno=19)], catalog=CAT)
    assert r.live == ("loop",)
    states: list[ModuleState | None] = []

    class Probe:
        def start(self, loader):  # type: ignore[no-untyped-def]
            def task():  # type: ignore[no-untyped-def]
                yield from loader.load(Request("loop"))
                states.append(loader.module_state("loop"))
                states.append(loader.module_state("msr"))

            loader.engine.spawn(task())

    simulate([Probe()], catalog=CAT)
    assert states == [ModuleState.LIVE, None] and states[0] is ModuleState.LIVE


def test_a_generation_is_converted_and_both_name_the_same_allocations() -> None:
    cat = Catalog.builtin(CAT)
    assert cat.generation is Generation.MODULE_MEMORY
    assert Catalog.builtin("debian-6.1-amd64").generation is Generation.MODULE_LAYOUT
    kvm = cat["kvm_intel"]
    for g in Generation:
        assert kvm.allocations(g) == kvm.allocations(g.value)
    with pytest.raises(InvalidArgument, match="'core'"):
        kvm.allocations("core")
    with pytest.raises(InvalidArgument, match="'core'"):
        Generation.of("core")


def test_read_dedup_takes_the_enum_its_name_or_none() -> None:
    assert stages.Read(dedup="path").dedup is ReadDedup.PATH
    assert stages.Read(dedup=ReadDedup.EXCLUSIVE) == stages.Read(dedup="exclusive")
    assert stages.Read().dedup is None
    with pytest.raises(InvalidArgument, match="'inode'"):
        stages.Read(dedup="inode")


def test_load_failed_takes_a_point_or_its_name() -> None:
    assert LoadFailed(1, "becoming").point is FailurePoint.BECOMING
    assert LoadFailed(16, FailurePoint.KREAD).point is FailurePoint.KREAD
    with pytest.raises(InvalidArgument, match="'load'"):
        LoadFailed(1, "load")


def _counted_as_before(point: str, length: int, compressed: int, read: int, past_layout: bool) -> ModuleStats:
    """load_module()'s error path as its if/elif chain counted, before FailurePoint."""
    s = ModuleStats()
    if point == "kread":
        s.bump_kread()
        s.invalid_kread_bytes += read
    elif point == "decompress":
        s.bump_decompress(compressed)
    elif point == "becoming" or (point == "dup" and not past_layout):
        s.bump_becoming(length, compressed)
    elif point == "dup":
        s.bump_invalid(length, compressed)
    return s


@given(st.sampled_from(list(FailurePoint)), st.integers(0, 1 << 30), st.integers(0, 1 << 30),
       st.integers(0, 1 << 30), st.booleans())  # fmt: skip
def test_count_failure_counts_as_the_old_dispatch(
    point: FailurePoint, length: int, compressed: int, read: int, past_layout: bool
) -> None:
    s = ModuleStats()
    s.count_failure(point, length=length, compressed_len=compressed, read_bytes=read, past_layout=past_layout)
    assert s == _counted_as_before(point.value, length, compressed, read, past_layout)


def _duration_as_before(c: CostModel, stage: str, nbytes: int) -> float:
    """CostModel.duration() as its chain of string branches computed it."""
    if c.lockstep:
        return c.step if stage in ("read", "decompress", "signature", "init") else 0.0
    return {
        "read": lambda: nbytes / c.read, "copy": lambda: nbytes / c.copy,
        "signature": lambda: nbytes / c.signature + c.verify, "decompress": lambda: nbytes / c.decompress,
        "init": lambda: c.init, "rcu_grace": lambda: c.rcu_grace, "workqueue": lambda: c.workqueue,
        "populate": lambda: (nbytes >> 12) * c.populate, "rox_fill": lambda: (nbytes >> 12) * c.rox_fill,
        "layout": lambda: nbytes * c.layout, "ipi": lambda: nbytes * c.ipi,
    }[stage]()  # fmt: skip


@given(st.sampled_from(list(Cost)), st.integers(0, 1 << 32),
       st.sampled_from([CostModel(), CostModel(lockstep=True), QEMU_TCG, QEMU_TCG_SHARED,
                        CostModel(populate=3e-6, layout=1e-9, ipi=0.01, rox_fill=2e-5)]))  # fmt: skip
def test_cost_rules_give_the_old_durations_to_the_bit(cost: Cost, nbytes: int, model: CostModel) -> None:
    assert model.duration(cost, nbytes) == _duration_as_before(model, cost.value, nbytes)
    assert model.duration(cost.value, nbytes) == model.duration(cost, nbytes)  # type: ignore[arg-type]


def test_costs_live_with_the_loader_and_the_engine_keeps_time_only() -> None:
    assert not hasattr(engine, "CostModel") and not hasattr(engine, "QEMU_TCG")
    with pytest.raises(InvalidArgument, match="'verify'"):
        CostModel().duration("verify")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="bandwidth"):
        CostModel(copy=0)


def test_the_allocator_core_is_private_to_the_space() -> None:
    space = VmapSpace(layouts.X86_64)
    assert not hasattr(space, "core")
    a = space.vmalloc(8192)
    assert space.area(a).size == 12288 and space.pinned_per_region()[0] == 12288
