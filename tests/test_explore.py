"""vmapsim.explore: the worst schedule of a workload, found, replayed and compared across strategies."""

from __future__ import annotations

import functools
import itertools
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

import attrs
import pytest

import vmapsim
from tests.helpers import run_cli
from vmapsim import InvalidArgument, ParseError, layouts, procfs, simulate, worst_case
from vmapsim.engine import Seeded
from vmapsim.explore import PCT, Exhaustive, Guided, RandomSearch, SearchTooLarge, Space
from vmapsim.layouts import Region
from vmapsim.loader import METRICS, Request, Run, Schedule
from vmapsim.loader.costs import CostModel
from vmapsim.modules import Catalog

CAT = Catalog.builtin("debian-6.12-amd64")
#: The enumerable instance: two modules on each of three CPUs, arrivals on a 3-instant grid, exact costs.
SMALL = [Request(m, cpu=c) for c in range(3) for m in ("loop", "dm_mod")]
#: The instance held out from the guided search's design: three modules on each of two CPUs.
HELD_OUT = [Request(m, cpu=c) for c in range(2) for m in ("loop", "dm_mod", "xfs")]
INSTANCES = {"small": (SMALL, 3), "held-out": (HELD_OUT, 2)}
GRID = Space(slots=3, bound=0, ties=False)
KW = {"cpus": 3, "catalog": CAT}


@functools.cache
def _exhaustive(kernel: str, metric: str, instance: str = "small") -> tuple[float, int]:
    jobs, cpus = INSTANCES[instance]
    w = worst_case(jobs, kernel=kernel, metric=metric, budget=10_000, strategy="exhaustive", space=GRID, cpus=cpus,
                   catalog=CAT)  # fmt: skip
    return w.value, w.evaluations


def _kasan_storm(cpus: int) -> list[Request]:
    # David Hildenbrand's 2.4 MiB KASAN module asked for once per CPU, the uevents spread over 50 ms
    mod = attrs.evolve(
        CAT["kvm_intel"], name="big_kasan", legacy=(2494464, 311296), memory=(2494464, 0, 0, 0, 311296, 0, 0)
    )
    rng = random.Random(0)
    return [Request(mod, cpu=c, time=rng.random() * 0.05) for c in range(cpus)]


# The 448-CPU storm of benchmarks/bench_explore.py scaled down for CI: 32 CPUs and a 64 MiB module window
# (the window holds 22 of the module's loads at once, the storm asks for 32).
_M = layouts.X86_64.modules
SMALL_WINDOW = attrs.evolve(
    layouts.X86_64, name="x86_64-64m", modules=Region("modules", _M.start, _M.start + (64 << 20))
)
KASAN_RUN = Run(kernel="6.3", layout=SMALL_WINDOW, cpus=32, costs=CostModel(jitter=0.25), module_align=32768)


@pytest.mark.parametrize("kernel", ["6.3", "6.4"])
def test_the_exhaustive_search_finds_the_maximum_of_every_grid_schedule(kernel: str) -> None:
    # every arrival grid run directly, without the search's code: its maximum is the search's
    grid = [0.0, GRID_SPAN[kernel] / 2, GRID_SPAN[kernel]]
    peaks = [
        simulate(SMALL, kernel=kernel, schedule=Schedule(arrivals=a), **KW).peak_pinned["modules"]
        for a in itertools.product(grid, repeat=len(SMALL))
    ]
    value, evaluations = _exhaustive(kernel, "peak_modules")
    assert evaluations == 3 ** len(SMALL) == len(peaks) and value == max(peaks) and min(peaks) < max(peaks)


# the default window when every job arrives at 0: how long the seeded run takes
GRID_SPAN = {k: max(o.end for o in simulate(SMALL, kernel=k, **KW).outcomes) for k in ("6.3", "6.4")}


