"""One model: a Scenario is what every simulating command runs, kernels bring their modules, a load path is a
kernel's own path plus a proposal, proposals describe themselves, and one metric registry serves everything."""

from __future__ import annotations

import json
from pathlib import Path

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from vmapsim import Grid, InvalidArgument, Loads, Request, Scenario, simulate, storm, sweep, worst_case
from vmapsim.cli import main
from vmapsim.loader import METRICS, PROPOSALS, Proposal, for_kernel, load_path, selection
from vmapsim.loader import stages as s
from vmapsim.loader.pipelines import RELEASED, PathConflict
from vmapsim.modules.shipped import catalog_for, shipped
from vmapsim.report import about, storm_rows
from vmapsim.workloads import PRESETS, udev_boot


def _json(capsys: pytest.CaptureFixture[str], argv: list[str]) -> dict[str, object]:
    assert main(argv) == 0
    doc: dict[str, object] = json.loads(capsys.readouterr().out)
    return doc


def _metrics(run: dict[str, object]) -> dict[str, object]:
    return {k: run[k] for k in METRICS}


# --- the docs' few lines of Python give the numbers each command prints ----------------------------------------


def test_boot_is_its_scenarios(capsys: pytest.CaptureFixture[str]) -> None:
    # README "Use it from Python": the main job as scenarios
    scenarios = storm(Scenario("qemu-kvm", cpus=8))
    mine = [(sc.run.path.name, sc.kmod, sc.simulate().metrics()) for sc in scenarios]
    doc = _json(capsys, ["boot", "--machine", "qemu-kvm", "--cpus", "8", "--json"])
    runs = doc["runs"]
    assert isinstance(runs, list)
    assert [(r["pipeline"], r["kmod"], _metrics(r)) for r in runs] == mine
    assert len(mine) == 14  # 7 load paths under kmod 30 and kmod 34


def test_one_row_is_one_scenario_and_the_natural_python_agrees(capsys: pytest.CaptureFixture[str]) -> None:
    # what a library user writes first gives the command's row (udev's worker limit, the machine's timing...)
    row = Scenario("qemu-kvm", cpus=8, pipeline="v6.3", kmod=30).simulate().metrics()
    doc = _json(capsys, ["boot", "--machine", "qemu-kvm", "--cpus", "8", "--pipeline", "v6.3", "--kmod", "30",
                         "--json"])  # fmt: skip
    runs = doc["runs"]
    assert isinstance(runs, list) and [_metrics(r) for r in runs] == [row]


def test_load_is_its_scenarios(capsys: pytest.CaptureFixture[str]) -> None:
    base = Scenario(None, cpus=8, workload=Loads(("dm_mod", "loop")))
    mine = [(sc.run.path.name, sc.simulate().metrics()) for sc in storm(base, kernels=["6.1", "6.12"])]
    doc = _json(capsys, ["load", "dm_mod", "loop", "--cpus", "8", "--kernel", "6.1,6.12", "--json"])
    runs = doc["runs"]
    assert isinstance(runs, list) and [(r["pipeline"], _metrics(r)) for r in runs] == mine


def test_worst_is_worst_case_of_the_scenario(capsys: pytest.CaptureFixture[str]) -> None:
    sc = Scenario("qemu-kvm", cpus=4, pipeline="v6.3")
    w = worst_case(sc.jobs(), sc.run, budget=4, strategy="random")
    doc = _json(capsys, ["worst", "--machine", "qemu-kvm", "--cpus", "4", "--budget", "4", "--strategy", "random",
                         "--json"])  # fmt: skip
    assert (doc["worst"], doc["evaluations"], doc["parameters"]["metric"]) == (w.value, 4, "peak_modules")  # type: ignore[index]


