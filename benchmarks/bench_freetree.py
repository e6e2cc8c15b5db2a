"""Free-tree speed: alloc+free pairs per second at 1e3..1e6 free ranges, beside the naive scan.

    python benchmarks/bench_freetree.py [--sizes 1000,10000,100000,1000000] [--seconds 1.0] [--repeat 3]
                                        [--against REV]

Two workloads, both on the free tree (the model of free_vmap_area_root):

* typical: requests of 1-100 pages (lowest fit, page aligned); each pair allocates
  one and frees a random live allocation, so the number of free ranges holds steady;
* adversarial: every free range is a hole one page too small for the request, so each
  allocation must pass all of them to reach the free tail, and its free coalesces back.

With ``--against REV`` the FreeTree of that git revision is timed too, in the same
process and interleaved with today's (the machine's speed drifts; a ratio measured
side by side does not), and a second table gives both and their ratio.

The naive reference is tests/naive.py (linear scan, sort on insert), timed on as
many pairs as fit in the time budget (at least 3).  Also reported: the same
typical workload through VmapSpace.alloc_vmap_area()/free_vmap_area() (the whole
allocator: the busy SortedDict, accounting), and a bare sortedcontainers.SortedList
add+remove pair at the same size: the floor any free tree built on SortedList would pay
before its own search and coalescing.  Prints a Markdown table; speed lives here, never
in the tests.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.naive import NaiveFreeTree
from vmapsim import VmapSpace, layouts
from vmapsim.freetree import FreeTree

PAGE = 4096
BASE = 1 << 40
END = 1 << 62


def typical_ranges(n: int, rng: random.Random) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """n free holes of 1-100 pages between busy runs of 1-100 pages, and the busy runs."""
    free, busy, pos = [], [], BASE
    for _ in range(n):
        hole = rng.randint(1, 100) * PAGE
        used = rng.randint(1, 100) * PAGE
        free.append((pos, pos + hole))
        busy.append((pos + hole, pos + hole + used))
        pos += hole + used
    free.append((pos, END))
    return free, busy


def adversarial_ranges(n: int, req: int) -> list[tuple[int, int]]:
    """n holes of req - 1 pages, one busy page apart, then the free tail."""
    free, pos = [], BASE
    for _ in range(n):
        free.append((pos, pos + (req - 1) * PAGE))
        pos += req * PAGE
    free.append((pos, END))
    return free


def run_typical(
    tree: FreeTree | NaiveFreeTree, busy: list[tuple[int, int]], budget: float, rng: random.Random, min_ops: int
) -> float:
    live = [(s, e - s) for s, e in busy]
    # Random draws are made up front so that the loop times the tree, not the random module.
    reqs = [rng.randint(1, 100) * PAGE for _ in range(4096)]
    picks = [rng.random() for _ in range(4096)]
    ops, t0 = 0, time.perf_counter()
    while True:
        size = reqs[ops & 4095]
        a = tree.alloc(size, PAGE, BASE, END)
        assert a is not None
        live.append((a, size))
        i = int(picks[ops & 4095] * len(live))
        live[i], live[-1] = live[-1], live[i]
        victim, vsize = live.pop()
        tree.insert(victim, victim + vsize)
        ops += 1
        if ops & 15 == 0 and ops >= min_ops and time.perf_counter() - t0 > budget:
            return ops / (time.perf_counter() - t0)


def run_sortedlist(n: int, budget: float, rng: random.Random) -> float:
    """A bare sortedcontainers.SortedList add+remove pair on n keys: no search, no coalescing."""
    from sortedcontainers import SortedList

    keys = SortedList(range(0, 2 * n, 2))
    fresh = [2 * rng.randrange(n) + 1 for _ in range(4096)]
    ops, t0 = 0, time.perf_counter()
    while True:
        k = fresh[ops & 4095]  # odd: never present, lands at a random position
        keys.add(k)
        keys.remove(k)
        ops += 1
        if ops & 15 == 0 and time.perf_counter() - t0 > budget:
            return ops / (time.perf_counter() - t0)


def run_adversarial(tree: FreeTree | NaiveFreeTree, req: int, budget: float, min_ops: int) -> float:
    ops, t0 = 0, time.perf_counter()
    while True:
        a = tree.alloc(req * PAGE, PAGE, BASE, END)
        assert a is not None
        tree.insert(a, a + req * PAGE)
        ops += 1
        if ops >= min_ops and time.perf_counter() - t0 > budget:
            return ops / (time.perf_counter() - t0)


def run_space(n: int, budget: float, rng: random.Random) -> float:
    """The typical workload through VmapSpace's bare-area API (free at once: no purges)."""
    space = VmapSpace(layouts.X86_64)
    _, busy = typical_ranges(n, rng)
    live = [space.reserve(s, e - s, vm_flags=0).start for s, e in busy]  # the free holes lie between them
    reqs = [rng.randint(1, 100) * PAGE for _ in range(4096)]
    picks = [rng.random() for _ in range(4096)]
    ops, t0 = 0, time.perf_counter()
    while True:
        live.append(space.alloc_vmap_area(reqs[ops & 4095], vstart=BASE, vend=END).start)
        i = int(picks[ops & 4095] * len(live))
        live[i], live[-1] = live[-1], live[i]
        space.free_vmap_area(live.pop(), lazy=False)
        ops += 1
        if ops & 15 == 0 and time.perf_counter() - t0 > budget:
            return ops / (time.perf_counter() - t0)


