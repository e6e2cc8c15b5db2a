"""Named pipelines: the kernel variants and the proposals from the 2023 LKML threads, as data.

A :class:`Pipeline` is an ordered tuple of stages, the idempotent-finit_module
switch, the module-memory generation and the allocator profile it runs with.
Compose your own from the same stages:

>>> from vmapsim.loader import stages as s
>>> mine = Pipeline("v6.4+limit8", (s.ConcurrencyLimit(8), *V6_4.stages), generation="module_memory")
>>> [st.name for st in mine.stages][:3]
['concurrency_limit', 'read', 'decompress']
"""

from __future__ import annotations

import attrs

from vmapsim import profiles
from vmapsim.checks import by_value_or_name, integer
from vmapsim.errors import InvalidArgument
from vmapsim.loader import stages as s
from vmapsim.profiles import KernelProfile

__all__ = [
    "KREAD_DEDUP",
    "PAGE_LIST",
    "PIPELINES",
    "PROPOSALS",
    "ROX_CACHE",
    "V6_3",
    "V6_4",
    "V6_5",
    "Pipeline",
    "Proposal",
    "by_name",
    "concurrency_limit",
    "exclusive_deny",
    "for_kernel",
    "proposal_named",
]


@attrs.frozen
class Pipeline:
    """A load path: ``stages`` in order; ``idempotent``: concurrent finit_module() of one inode share a result.

    ``generation`` is ``"module_layout"`` (core + init, ≤ 6.3) or
    ``"module_memory"`` (one area per type, ≥ 6.4); ``profile`` the vmap
    allocator it runs on; ``execmem`` (6.10+) that module memory comes from
    ``execmem_alloc()``, which asks vmalloc with ``__GFP_NOWARN`` and prints its
    own line when it misses (``mm/execmem.c``, ``__execmem_alloc()``);
    ``rox_cache`` (6.15+, 64f6a4e10c05) that on a layout with
    ``execmem_rox`` module text is carved from execmem's cache of 2 MiB ROX
    chunks (:class:`vmapsim.execmem.RoxCache`).
    """

    name: str
    stages: tuple[s.Stage, ...]
    idempotent: bool = False
    generation: str = "module_memory"
    profile: KernelProfile = profiles.LINUX_6_3
    execmem: bool = False
    rox_cache: bool = False

    @property
    def early_check(self) -> bool:
        """Whether the path has 6.4's ``early_mod_check()`` existence check.  Runtime complexity: O(stages)."""
        return any(isinstance(st, s.ExistenceCheck) for st in self.stages)


_TAIL = (s.LayoutAndAllocate(), s.AddUnformed(), s.CompleteFormation(), s.FreeCopy(), s.Init())
_FRONT = (s.Read(), s.Decompress(), s.SignatureCheck(), s.ElfValidate())

#: Up to 6.3: the only duplicate check is add_unformed_module(), after the module memory is allocated.
V6_3 = Pipeline("v6.3", (*_FRONT, *_TAIL), generation="module_layout")
#: 6.4: early_mod_check() looks for an existing module before layout (064f4536d139); one area per type.
V6_4 = Pipeline("v6.4", (*_FRONT, s.ExistenceCheck(), *_TAIL))
#: 6.5+: concurrent finit_module() of the same inode wait for the first one's result (9b9879fc0327).
V6_5 = Pipeline("v6.5", V6_4.stages, idempotent=True, profile=profiles.LINUX_6_5)


@attrs.frozen
class Proposal:
    """An unmerged change to the load path, applied on top of a kernel's own path by :meth:`apply`.

    ``replace`` stages take the place of the base's stage of the same name,
    ``before`` stages go in front, and ``after_check`` stages right after the
    6.4 existence check (a base without one is refused).

    >>> PROPOSALS["kread-dedup"].apply(for_kernel("6.12")).name
    '6.12+kread-dedup'
    """

    name: str
    replace: tuple[s.Stage, ...] = ()
    before: tuple[s.Stage, ...] = ()
    after_check: tuple[s.Stage, ...] = ()

    def applies_to(self, base: Pipeline) -> bool:
        """Whether ``base`` has what this change works on (the 6.4 existence check, for ``after_check``).

        Runtime complexity: O(stages).
        """
        return not self.after_check or base.early_check

    def apply(self, base: Pipeline, name: str | None = None) -> Pipeline:
        """``base`` with this change; named ``base+proposal`` unless ``name`` is given.  Runtime: O(stages)."""
        if not self.applies_to(base):
            raise InvalidArgument(f"{self.name} works after the 6.4 existence check, which {base.name} does not have")
        by_name = {st.name: st for st in self.replace}
        stages: list[s.Stage] = list(self.before)
        for st in base.stages:
            stages.append(by_name.get(st.name, st))
            if isinstance(st, s.ExistenceCheck):
                stages += self.after_check
        return attrs.evolve(base, name=name or f"{base.name}+{self.name}", stages=tuple(stages))


#: The proposals of the 2023 threads, by name; each was posted against 6.4-rc (``V6_4``).
PROPOSALS: dict[str, Proposal] = {
    p.name: p
    for p in (
        # Luis Chamberlain's RFC 2/2: a read of a path already being read fails with -EBUSY before allocating.
        Proposal("kread-dedup", replace=(s.Read(dedup="path"),)),
        # Rick Edgecombe's idea: read, decompress, check on a page list; vmap() only after the existence check.
        Proposal("page-list", replace=(s.Read(pages=True), s.Decompress(pages=True)), after_check=(s.MapPages(),)),
        # v6.4-rc4's 9828ed3f695a (reverted): a second reader of a file being read gets -ETXTBSY.
        Proposal("exclusive-deny", replace=(s.Read(dedup="exclusive"),)),
        # Linus's sketch: at most 50 loads past a limiter at once.
        Proposal("concurrency-limit", before=(s.ConcurrencyLimit(50),)),
    )
}

