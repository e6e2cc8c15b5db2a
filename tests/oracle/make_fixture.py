#!/usr/bin/env python3
"""Record the free-area tree shapes that the Linux kernel's own rbtree code builds.

Writes ``tests/data/rbtree-oracle.json.xz``, the fixture against which ``vmapsim/rbtree.py`` is checked.  It
compiles ``rbtree_driver.c`` (beside this file) together with the kernel's unmodified ``lib/rbtree.c`` and
``include/linux/rbtree*.h``, runs seeded random sequences of free-tree operations through it and keeps the
tree after every operation.

Regenerating it
---------------
The kernel files come from Debian's ``linux-source-6.12`` package (the fixture in the repository was made
from version 6.12.117-1, Debian 13 "trixie", main)::

    echo 'deb http://deb.debian.org/debian trixie main' > /tmp/trixie.list
    APT="-o Dir::Etc::SourceList=/tmp/trixie.list -o Dir::Etc::SourceParts=/dev/null \
         -o Dir::State::Lists=/tmp/trixie-lists"
    mkdir -p /tmp/trixie-lists/partial && apt-get $APT update
    apt-get $APT download linux-source-6.12
    dpkg-deb -x linux-source-6.12_*_all.deb pkg
    tar -xaf pkg/usr/src/linux-source-6.12.tar.xz \\
        linux-source-6.12/Makefile linux-source-6.12/lib/rbtree.c \\
        linux-source-6.12/include/linux/rbtree.h linux-source-6.12/include/linux/rbtree_types.h \\
        linux-source-6.12/include/linux/rbtree_augmented.h linux-source-6.12/mm/vmalloc.c
    python3 tests/oracle/make_fixture.py --kernel linux-source-6.12

(``mm/vmalloc.c`` is not compiled; it is where the driver's insert/erase/propagate/merge sequences come
from.)  Only gcc and the Python 3.11 standard library are needed.  The same ``--seed`` gives the same bytes.

Fixture format
--------------
An xz-compressed JSON list of cases; each case is ``{"ops": [...], "dumps": [...]}`` with one dump per operation, taken
right after it, starting from an empty tree.  Operations (numbers are byte addresses, page-aligned):

- ``["insert", S, E]``: link the free range ``[S, E)``: ``insert_vmap_area_augment()``.
- ``["erase", S]``: remove the range starting at ``S``: ``unlink_va_augment()``.
- ``["set", S, NS, NE]``: move the range starting at ``S`` to ``[NS, NE)`` in place, then
  ``augment_tree_propagate_from()`` (what ``va_clip()`` does to the area it splits).
- ``["merge", S, E]``: give ``[S, E)`` back as ``merge_or_add_vmap_area_augment()`` does: coalesce with the
  neighbours it touches (the previous range survives a merge with both), or insert it.

A dump is the tree in preorder on one line, each node ``start:end:colour:subtree_max_size`` (colour ``r`` or
``b``, the *stored* ``subtree_max_size``) and each missing child ``.``, so the empty tree is ``.``.
"""

from __future__ import annotations

import argparse
import bisect
import json
import lzma
import random
import re
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE.parent / "data" / "rbtree-oracle.json.xz"
PAGE = 4096
BASE = 16 * PAGE  # lowest address used
SPACE = 1 << 16  # pages of address space the ranges live in
KERNEL_FILES = (
    "lib/rbtree.c",
    "include/linux/rbtree.h",
    "include/linux/rbtree_types.h",
    "include/linux/rbtree_augmented.h",
)
# Values the new node's subtree_max_size holds before it is linked (the kernel leaves whatever the slab
# object held): every case is run with each, and must give the same dumps.
POISONS = ("0", "0xdeadbeef", "0xffffffffffffffff")


def build_driver(kernel: Path, workdir: Path, cc: str) -> Path:
    """Compile ``rbtree_driver.c`` with the kernel's ``lib/rbtree.c``; return the executable's path."""
    missing = [f for f in KERNEL_FILES if not (kernel / f).is_file()]
    if missing:
        sys.exit(f"make_fixture: {kernel} lacks {', '.join(missing)}")
    makefile = kernel / "Makefile"
    if makefile.is_file():
        text = makefile.read_text(errors="replace")
        version = ".".join(re.search(rf"^{k} = (\d+)", text, re.M).group(1) for k in ("VERSION", "PATCHLEVEL"))
        if version != "6.12":
            print(f"make_fixture: warning: kernel tree is {version}, the fixture models 6.12", file=sys.stderr)
    exe = workdir / "rbtree_driver"
    cmd = [
        cc, "-std=gnu11", "-O2", "-Wall",
        "-I", str(HERE / "compat"), "-I", str(kernel / "include"),
        str(HERE / "rbtree_driver.c"), str(kernel / "lib" / "rbtree.c"),
        "-o", str(exe),
    ]  # fmt: skip
    subprocess.run(cmd, check=True)
    return exe


