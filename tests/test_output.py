"""Every output format: --json documents valid against vmapsim/schema.json, CSV that reads back to the
same values, Results as plain data and back, the figures (titles, words, one legend, each curve once, the
window's scale) and the series they draw and ``--series`` writes, and help."""

from __future__ import annotations

import argparse
import bisect
import csv
import functools
import io
import json
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from tests.helpers import console_log, console_section
from vmapsim import InvalidArgument, Request, Result, Scenario, cli, layouts, report, simulate
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


# ------------------------------------------------------------------ figures and their series
@functools.cache
def _coldplug() -> dict[int, dict[str, Result]]:
    """qemu-kvm's 4-CPU coldplug under v6.3, v6.4 and v6.5 for kmod 30 and 34: v6.5 acts on finit_module(2)
    only, so under kmod 30's init_module(2) its run equals v6.4's."""
    return {kmod: {p: Scenario("qemu-kvm", cpus=4, pipeline=p, kmod=kmod).simulate() for p in ("v6.3", "v6.4", "v6.5")}
            for kmod in (30, 34)}  # fmt: skip


@pytest.fixture
def figure() -> Iterator[Callable[..., Any]]:
    """Draw a figure with the given function, and close every figure drawn once the test is done."""
    pytest.importorskip("matplotlib")
    import matplotlib.pyplot as plt

    yield lambda draw, *args, **kwargs: draw(*args, **kwargs)
    plt.close("all")


def _legend_texts(fig: Any) -> list[str]:
    assert len(fig.legends) == 1 and all(ax.get_legend() is None for ax in fig.axes)  # one legend, for the figure
    return [" ".join(t.get_text().split()) for t in fig.legends[0].get_texts()]


def _drawn(fig: Any) -> dict[str, Any]:
    """The curves a figure draws, by their gid (kmod/label/window and the like); markers have none."""
    return {ln.get_gid(): ln for ax in fig.axes for ln in ax.get_lines() if ln.get_gid() and "/" in ln.get_gid()}


def test_the_boot_figure_says_what_ran_in_words_with_one_legend_each_curve_once(figure: Any) -> None:
    from vmapsim.plot import boot_figure

    runs = _coldplug()
    peaks = {kmod: {p: Scenario("qemu-kvm", cpus=4, pipeline=p, kmod=kmod).simulate(until=r.peak_time["modules"]).space
                    for p, r in column.items()} for kmod, column in runs.items()}  # fmt: skip
    fig = figure(boot_figure, runs, at_peak=peaks, title="udev coldplug of qemu-kvm: 4 CPUs, kmod 30 and 34, seed 0")
    assert fig._suptitle.get_text() == "udev coldplug of qemu-kvm: 4 CPUs, kmod 30 and 34, seed 0"
    *time_panels, map_panel = fig.axes
    assert [ax.get_title() for ax in time_panels] == [
        "kmod 30 · vmalloc window (32 TiB: off the scale)", "kmod 34 · vmalloc window (32 TiB: off the scale)",
        "kmod 30 · modules window (1008 MiB: off the scale)", "kmod 34 · modules window (1008 MiB: off the scale)"]
    assert {ax.get_xlabel() for ax in time_panels[2:]} == {"time since the first uevent (ms)"}
    assert time_panels[0].get_ylabel() == "pinned (busy + lazy), MiB"
    # v6.5 = v6.4 under kmod 30: drawn once, and its legend entry names the twin and where
    drawn = _drawn(fig)
    assert "30/v6.5/modules" not in drawn and {"30/v6.4/modules", "34/v6.5/modules"} <= set(drawn)
    texts = _legend_texts(fig)
    assert texts[:3] == ["v6.3", "v6.4 = v6.5 in kmod 30", "v6.5"] and "busy" in texts
    # the map: the used part of the window, its size in the title; twins share a row and are named on it
    shown = re.fullmatch(r"modules window at each run's peak: its first (\d+) MiB of 1008 MiB \(white: free\)",
                         map_panel.get_title())  # fmt: skip
    assert shown and map_panel.get_xlim() == (0.0, float(shown[1])) and float(shown[1]) < 1008 / 2
    assert map_panel.get_xlabel() == "offset in the modules window (MiB)"
    assert [t.get_text() for t in map_panel.get_yticklabels()] == [
        "kmod 30 · v6.3", "kmod 30 · v6.4", "kmod 34 · v6.3", "kmod 34 · v6.4", "kmod 34 · v6.5"]
    assert any("also v6.5" in t.get_text() for t in map_panel.texts)


