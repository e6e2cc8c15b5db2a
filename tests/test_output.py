"""Every output format: --json documents valid against vmapsim/schema.json, CSV that reads back to the
same values, Results as plain data and back, the boot figure's title, axes and window line, and help."""

from __future__ import annotations

import argparse
import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers import console_log, console_section
from vmapsim import InvalidArgument, Request, Result, cli, layouts, report, simulate
from vmapsim.cli import _io as cli_io
from vmapsim.loader import METRICS
from vmapsim.workloads import Modprobe

DATA = Path(__file__).parent / "data"


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "vmapsim", *argv], capture_output=True, text=True, timeout=300)


def _validate(doc: dict[str, object], command: str) -> None:
    schema = report.schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.validate(doc, schema)  # the oneOf: exactly one command's definition
    assert doc["schema"] == f"vmapsim-{command}/{report.SCHEMA_VERSION}"


@pytest.fixture(scope="module")
def replay_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    tmp = tmp_path_factory.mktemp("replay")
    text = console_log("qemu-6.12-1cpu.txt")
    (tmp / "snap").write_text(console_section(text, "vmallocinfo-start"))
    (tmp / "trace").write_text(console_section(text, "trace"))
    return str(tmp / "snap"), str(tmp / "trace")


def _commands(replay: tuple[str, str]) -> dict[str, list[str]]:
    return {
        "boot": ["boot", "--cpus", "8", "--pipeline", "v6.3,v6.5", "--stats", "--vmallocinfo"],
        "load": ["load", "kvm_intel", "--cpus", "4", "--stats"],
        "demo": ["demo"],
        "info": ["info"],
        "replay": ["replay", *replay, "--kernel", "6.12"],
        "scan": ["scan", str(DATA / "modules"), "--workers", "1"],
        "worst": ["worst", "--cpus", "8", "--budget", "3"],
        "compare": ["compare", "--cpus", "4", "--seeds", "1", "--executor", "serial", "--exhaustion", "8"],
        "vmallocinfo": ["vmallocinfo", replay[0], "--cpus", "1"],
    }


@pytest.mark.parametrize("command", ["boot", "load", "demo", "info", "replay", "scan", "worst", "compare",
                                     "vmallocinfo"])