@pytest.mark.parametrize(
    "instance,kernel,metric",
    [
        ("small", "6.3", "peak_modules"),
        ("small", "6.4", "peak_modules"),
        ("small", "6.4", "wasted_bytes"),
        ("small", "6.4", "failed_becoming"),
        ("held-out", "6.3", "peak_modules"),
        ("held-out", "6.4", "peak_modules"),
    ],
)
def test_the_guided_search_reaches_the_maximum_in_a_tenth_of_the_exhaustive_evaluations(
    instance: str, kernel: str, metric: str
) -> None:
    # the target: median over five seeds of the evaluations to the true maximum, at most 10% of 729
    jobs, cpus = INSTANCES[instance]
    best, evaluations = _exhaustive(kernel, metric, instance)
    budget = evaluations // 10
    firsts = []
    for seed in range(5):
        w = worst_case(jobs, kernel=kernel, metric=metric, budget=budget, strategy="guided", space=GRID, seed=seed,
                       baseline=False, cpus=cpus, catalog=CAT)  # the search alone, not the seeded run  # fmt: skip
        assert w.value <= best
        firsts.append(w.first if w.value == best else budget + 1)
    assert statistics.median(firsts) <= budget, firsts


@pytest.mark.parametrize("jobs", [SMALL, _kasan_storm(20)], ids=["fine", "coarse"])
def test_the_guided_search_tries_every_job_at_once_with_exact_costs_first(jobs: list[Request]) -> None:
    # Hypothesis runs its simplest example first: every coordinate 0, which the guided search's coordinates
    # make mean every job at the window's start with its duplicates, every factor 1 and FIFO tie-breaks
    w = worst_case(jobs, kernel="6.3", budget=1, strategy="guided", space=Space(bound=0.25), baseline=False,
                   cpus=32, catalog=CAT)  # fmt: skip
    s = w.schedule
    assert s.arrivals == (0.0,) * len(jobs) and set(s.factors) <= {1.0} and s.choices == () and s.jitter == 0
    together = [attrs.evolve(j, time=0.0) for j in jobs]
    assert w.result == simulate(together, kernel="6.3", cpus=32, catalog=CAT, costs=CostModel(jitter=0))


@pytest.mark.parametrize("strategy", [RandomSearch(), PCT(depth=2), Guided(), Exhaustive()])
def test_every_returned_schedule_replays_byte_identically(strategy: object) -> None:
    space = GRID if isinstance(strategy, Exhaustive) else Space(bound=0.25)
    w = worst_case(SMALL, kernel="6.4", budget=729, strategy=strategy, space=space, **KW)  # type: ignore[arg-type]
    again = Schedule.from_json(w.schedule.to_json())
    assert again == w.schedule
    replayed = simulate(SMALL, kernel="6.4", schedule=again, **KW)
    assert replayed == w.result == w.replay()
    assert METRICS["peak_modules"].measure(replayed) == w.value
    assert procfs.render_vmallocinfo(replayed.space) == procfs.render_vmallocinfo(w.result.space)


@pytest.mark.parametrize("strategy", ["random", "pct", "guided"])
def test_a_search_is_deterministic_for_a_seed_and_budget(strategy: str) -> None:
    runs = [worst_case(SMALL, kernel="6.3", budget=25, strategy=strategy, seed=3, **KW) for _ in range(2)]
    assert runs[0].values == runs[1].values and runs[0].schedule == runs[1].schedule
    other = worst_case(SMALL, kernel="6.3", budget=25, strategy=strategy, seed=4, **KW)
    assert other.values != runs[0].values


@pytest.mark.parametrize("strategy", ["random", "pct", "guided"])
def test_a_search_starts_from_the_seeded_run_so_its_worst_is_never_below_it(strategy: str) -> None:
    jobs = [Request(m, cpu=c, time=0.002 * c) for c in range(3) for m in ("loop", "dm_mod")]
    run = Run(kernel="6.3", costs=CostModel(jitter=0.25), seed=7, **KW)  # type: ignore[arg-type]
    seeded = simulate(jobs, run).peak_pinned["modules"]
    w = worst_case(jobs, run, budget=5, strategy=strategy)
    assert w.values[0] == seeded <= w.value


def test_tie_breaks_are_enumerated_depth_first_one_run_per_sequence() -> None:
    # two loads at 0: the search runs as many schedules as the tie-break tree has leaves (a brute-force
    # walk of the tree counts them), and 200 random sequences reach nothing worse than its maximum
    jobs = [Request("loop", cpu=c) for c in range(2)]
    space = Space(span=0.0, slots=1, bound=0, ties=True)
    w = worst_case(jobs, kernel="6.3", cpus=2, catalog=CAT, budget=100_000, strategy="exhaustive", space=space)
    leaves = _tie_sequences(jobs)
    assert len(set(leaves)) == len(leaves) == w.evaluations > 1
    seeded = [simulate(jobs, kernel="6.3", cpus=2, catalog=CAT, scheduler=Seeded(s)) for s in range(200)]
    assert max(r.peak_pinned["modules"] for r in seeded) <= w.value


