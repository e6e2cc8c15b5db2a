"""Modalias matching as kmod does it: ``fnmatch(pattern, modalias, 0)`` over every ``alias=`` of every module.

kmod's ``modules.alias`` holds ~27,000 patterns for a distribution kernel;
trying each against every modalias is what a naive lookup does.  An
:class:`AliasIndex` buckets the patterns by their literal prefix (everything
before the first ``*``, ``?`` or ``[``): a modalias can only match a pattern
whose prefix it starts with, so a lookup tries one bucket per distinct prefix
length and runs ``fnmatch`` on the few candidates there.  The answers are
exactly the naive ones (tests compare them on every shipped catalog).

>>> idx = AliasIndex([("pci:v00008086d*", "e1000e"), ("cpu:type:x86,*", "intel_cstate"), ("loop", "loop")])
>>> sorted(idx.match("pci:v00008086d000010D3sv00008086")), sorted(idx.match("loop"))
(['e1000e'], ['loop'])
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable

__all__ = ["AliasIndex", "kmod_fnmatch"]

_WILDCARD = re.compile(r"[*?\[]")


def kmod_fnmatch(name: str, pattern: str) -> bool:
    """kmod's ``fnmatch(pattern, name, 0)``: a glob with ``[!...]`` and ``[^...]`` negation.

    Runtime complexity: O(len(name) · len(pattern)) at worst.

    >>> kmod_fnmatch("acpi:ACPI0007:", "acpi*:ACPI0007:*"), kmod_fnmatch("x", "[^x]")
    (True, False)
    """
    return fnmatch.fnmatchcase(name, pattern.replace("[^", "[!"))


class AliasIndex:
    """Alias patterns bucketed by literal prefix: ``match(modalias)`` gives the modules that match.

    Runtime complexity: building O(p) for p patterns; a lookup O(L + c · m) for
    L distinct prefix lengths and c candidates of pattern length m.
    """

    __slots__ = ("_buckets", "_lengths")

    def __init__(self, pairs: Iterable[tuple[str, str]]) -> None:
        """Index ``(pattern, module)`` pairs."""
        self._buckets: dict[int, dict[str, list[tuple[str, str, bool]]]] = {}
        for pattern, module in pairs:
            wild = _WILDCARD.search(pattern)
            k = wild.start() if wild else len(pattern)
            bucket = self._buckets.setdefault(k, {}).setdefault(pattern[:k], [])
            bucket.append((pattern.replace("[^", "[!"), module, wild is None))
        self._lengths = sorted(self._buckets)

    def match(self, modalias: str) -> set[str]:
        """Names of the modules with a pattern matching ``modalias``."""
        out: set[str] = set()
        n = len(modalias)
        for k in self._lengths:
            if k > n:
                break
            for pattern, module, literal in self._buckets[k].get(modalias[:k], ()):
                if module in out:
                    continue
                if literal:
                    hit = n == k
                elif "?" in pattern or "[" in pattern:
                    hit = fnmatch.fnmatchcase(modalias, pattern)
                else:  # only * wildcards: matched piece by piece, without compiling a regular expression
                    hit = _stars_match(modalias, pattern.split("*"))
                if hit:
                    out.add(module)
        return out


def _stars_match(name: str, pieces: list[str]) -> bool:
    """``fnmatch`` of a pattern whose only wildcard is ``*``, split at each: the first piece starts ``name``, the
    last ends it, and the others follow in order between them, each as early as it can (which finds a
    match whenever one exists)."""
    first, last = pieces[0], pieces[-1]
    if not name.startswith(first) or not name.endswith(last) or len(name) < len(first) + len(last):
        return False
    at, end = len(first), len(name) - len(last)
    for piece in pieces[1:-1]:
        i = name.find(piece, at, end)
        if i < 0:
            return False
        at = i + len(piece)
    return True