def test_every_json_document_is_valid_against_the_schema(command: str, replay_files: tuple[str, str]) -> None:
    r = _run(*_commands(replay_files)[command], "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    _validate(doc, command)
    assert isinstance(doc["parameters"], dict) and doc["units"] == report.UNITS


def test_a_document_that_breaks_the_schema_is_refused() -> None:
    doc = json.loads(_run("load", "loop", "--cpus", "2", "--pipeline", "v6.4", "--json").stdout)
    _validate(doc, "load")
    del doc["runs"][0]["verdict"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(doc, report.schema())


def test_the_sweep_file_is_a_document_too(tmp_path: Path) -> None:
    out = tmp_path / "rows.json"
    r = _run("sweep", "--cpus", "2", "--seeds", "2", "--pipeline", "v6.3,v6.4,v6.5", "--executor", "serial", "--json",
             "-o", str(out))  # fmt: skip
    assert r.returncode == 0, r.stderr
    doc = json.loads(out.read_text())
    _validate(doc, "sweep")
    assert doc["parameters"]["cpus"] == [2] and len(doc["rows"]) == 2 * 3


def test_boot_json_keeps_stats_vmallocinfo_notes_and_parameters() -> None:
    doc = json.loads(_run("boot", "--cpus", "4", "--pipeline", "v6.4,v6.5", "--stats", "--vmallocinfo",
                          "--json").stdout)  # fmt: skip
    p = doc["parameters"]
    assert p["kmods"] == [30, 34] and p["machine"] == "intel-server" and p["seed"] == 0 and p["layout"] == "x86_64"
    assert [(r["kmod"], r["pipeline"]) for r in doc["runs"]] == [(30, "v6.4"), (30, "v6.5"), (34, "v6.4"),
                                                                  (34, "v6.5")]  # fmt: skip
    assert all("Mods ever loaded" in r["stats"]["text"] and r["vmallocinfo"]["text"] for r in doc["runs"])
    assert any("kmod 30" in n and "init_module(2)" in n for n in doc["notes"])
    assert doc["runs"][1]["same_as"] == "v6.4" and doc["runs"][0]["first_failure"] is None  # null, not ""


@pytest.mark.parametrize("command", [["boot", "--cpus", "8", "--stats"], ["load", "kvm_intel", "msr", "--cpus", "8"]])
def test_csv_reads_back_to_the_json_values(command: list[str]) -> None:
    doc = json.loads(_run(*command, "--json").stdout)
    r = _run(*command, "--csv")
    rows = list(csv.DictReader(io.StringIO(r.stdout)))
    assert len(rows) == len(doc["runs"])
    for row, run in zip(rows, doc["runs"], strict=True):
        for key, value in run.items():
            if key == "stats":  # its counters, each a column
                assert all(row[f"stats_{k}"] == str(v) for k, v in value.items() if isinstance(v, int))
            elif key != "vmallocinfo":
                assert row[key] == ("" if value is None else str(value)), key
        for key, value in doc["parameters"].items():
            if key in row and not isinstance(value, list):
                assert row[key] == ("" if value is None else str(value)), key
    if command[0] == "boot":
        assert "vmapsim: note: kmod 30" in r.stderr  # the table's note, off the data stream


def test_no_two_rows_are_identical_without_saying_why() -> None:
    doc = json.loads(_run("boot", "--cpus", "32", "--json").stdout)
    seen: dict[tuple[int, tuple[object, ...]], str] = {}
    for run in doc["runs"]:
        key = (run["kmod"], tuple(run[k] for k in (*METRICS, "reads")))
        if key in seen:
            assert run["same_as"] == seen[key] and run["verdict"].startswith(f"= {seen[key]}: ")
        else:
            seen[key] = run["pipeline"]
            assert run["same_as"] is None
    kmod30 = [r for r in doc["runs"] if r["kmod"] == 30]
    assert sum(r["same_as"] is not None for r in kmod30) >= 4  # init_module: the finit_module fixes do nothing
    finit_only = {"v6.5", "kread-dedup", "page-list", "exclusive-deny"}
    assert all("kmod 30 calls init_module(2)" in r["verdict"] for r in kmod30 if r["pipeline"] in finit_only)
    assert all("kmod 30" not in r["verdict"] for r in kmod30 if r["same_as"] and r["pipeline"] not in finit_only)


def test_boot_prints_human_units_and_raw_bytes_on_request() -> None:
    human = _run("boot", "--cpus", "8", "--pipeline", "v6.3", "--kmod", "34").stdout
    raw = _run("boot", "--cpus", "8", "--pipeline", "v6.3", "--kmod", "34", "--bytes").stdout
    doc = json.loads(_run("boot", "--cpus", "8", "--pipeline", "v6.3", "--kmod", "34", "--json").stdout)
    peak = doc["runs"][0]["peak_vmalloc"]
    assert report.human_bytes(peak) in human and f" {peak} " in raw and f" {peak} " not in human
    assert "columns: loads" in human and "pipelines:" in human


@pytest.mark.parametrize("n", [0, 1023, 1024, 1536, 3 << 20, 5 << 30, 32 << 40])
def test_human_bytes_reads_back_within_its_rounding(n: int) -> None:
    text = report.human_bytes(n)
    value, unit = text.split()
    scale = {"B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40}[unit]
    # one decimal (KiB, MiB) or two (GiB, TiB): within half the last digit
    assert abs(float(value) * scale - n) <= scale * (0.05 if unit in ("KiB", "MiB") else 0.005)


_REQS = [Request("dm_mod", cpu=c, time=c * 0.001) for c in range(3)] + [Request("loop", cpu=1, init_errno=19)]


@settings(max_examples=10, deadline=None)
@given(pipeline=st.sampled_from(["v6.3", "v6.4", "v6.5", "kread-dedup"]), cpus=st.integers(3, 6),
       seed=st.integers(0, 3))  # fmt: skip
def test_a_result_converts_to_plain_data_and_back(pipeline: str, cpus: int, seed: int) -> None:
    jobs = [*_REQS, Modprobe(("kvm_intel",), cpu=2)]
    r = simulate(jobs, pipeline=pipeline, cpus=cpus, catalog="debian-6.12-amd64", seed=seed)
    data = r.to_dict()
    text = json.dumps(data)  # plain data: JSON takes it as it is
    back = Result.from_dict(json.loads(text))
    assert back == r and back.space is None and back.pinned_over_time == r.pinned_over_time
    assert back.metrics() == r.metrics() and back.stats.render() == r.stats.render()


@pytest.mark.parametrize("bad", [None, [], {"pipeline": "v6.4"}, "x"])
def test_from_dict_refuses_what_is_not_a_result(bad: object) -> None:
    with pytest.raises(InvalidArgument, match="not a vmapsim Result"):
        Result.from_dict(bad)


def test_from_dict_names_the_bad_field() -> None:
    data = simulate([Request("loop")], catalog="debian-6.12-amd64").to_dict()
    data["outcomes"][0]["ret"] = "0"
    with pytest.raises(InvalidArgument, match="ret"):
        Result.from_dict(data)


def test_the_boot_figure_has_a_title_axes_a_window_line_and_one_legend() -> None:
    pytest.importorskip("matplotlib")
    from vmapsim.plot import boot_figure

    lay = layouts.i386(12 << 20)
    reqs = [Request("kvm_intel", cpu=c) for c in range(8)]
    runs = {name: simulate(reqs, pipeline=name, cpus=8, catalog="debian-6.12-amd64", layout=lay)
            for name in ("v6.3", "v6.4", "v6.5")}  # fmt: skip
    peaks = {}
    for name, r in runs.items():
        at = r.peak_time["vmalloc"]  # i386: one window holds modules and everything else
        peaks[name] = simulate(reqs, pipeline=name, cpus=8, catalog="debian-6.12-amd64", layout=lay, until=at).space
    assert [reg.name for reg in lay.regions] == ["vmalloc"]
    fig = boot_figure(runs, at_peak=peaks, window="vmalloc", title="8 CPUs loading kvm_intel")
    try:
        assert fig._suptitle.get_text() == "8 CPUs loading kvm_intel"
        time_panel, map_panel = fig.axes[0], fig.axes[-1]
        assert time_panel.get_xlabel() == "time since the first uevent (ms)"
        assert time_panel.get_ylabel() == "MiB (busy + lazy + pooled)"
        window_lines = [ln for ln in time_panel.get_lines() if ln.get_label() == "window size"]
        assert len(window_lines) == 1 and window_lines[0].get_ydata()[0] == lay.vmalloc.size / (1 << 20)
        assert map_panel.get_xlim() == (0.0, lay.vmalloc.size / (1 << 20))  # the whole window, not autoscaled
        assert len(fig.legends) == 1 and all(ax.get_legend() is None for ax in fig.axes)
        labels = [t.get_text() for t in fig.legends[0].get_texts()]
        assert "window size" in labels and "busy" in labels
        # every run is named once in the legend, identical curves together
        assert sorted(n for lab in labels for n in lab.split(" = ") if n in runs) == sorted(runs)
    finally:
        import matplotlib.pyplot as plt

        plt.close(fig)


def test_boot_writes_the_figure(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    out = tmp_path / "boot.svg"
    r = _run("boot", "--cpus", "8", "--pipeline", "v6.3,v6.5", "--kmod", "34", "--plot", str(out))
    assert r.returncode == 0, r.stderr
    svg = out.read_text()
    assert "udev coldplug of intel-server: 8 CPUs" in svg and "time since the first uevent (ms)" in svg
    assert "window size" not in svg and "modules window pinned (its size, 1008 MiB, is off the scale)" in svg
    r = _run("boot", "--cpus", "8", "--pipeline", "v6.3", "--kmod", "34", "--layout", "i386", "--plot", str(out))
    assert r.returncode == 0 and "window size" in out.read_text()  # 30 MiB of a 120 MiB window: on the scale
    assert [p.name for p in tmp_path.iterdir()] == ["boot.svg"]  # no partial file left beside it


def test_every_option_has_help_showing_its_default() -> None:
    commands = cli.commands()
    assert {"vmapsim boot", "vmapsim machine capture", "vmapsim vmallocinfo", "vmapsim lsmod"} <= dict(commands).keys()
    for name, command in commands:
        formatter = command._get_formatter()
        for action in command._actions:
            assert action.help, (name, action.option_strings or action.dest)
            if action.option_strings and action.default not in (None, False, argparse.SUPPRESS):
                shown = formatter._expand_help(action)
                assert "default" in shown, (name, action.option_strings, shown)
    boot = dict(commands)["vmapsim boot"]
    machine = next(a for a in boot._actions if a.dest == "machine")
    assert boot._get_formatter()._expand_help(machine).endswith("(default: intel-server)")


def test_version_and_bare_command() -> None:
    r = _run("--version")
    assert r.returncode == 0 and r.stdout == f"vmapsim {report.version()}\n"
    r = _run()
    assert r.returncode == 0 and r.stdout.startswith("usage: vmapsim") and "boot" in r.stdout and r.stderr == ""


def test_an_architecture_mismatch_is_a_warning() -> None:
    r = _run("load", "loop", "--cpus", "2", "--pipeline", "v6.4", "--catalog", "debian-6.12-arm64")
    assert r.returncode == 0 and "warning: the 6.12.117+deb12-arm64 catalog holds arm64 modules" in r.stderr
    assert "warning" not in _run("load", "loop", "--cpus", "2", "--pipeline", "v6.4").stderr


def test_the_readme_shows_the_real_boot_output() -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    shown = readme.split("```text\n", 1)[1].split("```", 1)[0]
    assert shown.startswith("# udev coldplug of intel-server: 255 CPUs")
    assert _run("boot").stdout == shown


def test_compare_csv_reads_back_to_the_json_rows() -> None:
    argv = ["compare", "--cpus", "4", "--seeds", "1", "--executor", "serial"]
    doc = json.loads(_run(*argv, "--json").stdout)
    rows = list(csv.DictReader(io.StringIO(_run(*argv, "--csv").stdout)))
    assert len(rows) == len(doc["rows"]) > 0
    for row, want in zip(rows, doc["rows"], strict=True):
        assert {k: row[k] for k in want} == {k: "" if v is None else str(v) for k, v in want.items()}


def test_converting_a_result_leaves_catalog_loading_alone(tmp_path: Path) -> None:
    # cattrs resolves ModuleImage's annotations in place; catalog files must still read afterwards
    from vmapsim import Catalog

    r = simulate([Request(Catalog.builtin("debian-6.12-amd64")["loop"])], catalog="debian-6.12-amd64")
    assert Result.from_dict(r.to_dict()) == r
    path = tmp_path / "c.json.xz"
    Catalog.builtin("debian-6.1-amd64").save(path)
    assert len(Catalog.load(path)) == len(Catalog.builtin("debian-6.1-amd64"))


def test_boot_answers_the_same_on_forked_workers_and_in_turn(monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    argv = ["boot", "--cpus", "32", "--pipeline", "v6.3,v6.5,kread-dedup", "--stats", "--json"]
    outs = []
    for work in (0, 10**9):  # fork whatever the work / never fork
        monkeypatch.setattr(cli_io, "FORK_WORK", work)
        assert cli.main(argv) == 0
        outs.append(capsys.readouterr().out)
    assert outs[0] == outs[1] and json.loads(outs[0])["runs"]