def _tie_sequences(jobs: list[Request]) -> list[tuple[int, ...]]:
    """Every tie-break sequence of ``jobs`` at time 0, by brute force: extend each prefix by every choice."""
    from vmapsim.engine import Drawn

    done, todo = [], [()]
    while todo:
        prefix = todo.pop()
        widths: list[int] = []

        def choose(n: int, prefix: tuple[int, ...] = prefix, widths: list[int] = widths) -> int:
            k = len(widths)
            widths.append(n)
            return prefix[k] if k < len(prefix) else 0

        simulate(jobs, kernel="6.3", cpus=2, catalog=CAT, scheduler=Drawn(choose))
        if len(prefix) == len(widths):
            done.append(prefix)
        else:
            todo += [(*prefix, c) for c in range(widths[len(prefix)])]
    return done


def test_the_exhaustive_search_refuses_a_space_larger_than_its_budget_with_an_estimate() -> None:
    with pytest.raises(SearchTooLarge, match=r"about 729 schedules \(3\^6 arrival grids\), more than budget=100") as e:
        worst_case(SMALL, kernel="6.3", budget=100, strategy="exhaustive", space=GRID, **KW)
    assert e.value.estimate == 729
    ties = Space(slots=2, bound=0)
    with pytest.raises(SearchTooLarge, match="times their tie-breaks") as e:
        worst_case(SMALL, kernel="6.3", budget=500, strategy="exhaustive", space=ties, **KW)
    assert e.value.estimate > 2**6
    with pytest.raises(InvalidArgument, match=r"needs a finite space: Space\(slots=N, bound=0\)"):
        worst_case(SMALL, kernel="6.3", budget=100, strategy="exhaustive", **KW)


def test_on_a_kasan_storm_only_searched_schedules_exhaust_the_module_window() -> None:
    # Every CPU loads the 2.4 MiB KASAN module, uevents up to 50 ms apart. Seeded runs and random arrivals
    # never run out of the window; every job together does, and the guided search (stopping at the first
    # failure and shrinking it) and PCT find that.
    jobs = _kasan_storm(32)
    assert not any(simulate(jobs, attrs.evolve(KASAN_RUN, seed=s)).failures for s in range(5))
    random_worst = worst_case(jobs, KASAN_RUN, metric="allocation_failures", budget=50, strategy="random")
    assert random_worst.value == 0
    for strategy in ("guided", "pct"):
        w = worst_case(jobs, KASAN_RUN, metric="allocation_failures", budget=20, strategy=strategy, goal=1)
        assert w.value >= 1 and w.replay().failures
        assert w.result.failures[0].message.startswith("vmap allocation for size 2498560 failed")


def test_a_found_schedule_is_replayed_first_from_the_example_database(tmp_path: Path) -> None:
    jobs = _kasan_storm(32)
    db = str(tmp_path / "examples")
    first = worst_case(jobs, KASAN_RUN, metric="allocation_failures", budget=20, strategy=Guided(database=db), goal=1,
                       seed=1)
    # without the seeded run as the first evaluation, the database's schedule is the first one tried
    again = worst_case(jobs, KASAN_RUN, metric="allocation_failures", budget=20, strategy=Guided(database=db), goal=1,
                       seed=2, baseline=False)  # fmt: skip
    assert first.value >= 1 and again.first == 1 and again.schedule == first.schedule


def test_any_function_of_a_result_is_a_metric() -> None:
    def slowest(r: object) -> float:
        return max(o.end - o.start for o in r.outcomes)  # type: ignore[attr-defined]

    w = worst_case(SMALL, kernel="6.5", budget=10, strategy="random", metric=slowest, **KW)
    assert w.metric == "slowest" and w.value == slowest(w.replay()) == max(w.values)
    assert "slowest: worst" in w.summary()