#: Luis Chamberlain's RFC 2/2 on the 6.4 path it was posted against.
KREAD_DEDUP = PROPOSALS["kread-dedup"].apply(V6_4, "kread-dedup")
#: Rick Edgecombe's page list on the 6.4 path.
PAGE_LIST = PROPOSALS["page-list"].apply(V6_4, "page-list")


def exclusive_deny() -> Pipeline:
    """v6.4-rc4's 9828ed3f695a (reverted): a second reader of a file being read gets -ETXTBSY."""
    return PROPOSALS["exclusive-deny"].apply(V6_4, "exclusive-deny")


def concurrency_limit(n: int = 50) -> Pipeline:
    """v6.4 with at most ``n`` loads past the limiter at once (Linus's 50-slot sketch by default)."""
    integer("n", n, 1)
    limit = attrs.evolve(PROPOSALS["concurrency-limit"], before=(s.ConcurrencyLimit(n),))
    return limit.apply(V6_4, f"concurrency-limit-{n}" if n != 50 else "concurrency-limit")


#: Every named pipeline, by name: the three kernel paths as released, and the proposals on 6.4.
PIPELINES: dict[str, Pipeline] = {
    p.name: p for p in (V6_3, V6_4, V6_5, KREAD_DEDUP, PAGE_LIST, exclusive_deny(), concurrency_limit())
}

#: The newest release whose load path and execmem vmapsim's model was read from (Debian 13 backports' 7.3.4).
NEWEST = (7, 3)
#: The first release whose x86-64 module text comes from execmem's ROX cache (64f6a4e10c05).
ROX_CACHE = (6, 15)


def for_kernel(version: str, proposal: str | Proposal | None = None) -> Pipeline:
    """The load path of kernel ``version`` (``"6.12"``, ``"6.1.0-56-amd64"``...), with a proposal on top.

    The version picks the path (≤ 6.3: duplicates caught only in
    ``add_unformed_module()``; 6.4: ``early_mod_check()``; 6.5+: idempotent
    ``finit_module()``), the module-memory generation (6.4's ``mod->mem[]``),
    the allocator profile (:func:`vmapsim.profiles.for_version`), from 6.10
    execmem's failure reporting and from 6.15 its ROX cache for module text.
    Runtime complexity: O(stages).

    >>> p = for_kernel("6.12")
    >>> p.name, p.idempotent, p.profile.name, p.execmem, p.rox_cache
    ('6.12', True, '6.11', True, False)
    >>> for_kernel("7.3").rox_cache
    True
    >>> for_kernel("6.1", "kread-dedup").generation
    'module_layout'
    """
    key = profiles.release(version)
    profile = profiles.for_version(version)  # refuses what is older than the allocator model
    if key > NEWEST:
        raise InvalidArgument(
            f"kernel {version}: newer than {NEWEST[0]}.{NEWEST[1]}, the newest release whose load path and "
            "execmem vmapsim models"
        )
    base = V6_3 if key < (6, 4) else V6_4 if key < (6, 5) else V6_5
    path = attrs.evolve(base, name=f"{key[0]}.{key[1]}", profile=profile, execmem=key >= (6, 10),
                        rox_cache=key >= ROX_CACHE)  # fmt: skip
    if proposal is None:
        return path
    if isinstance(proposal, str) and ":" in proposal:
        named = proposal_named(proposal)
        assert named is not None  # as in by_name()
        return named.apply(path)
    return by_value_or_name("proposal", proposal, PROPOSALS, Proposal, "proposals").apply(path)


def proposal_named(name: str) -> Proposal | None:
    """The proposal ``name`` names, parameters included (``concurrency-limit:8``: 8 slots), or None when
    it names no proposal.  :class:`InvalidArgument` for a bad parameter.  Runtime complexity: O(1).

    >>> proposal_named("concurrency-limit:8").before, proposal_named("v6.4")
    ((ConcurrencyLimit(limit=8),), None)
    """
    base, sep, arg = name.partition(":") if isinstance(name, str) else (name, "", "")
    if not sep:
        return PROPOSALS.get(base) if isinstance(base, str) else None
    if base != "concurrency-limit":
        raise InvalidArgument(f"pipeline {name!r}: only concurrency-limit takes a parameter (concurrency-limit:N)")
    if not (arg.isdigit() and len(arg) <= 6 and int(arg) >= 1):
        raise InvalidArgument(f"pipeline {name!r}: expected concurrency-limit:N with N from 1 to 999999")
    return attrs.evolve(PROPOSALS[base], name=name, before=(s.ConcurrencyLimit(int(arg)),))


def by_name(name: str) -> Pipeline:
    """The named pipeline (``concurrency-limit:N`` with N slots); :class:`InvalidArgument` naming it if
    unknown.  Runtime complexity: O(1).

    >>> by_name("v6.5").idempotent, by_name("concurrency-limit:8").name
    (True, 'concurrency-limit:8')
    """
    if isinstance(name, str) and ":" in name:
        prop = proposal_named(name)
        assert prop is not None  # a name with a parameter is a proposal's, or proposal_named() raised
        return prop.apply(V6_4, name)
    try:
        return PIPELINES[name]
    except KeyError:
        raise InvalidArgument(f"unknown pipeline {name!r}; known: {', '.join(PIPELINES)}") from None