class Model:
    """The disjoint free ranges (in pages) a sequence has in its tree, kept sorted, for choosing valid ops."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.starts: list[int] = []
        self.ends: list[int] = []
        self.ops: list[list] = []

    def __len__(self) -> int:
        return len(self.starts)

    # -- the gaps between ranges --------------------------------------------------------------------
    def gaps(self) -> list[tuple[int, int]]:
        out, lo = [], 0
        for s, e in zip(self.starts, self.ends, strict=True):
            if s > lo:
                out.append((lo, s))
            lo = e
        if lo < SPACE:
            out.append((lo, SPACE))
        return out

    def random_gap(self) -> tuple[int, int]:
        return self.rng.choice(self.gaps())

    # -- operations, recorded in bytes ----------------------------------------------------------------
    def insert(self, s: int, e: int) -> None:
        i = bisect.bisect_left(self.starts, s)
        assert s < e and (i == 0 or self.ends[i - 1] <= s) and (i == len(self) or e <= self.starts[i])
        self.starts.insert(i, s)
        self.ends.insert(i, e)
        self.ops.append(["insert", addr(s), addr(e)])

    def erase(self, i: int) -> None:
        self.ops.append(["erase", addr(self.starts[i])])
        del self.starts[i], self.ends[i]

    def set(self, i: int, ns: int, ne: int) -> None:
        assert ns < ne and (i == 0 or self.ends[i - 1] <= ns) and (i == len(self) - 1 or ne <= self.starts[i + 1])
        self.ops.append(["set", addr(self.starts[i]), addr(ns), addr(ne)])
        self.starts[i], self.ends[i] = ns, ne

    def merge(self, s: int, e: int) -> None:
        i = bisect.bisect_left(self.starts, s)
        assert s < e and (i == 0 or self.ends[i - 1] <= s) and (i == len(self) or e <= self.starts[i])
        self.ops.append(["merge", addr(s), addr(e)])
        if i < len(self) and self.starts[i] == e:
            self.starts[i] = s
            if i > 0 and self.ends[i - 1] == s:
                self.ends[i - 1] = self.ends[i]
                del self.starts[i], self.ends[i]
        elif i > 0 and self.ends[i - 1] == s:
            self.ends[i - 1] = e
        else:
            self.starts.insert(i, s)
            self.ends.insert(i, e)

    # -- random choices -----------------------------------------------------------------------------
    def size(self, room: int) -> int:
        """A range length in pages, mostly small, at most ``room``."""
        r = self.rng.random()
        n = 1 + int(self.rng.expovariate(1 / 4)) if r < 0.8 else self.rng.randint(1, 512)
        return max(1, min(n, room))

    def random_insert(self) -> None:
        lo, hi = self.random_gap()
        n = self.size(hi - lo)
        s = self.rng.randint(lo, hi - n)
        self.insert(s, s + n)

    def random_shrink(self) -> bool:
        """Shrink a range of two pages or more from the left, the right or both ends (LE/RE/NE-like)."""
        wide = [i for i in range(len(self)) if self.ends[i] - self.starts[i] >= 2]
        if not wide:
            return False
        i = self.rng.choice(wide)
        s, e = self.starts[i], self.ends[i]
        kind = self.rng.choice(("le", "re", "both"))
        if kind == "le":
            self.set(i, self.rng.randint(s + 1, e - 1), e)
        elif kind == "re":
            self.set(i, s, self.rng.randint(s + 1, e - 1))
        else:
            ns = self.rng.randint(s, e - 1)
            self.set(i, ns, self.rng.randint(ns + 1, e))
        return True

    def random_grow(self) -> bool:
        """Widen a range into the free space beside it (as a merge does), never overlapping a neighbour."""
        if not self:
            return False
        i = self.rng.randrange(len(self))
        lo = self.ends[i - 1] if i else 0
        hi = self.starts[i + 1] if i + 1 < len(self) else SPACE
        ns = self.starts[i] - self.size(self.starts[i] - lo) if self.starts[i] > lo else lo
        ne = self.ends[i] + self.size(hi - self.ends[i]) if hi > self.ends[i] else hi
        ns, ne = self.rng.choice(((ns, self.ends[i]), (self.starts[i], ne), (ns, ne)))
        if (ns, ne) == (self.starts[i], self.ends[i]):
            return False
        self.set(i, ns, ne)
        return True

    def random_merge(self) -> None:
        """Free a range into a gap, touching its left neighbour, its right one, both, or neither."""
        lo, hi = self.random_gap()
        kind = self.rng.choice(("left", "right", "both", "none"))
        if kind == "both" or hi - lo == 1:
            s, e = lo, hi
        elif kind == "left":
            s, e = lo, lo + self.size(hi - lo)
        elif kind == "right":
            s, e = hi - self.size(hi - lo), hi
        else:
            n = self.size(hi - lo)
            s = self.rng.randint(lo, hi - n)
            e = s + n
        self.merge(s, e)


def addr(page: int) -> int:
    return BASE + page * PAGE


# -- case generators: each returns the ops of one case ----------------------------------------------------
def mixed(rng: random.Random, n_ops: int, target: int, merges: bool) -> list[list]:
    """Random inserts, erases and in-place resizes (and merges), the tree size hovering around ``target``."""
    m = Model(rng)
    while len(m.ops) < n_ops:
        r = rng.random()
        grow_bias = 0.6 if len(m) < target else 0.3
        if not m.gaps():
            m.random_shrink() or m.erase(rng.randrange(len(m)))
        elif not m or r < grow_bias * 0.7:
            m.random_insert() if not merges or rng.random() < 0.5 else m.random_merge()
        elif r < grow_bias:
            m.random_merge() if merges else m.random_insert()
        elif r < grow_bias + 0.2:
            m.erase(rng.randrange(len(m)))
        elif r < grow_bias + 0.32:
            m.random_shrink() or m.random_insert()
        else:
            m.random_grow() or m.random_insert()
    return m.ops[:n_ops]


def ordered(rng: random.Random, n: int, descending: bool, adjacent: bool, then_erase: str | None) -> list[list]:
    """``n`` inserts in ascending or descending address order, then optionally erase them all."""
    m = Model(rng)
    spans, page = [], 0
    for _ in range(n):
        page += 0 if adjacent else rng.randint(1, 8)
        size = rng.randint(1, 16)
        spans.append((page, page + size))
        page += size
    for s, e in reversed(spans) if descending else spans:
        m.insert(s, e)
    if then_erase == "ascending":
        for _ in range(n):
            m.erase(0)
    elif then_erase == "descending":
        for _ in range(n):
            m.erase(len(m) - 1)
    elif then_erase == "random":
        for _ in range(n):
            m.erase(rng.randrange(len(m)))
    return m.ops


def erase_run(rng: random.Random, n: int, order: str) -> list[list]:
    """``n`` random inserts, then erase every range (random, ascending, descending or root-ish order)."""
    m = Model(rng)
    for _ in range(n):
        m.random_insert()
    while m:
        if order == "random":
            i = rng.randrange(len(m))
        elif order == "ascending":
            i = 0
        elif order == "descending":
            i = len(m) - 1
        else:  # middle: tends to hit internal nodes with two children
            i = len(m) // 2
        m.erase(i)
    return m.ops


def alloc_free(rng: random.Random, n_ops: int) -> list[list]:
    """The vmalloc pattern: one big free range, allocations clipped off it as ``va_clip()`` does (FL = erase,
    LE/RE = set, NE = set + insert of the left remainder) and frees given back with merges."""
    m = Model(rng)
    m.insert(0, SPACE)
    busy: list[tuple[int, int]] = []
    while len(m.ops) < n_ops:
        if busy and (rng.random() < 0.4 or not m):
            s, e = busy.pop(rng.randrange(len(busy)))
            m.merge(s, e)
            continue
        i = rng.randrange(len(m)) if rng.random() < 0.5 else 0  # lowest-fit favours low addresses
        s, e = m.starts[i], m.ends[i]
        n = m.size(e - s)
        kind = rng.choices(("fl", "le", "re", "ne"), (1, 4, 1, 2))[0]
        if kind == "fl" or n == e - s:
            m.erase(i)
            busy.append((s, e))
            continue
        if kind == "le":
            m.set(i, s + n, e)
            busy.append((s, s + n))
        elif kind == "re":
            m.set(i, s, e - n)
            busy.append((e - n, e))
        else:
            if e - s - n < 2:
                m.set(i, s + n, e)
                busy.append((s, s + n))
                continue
            a = rng.randint(s + 1, e - n - 1)  # strictly inside: a left and a right remainder
            m.set(i, a + n, e)
            m.insert(s, a)
            busy.append((a, a + n))
    return m.ops[:n_ops]


def cases(seed: int) -> list[list[list]]:
    """Every case's ops, each case from its own seeded generator."""
    plan = []
    # Ordered inserts: the rotations of long ascending/descending runs, then long erase runs.
    plan += [
        lambda r: ordered(r, 72, descending=False, adjacent=False, then_erase=None),
        lambda r: ordered(r, 72, descending=True, adjacent=False, then_erase=None),
        lambda r: ordered(r, 64, descending=False, adjacent=True, then_erase=None),
        lambda r: ordered(r, 48, descending=False, adjacent=False, then_erase="ascending"),
        lambda r: ordered(r, 48, descending=True, adjacent=False, then_erase="descending"),
        lambda r: ordered(r, 48, descending=False, adjacent=False, then_erase="random"),
    ]
    # Long erase runs from random trees.
    plan += [lambda r, o=o: erase_run(r, 40, o) for o in ("random", "random", "ascending", "descending", "middle")]
    # Random mixes of insert / erase / set, small and medium trees.
    plan += [lambda r, n=n, t=t: mixed(r, n, t, merges=False) for n, t in ((10, 4), (20, 6), (40, 10), (60, 15))]
    plan += [lambda r, n=n, t=t: mixed(r, n, t, merges=False) for n, t in ((100, 16), (150, 20), (200, 20))]
    plan += [lambda r: mixed(r, r.randint(10, 120), r.randint(3, 30), merges=False) for _ in range(8)]
    # The same with merges.
    plan += [lambda r: mixed(r, r.randint(30, 200), r.randint(5, 30), merges=True) for _ in range(8)]
    # vmalloc-like allocation and free traffic on one big range.
    plan += [lambda r, n=n: alloc_free(r, n) for n in (40, 80, 120, 160, 200, 200)]
    return [gen(random.Random(f"rbtree-oracle:{seed}:{i}")) for i, gen in enumerate(plan)]


