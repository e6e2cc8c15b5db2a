"""vmapsim.sweeps: grids of coldplugs, the same table on every executor, resumable, and the CLI."""

from __future__ import annotations

import concurrent.futures
import json
import math
import statistics
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import pytest

from tests.helpers import run_cli
from vmapsim import InvalidArgument, ParseError
from vmapsim.loader import METRICS
from vmapsim.sweeps import MAX_RUNS, PARAMETERS, Grid, Point, Table, compare, exhaustion_cpus, run_point, sweep

GRID = Grid(machines=("qemu-kvm",), cpus=(2, 4, 8), pipelines=("v6.3", "v6.4", "v6.5"), seeds=3)


@pytest.fixture(scope="module")
def serial() -> Table:
    return sweep(GRID, executor="serial")


class Inline(concurrent.futures.Executor):
    """Runs each task at once, in the caller's thread, and counts what it was given."""

    def __init__(self) -> None:
        self.submitted = 0
        self.tasks: list[tuple[Any, ...]] = []

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> concurrent.futures.Future[Any]:
        self.submitted += 1
        self.tasks.append(args)
        f: concurrent.futures.Future[Any] = concurrent.futures.Future()
        f.set_result(fn(*args, **kwargs))
        return f


def test_a_row_is_what_vmapsim_boot_prints_for_that_point() -> None:
    row = run_point(Point("qemu-kvm", 8, None, "v6.3", None, 2))
    out = subprocess.run(
        [sys.executable, "-m", "vmapsim", "boot", "--machine", "qemu-kvm", "--cpus", "8", "--pipeline", "v6.3",
         "--seed", "2", "--json"], capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    boot = json.loads(out)["runs"][0]  # the machine's own kmod first
    assert (boot["pipeline"], boot["kmod"]) == ("v6.3", 30)
    for metric in METRICS:
        assert row[metric] == boot[metric], metric


@pytest.mark.parametrize(
    "make",
    [
        lambda: concurrent.futures.ProcessPoolExecutor(2),
        lambda: concurrent.futures.ThreadPoolExecutor(3),
        Inline,
    ],
    ids=["processes", "threads", "inline"],
)
def test_the_table_is_identical_whichever_executor_ran_it(serial: Table, make: Callable[[], Any]) -> None:
    with make() as pool:
        assert sweep(GRID, executor=pool) == serial
        assert sweep(GRID, executor=pool, batch=1) == serial  # one point per task: results in any order


def test_the_table_is_identical_on_a_dask_cluster(serial: Table) -> None:
    distributed = pytest.importorskip("distributed", reason="Dask cannot be installed here")
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
    with cluster, distributed.Client(cluster) as client:
        assert sweep(GRID, executor=client) == serial
        assert sweep(GRID, executor=client.get_executor()) == serial


def test_the_biggest_machines_go_out_first_and_the_table_keeps_the_grid_order(serial: Table) -> None:
    # the last batches are then the shortest: no worker is left with a long one while the other idles
    pool = Inline()
    assert sweep(GRID, executor=pool, batch=2) == serial
    sent = [p.cpus for batch, _ in pool.tasks for p in batch]
    assert sorted(sent, reverse=True) == sent and len(set(sent)) > 1
    assert [r["cpus"] for r in serial.rows] != sent  # the grid's own order is another


def test_a_resumed_sweep_runs_only_what_is_missing(serial: Table) -> None:
    half = Table(serial.rows[: len(serial.rows) // 2])
    pool = Inline()
    resumed = sweep(GRID, executor=pool, done=Table.from_json(half.to_json()), batch=1)
    assert resumed == serial and pool.submitted == len(serial.rows) - len(half.rows)


@pytest.mark.parametrize(
    "name,value",
    [("jitter", 0.5), ("cost_jitter", 0.1), ("module_align", 32768), ("layout", "i386")],
)
def test_a_resume_under_other_run_parameters_is_refused_naming_both_values(
    serial: Table, name: str, value: Any
) -> None:
    saved = Table.from_json(serial.to_json())
    assert saved.parameters[name] == getattr(GRID, name)  # the document carries every run-defining parameter
    other = attrs.evolve(GRID, **{name: value})
    pool = Inline()
    with pytest.raises(InvalidArgument, match=f"{name}={value!r}|{name} is {value!r}") as e:
        sweep(other, executor=pool, done=saved)
    assert str(getattr(GRID, name)) in str(e.value) and pool.submitted == 0
    with pytest.raises(InvalidArgument, match=f"{name}="):  # and the other way round
        sweep(GRID, executor=pool, done=Table(serial.rows[:1], other.parameters()))


def test_rows_of_points_the_grid_does_not_hold_are_refused_not_dropped(serial: Table) -> None:
    smaller = attrs.evolve(GRID, cpus=(2, 4))
    with pytest.raises(InvalidArgument, match=r"9 of its rows are of points .*cpus=8"):
        sweep(smaller, executor=Inline(), done=serial)
    fewer_seeds = attrs.evolve(GRID, seeds=2)
    with pytest.raises(InvalidArgument, match=r"seed=2"):
        sweep(fewer_seeds, executor=Inline(), done=serial)
    bigger = attrs.evolve(GRID, cpus=(2, 4, 8, 16), pipelines=("v6.3",))
    with pytest.raises(InvalidArgument, match=r"pipeline='v6\.4'"):
        sweep(bigger, executor=Inline(), done=serial)


def test_a_file_without_run_parameters_resumes_only_under_the_defaults(serial: Table) -> None:
    old = json.loads(serial.to_json())
    old["schema"], old["parameters"] = "vmapsim-sweep/1", {}
    done = Table.from_json(json.dumps(old))
    assert sweep(GRID, executor=Inline(), done=done) == serial  # the defaults: taken as what it ran
    with pytest.raises(InvalidArgument, match=r"jitter=None, this grid's jitter is 0\.05"):
        sweep(attrs.evolve(GRID, jitter=0.05), executor=Inline(), done=done)
    old["parameters"] = [1]
    with pytest.raises(ParseError, match="parameters are not a JSON object"):
        Table.from_json(json.dumps(old))


def test_rows_follow_the_grid_and_cells_give_the_seed_spread(serial: Table) -> None:
    assert [tuple(r[k] for k in ("cpus", "pipeline", "seed")) for r in serial.rows] == [
        (c, p, s) for c in (2, 4, 8) for p in ("v6.3", "v6.4", "v6.5") for s in range(3)
    ]
    cells = serial.cells("wasted_bytes")
    assert len(cells) == 9 and all(c["n"] == 3 for c in cells)
    first = [r["wasted_bytes"] for r in serial.rows[:3]]
    half = 4.303 * statistics.stdev(first) / math.sqrt(3)  # Student's t, 2 degrees of freedom
    mean = statistics.fmean(first)
    assert cells[0]["ci95"] == pytest.approx((mean - half, mean + half))
    assert (cells[0]["min"], cells[0]["median"], cells[0]["max"]) == (min(first), statistics.median(first), max(first))


def test_csv_json_and_parquet_hold_every_row(serial: Table, tmp_path: Path) -> None:
    lines = serial.to_csv().splitlines()
    assert lines[0].split(",") == [*PARAMETERS, *METRICS] and len(lines) == 1 + len(serial.rows)
    assert Table.from_json(serial.to_json()) == serial
    pq = pytest.importorskip("pyarrow.parquet", reason="pyarrow cannot be installed here")
    serial.to_parquet(tmp_path / "s.parquet")
    assert pq.read_table(tmp_path / "s.parquet").to_pylist() == list(serial.rows)


@pytest.mark.parametrize(
    "kwargs,needle",
    [
        ({"machines": ("no-such",)}, "unknown machine 'no-such'"),
        ({"machines": "qemu-kvm"}, "machines='qemu-kvm'"),
        ({"cpus": 8}, "cpus=8"),
        ({"cpus": (0,)}, "cpus"),
        ({"pipelines": ("v9",)}, "v9"),
        ({"kernels": ("6.3",), "pipelines": ("v6.4",)}, "disagree: v6.4 is 6.4's own load path"),
        ({"kmods": (0,)}, "kmods"),
        ({"seeds": 0}, "seeds"),
        ({"seeds": ()}, "seeds"),
        ({"jitter": -1.0}, "jitter"),
    ],
)
def test_a_bad_grid_is_refused_naming_the_value(kwargs: dict[str, Any], needle: str) -> None:
    with pytest.raises(InvalidArgument, match=needle):
        Grid(**kwargs)


def test_bad_sweep_arguments_and_files_are_refused(serial: Table) -> None:
    with pytest.raises(InvalidArgument, match="executor=3"):
        sweep(GRID, executor=3)
    with pytest.raises(InvalidArgument, match="grid="):
        sweep("grid")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="metric='peak'"):
        serial.cells("peak")
    with pytest.raises(ParseError, match="not a vmapsim sweep"):
        Table.from_json('{"rows": []}')
    with pytest.raises(ParseError, match="row 0 does not have the columns"):
        Table.from_json('{"schema": "vmapsim-sweep/1", "rows": [{"cpus": 1}]}')


@pytest.mark.parametrize(
    "column,value",
    [("machine", 3), ("cpus", [1]), ("cpus", 0), ("cpus", True), ("kernel", 6.12), ("pipeline", None),
     ("kmod", "30"), ("kmod", 0), ("seed", -1), ("peak_modules", -1), ("peak_modules", 1.5), ("ok", None)],
)
def test_a_sweep_file_row_of_a_bad_value_is_refused_naming_row_and_column(
    serial: Table, column: str, value: object
) -> None:
    doc = json.loads(serial.to_json())
    doc["rows"][1][column] = value
    with pytest.raises(ParseError, match=rf"^sweep:0: row 1, column {column}: {column}="):
        Table.from_json(json.dumps(doc))


def test_sweep_resume_of_a_bad_row_is_one_line(serial: Table, tmp_path: Path) -> None:
    doc = json.loads(serial.to_json())
    doc["rows"][0]["cpus"] = [2]  # once a TypeError in cells(), after the sweep
    (tmp_path / "rows.json").write_text(json.dumps(doc))
    r = subprocess.run([sys.executable, "-m", "vmapsim", "sweep", "--cpus", "2", "--seeds", "1", "--resume",
                        str(tmp_path / "rows.json")], capture_output=True, text=True)  # fmt: skip
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "row 0, column cpus: cpus=[2]" in r.stderr


def test_vmapsim_sweep_writes_the_rows_and_resumes(tmp_path: Path) -> None:
    out = tmp_path / "rows.json"
    argv = ["sweep", "--machine", "qemu-kvm", "--cpus", "2-6:2", "--seeds", "2", "--pipeline", "v6.3,v6.4,v6.5",
            "--executor", "serial"]
    first = run_cli(*argv, "--resume", str(out))
    rows = Table.from_json(out.read_text())
    assert len(rows.rows) == 3 * 3 * 2 and "sweep of 18 runs" in first.stdout
    assert run_cli(*argv, "--resume", str(out), "--csv").stdout == rows.to_csv()  # every row kept, none rerun
    assert len(rows.to_csv().splitlines()) == 19
    again = run_cli(*argv, "--resume", str(out), "--executor", "local", "--workers", "2")
    assert again.stdout == first.stdout and Table.from_json(out.read_text()) == rows


def test_vmapsim_sweep_refuses_to_resume_another_runs_file_and_leaves_it(tmp_path: Path) -> None:
    out = tmp_path / "rows.json"
    argv = ["sweep", "--machine", "qemu-kvm", "--seeds", "1", "--pipeline", "v6.3", "--executor", "serial",
            "--resume", str(out)]
    run_cli(*argv, "--cpus", "2,4", "--jitter", "0.1")
    before = out.read_bytes()
    assert json.loads(before)["parameters"]["jitter"] == 0.1
    for extra, needle in [(["--cpus", "2,4", "--jitter", "0.2"], "jitter=0.1, this grid's jitter is 0.2"),
                          (["--cpus", "2,4", "--jitter", "0.1", "--layout", "i386"], "layout=None"),
                          (["--cpus", "2,4", "--jitter", "0.1", "--cost-jitter", "0.5"], "cost_jitter=None"),
                          (["--cpus", "2,4", "--jitter", "0.1", "--module-align", "8192"], "module_align=4096"),
                          (["--cpus", "2", "--jitter", "0.1"], "cpus=4")]:
        r = subprocess.run([sys.executable, "-m", "vmapsim", *argv, *extra], capture_output=True, text=True)
        assert r.returncode == 2 and needle in r.stderr and str(out) in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1 and out.read_bytes() == before
    run_cli(*argv, "--cpus", "2,4,8", "--jitter", "0.1")  # a grid holding every row extends the file
    assert [r["cpus"] for r in Table.from_json(out.read_text()).rows] == [2, 4, 8]


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["sweep", "--cpus", "8-x"], "a CPU count 'x'"),
        (["sweep", "--cpus", "8:2"], "is not a CPU count or a range"),
        (["sweep", "--cpus", "²"], "a CPU count '²'"),
        (["sweep", "--cpus", "1-99999999999"], "'99999999999': expected a decimal number from 1 to 8192"),
        (["sweep", "--cpus", "8-64:0"], "a step '0'"),
        (["sweep", "--kmod", "²"], "--kmod '²'"),
        (["sweep", "--kmod", "99"], "from 1 to 34"),
        (["sweep", "--machine", "nope"], "unknown machine 'nope'"),
        (["sweep", "--metric", "peak"], "unknown metric 'peak'"),
        (["sweep", "--executor", "ray"], "--executor 'ray'"),
        (["sweep", "--cpus", "2", "--resume", "{bad}"], "not a vmapsim sweep"),
    ],
)
def test_sweep_errors_are_one_line(argv: list[str], needle: str, tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("[]")
    r = subprocess.run([sys.executable, "-m", "vmapsim", *(a.replace("{bad}", str(bad)) for a in argv)],
                       capture_output=True, text=True)  # fmt: skip
    assert r.returncode == 2 and needle in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_exhaustion_is_a_boundary_found_by_bisection() -> None:
    # intel-server's storm in i386's 120 MiB window: the count found fails and one fewer does not; failure
    # is not monotone in the CPU count (a linear scan shows counts below that fail), which is why it is a
    # boundary and not always the fewest; with kmod 34 (6.5's idempotent finit_module()) nothing runs out
    def fails(c: int) -> int:
        return int(run_point(Point("intel-server", c, None, "v6.3", None, 0), layout="i386")["allocation_failures"])

    found = exhaustion_cpus("intel-server", pipeline="v6.3", layout="i386", hi=64)
    assert found is not None and fails(found) and not fails(found - 1)
    assert fails(64) and sum(bool(fails(c)) for c in range(found, 65)) >= 0.8 * (65 - found)
    assert exhaustion_cpus("intel-server", pipeline="v6.5", layout="i386", hi=64, kmod=34) is None
    with pytest.raises(InvalidArgument, match="hi"):
        exhaustion_cpus("intel-server", pipeline="v6.3", lo=8, hi=4)


def test_compare_sets_each_path_beside_the_first(serial: Table) -> None:
    rows = compare(serial, "wasted_bytes")
    assert {(r["baseline"], r["pipeline"]) for r in rows} == {("v6.3", "v6.4"), ("v6.3", "v6.5")}
    for r in rows:
        assert r["difference"] == r["median"] - r["baseline_median"]
        assert r["ratio"] == pytest.approx(r["median"] / r["baseline_median"])


def test_vmapsim_compare_prints_differences_and_exhaustion() -> None:
    out = run_cli("compare", "--cpus", "16", "--seeds", "1", "--layout", "i386", "--metric", "peak_vmalloc",
               "--exhaustion", "64", "--executor", "serial").stdout  # fmt: skip
    table = [line for line in out[: out.index("\n\n")].splitlines() if line.startswith("intel-server")]
    assert table[0].split()[3:5] == ["v6.3", "(baseline)"] and table[1].split()[3] == "v6.4"
    first = exhaustion_cpus("intel-server", pipeline="v6.3", layout="i386", hi=64)
    found = next(line for line in out[out.index("found by bisection"):].splitlines() if line.startswith("intel"))
    found = found.split()
    assert found[1:4] == ["kmod", "30", "v6.3"] and found[4] == str(first or "none")
    r = subprocess.run([sys.executable, "-m", "vmapsim", "compare", "--pipeline", "v6.3"], capture_output=True,
                       text=True)  # fmt: skip
    assert r.returncode == 2 and "two or more load paths" in r.stderr


def test_vmapsim_sweep_plots_the_curves(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib", reason="matplotlib cannot be installed here")
    image = tmp_path / "curves.png"
    run_cli("sweep", "--machine", "qemu-kvm", "--cpus", "2,4", "--seeds", "2", "--executor", "serial",
         "--plot", str(image))  # fmt: skip
    assert image.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    r = subprocess.run([sys.executable, "-m", "vmapsim", "sweep", "--cpus", "2", "--plot", str(tmp_path / "c.txt")],
                       capture_output=True, text=True)  # fmt: skip
    assert r.returncode == 2 and "expected a file name ending in .png" in r.stderr


def test_a_grid_is_sized_without_enumerating_and_refused_over_its_run_limit() -> None:
    assert len(GRID) == len(GRID.points()) == 27
    assert len(Grid(cpus=(8, 16, 32), seeds=(0, 5))) == 3 * 7 * 2
    # 2.5 billion points once built before any check (and ran out of memory); now counted, and refused
    with pytest.raises(InvalidArgument, match=r"the grid holds 5734400000 runs: 7 \(machine, load path\) pairs × 8192 "
                       r"CPU counts × 1 kmods × 100000 seeds, more than max_runs=1000000"):  # fmt: skip
        Grid(cpus=tuple(range(1, 8193)), seeds=100_000)
    assert MAX_RUNS == 1_000_000
    assert len(attrs.evolve(GRID, max_runs=27)) == 27
    with pytest.raises(InvalidArgument, match=r"27 runs.*max_runs=26"):
        attrs.evolve(GRID, max_runs=26)
    with pytest.raises(InvalidArgument, match="max_runs=0"):
        attrs.evolve(GRID, max_runs=0)


def test_vmapsim_sweep_refuses_a_grid_over_max_runs_in_one_line() -> None:
    r = subprocess.run([sys.executable, "-m", "vmapsim", "sweep", "--cpus", "1-8192", "--seeds", "100000"],
                       capture_output=True, text=True)  # fmt: skip
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "5734400000 runs" in r.stderr
    assert "--max-runs" in r.stderr
    argv = ["sweep", "--machine", "qemu-kvm", "--cpus", "2,4", "--seeds", "1", "--pipeline", "v6.3", "--executor",
            "serial"]  # fmt: skip
    r = subprocess.run([sys.executable, "-m", "vmapsim", *argv, "--max-runs", "1"], capture_output=True, text=True)
    assert r.returncode == 2 and "2 runs" in r.stderr and "max_runs=1" in r.stderr
    assert "sweep of 2 runs" in run_cli(*argv, "--max-runs", "2").stdout


def test_the_local_pool_and_workers_option_stop_at_the_usable_cpus(capsys: pytest.CaptureFixture[str]) -> None:
    from vmapsim.checks import usable_cpus
    from vmapsim.cli._io import workers
    from vmapsim.sweeps.grid import _executor

    pool, count, owned = _executor("local")
    pool.shutdown()
    assert count == usable_cpus() and owned
    assert workers(None) is None and workers(1) == 1 and capsys.readouterr().err == ""
    assert workers(100_000) == usable_cpus()
    assert f"--workers 100000: this process may use {usable_cpus()} CPUs" in capsys.readouterr().err
