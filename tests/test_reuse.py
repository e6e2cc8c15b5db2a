"""Runs the model proves equal are computed once: a reused result is the recomputed one, on every preset."""

from __future__ import annotations

import attrs
import pytest

from vmapsim import Scenario, storm
from vmapsim.scenario import distinct
from vmapsim.workloads import PRESETS


@pytest.mark.parametrize("machine", sorted(PRESETS))
def test_a_reused_run_is_the_run_recomputed(machine: str) -> None:
    scenarios = storm(Scenario(machine, cpus=12))
    firsts = distinct(scenarios)
    for s, i in zip(scenarios, firsts, strict=True):
        if i == scenarios.index(s):
            continue
        again = s.simulate()
        assert again == attrs.evolve(scenarios[i].simulate(), pipeline=s.run.path.name), (machine, s.run.path.name)
        assert again.pipeline == s.run.path.name


def test_what_is_reused_on_the_main_jobs_machine() -> None:
    # kmod 30 calls init_module(2): kread-dedup and exclusive-deny only replace v6.4's read, for finit_module(2)
    # alone, and v6.5 adds idempotence (finit_module(2) alone) on an allocator that differs only in a rule for
    # vmap blocks, which a load never makes: their runs are v6.4's; page-list adds a stage every load enters
    # (its timeline shows it): it is computed
    scenarios = storm(Scenario("intel-server", cpus=12))
    names = [(s.kmod, s.run.path.name) for s in scenarios]
    reused = {names[k]: names[i] for k, i in enumerate(distinct(scenarios)) if i != k}
    assert reused == {(30, p): (30, "v6.4") for p in ("v6.5", "kread-dedup", "exclusive-deny")}


@pytest.mark.parametrize("machine", sorted(PRESETS))
def test_a_storm_makes_no_vmap_block(machine: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # what lets runs on profiles that differ in profiles.BLOCK_RULES alone be one run
    from vmapsim import VmapSpace

    def refuse(*args: object, **kw: object) -> int:
        raise AssertionError("vm_map_ram() in a load")

    monkeypatch.setattr(VmapSpace, "vm_map_ram", refuse)
    for s in storm(Scenario(machine, cpus=6)):
        assert s.simulate().space.vmap_blocks() == []  # type: ignore[union-attr]


def test_a_debian_11_server_runs_each_kmods_section_once() -> None:
    # kmod 28 and 34 both pass Debian 11's uncompressed files to finit_module(2): the same jobs, the same runs
    scenarios = storm(Scenario("intel-server-bullseye", cpus=12, kernel="5.10"))
    firsts = distinct(scenarios)
    half = len(scenarios) // 2
    assert [s.kmod for s in scenarios] == [28] * half + [34] * half
    assert firsts == list(range(half)) * 2