def run_case(exe: Path, ops: list[list], poison: str) -> list[str]:
    script = "".join(" ".join(map(str, op)) + "\ndump\n" for op in ops)
    out = subprocess.run([str(exe), "--poison", poison], input=script, capture_output=True, text=True, check=True)
    dumps = out.stdout.split("\n")[:-1]
    assert len(dumps) == len(ops), (len(dumps), len(ops))
    return dumps


def check_dump(dump: str, ops_done: int) -> int:
    """Sanity-check one dump (ordering, red-black rules); return how many nodes hold a stale max."""
    tokens = dump.split()
    pos = 0
    stale = 0

    def walk(lo: int, hi: int, parent_red: bool) -> tuple[int, int]:  # (black height, subtree max)
        nonlocal pos, stale
        tok = tokens[pos]
        pos += 1
        if tok == ".":
            return 1, 0
        s, e, colour, mx = tok.split(":")
        s, e, mx = int(s), int(e), int(mx)
        assert lo <= s < e <= hi, (ops_done, tok)
        red = colour == "r"
        assert not (red and parent_red), (ops_done, "red-red", tok)
        bl, ml = walk(lo, s, red)
        br, mr = walk(e, hi, red)
        assert bl == br, (ops_done, "black height", tok)
        true_max = max(e - s, ml, mr)
        stale += mx != true_max
        return bl + (not red), true_max

    assert tokens[0] == "." or tokens[0].split(":")[2] == "b", (ops_done, "red root")
    walk(0, 1 << 64, False)
    assert pos == len(tokens), (ops_done, "trailing tokens")
    return stale


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kernel", type=Path, required=True, help="Linux 6.12 source tree (holding lib/ and include/)")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output JSON (default {DEFAULT_OUT})")
    ap.add_argument("--seed", type=int, default=612, help="seed of the random sequences (default 612)")
    ap.add_argument("--cc", default="gcc", help="C compiler (default gcc)")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="rbtree-oracle-") as tmp:
        exe = build_driver(args.kernel.resolve(), Path(tmp), args.cc)
        result, stale = [], 0
        for ops in cases(args.seed):
            dumps = run_case(exe, ops, POISONS[0])
            for poison in POISONS[1:]:
                if run_case(exe, ops, poison) != dumps:
                    sys.exit(f"make_fixture: the shapes depend on the pre-link subtree_max_size ({poison})")
            stale += sum(check_dump(d, i + 1) for i, d in enumerate(dumps))
            result.append({"ops": ops, "dumps": dumps})

    text = "[\n" + ",\n".join(json.dumps(c, separators=(",", ":")) for c in result) + "\n]\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(lzma.compress(text.encode(), preset=9))
    n_ops = sum(len(c["ops"]) for c in result)
    print(f"wrote {args.out}: {len(result)} cases, {n_ops} ops, {len(text)} bytes; stale maxima seen: {stale}")


if __name__ == "__main__":
    main()
