"""The long fuzz run: every input parser, 100,000 seeded inputs each from two engines, held to typed errors,
time and memory.

    python benchmarks/fuzz_parsers.py [--inputs 100000] [--seed 0] [--jobs 2] [--engine both] [--only NAME ...]
                                      [--out DIR]

Each parser gets inputs made from real files (two kernels' ftrace and /proc/vmallocinfo captured under
QEMU, a rendered /proc/meminfo, request files, a catalog, module files of every compression, machine
presets, a worst-case schedule, a sweep's table, a captured /proc/modules, module stats, crash's kmem -v,
--image specs and pipeline names) by two engines. The mutation engine stacks one to eight mutations on a
window of a real file: byte flips, inserted and deleted runs, repeated and spliced pieces, and tokens the
format is made of -- among them 5000-digit numbers, leading zeros, signs, NaN, deep nesting and long lines.
The Hypothesis engine draws from strategies: the format's tokens, real lines, odd numbers and short binary
runs strung together, or a real file with such pieces inserted where Hypothesis chooses (generation only,
seeded, so each failure is kept as found).
An input passes when the parser returns, or raises the typed error it promises; it fails if anything else
escapes, if it takes more than 2 s (a SIGALRM timer interrupts it), or if the parser's process grows past
512 MiB (each parser runs in a fresh process, capped at 2 GiB of address space so a blow-up is caught as
a MemoryError rather than taking the machine down). Failing inputs are written to ``--out`` with their
tracebacks. Prints a Markdown table; exits 1 if any input failed. The inputs depend only on ``--seed``,
so a run is replayable.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import gc
import json
import lzma
import multiprocessing
import os
import random
import resource
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import hypothesis
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.helpers import console_section
from vmapsim import Catalog, ModuleFileError, ParseError, Request, VmapsimError, VmapSpace, layouts, procfs, trace
from vmapsim.checks import load_json
from vmapsim.explore import worst_case
from vmapsim.loader import ModuleStats, Schedule, pipelines
from vmapsim.loader.stats import FAIL_DUP_MOD_LOAD
from vmapsim.modules import parse_proc_modules, read_module
from vmapsim.scenario import Scenario, image_spec
from vmapsim.sweeps import Grid, Table, sweep
from vmapsim.workloads import PRESETS, Machine, read_requests, write_requests

ROOT = Path(__file__).resolve().parents[1]
HANG_S = 2.0
RSS_LIMIT_MIB = 512
AS_CAP = 2 << 30
DATA = ROOT / "tests" / "data"
BIG = b"9" * 5000


class Hang(Exception):
    """Raised by the SIGALRM handler inside an input that ran past HANG_S."""


# ----------------------------------------------------------------- corpora


def _console(name: str, section: str) -> bytes:
    return console_section((DATA / name).read_text(), section).encode()


def _requests(fmt: str) -> list[bytes]:
    reqs = [Request("loop", cpu=i % 4, time=i * 0.0015, after=i - 1 if i % 3 else None) for i in range(12)]
    reqs.append(Request("dm_mod", syscall="init_module", cpu=1, time=0.5))
    return [write_requests(reqs, fmt=fmt).encode(), write_requests(reqs[:2], fmt=fmt).encode()]


def _catalog_doc() -> bytes:
    full = Catalog.builtin("debian-6.12-amd64")
    small = Catalog(full.kernel, full.config, {n: full[n] for n in ("loop", "dm_mod", "msr")})
    with tempfile.TemporaryDirectory() as tmp:
        small.save(Path(tmp) / "c.json.xz")
        return lzma.decompress((Path(tmp) / "c.json.xz").read_bytes())


def _meminfo() -> list[bytes]:
    s = VmapSpace(layouts.X86_64, cpus=4)
    s.vfree(s.vmalloc(3 << 20))
    s.vmalloc(8192)
    out = [procfs.render_meminfo(s).encode()]
    with contextlib.suppress(OSError):
        out.append(Path("/proc/meminfo").read_bytes())
    return out


def _schedule() -> bytes:
    s = Scenario("qemu-kvm", cpus=2, pipeline="v6.3")
    return worst_case(s.jobs(), s.run, budget=3).schedule.to_json().encode()


def _table() -> bytes:
    grid = Grid(machines=("qemu-kvm",), cpus=(2, 4), pipelines=("v6.3", "v6.5"), seeds=1)
    return sweep(grid, executor="serial").to_json().encode()


def _proc_modules() -> list[bytes]:
    text = lzma.decompress((DATA / "udev" / "udev-7.3-kmod34-2cpu.txt.xz").read_bytes()).decode()
    return [b"\n".join(line.encode() for line in text.splitlines() if " Live 0x" in line) + b"\n"]


def _module_stats() -> bytes:
    stats = ModuleStats(modcount=3, total_mod_size=40960, total_text_size=8192)
    stats.add_duplicate("kvm", FAIL_DUP_MOD_LOAD)
    stats.add_duplicate("loop", FAIL_DUP_MOD_LOAD)
    return stats.render().encode()


# --------------------------------------------------------------- the targets


def _text(call: Callable[[str], object]) -> Callable[[bytes], object]:
    return lambda data: call(data.decode("utf-8", errors="replace"))


def _catalog_file(tmp: Path) -> Callable[[bytes], object]:
    path = tmp / "fuzz.json.xz"

    def load(data: bytes) -> object:
        # most inputs are a mutated JSON document, xz'ed as save() does; some are raw mutated xz bytes
        path.write_bytes(data[1:] if data[:1] == b"\xfd" else lzma.compress(data, preset=0))
        return Catalog.load(path)

    return load


_MAGIC = ((b"\xfd7zXZ\x00", "m.ko.xz"), (b"(\xb5/\xfd", "m.ko.zst"), (b"\x1f\x8b", "m.ko.gz"))


def _module(data: bytes) -> object:
    # named as its magic says, as a scan names files by their suffix (a damaged magic is a plain .ko)
    name = next((n for magic, n in _MAGIC if data.startswith(magic)), "m.ko")
    return read_module(data, name, Catalog.builtin("debian-6.12-amd64").config)


Target = tuple[Callable[[], list[bytes]], list[bytes], Callable[[Path], Callable[[bytes], object]], type[Exception]]

TARGETS: dict[str, Target] = {
    "trace.parse_trace": (
        lambda: [_console("qemu-6.12-4cpu.txt", "trace"), _console("qemu-6.1-1cpu.txt", "trace")],
        [b"alloc_vmap_area:", b"free_vmap_area_noflush:", b"purge_vmap_area_lazy:", b"va_start=", b"size=",
         b"align=", b"vstart=", b"vend=", b"failed=", b"0x", b"08192", b"-1", b"[000]", b"(fault)", b" 1.5: "],
        lambda tmp: _text(trace.parse_trace), ParseError,
    ),
    "procfs.parse_vmallocinfo": (
        lambda: [_console(f, "vmallocinfo-start") for f in ("qemu-6.12-4cpu.txt", "qemu-6.1-1cpu.txt")],
        [b"0x", b"ffffc9", b"-", b"pages=", b"phys=", b"N0=", b"vmalloc", b"vpages", b"ioremap", b"vmap",
         b"unpurged vm_area", b"vm_map_ram", b"user", b"+0x1/0x2", b"0000000000000000"],
        lambda tmp: _text(procfs.parse_vmallocinfo), ParseError,
    ),
    "procfs.parse_meminfo": (
        _meminfo, [b"VmallocTotal:", b"VmallocUsed:", b"VmallocChunk:", b" kB", b" MB", b":", b"-0"],
        lambda tmp: _text(procfs.parse_meminfo), ParseError,
    ),
    "read_requests (jsonl)": (
        lambda: _requests("jsonl"),
        [b'{"module": ', b'"cpu": ', b'"time": ', b'"after": ', b'"syscall": ', b"NaN", b"Infinity", b"1e999",
         b"[" * 2000, b"{" * 2000, b"null", b"true", b'"\\ud800"'],
        lambda tmp: _text(lambda t: read_requests(t, fmt="jsonl")), ParseError,
    ),
    "read_requests (csv)": (
        lambda: _requests("csv"),
        [b",", b'"', b"\r\n", b"module", b"cpu", b"time", b"nan", b"inf", b"-0", b"1e999", b"0x10"],
        lambda tmp: _text(lambda t: read_requests(t, fmt="csv")), ParseError,
    ),
    "checks.load_json": (
        lambda: [_catalog_doc()[:4000], *_requests("jsonl")],
        [b"[" * 5000, b"{" * 5000, b"NaN", b"-Infinity", b"1e999999", b'"\\u0000"', b":", b","],
        lambda tmp: lambda data: load_json(data, source="fuzz", max_bytes=1 << 20), ParseError,
    ),
    "Catalog.load": (
        lambda: [_catalog_doc()],
        [b'"format"', b'"version"', b'"modules"', b'"fields"', b'"config"', b"null", b"true", b"[]", b"{}",
         b"-1", b'"\\ud800"', b"[" * 3000, b"\xfd7zXZ"],
        _catalog_file, VmapsimError,
    ),
    "modules.read_module": (
        lambda: [p.read_bytes() for p in sorted((DATA / "modules").iterdir())],
        [b"\x7fELF", b"\x00" * 64, b"\xff" * 8, b"~Module signature appended~\n", b"vermagic=", b"alias=",
         b"depends=", b".text", b".init.text", b".BTF", b"(\xb5/\xfd", b"\xfd7zXZ\x00", b"\x1f\x8b"],
        lambda tmp: _module, ModuleFileError,
    ),
    "Machine.from_json": (
        lambda: [PRESETS[n].to_json().encode() for n in ("qemu-kvm", "intel-server")],
        [b'"name"', b'"cpus"', b'"devices"', b'"kmod"', b'"release"', b'"layout"', b"null", b"[]", b"{}", b"-1",
         b"NaN", b"1e999", b'"\\ud800"', b"[" * 3000],
        lambda tmp: _text(Machine.from_json), VmapsimError,
    ),
    "Schedule.from_json": (
        lambda: [_schedule()],
        [b'"arrivals"', b'"factors"', b'"choices"', b'"jitter"', b"null", b"[]", b"-1", b"NaN", b"1e999",
         b"-0.0", b"[" * 3000],
        lambda tmp: _text(Schedule.from_json), VmapsimError,
    ),
    "Table.from_json": (
        lambda: [_table()],
        [b'"rows"', b'"parameters"', b'"format"', b'"machine"', b'"cpus"', b'"seed"', b"null", b"[]", b"{}",
         b"-1", b"NaN", b"1e999", b"[" * 3000],
        lambda tmp: _text(Table.from_json), VmapsimError,
    ),
    "modules.parse_proc_modules": (
        _proc_modules,
        [b" Live 0x", b" Loading ", b" Unloading ", b"(OE)", b"(+)", b"-", b",", b" 0 ", b"0xffffffffc0000000",
         b"\t", b"\x00"],
        lambda tmp: _text(parse_proc_modules), VmapsimError,
    ),
    "ModuleStats.parse": (
        lambda: [_module_stats()],
        [b"Mods ever loaded", b"Total module size", b"Average", b"Duplicate failed modules", b"\t", b":", b"-0",
         b"kvm", b"Load", b"Unload"],
        lambda tmp: _text(ModuleStats.parse), VmapsimError,
    ),
    "procfs.parse_vmallocinfo (crash kmem -v)": (
        lambda: [(DATA / "crash-kmem-v.txt").read_bytes()],
        [b"crash> kmem -v", b"VMAP_AREA", b"VM_STRUCT", b"ADDRESS RANGE", b"SIZE", b" - ", b"ff11000003a1c000",
         b"ffa0000000005000"],
        lambda tmp: _text(procfs.parse_vmallocinfo), VmapsimError,
    ),
    "scenario.image_spec": (
        lambda: [b"big_kasan=kvm_intel:text=2436K,init_text=304K", b"big=loop:text=1M"],
        [b"=", b":", b",", b"text=", b"init_text=", b"data=", b"rodata=", b"K", b"M", b"G", b"loop", b"kvm_intel"],
        lambda tmp: _text(lambda t: image_spec(t, Catalog.builtin("debian-6.12-amd64"))), VmapsimError,
    ),
    "loader.pipelines.by_name": (
        lambda: [b"concurrency-limit:8", b"concurrency-limit", b"v6.4", b"kread-dedup"],
        [b":", b"concurrency-limit", b"v6.3", b"exclusive-deny", b"page-list", b"0", b"-1", b"999999", b"1000000"],
        lambda tmp: _text(pipelines.by_name), VmapsimError,
    ),
    "read_requests (auto)": (
        lambda: [*_requests("jsonl"), *_requests("csv")],
        [b'{"module": ', b",", b'"', b"\r\n", b"module", b"cpu", b"time", b"nan", b"1e999", b"{" * 2000],
        lambda tmp: _text(lambda t: read_requests(t, fmt="auto")), VmapsimError,
    ),
}  # fmt: skip


# ---------------------------------------------------------------- mutations


def mutate(rng: random.Random, corpus: list[bytes], tokens: list[bytes]) -> bytes:
    """One input: a window of a corpus item, then 1-8 stacked mutations (mostly few, so some inputs stay close
    enough to the format to get deep into the parser)."""
    base = rng.choice(corpus)
    if rng.random() < 0.6 and b"\n" in base:  # a few lines keep inputs small and parsers fast
        lines = base.splitlines(keepends=True)
        i = rng.randrange(len(lines))
        data = bytearray(b"".join(lines[i : i + rng.randint(1, 40)]))
    else:
        data = bytearray(base)
    for _ in range(rng.choice((1, 1, 1, 2, 2, 3, 4, 6, 8))):
        op = rng.randrange(9)
        at = rng.randint(0, len(data))
        if op == 0 and data:  # flip bits
            at = min(at, len(data) - 1)
            data[at] ^= 1 << rng.randrange(8)
        elif op == 1:  # random bytes
            data[at:at] = rng.randbytes(rng.randint(1, 16))
        elif op == 2:  # delete a run
            del data[at : at + rng.randint(1, 64)]
        elif op == 3:  # a format token
            data[at:at] = rng.choice(tokens)
        elif op == 4:  # a number that is too long, zero-padded, signed or huge
            data[at:at] = rng.choice([BIG, b"0" * rng.randint(1, 60) + b"8192", b"-", b"+", b"0x" + b"f" * 40])
        elif op == 5 and data:  # repeat a piece
            piece = data[at : at + rng.randint(1, 200)]
            data[at:at] = piece * rng.randint(1, 50)
        elif op == 6:  # splice in another corpus item's piece
            other = rng.choice(corpus)
            j = rng.randint(0, len(other))
            data[at:at] = other[j : j + rng.randint(1, 500)]
        elif op == 7:  # truncate
            del data[at:]
        else:  # replace a digit run by another number
            digits = b"0123456789"
            if at < len(data) and data[at] in digits:
                end = at
                while end < len(data) and data[end] in digits:
                    end += 1
                data[at:end] = str(rng.choice([0, 1, 4095, 4097, 1 << 64, -1, 10**40, 10**41])).encode()
    return bytes(data)


# ------------------------------------------------------------------- a run


def _alarm(signum: int, frame: object) -> None:
    raise Hang


def _strategy(corpus: list[bytes], tokens: list[bytes]) -> st.SearchStrategy[bytes]:
    """The Hypothesis engine's inputs: the format's tokens, real lines and short binary runs strung together,
    or a real file with pieces of the same kinds inserted at points Hypothesis picks."""
    lines = sorted({line for c in corpus for line in c.splitlines(keepends=True)})[:4000]
    numbers = st.sampled_from([0, 1, 4095, 4096, 4097, -1, 1 << 64, 10**40]).map(lambda n: str(n).encode())
    piece = st.one_of(st.sampled_from(tokens), st.sampled_from(lines), st.binary(max_size=16), numbers,
                      st.sampled_from([BIG, b"0" * 60 + b"8192", b"0x" + b"f" * 40, b"\n", b" "]))  # fmt: skip
    strung = st.lists(piece, max_size=40).map(b"".join)

    def inserted(base: bytes) -> st.SearchStrategy[bytes]:
        edits = st.lists(st.tuples(st.integers(0, len(base)), st.integers(0, 64), piece), min_size=1, max_size=6)

        def apply(edits: list[tuple[int, int, bytes]]) -> bytes:
            data = bytearray(base)
            for at, cut, what in edits:
                data[at : at + cut] = what
            return bytes(data)

        return edits.map(apply)

    return strung | st.sampled_from(corpus).flatmap(inserted)


def run(name: str, n: int, seed: int, out: str, engine: str = "mutation") -> dict[str, object]:
    """Feed ``n`` inputs to one parser in this (fresh) process, made by ``engine``; return its figures."""
    with contextlib.suppress(ValueError, OSError):  # a cap the machine already lowers is kept
        resource.setrlimit(resource.RLIMIT_AS, (AS_CAP, AS_CAP))
    corpus_of, tokens, make, allowed = TARGETS[name]
    corpus = corpus_of()
    signal.signal(signal.SIGALRM, _alarm)
    stats: dict[str, object] = {"parser": name, "engine": engine, "inputs": 0, "accepted": 0, "refused": 0}
    failures: list[str] = []
    slowest = 0.0
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        call = make(Path(tmp))

        def one(data: bytes) -> None:
            nonlocal slowest
            i = int(stats["inputs"])  # type: ignore[call-overload]
            stats["inputs"] = i + 1
            # the collector paused for the call: Hypothesis' own garbage must not be timed as the parser's
            gc.disable()
            t0 = time.perf_counter()
            signal.setitimer(signal.ITIMER_REAL, HANG_S)
            try:
                call(data)
                stats["accepted"] = int(stats["accepted"]) + 1  # type: ignore[call-overload]
                kind = ""
            except allowed as e:
                stats["refused"] = int(stats["refused"]) + 1  # type: ignore[call-overload]
                kind = "" if i else f"the good file was refused (the target is miswired): {e}"
            except Hang:
                kind = f"hang (> {HANG_S} s)"
            except BaseException as e:  # anything untyped is what this run looks for
                kind = f"{type(e).__name__}: {traceback.format_exc()}"
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
                gc.enable()
            took = time.perf_counter() - t0
            slowest = max(slowest, took)
            if took > HANG_S and not kind:
                kind = f"hang (> {HANG_S} s)"  # also when the timer's exception fired outside the call
            if kind:
                failures.append(kind.splitlines()[0])
                if out and len(failures) <= 20:
                    stem = Path(out) / f"{name.split()[0].replace('.', '-')}-{engine}-{seed}-{i}"
                    stem.with_suffix(".input").write_bytes(data)
                    stem.with_suffix(".txt").write_text(kind)

        one(corpus[0])  # the first input is a good file
        if engine == "mutation":
            rng = random.Random(f"{seed}:{name}")
            for _ in range(n - 1):
                one(mutate(rng, corpus, tokens))
        else:
            # generation only (no shrinking: every failure is kept as found), seeded, no example database
            only_generate = hypothesis.settings(max_examples=n - 1, database=None, deadline=None,
                                                phases=[hypothesis.Phase.generate],
                                                suppress_health_check=list(hypothesis.HealthCheck))
            hypothesis.seed(seed)(only_generate(hypothesis.given(_strategy(corpus, tokens))(one)))()
    stats["seconds"] = round(time.perf_counter() - t_start, 1)
    stats["slowest_ms"] = round(slowest * 1000, 1)
    stats["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    stats["failures"] = len(failures)
    stats["kinds"] = sorted(set(failures))[:5]
    return stats


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--inputs", type=int, default=100_000, help="inputs per parser (default 100000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="parsers fuzzed at once")
    p.add_argument("--engine", choices=("mutation", "hypothesis", "both"), default="both",
                   help="who makes the inputs: stacked byte mutations, Hypothesis strategies, or each in turn")
    p.add_argument("--only", action="append", choices=sorted(TARGETS), help="fuzz only this parser (repeatable)")
    p.add_argument("--out", default="", help="directory for failing inputs and their tracebacks")
    p.add_argument("--json", action="store_true", help="print the figures as JSON instead of a table")
    args = p.parse_args(argv)
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
    engines = ["mutation", "hypothesis"] if args.engine == "both" else [args.engine]
    tasks = [(name, engine) for engine in engines for name in args.only or list(TARGETS)]
    # one fresh process per parser and engine, so each one's peak RSS is its own: forked from a fork server that
    # started small, never from the caller (a test session's RSS would count as every parser's peak)
    context = multiprocessing.get_context("forkserver")
    with concurrent.futures.ProcessPoolExecutor(args.jobs, mp_context=context, max_tasks_per_child=1) as pool:
        futures = [pool.submit(run, name, args.inputs, args.seed, args.out, engine) for name, engine in tasks]
        rows = [f.result() for f in futures]
    bad = [r for r in rows if r["failures"] or int(r["peak_rss_mib"]) > RSS_LIMIT_MIB]  # type: ignore[call-overload]
    if args.json:
        print(json.dumps(rows, indent=1))
    else:
        print("| parser | engine | inputs | accepted | refused (typed) | untyped or hang | slowest (ms) "
              "| peak RSS (MiB) | s |")
        print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
        for r in rows:
            print(f"| `{r['parser']}` | {r['engine']} | {r['inputs']:,} | {r['accepted']:,} | {r['refused']:,} "
                  f"| {r['failures']} | {r['slowest_ms']} | {r['peak_rss_mib']} | {r['seconds']} |")
        for r in bad:
            print(f"\n{r['parser']}: {r['kinds']}", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
