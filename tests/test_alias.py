"""Alias matching: the prefix index answers exactly what kmod's fnmatch over every alias answers."""

from __future__ import annotations

import fnmatch
import random
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vmapsim.modules import AliasIndex, Catalog, kmod_fnmatch
from vmapsim.modules.catalog import ACPI_PROCESSOR_MODALIASES
from vmapsim.workloads import PRESETS


def _naive(pairs: list[tuple[str, str]], name: str) -> set[str]:
    """Every pattern tried in turn, as a lookup without an index does."""
    return {m for p, m in pairs if kmod_fnmatch(name, p)}


def _instances(pattern: str, rng: random.Random) -> list[str]:
    """Strings a pattern should match, and near misses: wildcards filled in, a character changed."""
    filled = re.sub(r"\[\^?!?([^\]]*)\]", lambda m: m.group(1)[:1] or "x", pattern).replace("?", "7")
    out = [pattern, filled.replace("*", ""), filled.replace("*", "AB12")]
    if filled:
        k = rng.randrange(len(filled))
        out.append(filled[:k] + "~" + filled[k + 1 :])
    return out


@pytest.mark.parametrize("name", Catalog.builtins())
def test_index_equals_the_slow_path_on_a_shipped_catalog(name: str) -> None:
    cat = Catalog.builtin(name)
    pairs = [(a, m.name) for m in cat for a in m.aliases]
    compiled = [(re.compile(fnmatch.translate(p.replace("[^", "[!"))).match, m) for p, m in pairs]
    rng = random.Random(name)
    queries = [*ACPI_PROCESSOR_MODALIASES, *(d for mach in PRESETS.values() for d in mach.devices)]
    queries += [mach.cpu_modalias for mach in PRESETS.values()]
    for pattern, _ in rng.sample(pairs, 25):
        queries += _instances(pattern, rng)
    index = AliasIndex(pairs)
    hits = 0
    for q in queries:
        expected = {m for match, m in compiled if match(q)}
        assert index.match(q) == expected, q
        rank = {n: i for i, n in enumerate(cat.order)}
        assert cat.match_alias(q) == sorted(expected, key=lambda n: (rank.get(n, len(rank)), n))  # kmod's order
        hits += bool(expected)
    assert hits > len(queries) // 2  # most queries match something: the comparison is not vacuous


_ALPHABET = "ab*?[]^!-"


@given(st.lists(st.tuples(st.text(_ALPHABET, max_size=6), st.sampled_from("xyz")), max_size=12),
       st.text("ab[]-^!*?", max_size=6))  # fmt: skip
def test_index_equals_naive_on_any_patterns(pairs: list[tuple[str, str]], name: str) -> None:
    assert AliasIndex(pairs).match(name) == _naive(pairs, name)


@given(st.lists(st.tuples(st.text("ab*", max_size=10), st.sampled_from("xyz")), max_size=12),
       st.text("ab", max_size=14))  # fmt: skip
def test_star_only_patterns_match_as_fnmatch_does(pairs: list[tuple[str, str]], name: str) -> None:
    # patterns whose only wildcard is * are matched piece by piece, without fnmatch: the same answers
    assert AliasIndex(pairs).match(name) == _naive(pairs, name)
