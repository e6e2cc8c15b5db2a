"""Loader speed: C CPUs x a per-CPU set of 20 modules, every named pipeline.

    python benchmarks/bench_loader.py [--cpus 255,4096]

Each CPU requests each of 20 modules udev asks for once per CPU on an Intel
server (from the shipped 6.12 catalog), arriving over the first 10 ms; the
default cost model.  Prints a Markdown table of seconds per pipeline, the total,
and the peak resident memory of the process.
"""

from __future__ import annotations

import argparse
import random
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vmapsim import simulate
from vmapsim.loader import PIPELINES, Request
from vmapsim.modules import Catalog

INTEL = (
    "cpu:type:x86,ven0000fam0006mod008F:feature:,0000,0001,0016,0081,0083,0085,0089,0094,0099,009C,"
    "0125,013D,01C0,01C6"
)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cpus", default="255,4096")
    args = p.parse_args()
    cat = Catalog.builtin("debian-6.12-amd64")
    mods = cat.percpu_modules(INTEL)
    mods = ([*mods, "cryptd", "crypto_simd", "kvm"])[:20]
    print("| CPUs | requests | " + " | ".join(PIPELINES) + " | total s | peak RSS MiB |")
    print("|---:|---:|" + "---:|" * (len(PIPELINES) + 2))
    for cpus in (int(c) for c in args.cpus.split(",")):
        rng = random.Random(cpus)
        reqs = [Request(m, cpu=c, time=rng.random() * 0.01) for c in range(cpus) for m in mods]
        times = []
        for name in PIPELINES:
            t0 = time.perf_counter()
            r = simulate(reqs, pipeline=name, cpus=cpus, catalog=cat)
            times.append(time.perf_counter() - t0)
            assert r.leaks() == []
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        cells = " | ".join(f"{t:.2f}" for t in times)
        print(f"| {cpus} | {len(reqs):,} | {cells} | {sum(times):.2f} | {rss:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
