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
from vmapsim.errors import InvalidArgument
from vmapsim.loader import stages as s
from vmapsim.profiles import KernelProfile

__all__ = [
    "KREAD_DEDUP",
    "PAGE_LIST",
    "PIPELINES",
    "V6_3",
    "V6_4",
    "V6_5",
    "Pipeline",
    "by_name",
    "concurrency_limit",
    "exclusive_deny",
]


@attrs.frozen
class Pipeline:
    """A load path: ``stages`` in order; ``idempotent``: concurrent finit_module() of one inode share a result.

    ``generation`` is ``"module_layout"`` (core + init, ≤ 6.3) or
    ``"module_memory"`` (one area per type, ≥ 6.4); ``profile`` the vmap
    allocator it runs on.
    """

    name: str
    stages: tuple[s.Stage, ...]
    idempotent: bool = False
    generation: str = "module_memory"
    profile: KernelProfile = profiles.LINUX_6_3


_TAIL = (s.LayoutAndAllocate(), s.AddUnformed(), s.CompleteFormation(), s.FreeCopy(), s.Init())
_FRONT = (s.Read(), s.Decompress(), s.SignatureCheck(), s.ElfValidate())

#: Up to 6.3: the only duplicate check is add_unformed_module(), after the module memory is allocated.
V6_3 = Pipeline("v6.3", (*_FRONT, *_TAIL), generation="module_layout")
#: 6.4: early_mod_check() looks for an existing module before layout (064f4536d139); one area per type.
V6_4 = Pipeline("v6.4", (*_FRONT, s.ExistenceCheck(), *_TAIL))
#: 6.5+: concurrent finit_module() of the same inode wait for the first one's result (9b9879fc0327).
V6_5 = Pipeline("v6.5", V6_4.stages, idempotent=True, profile=profiles.LINUX_6_5)
#: Luis Chamberlain's RFC 2/2: a read of a path already being loaded fails with -EBUSY before allocating.
KREAD_DEDUP = Pipeline("kread-dedup", (s.Read(dedup="path"), *V6_4.stages[1:]))
#: Rick Edgecombe's idea: read, decompress, check on a page list; vmap() only after the existence check.
PAGE_LIST = Pipeline(
    "page-list",
    (s.Read(pages=True), s.Decompress(pages=True), s.SignatureCheck(), s.ElfValidate(), s.ExistenceCheck(),
     s.MapPages(), *_TAIL),
)  # fmt: skip


def exclusive_deny() -> Pipeline:
    """v6.4-rc4's 9828ed3f695a (reverted): a second reader of a file being read gets -ETXTBSY."""
    return Pipeline("exclusive-deny", (s.Read(dedup="exclusive"), *V6_4.stages[1:]))


def concurrency_limit(n: int = 50) -> Pipeline:
    """v6.4 with at most ``n`` loads past the limiter at once (Linus's 50-slot sketch by default)."""
    if n < 1:
        raise InvalidArgument(f"concurrency limit {n}: must be at least 1")
    return Pipeline(f"concurrency-limit-{n}" if n != 50 else "concurrency-limit", (s.ConcurrencyLimit(n), *V6_4.stages))


#: Every named pipeline, by name.
PIPELINES: dict[str, Pipeline] = {
    p.name: p for p in (V6_3, V6_4, V6_5, KREAD_DEDUP, PAGE_LIST, exclusive_deny(), concurrency_limit())
}


def by_name(name: str) -> Pipeline:
    """The named pipeline; :class:`InvalidArgument` naming it if unknown.  Runtime complexity: O(1).

    >>> by_name("v6.5").idempotent
    True
    """
    try:
        return PIPELINES[name]
    except KeyError:
        raise InvalidArgument(f"unknown pipeline {name!r}; known: {', '.join(PIPELINES)}") from None