@pytest.mark.parametrize(
    "kwargs,needle",
    [
        ({"metric": "peak"}, "unknown metric 'peak': one of loads"),
        ({"metric": 3}, "metric=3"),
        ({"strategy": "dfs"}, "strategy='dfs': expected one of random, pct, exhaustive, guided"),
        ({"strategy": 1}, "strategy=1"),
        ({"budget": 0}, "budget"),
        ({"seed": 1.5}, "seed"),
        ({"space": "grid"}, "space='grid'"),
        ({"goal": float("nan")}, "goal"),
        ({"cpu": 3}, "no option 'cpu'"),
        ({"metric": lambda r: float("nan")}, "gave nan, not a number"),
    ],
)
def test_bad_arguments_are_refused_naming_the_value(kwargs: dict[str, object], needle: str) -> None:
    with pytest.raises(InvalidArgument, match=needle.replace("(", r"\(").replace(")", r"\)")):
        worst_case(SMALL, kernel="6.3", budget=kwargs.pop("budget", 3), **{**KW, **kwargs})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "make,needle",
    [
        (lambda: Space(slots=0), "slots"),
        (lambda: Space(bound=1.0), "bound"),
        (lambda: Space(span=-1), "span"),
        (lambda: Space(ties="yes"), "ties='yes'"),
        (lambda: PCT(depth=0), "depth"),
        (lambda: Schedule(arrivals=(0.0, -1.0)), r"arrivals\[1\]"),
        (lambda: Schedule(factors=(0.0,)), r"factors\[0\]"),
        (lambda: Schedule(choices=(-1,)), r"choices\[0\]"),
        (lambda: Schedule(choices="12"), "choices='12'"),
        (lambda: Schedule(jitter=1.0), "jitter"),
    ],
)
def test_bad_space_strategy_and_schedule_values_are_refused(make: object, needle: str) -> None:
    with pytest.raises(InvalidArgument, match=needle):
        make()  # type: ignore[operator]


@pytest.mark.parametrize(
    "text,needle",
    [
        ("[]", "expected a JSON object"),
        ('{"arrivals": []}', "schema None is not 'vmapsim-schedule/1'"),
        ('{"schema": "vmapsim-schedule/1", "when": 1}', "unknown field 'when'"),
        ('{"schema": "vmapsim-schedule/1", "arrivals": ["x"]}', r"arrivals\[0\]"),
        ('{"schema": "vmapsim-schedule/1", "arrivals": [NaN]}', "NaN"),
        ("{" * 100000, "schedule"),
    ],
)
def test_a_bad_schedule_file_is_a_parse_error(text: str, needle: str) -> None:
    with pytest.raises(ParseError, match=needle):
        Schedule.from_json(text)


def test_a_schedule_must_fit_the_run() -> None:
    with pytest.raises(InvalidArgument, match="the schedule has 2 arrivals but the run has 6 requests and jobs"):
        simulate(SMALL, kernel="6.3", schedule=Schedule(arrivals=(0.0, 0.0)), **KW)
    with pytest.raises(InvalidArgument, match="with a schedule: the schedule makes the tie-breaks"):
        simulate(SMALL, kernel="6.3", schedule=Schedule(), scheduler=Seeded(1), **KW)
    with pytest.raises(InvalidArgument, match="schedule=3: expected a Schedule"):
        simulate(SMALL, kernel="6.3", schedule=3, **KW)  # type: ignore[arg-type]


def test_a_schedule_replaces_the_cost_jitter_and_the_items_times() -> None:
    jittered = Run(kernel="6.3", costs=CostModel(jitter=0.25), seed=5, **KW)  # type: ignore[arg-type]
    plain = Run(kernel="6.3", seed=5, **KW)  # type: ignore[arg-type]
    # no factors and no jitter: exactly the cost model, whatever the run's jitter
    assert simulate(SMALL, jittered, schedule=Schedule()) == simulate(SMALL, plain)
    late = simulate(SMALL, plain, schedule=Schedule(arrivals=(1.0,) * 6))
    assert min(o.start for o in late.outcomes) == 1.0