def tree_at(rev: str) -> type:
    """The FreeTree class of vmapsim/freetree.py at a git revision, loaded beside today's."""
    import importlib.util
    import subprocess
    import tempfile

    root = Path(__file__).resolve().parents[1]
    source = subprocess.run(["git", "show", f"{rev}:vmapsim/freetree.py"], cwd=root, check=True,
                            capture_output=True, text=True).stdout  # fmt: skip
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(source)
    spec = importlib.util.spec_from_file_location("freetree_at_rev", f.name)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.FreeTree  # type: ignore[no-any-return]


def compare(rev: str, sizes: list[int], seconds: float, repeat: int) -> None:
    """Today's FreeTree beside REV's, interleaved run by run: pairs/s and the ratio."""
    old = tree_at(rev)
    print(f"\n| free ranges | workload | {rev} pairs/s | today pairs/s | today / {rev} |")
    print("|---:|---|---:|---:|---:|")
    for n in sizes:
        free, busy = typical_ranges(n, random.Random(n))
        adv = adversarial_ranges(n, 8)
        best = {("typical", "old"): 0.0, ("typical", "new"): 0.0, ("adversarial", "old"): 0.0,
                ("adversarial", "new"): 0.0}  # fmt: skip
        for _ in range(repeat):
            for tag, cls in (("old", old), ("new", FreeTree)):
                t = run_typical(cls.from_ranges(free), busy, seconds, random.Random(1), 1)
                a = run_adversarial(cls.from_ranges(adv), 8, seconds, 1)
                best["typical", tag] = max(best["typical", tag], t)
                best["adversarial", tag] = max(best["adversarial", tag], a)
        for work in ("typical", "adversarial"):
            o, w = best[work, "old"], best[work, "new"]
            print(f"| {n:,} | {work} | {o:,.0f} | {w:,.0f} | {w / o:.2f}x |")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="1000,10000,100000,1000000")
    p.add_argument("--seconds", type=float, default=1.0, help="time budget per measurement")
    p.add_argument("--naive-max", type=int, default=1000000, help="skip the naive scan above this many ranges")
    p.add_argument("--repeat", type=int, default=3, help="runs per measurement; the best is reported")
    p.add_argument("--against", metavar="REV", help="also time the FreeTree of this git revision, side by side")
    args = p.parse_args()
    sizes = [int(x) for x in args.sizes.split(",")]
    rows = []
    for n in sizes:
        rng = random.Random(n)
        free, busy = typical_ranges(n, rng)
        adv = adversarial_ranges(n, 8)
        # Best of --repeat runs from the same state, as timeit does: the others only add machine noise.
        fast_t = max(
            run_typical(FreeTree.from_ranges(free), busy, args.seconds, random.Random(1), 1) for _ in range(args.repeat)
        )
        space_t = max(run_space(n, args.seconds, random.Random(2)) for _ in range(args.repeat))
        fast_a = max(run_adversarial(FreeTree.from_ranges(adv), 8, args.seconds, 1) for _ in range(args.repeat))
        sorted_p = max(run_sortedlist(n, args.seconds, random.Random(3)) for _ in range(args.repeat))
        naive_t = naive_a = float("nan")
        if n <= args.naive_max:
            naive_t = run_typical(NaiveFreeTree.from_ranges(free), busy, args.seconds, random.Random(1), 3)
            naive_a = run_adversarial(NaiveFreeTree.from_ranges(adv), 8, args.seconds, 3)
        rows.append((n, fast_t, space_t, naive_t, fast_a, naive_a, sorted_p))
    base_t, base_a = 1e6 / rows[0][1], 1e6 / rows[0][4]
    print(
        "| free ranges | typical pairs/s | µs/pair (vs 1e3) | VmapSpace pairs/s | naive typical pairs/s "
        "| adversarial pairs/s | µs/pair (vs 1e3) | naive adversarial pairs/s | speed-up vs naive (adv.) "
        "| SortedList add+remove pairs/s | typical / SortedList |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n, ft, st, nt, fa, na, sp in rows:
        print(
            f"| {n:,} | {ft:,.0f} | {1e6 / ft:.2f} ({1e6 / ft / base_t:.2f}x) | {st:,.0f} | {nt:,.1f} "
            f"| {fa:,.0f} | {1e6 / fa:.2f} ({1e6 / fa / base_a:.2f}x) | {na:,.1f} | {fa / na:,.0f}x "
            f"| {sp:,.0f} | {ft / sp:.2f} |"
        )
    if args.against:
        compare(args.against, sizes, args.seconds, args.repeat)
    return 0


if __name__ == "__main__":
    sys.exit(main())