def test_the_boot_figure_draws_the_series_it_exports(figure: Any) -> None:
    from vmapsim.plot import boot_figure

    runs = _coldplug()
    fig = figure(boot_figure, runs)
    drawn = _drawn(fig)
    curves: dict[str, list[dict[str, Any]]] = {}
    for row in report.pinned_series(runs):
        curves.setdefault(f"{row['kmod']}/{row['pipeline']}/{row['window']}", []).append(row)
    assert set(drawn) == set(curves) - {f"30/v6.5/{w}" for w in ("vmalloc", "modules")}
    for gid, line in drawn.items():
        assert list(line.get_xdata()) == [row["time_ms"] for row in curves[gid]]
        assert list(line.get_ydata()) == [row["pinned_bytes"] / (1 << 20) for row in curves[gid]]
        assert line.get_drawstyle() == "steps-post"  # a row's value holds until the next row


@settings(max_examples=8, deadline=None)
@given(st.integers(-2000, 2000))
@example(0).via("the threshold: the peak is a fiftieth")
@example(1).via("a page past it")
def test_the_window_is_a_line_only_where_the_curves_reach_a_fiftieth_of_it(pages: int) -> None:
    pytest.importorskip("matplotlib")
    import matplotlib.pyplot as plt

    from vmapsim.plot import boot_figure

    run = _i386_run()
    peak = run.peak_pinned["vmalloc"]
    size = (peak * 50 // 4096 + pages) * 4096  # around 50 times the peak, either side
    fig = boot_figure({"v6.3": run}, layout=layouts.i386(size))
    try:
        (panel,) = fig.axes
        lines = [ln for ln in panel.get_lines() if ln.get_gid() == "window size"]
        on_scale = peak >= size / 50
        assert len(lines) == on_scale and (panel.get_yscale() == "log") == on_scale
        if on_scale:  # a log axis: every curve and the window on it
            assert lines[0].get_ydata()[0] == size / (1 << 20) and "window size" in _legend_texts(fig)
            assert panel.get_title().endswith(", dashed") and "log scale" in panel.get_ylabel()
        else:  # the curves' own scale, the size in words
            assert panel.get_title().endswith("off the scale)") and panel.get_ylim()[1] < size / (1 << 20)
    finally:
        plt.close(fig)


@functools.cache
def _i386_run() -> Result:
    return simulate([Request("kvm_intel", cpu=c) for c in range(2)], pipeline="v6.3", cpus=2,
                    catalog="debian-6.12-amd64", layout=layouts.i386())  # fmt: skip


@settings(max_examples=10, deadline=None)
@given(st.integers(1, 6), st.sampled_from(["v6.3", "v6.4", "v6.5", "page-list"]), st.integers(0, 3))
def test_the_pinned_series_is_each_run_step_by_step(cpus: int, pipeline: str, seed: int) -> None:
    r = Scenario("qemu-kvm", cpus=cpus, pipeline=pipeline, kmod=34, seed=seed).simulate()
    assert r.space is not None
    rows = report.pinned_series({34: {pipeline: r}})
    assert rows and all(list(row) == list(report.PINNED_COLUMNS) for row in rows)
    for i, window in enumerate(reg.name for reg in r.space.layout.regions):
        mine = [row for row in rows if row["window"] == window]
        times = [row["time_ms"] for row in mine]
        assert times == sorted(set(times))  # in time order, one row per instant
        assert all(row["busy_bytes"] >= 0 and row["lazy_or_pooled_bytes"] >= 0 for row in mine)
        assert max(row["pinned_bytes"] for row in mine) == r.peak_pinned[window]
        # the step through the rows is the run's every sample, to its last instant
        for t, values in r.pinned_over_time:
            held = mine[bisect.bisect_right(times, t * 1000) - 1]
            assert held["pinned_bytes"] == values[i]
        assert times[-1] == r.pinned_over_time[-1][0] * 1000


def _sweep_rows() -> list[dict[str, Any]]:
    """A sweep's rows without running it: v6.5 equal to v6.4 at every point, three seeds each."""
    rows = []
    for cpus in (8, 16, 32):
        for pipeline, scale in (("v6.3", 10), ("v6.4", 1), ("v6.5", 1)):
            rows += [{"machine": "intel-server", "cpus": cpus, "kernel": None, "pipeline": pipeline, "kmod": None,
                      "seed": seed, "peak_modules": (cpus * scale + seed) << 20, "wasted_bytes": cpus * scale << 21}
                     for seed in range(3)]  # fmt: skip
    return rows


def test_the_sweep_figure_labels_in_words_draws_its_series_and_each_curve_once(figure: Any) -> None:
    from vmapsim.plot import sweep_figure

    rows = _sweep_rows()
    fig = figure(sweep_figure, rows, window=1008 << 20, title="udev coldplug of intel-server: kmod 30, seeds 0–2")
    assert fig._suptitle.get_text() == "udev coldplug of intel-server: kmod 30, seeds 0–2"
    peak, wasted = fig.axes
    assert peak.get_ylabel().replace("\n", " ") == "peak pinned in the module window (MiB, log scale)"
    assert wasted.get_ylabel().replace("\n", " ") == "wasted by failed loads, MODULE_STATS (MiB)"
    assert wasted.get_xlabel() == "CPUs" and "_" not in peak.get_ylabel().replace("MODULE_STATS", "")
    assert _legend_texts(fig) == ["v6.3", "v6.4 = v6.5", "module window size (1008 MiB)"]
    drawn = _drawn(fig)
    points = report.sweep_series(rows)
    assert set(drawn) == {f"/{p}/{m}" for p in ("v6.3", "v6.4") for m in report.SWEEP_METRICS}
    for gid, line in drawn.items():
        _, pipeline, metric = gid.split("/")
        mine = [p for p in points if p["pipeline"] == pipeline and p["metric"] == metric]
        assert list(line.get_xdata()) == [p["cpus"] for p in mine]
        assert list(line.get_ydata()) == [p["median"] / (1 << 20) for p in mine]
    # 320 MiB reach a fiftieth of 1008 MiB: a log axis with the window; a 64 GiB window is off its scale
    assert [ln.get_gid() for ln in peak.get_lines()].count("window size") == 1
    fig = figure(sweep_figure, rows, window=64 << 30)
    peak = fig.axes[0]
    assert peak.get_title() == "the module window's 64 GiB: off the scale" and peak.get_yscale() == "linear"
    assert "window size" not in [ln.get_gid() for ln in peak.get_lines()]


def test_the_sweep_series_is_each_cells_median_min_and_max() -> None:
    points = report.sweep_series(_sweep_rows())
    assert all(list(p) == list(report.SWEEP_COLUMNS) for p in points)
    first = points[0]
    assert (first["pipeline"], first["cpus"], first["metric"]) == ("v6.3", 8, "peak_modules")
    assert (first["min"], first["median"], first["max"]) == (80 << 20, 81 << 20, 82 << 20)
    assert len(points) == 3 * 3 * 2  # load paths × CPU counts × metrics
    with pytest.raises(InvalidArgument, match="unknown metric 'wasted'"):
        report.sweep_series(_sweep_rows(), ["wasted"])


def test_the_histograms_count_every_allocation_once_per_caller(figure: Any) -> None:
    from vmapsim.plot import histogram_figure

    runs = _coldplug()
    rows = report.histogram_series(runs)
    assert all(list(row) == list(report.HISTOGRAM_COLUMNS) for row in rows)
    r = runs[34]["v6.3"]
    allocations = [a for o in r.outcomes for a in o.allocations]
    mine = [row for row in rows if row["kmod"] == 34 and row["pipeline"] == "v6.3"]
    for caller in {report.CALLERS[a.kind] for a in allocations}:
        count = sum(report.CALLERS[a.kind] == caller for a in allocations)
        sizes = sum(row["count"] for row in mine if row["caller"] == caller and row["quantity"] == "size_bytes")
        ends = sum(row["count"] for row in mine if row["caller"] == caller and row["quantity"] != "size_bytes")
        assert sizes == ends == count  # each area once by size, once by lifetime or as never freed
    fig = figure(histogram_figure, runs, title="qemu-kvm")
    assert _legend_texts(fig) == ["v6.3", "v6.4", "v6.5"]
    rows_titles = [sub._suptitle.get_text() for sub in fig.subfigs]
    assert rows_titles[0] == "kmod 30: copy_module_from_user(): init_module(2)'s image"
    assert "kmod 34: kernel_read_file(): the module file read" in rows_titles
    assert fig.axes[-2].get_xlabel() == "allocation size (guard page included)"
    assert fig.axes[-1].get_xlabel() == "lifetime, allocation to free"
    assert fig.axes[0].get_title() == "v6.4 = v6.5"  # kmod 30: one run, drawn once and named


def test_boot_writes_the_figures_and_the_series(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    out, hist, series = tmp_path / "boot.svg", tmp_path / "hist.pdf", tmp_path / "boot.csv"
    r = _run("boot", "--cpus", "8", "--pipeline", "v6.3,v6.5", "--kmod", "34", "--plot", str(out), "--plot-histograms",
             str(hist), "--series", str(series))  # fmt: skip
    assert r.returncode == 0, r.stderr
    svg = out.read_text()
    assert "udev coldplug of intel-server: 8 CPUs, kmod 34, seed 0" in svg and "kernels 6.3, 6.5" in svg
    assert "time since the first uevent (ms)" in svg and "modules window (1008 MiB: off the scale)" in svg
    assert hist.read_bytes()[:4] == b"%PDF"
    rows = list(csv.DictReader(io.StringIO(series.read_text())))
    assert list(rows[0]) == list(report.PINNED_COLUMNS) and {row["pipeline"] for row in rows} == {"v6.3", "v6.5"}
    r = _run("boot", "--cpus", "8", "--pipeline", "v6.3", "--kmod", "34", "--layout", "i386", "--plot", str(out))
    assert r.returncode == 0 and "vmalloc window: 120 MiB, dashed" in out.read_text()  # 30 MiB of 120 MiB
    assert sorted(p.name for p in tmp_path.iterdir()) == ["boot.csv", "boot.svg", "hist.pdf"]  # no partial file


def test_series_needs_no_matplotlib(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib raises ImportError
    boot, swept = tmp_path / "boot.csv", tmp_path / "sweep.csv"
    assert cli.main(["boot", "--machine", "qemu-kvm", "--cpus", "2", "--series", str(boot)]) == 0
    assert cli.main(["sweep", "--machine", "qemu-kvm", "--cpus", "2,4", "--seeds", "2", "--pipeline", "v6.3,v6.4",
                     "--executor", "serial", "--series", str(swept)]) == 0  # fmt: skip
    assert boot.read_text().startswith(",".join(report.PINNED_COLUMNS) + "\n")
    points = list(csv.DictReader(io.StringIO(swept.read_text())))
    assert list(points[0]) == list(report.SWEEP_COLUMNS) and len(points) == 2 * 2 * len(report.SWEEP_METRICS)
    capsys.readouterr()
    assert cli.main(["boot", "--cpus", "2", "--plot", str(tmp_path / "b.png")]) == 2  # --plot does, and says so
    assert capsys.readouterr().err == "vmapsim: error: plotting needs matplotlib: pip install '.[plot]'\n"


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["boot", "--plot", "{tmp}/no/such/folder/b.png"], "cannot write {tmp}/no/such/folder/b.png: no folder"),
        (["boot", "--plot-histograms", "{tmp}/h.txt"], "expected a file name ending in .png, .svg or .pdf"),
        (["boot", "--series", "{tmp}"], "cannot write {tmp}: it is a folder"),
        (["boot", "--series", "{tmp}/no/s.csv"], "cannot write {tmp}/no/s.csv: no folder {tmp}/no"),
        (["sweep", "--series", "{tmp}/no/s.csv"], "cannot write {tmp}/no/s.csv: no folder"),
        (["sweep", "--plot", "{tmp}/s.txt"], "expected a file name ending in .png"),
    ],
)
def test_a_bad_figure_or_series_file_is_refused_before_the_run(argv: list[str], says: str, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    from vmapsim.cli import _grid, _storm

    def ran(*_: object, **__: object) -> None:
        raise AssertionError("the run started")

    monkeypatch.setattr(_storm, "run_all", ran)
    monkeypatch.setattr(_grid, "run", ran)
    assert cli.main([a.format(tmp=tmp_path) for a in argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("vmapsim: error: ") and says.format(tmp=tmp_path) in err


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
    assert max(map(len, shown.splitlines())) <= 100  # the main job's answer fits a terminal and a mail


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


def test_histogram_series_counts_each_allocation_once_by_size_and_once_by_lifetime(tmp_path: Path) -> None:
    out = tmp_path / "h.csv"
    r = _run("boot", "--machine", "qemu-kvm", "--cpus", "2", "--pipeline", "v6.3,v6.5", "--kmod", "34",
             "--histogram-series", str(out))  # fmt: skip
    assert r.returncode == 0, r.stderr
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert rows and tuple(rows[0]) == report.HISTOGRAM_COLUMNS
    sizes: dict[tuple[str, str], int] = {}
    lives: dict[tuple[str, str], int] = {}
    for row in rows:
        tally = sizes if row["quantity"] == "size_bytes" else lives
        key = (row["pipeline"], row["caller"])
        tally[key] = tally.get(key, 0) + int(row["count"])
    assert sizes == lives and {p for p, _ in sizes} == {"v6.3", "v6.5"}