def test_vmapsim_worst_saves_a_schedule_that_boot_replays(tmp_path: Path) -> None:
    path = tmp_path / "worst.json"
    out = run_cli("worst", "--cpus", "16", "--budget", "6", "--strategy", "pct", "--save", str(path), "--json")
    found = json.loads(out.stdout)
    assert found["evaluations"] == 6 and found["worst"] == max(found["best_so_far"].values())
    assert Schedule.load(path).to_json() == json.dumps(found["schedule"])
    boot = json.loads(run_cli("boot", "--cpus", "16", "--pipeline", "v6.3", "--schedule", str(path), "--json").stdout)
    assert len(boot["runs"]) == 1 and boot["runs"][0]["peak_modules"] == found["worst"]  # a schedule: one storm
    table = run_cli("worst", "--cpus", "16", "--budget", "3", "--kernel", "6.12", "--strategy", "random").stdout
    assert "6.12" in table.splitlines()[0] and "peak_modules: worst" in table


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["worst", "--metric", "peak"], "unknown metric 'peak'"),
        (["worst", "--strategy", "dfs"], "unknown strategy 'dfs'"),
        (["worst", "--pipeline", "v6.3,v6.4"], "worst searches one load path"),
        (["worst", "--budget", "0"], "--budget"),
        (["worst", "--cpus", "4", "--strategy", "exhaustive"], "needs a finite space"),
        (["boot", "--cpus", "4", "--schedule", "/nonexistent/s.json"], "cannot read schedule"),
    ],
)
def test_worst_and_boot_schedule_errors_are_one_line(argv: list[str], needle: str) -> None:
    r = subprocess.run([sys.executable, "-m", "vmapsim", *argv], capture_output=True, text=True)
    assert r.returncode == 2 and needle in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_a_guided_search_does_not_depend_on_what_else_the_program_imported_or_where_vmapsim_lives(
    tmp_path: Path,
) -> None:
    # Hypothesis offers numbers it finds as constants in the modules outside site-packages and the standard
    # library: the program's own, and vmapsim's when it runs from a source tree. The guided search draws
    # integers offset out of their reach, so importing a module full of constants, or running a copy of
    # vmapsim that sits in a site-packages directory, leaves its schedules as they were.
    (tmp_path / "lots_of_constants.py").write_text("".join(f"C{i} = {i * 37 % 1000} / 7 + {i}\n" for i in range(300)))
    site = tmp_path / "lib" / "site-packages"
    shutil.copytree(Path(vmapsim.__file__).parent, site / "vmapsim", ignore=shutil.ignore_patterns("__pycache__"))
    script = (
        "import sys; sys.path.insert(0, sys.argv[1])\n"
        "if sys.argv[2] == 'yes': import lots_of_constants\n"
        "from vmapsim import worst_case\n"
        "from vmapsim.loader import Request\n"
        "jobs = [Request(m, cpu=c) for c in range(3) for m in ('loop', 'dm_mod')]\n"
        "w = worst_case(jobs, kernel='6.4', cpus=3, catalog='debian-6.12-amd64', budget=30, strategy='guided')\n"
        "print(w.values, w.schedule.to_json())\n"
    )
    root = Path(__file__).parent.parent  # the source tree, so vmapsim there is local code to Hypothesis
    env = {**os.environ, "HYPOTHESIS_STORAGE_DIRECTORY": str(tmp_path / "hypothesis")}  # not in the tree
    runs = [
        subprocess.run(
            [sys.executable, "-c", script, str(where), flag], capture_output=True, text=True, check=True, cwd=root,
            env=env,
        ).stdout
        for where, flag in ((tmp_path, "no"), (tmp_path, "yes"), (site, "no"))
    ]
    assert runs[0] and runs[0] == runs[1] == runs[2]


def test_vmapsim_worst_leaves_no_hypothesis_directory_where_it_runs(tmp_path: Path) -> None:
    # the guided search's Hypothesis caches the constants of the program's local modules (this script is one)
    # under .hypothesis in the current directory: the command keeps its storage elsewhere and removes it
    search = "from vmapsim.cli import main\nmain(['worst', '--cpus', '8', '--budget', '2'])\n"
    (tmp_path / "search.py").write_text(search)
    out = subprocess.run([sys.executable, "search.py"], capture_output=True, text=True, check=True, cwd=tmp_path)
    assert "the worst:" in out.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["search.py"]
