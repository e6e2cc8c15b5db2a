"""Whole commands, timed: the main job at 255, 1 and 4096 CPUs, and ``import vmapsim``.

    python benchmarks/bench_commands.py [--repeat 3] [--python LABEL=PATH ...]

Each ``--python`` names an interpreter with vmapsim installed (a plain, not
editable, install, so modules are byte-compiled); by default the one running
this script.  Runs are interleaved -- every interpreter once per round -- so a
machine whose speed drifts treats them alike; the best and the median of the
rounds are reported with peak RSS, and a fixed pure-Python loop shows how fast
the machine was meanwhile.  Prints a Markdown table; speed lives here, never in
the tests.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

COMMANDS = {
    "vmapsim boot (255 CPUs, 7 pipelines)": ["-m", "vmapsim", "boot"],
    "vmapsim boot --cpus 1": ["-m", "vmapsim", "boot", "--cpus", "1"],
    "vmapsim boot --cpus 4096": ["-m", "vmapsim", "boot", "--cpus", "4096"],
}
REFERENCE = ["-c", "sum(range(10**8))"]
#: Where the children run: outside the checkout, whose vmapsim/ would otherwise shadow the interpreter's own
#: install (``-m`` and ``-c`` put the working directory first on sys.path).
OUTSIDE = tempfile.gettempdir()


def timed(python: str, args: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of one child process."""
    t0 = time.perf_counter()
    child = subprocess.Popen([python, *args], stdout=subprocess.DEVNULL, cwd=OUTSIDE)
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - t0
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode:
        raise SystemExit(f"{python} {' '.join(args)} exited {child.returncode}")
    return wall, usage.ru_maxrss / 1024


def import_ms(python: str) -> float:
    """Cumulative import time of vmapsim (``-X importtime``), in ms."""
    err = subprocess.run([python, "-X", "importtime", "-c", "import vmapsim"], capture_output=True, text=True,
                         cwd=OUTSIDE).stderr
    line = [x for x in err.splitlines() if x.rstrip().endswith("| vmapsim")][-1]
    return int(line.split("|")[1]) / 1000


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--python", action="append", default=[], help="LABEL=PATH of an interpreter to time")
    args = p.parse_args()
    pythons = dict(x.split("=", 1) for x in args.python) or {"this": sys.executable}
    walls: dict[tuple[str, str], list[float]] = {}
    rss: dict[tuple[str, str], float] = {}
    ref = []
    env_note = "PYTHONDONTWRITEBYTECODE" if os.environ.get("PYTHONDONTWRITEBYTECODE") else ""
    for _ in range(args.repeat):
        ref.append(timed(sys.executable, REFERENCE)[0])
        for name, cmd in COMMANDS.items():
            for label, py in pythons.items():
                w, r = timed(py, cmd)
                walls.setdefault((name, label), []).append(w)
                rss[(name, label)] = max(rss.get((name, label), 0.0), r)
    imports = {label: min(import_ms(py) for _ in range(5)) for label, py in pythons.items()}
    labels = list(pythons)
    head = " | ".join(f"{lab}: best / median s, peak MiB" for lab in labels)
    print(f"| command | {head} |" + (" ratio |" if len(labels) == 2 else ""))
    print("|---|" + "---:|" * len(labels) + ("---:|" if len(labels) == 2 else ""))
    for name in COMMANDS:
        cells = []
        for lab in labels:
            ws = walls[(name, lab)]
            cells.append(f"{min(ws):.2f} / {statistics.median(ws):.2f}, {rss[(name, lab)]:.0f}")
        ratio = f" {min(walls[(name, labels[0])]) / min(walls[(name, labels[1])]):.2f}x |" if len(labels) == 2 else ""
        print(f"| `{name}` | " + " | ".join(cells) + " |" + ratio)
    cells = [f"{imports[lab]:.0f} ms" for lab in labels]
    ratio = f" {imports[labels[0]] / imports[labels[1]]:.2f}x |" if len(labels) == 2 else ""
    print("| `import vmapsim` (best of 5) | " + " | ".join(cells) + " |" + ratio)
    print(f"\nreference loop `sum(range(10**8))`: best {min(ref):.2f} s, median {statistics.median(ref):.2f} s "
          f"over {args.repeat} rounds {env_note}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
