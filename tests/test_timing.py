"""Concurrent duplicates in time, held to real many-vCPU boots kept as fixtures (no QEMU needed).

The costs are calibrated on the 2- and 4-vCPU captures only (tests/realkernel/timing.py says how); the 8- and
16-vCPU captures are predictions the calibration never saw. The model is given when each caller arrived and
must predict every caller's return code and allocations, and the module window's peak pinned bytes.
"""

from __future__ import annotations

import functools

import pytest

from tests.realkernel import timing
from vmapsim.loader.costs import QEMU_TCG_SHARED, CostModel

CALIBRATION = [n for cpus in (2, 4) for n in timing.fixture_names(cpus) if timing.calibrates(n)]
#: Debian 13's own 6.12 build (trixie) is never calibrated on: all its boots are predictions.
TRIXIE = [n for cpus in (2, 4, 8, 16) for n in timing.fixture_names(cpus) if "-6.12deb13-" in n]
PREDICTED = [n for cpus in (8, 16) for n in timing.fixture_names(cpus) if n not in TRIXIE]


@functools.cache
def _calibrated() -> CostModel:
    return timing.calibrate([timing.load(n) for n in CALIBRATION])


def test_the_shipped_preset_is_the_calibration_on_2_and_4_vcpus() -> None:
    assert CALIBRATION and all("-2cpu-" in n or "-4cpu-" in n for n in CALIBRATION)
    assert _calibrated() == QEMU_TCG_SHARED


def _predicted(name: str) -> tuple[timing.Observed, timing.Observed]:
    seen = timing.load(name)
    return seen, timing.predict(seen, QEMU_TCG_SHARED)


def _assert_same_table(seen: timing.Observed, model: timing.Observed, name: str) -> None:
    """Allocations per caller (vmap areas: a ROX carve is not one) and the module window's peak, exactly."""
    assert sorted(c.allocations for c in model.callers) == sorted(c.allocations for c in seen.callers), name
    assert model.peak_modules == seen.peak_modules, name


@pytest.mark.parametrize("name", [n for n in PREDICTED if "-6.12-init-" not in n and "-7.3-init-" not in n])
def test_8_and_16_vcpu_duplicate_tables_are_predicted_exactly(name: str) -> None:
    # 6.1 (finit and init), 6.12 finit and 7.3 finit: per-caller return codes and allocations (vmap areas: a
    # ROX carve is not one), and the module window's peak pinned bytes, exactly; these depend on the timing
    # only through which callers overlap the winner
    seen, model = _predicted(name)
    assert sorted(c.ret for c in model.callers) == sorted(c.ret for c in seen.callers)
    _assert_same_table(seen, model, name)


@pytest.mark.parametrize("name", [n for n in PREDICTED if "-6.12-init-" in n])
def test_6_12_init_module_duplicates_return_eexist_whatever_got_past_the_early_check(name: str) -> None:
    seen, model = _predicted(name)
    assert sorted(c.ret for c in model.callers) == sorted(c.ret for c in seen.callers)


@pytest.mark.xfail(
    strict=True,
    reason="target not met (docs/fidelity.md): how many init_module() callers get past 6.4's early check lies in "
    "the model's spread over 20 seeds for 4 of the 6 boots at 8 and 16 vCPUs; one 8-vCPU boot let 4 through "
    "(model 1-2), one 16-vCPU boot 2 (model 1)",
)
def test_6_12_init_module_callers_past_the_early_check_lie_in_the_models_spread() -> None:
    # how many duplicates slip past the early check is a race: the real count must lie within the model's
    # spread over the cost jitter's seeds, for every 8- and 16-vCPU capture
    for name in (n for n in PREDICTED if "-6.12-init-" in n):
        seen = timing.load(name)
        lo, hi = timing.spread(seen, QEMU_TCG_SHARED)
        assert lo <= timing.reached(seen) <= hi, (name, timing.reached(seen), lo, hi)


SEVEN_THREE_INIT = [n for n in timing.fixture_names(2) + timing.fixture_names(4) + PREDICTED if "-7.3-init-" in n]


@pytest.mark.parametrize("name", SEVEN_THREE_INIT)
def test_7_3_init_module_duplicates_return_eexist_and_all_reach_module_memory_at_2_vcpus(name: str) -> None:
    seen, model = _predicted(name)
    assert sorted(c.ret for c in model.callers) == sorted(c.ret for c in seen.callers)
    if "-2cpu-" in name:  # exact: both populate a ROX chunk of their own, two chunks pinned at the peak
        _assert_same_table(seen, model, name)


@pytest.mark.xfail(
    strict=True,
    reason="target not met (docs/fidelity.md): on 7.3, how many init_module() duplicates populate a ROX chunk of "
    "their own is not predicted at 4, 8 and 16 vCPUs (real 3/4/11 chunks, the model 4/8/1; peak module bytes "
    "7.2/10.1/26.5 MB against 9.3/18.5/2.5)",
)
def test_7_3_init_module_duplicate_tables_are_predicted_exactly_at_4_8_and_16_vcpus() -> None:
    for name in (n for n in SEVEN_THREE_INIT if "-2cpu-" not in n):
        _assert_same_table(*_predicted(name), name)


@pytest.mark.parametrize("name", TRIXIE)
def test_trixie_6_12_duplicates_are_predicted_by_a_calibration_on_other_kernels(name: str) -> None:
    # finit_module: the exact table; init_module: return codes exact, and how many got past the early check
    # within the model's spread over the seeds (the race of the 6.12 init_module boots above)
    seen, model = _predicted(name)
    assert sorted(c.ret for c in model.callers) == sorted(c.ret for c in seen.callers)
    if "-finit-" in name:
        _assert_same_table(seen, model, name)
    else:
        lo, hi = timing.spread(seen, QEMU_TCG_SHARED)
        assert lo <= timing.reached(seen) <= hi, (name, timing.reached(seen), lo, hi)