def test_sweep_rows_are_the_boot_rows(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    table = sweep(Grid(machines=("qemu-kvm",), cpus=(4,), kernels=("6.12",), seeds=1), executor="serial")
    out = tmp_path / "rows.json"
    assert main(["sweep", "--machine", "qemu-kvm", "--cpus", "4", "--kernel", "6.12", "--seeds", "1",
                 "--executor", "serial", "--json", "-o", str(out)]) == 0  # fmt: skip
    capsys.readouterr()
    assert json.loads(out.read_text())["rows"] == [dict(r) for r in table.rows]
    boot = _json(capsys, ["boot", "--machine", "qemu-kvm", "--cpus", "4", "--kernel", "6.12", "--kmod", "30",
                          "--json"])  # fmt: skip
    runs = boot["runs"]
    assert isinstance(runs, list)
    assert [(r["pipeline"], _metrics(r)) for r in runs] == [(r["pipeline"], _metrics(r)) for r in table.rows]


# --- one kernel concept, one set of defaults -------------------------------------------------------------------


def test_a_released_name_is_its_kernels_own_path() -> None:
    for name, path in RELEASED.items():
        assert load_path(path.kernel, name, default_kernel="6.12") is path
        assert Scenario(kernel=path.kernel, pipeline=name).run.path is path
    with pytest.raises(PathConflict) as e:
        load_path("6.12", "v6.3", default_kernel="6.12")
    assert (e.value.kernel, e.value.pipeline) == ("6.12", "v6.3")


@pytest.mark.parametrize(
    "argv",
    [
        ["boot", "--kernel", "6.3", "--pipeline", "v6.3", "--cpus", "4"],
        ["sweep", "--kernel", "6.3,6.12", "--cpus", "4", "--seeds", "1", "--executor", "serial"],
        ["compare", "--kernel", "6.3,6.4", "--cpus", "4", "--seeds", "1", "--metric", "wasted_bytes",
         "--executor", "serial"],
    ],
)  # fmt: skip
def test_the_command_lines_that_once_failed_work(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 0
    assert capsys.readouterr().out


def test_a_real_conflict_names_both_options(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["boot", "--kernel", "6.12", "--pipeline", "v6.3", "--cpus", "2"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--kernel 6.12 and --pipeline v6.3 disagree" in err


def test_boot_sweep_and_compare_share_their_defaults() -> None:
    boot = [sc.run.path.name for sc in storm(Scenario("qemu-kvm", cpus=2, kmod=30))]
    grid = Grid(machines=("qemu-kvm",), cpus=(2,), kmods=(30,))
    assert [p.label for p in grid.points()] == boot
    from vmapsim.cli._main import parser

    defaults = {c: parser().parse_args([c]).pipeline for c in ("boot", "load", "sweep", "compare")}
    assert set(defaults.values()) == {"all"}
    assert [n for _, n in selection([None])] == [p.label for p in grid.points()]


# --- kernels bring their modules --------------------------------------------------------------------------------


def test_the_index_of_shipped_catalogs_is_true() -> None:
    from vmapsim.modules import Catalog

    for c in shipped():
        cat = Catalog.builtin(c.name)
        compressed = any(m.compression != "none" for m in cat)
        assert (c.kernel, c.arch, c.modules, c.generation, c.compressed) == (
            cat.kernel, cat.config.arch, len(cat), cat.generation, compressed)  # fmt: skip


@pytest.mark.parametrize(
    "kernel,catalog,noted",
    [("7.3", "7.3.4+deb13-amd64", False), ("6.1", "6.1.0-56-amd64", False), ("6.12", "6.12.117+deb12-amd64", False),
     ("6.3", "6.1.0-56-amd64", True), ("6.16", "6.12.117+deb12-amd64", True), ("7.1", "7.3.4+deb13-amd64", True)],
)  # fmt: skip
def test_a_kernel_runs_on_its_catalog_or_the_nearest_said_aloud(
    kernel: str, catalog: str, noted: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    sc = Scenario("qemu-kvm", cpus=2, kernel=kernel)
    assert sc.catalog_used.kernel == catalog and bool(sc.notes) == noted
    doc = _json(capsys, ["boot", "--machine", "qemu-kvm", "--cpus", "2", "--kernel", kernel, "--kmod", "34", "--json"])
    assert doc["parameters"]["catalog_kernel"] == catalog  # type: ignore[index]
    assert any("nearest shipped" in n for n in doc["notes"]) == noted  # type: ignore[attr-defined]
    assert main(["boot", "--machine", "qemu-kvm", "--cpus", "2", "--kernel", kernel, "--kmod", "34"]) == 0
    assert ("nearest shipped" in capsys.readouterr().err) == noted


def test_the_machines_catalog_wins_among_equals_and_catalog_overrides() -> None:
    trixie = Scenario("intel-server-trixie", cpus=2, kernel="6.12")
    assert trixie.catalog_used.kernel == "6.12.117+deb13-amd64"  # the machine's own 6.12 build
    assert Scenario("qemu-kvm", cpus=2, kernel="7.3", catalog="debian-6.1-amd64").catalog_used.kernel.startswith("6.1")
    assert catalog_for("6.12", "arm64").name == "debian-6.12-arm64"


def test_a_machine_files_release_is_its_kernel(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    box = tmp_path / "box.json"
    box.write_text(attrs.evolve(PRESETS["qemu-kvm"], name="box", release="6.1.0-56-amd64", cpus=4).to_json())
    doc = _json(capsys, ["boot", "--machine", str(box), "--kmod", "34", "--json"])
    assert doc["parameters"]["catalog_kernel"] == "6.1.0-56-amd64"  # type: ignore[index]
    assert [r["pipeline"] for r in doc["runs"]][:2] == ["6.1", "6.1+kread-dedup"]  # type: ignore[attr-defined]


def test_simulate_with_a_kernel_needs_no_catalog() -> None:
    r = simulate([Request("dm_mod", cpu=c) for c in range(4)], kernel="6.12", cpus=4)
    assert r.pipeline == "6.12" and r.metrics()["ok"] == 4  # 6.5+: the duplicates share the first's result


# --- proposals describe themselves ------------------------------------------------------------------------------


def test_a_new_proposal_brings_its_description_and_verdict() -> None:
    mine = Proposal("my-gate", "a gate of my own before the read", "my tree", before=(s.ConcurrencyLimit(1),))
    path = mine.apply(for_kernel("6.12"))
    assert about(path) == "6.12's own path: idempotent finit_module() (6.5) after early_mod_check() (6.4); with " \
                          "my-gate: a gate of my own before the read (my tree)"  # fmt: skip
    renamed = attrs.evolve(PROPOSALS["kread-dedup"], name="renamed").apply(for_kernel("6.12"))
    figures = {**dict.fromkeys(METRICS, 0), "reads": 0, "first_failure": None}
    rows = storm_rows(30, "init_module", [("6.12", for_kernel("6.12"), figures), ("renamed", renamed, figures)])
    assert rows[1].verdict == "= 6.12: acts on finit_module(2) only; kmod 30 calls init_module(2)"


def test_equal_rows_say_the_true_reason(capsys: pytest.CaptureFixture[str]) -> None:
    doc = _json(capsys, ["load", "dm_mod", "loop", "--kernel", "6.1,6.12", "--cpus", "16", "--json"])
    runs = {r["pipeline"]: r for r in doc["runs"]}  # type: ignore[attr-defined]
    deny, base = runs["6.1+exclusive-deny"], runs["6.1"]
    assert base["wasted_bytes"] > 0 and deny["wasted_bytes"] == 0  # it removed all of 6.1's waste
    assert "nothing for it to change" not in deny["verdict"] and "waste 0%" in deny["verdict"]


def test_section_headings_follow_the_files_and_equal_sections_say_why(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["boot", "--machine", "kdevops", "--cpus", "2", "--wide"]) == 0
    out = capsys.readouterr().out
    assert "kmod 30 (Debian 12): modprobe passes the uncompressed module file to finit_module(2)" in out
    assert "note: the kmod 30 rows equal the kmod 31 rows: both call finit_module(2) with the same files" in out


# --- one metric registry -----------------------------------------------------------------------------------------


def test_every_command_takes_the_one_spelling(capsys: pytest.CaptureFixture[str]) -> None:
    assert set(Scenario("qemu-kvm", cpus=2).simulate().metrics()) == set(METRICS)
    assert main(["worst", "--machine", "qemu-kvm", "--cpus", "2", "--budget", "2", "--metric", "wasted_bytes"]) == 0
    for argv in (["worst", "--metric", "peak-modules"], ["sweep", "--metric", "peak-modules"]):
        assert main(argv) == 2
        assert "unknown metric 'peak-modules'" in capsys.readouterr().err
    assert main(["sweep", "--kmod", "x"]) == 2  # one line, not a traceback
    assert capsys.readouterr().err.startswith("vmapsim: error: --kmod 'x'")


# --- a scenario is a value ---------------------------------------------------------------------------------------


@given(cpus=st.integers(1, 6), seed=st.integers(0, 3), kmod=st.sampled_from([30, 34]),
       pipeline=st.sampled_from([None, "v6.3", "v6.5", "kread-dedup"]))  # fmt: skip
def test_a_scenario_is_a_value(cpus: int, seed: int, kmod: int, pipeline: str | None) -> None:
    a = Scenario("qemu-kvm", cpus=cpus, seed=seed, kmod=kmod, pipeline=pipeline)
    b = Scenario("qemu-kvm", cpus=cpus, seed=seed, kmod=kmod, pipeline=pipeline)
    assert a == b and hash(a) == hash(b) and a.jobs() == b.jobs()
    assert a.jobs() == udev_boot(a.catalog_used, a.machine, cpus, seed=seed, jitter=a.arrivals, kmod=kmod)  # type: ignore[arg-type]
    assert a.simulate() == b.simulate()


@pytest.mark.parametrize(
    "fields,needle",
    [({"machine": "no-such"}, "unknown machine 'no-such'"), ({"cpus": 0}, "cpus"), ({"kernel": "7.9"}, "newer"),
     ({"pipeline": "nope"}, "unknown pipeline 'nope'"), ({"layout": "vax"}, "vax"), ({"kmod": 0}, "kmod"),
     ({"catalog": 3}, "catalog=3"), ({"images": ("big:text=1Q",)}, "'text=1Q'"), ({"workload": "udev"}, "workload")],
)  # fmt: skip
def test_bad_fields_name_the_bad_value(fields: dict[str, object], needle: str) -> None:
    with pytest.raises(InvalidArgument, match=needle.replace("(", r"\(")):
        Scenario(**{"machine": "qemu-kvm", **fields})  # type: ignore[arg-type]


# --- found in review: options that replace a machine's release, kernels on catalogs of their own ---------------


def test_options_replace_a_release_the_model_cannot_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    box = tmp_path / "m75.json"
    box.write_text(attrs.evolve(PRESETS["qemu-kvm"], name="m75", release="7.5.0-1-amd64", cpus=2).to_json())
    assert main(["boot", "--machine", str(box)]) == 2  # its own release is newer than the model
    assert "newer than 7.3" in capsys.readouterr().err
    for argv in (["--kernel", "6.12"], ["--pipeline", "v6.3,v6.5"]):
        assert main(["boot", "--machine", str(box), "--kmod", "34", *argv]) == 0, argv
        capsys.readouterr()


def test_each_kernels_files_decide_its_section(capsys: pytest.CaptureFixture[str]) -> None:
    doc = _json(capsys, ["boot", "--machine", "qemu-kvm", "--cpus", "2", "--kernel", "6.1,6.12", "--kmod", "30",
                         "--json"])  # fmt: skip
    calls = {(r["pipeline"], r["syscall"]) for r in doc["runs"]}  # type: ignore[attr-defined]
    assert ("6.1", "finit_module") in calls and ("6.12", "init_module") in calls  # 6.1's files are not compressed
    assert main(["load", "airo", "--kernel", "6.1", "--cpus", "2"]) == 0  # a module of 6.1's catalog alone
    assert main(["worst", "--kernel", "6.3", "--cpus", "2", "--budget", "1"]) == 0
    assert "no 6.3 catalog ships" in capsys.readouterr().err
