"""Load paths as data: each kernel version's own path, and the proposals of the 2023 LKML threads on top.

A :class:`Pipeline` is an ordered tuple of stages, the idempotent-finit_module
switch, the module-memory generation and the allocator profile it runs with,
plus what it is: the kernel release whose own path it is, the :class:`Proposal`
on top (if any), and a one-line summary.  What a path changes against another
is :attr:`Pipeline.changes`: :class:`Change` values that say where they come
from and which syscalls they can act on, so descriptions and verdicts are
computed from data, never from names.

``v6.3``, ``v6.4`` and ``v6.5`` name the own paths of 6.3, 6.4 and 6.5;
:func:`load_path` turns a kernel and a pipeline, as a user names them, into one
path (``kernel="6.3", pipeline="v6.3"`` agree; ``kernel="6.12", pipeline="v6.3"``
is a :class:`PathConflict`).  Compose your own from the same stages:

>>> from vmapsim.loader import stages as s
>>> mine = Pipeline("v6.4+limit8", (s.ConcurrencyLimit(8), *V6_4.stages), kernel="6.4")
>>> [st.name for st in mine.stages][:3]
['concurrency_limit', 'read', 'decompress']
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs

from vmapsim import profiles
from vmapsim.checks import by_value_or_name, flag, integer, parse_number, release, show, text
from vmapsim.errors import InvalidArgument
from vmapsim.loader import stages as s
from vmapsim.loader.request import Syscall
from vmapsim.modules.layout import Generation
from vmapsim.profiles import KernelProfile

__all__ = [
    "DECOMPRESS",
    "EARLY_CHECK",
    "IDEMPOTENT",
    "KREAD_DEDUP",
    "PAGE_LIST",
    "PIPELINES",
    "PROPOSALS",
    "RELEASED",
    "ROX_CACHE",
    "V6_3",
    "V6_4",
    "V6_5",
    "Change",
    "PathConflict",
    "Pipeline",
    "Proposal",
    "by_name",
    "concurrency_limit",
    "exclusive_deny",
    "for_kernel",
    "load_path",
    "proposal_named",
    "selection",
]

_BOTH = frozenset(Syscall)
_FINIT = frozenset({Syscall.FINIT_MODULE})


@attrs.frozen
class Change:
    """One change to how the kernel handles duplicate loads: what it does, where it comes from (a commit, or
    the thread of an unmerged proposal), and which syscalls it can act on.

    ``acts_on`` matters for verdicts: kmod < 31 calls ``init_module(2)`` with an image it decompressed
    itself, so a change made in ``finit_module()``'s read or decompression never runs for it.

    >>> IDEMPOTENT.finit_only(), EARLY_CHECK.line()
    (True, 'early_mod_check() refuses a duplicate before layout_and_allocate() (064f4536d139)')
    """

    name: str
    description: str
    source: str
    acts_on: frozenset[Syscall] = _BOTH

    def line(self) -> str:
        """The description and its source, in one line.  Runtime complexity: O(1)."""
        return f"{self.description} ({self.source})"

    def finit_only(self) -> bool:
        """Whether only ``finit_module(2)`` reaches this change.  Runtime complexity: O(1)."""
        return Syscall.INIT_MODULE not in self.acts_on


#: 6.4: ``early_mod_check()`` looks for the module before ``layout_and_allocate()`` (kernel/module/main.c).
EARLY_CHECK = Change("early_mod_check", "early_mod_check() refuses a duplicate before layout_and_allocate()",
                     "064f4536d139")  # fmt: skip
#: 6.5: ``idempotent_init_module()``: concurrent ``finit_module()`` of one inode share the first's result.
IDEMPOTENT = Change("idempotent", "concurrent finit_module() of one file wait for the first and share its result",
                    "9b9879fc0327", _FINIT)  # fmt: skip


@attrs.frozen
class Proposal:
    """An unmerged change to the load path, applied on top of a kernel's own path by :meth:`apply`.

    ``description``, ``source`` and ``acts_on`` say what it does, where it was posted and which syscalls
    reach it (:attr:`change`).  ``replace`` stages take the place of the base's stage of the same name,
    ``before`` stages go in front, and ``after_check`` stages right after the 6.4 existence check (a
    base without one is refused).

    >>> PROPOSALS["kread-dedup"].apply(for_kernel("6.12")).name
    '6.12+kread-dedup'
    """

    name: str
    description: str
    source: str
    acts_on: frozenset[Syscall] = _BOTH
    replace: tuple[s.Stage, ...] = ()
    before: tuple[s.Stage, ...] = ()
    after_check: tuple[s.Stage, ...] = ()

    @property
    def change(self) -> Change:
        """This proposal as a :class:`Change`.  Runtime complexity: O(1)."""
        return Change(self.name, self.description, self.source, self.acts_on)

    def applies_to(self, base: Pipeline) -> bool:
        """Whether ``base`` has what this change works on (the 6.4 existence check, for ``after_check``).

        Runtime complexity: O(stages).
        """
        return not self.after_check or base.early_check

    def apply(self, base: Pipeline, name: str | None = None) -> Pipeline:
        """``base`` with this change, named ``base+proposal``; with ``name``, the proposal as posted (on the
        path it was posted against), named and summed up as the proposal alone.  Runtime: O(stages)."""
        if not self.applies_to(base):
            raise InvalidArgument(f"{self.name} works after the 6.4 existence check, which {base.name} does not have")
        by_name = {st.name: st for st in self.replace}
        stages: list[s.Stage] = list(self.before)
        for st in base.stages:
            stages.append(by_name.get(st.name, st))
            if isinstance(st, s.ExistenceCheck):
                stages += self.after_check
        summary = self.change.line() if name else f"{base.summary}; with {self.name}: {self.change.line()}"
        return attrs.evolve(base, name=name or f"{base.name}+{self.name}", stages=tuple(stages), proposal=self,
                            summary=summary, base=base)  # fmt: skip


def _generation(value: Generation | str) -> Generation:
    return Generation.of(value)


@attrs.frozen
class Pipeline:
    """A load path: ``stages`` in order; ``idempotent``: concurrent finit_module() of one inode share a result.

    ``kernel`` is the release whose own path this is (or, with ``proposal``, the path the proposal sits
    on); ``summary`` one line on what it does.  ``generation`` is ``"module_layout"`` (core + init,
    ≤ 6.3) or ``"module_memory"`` (one area per type, ≥ 6.4); ``profile`` the vmap allocator it runs on;
    ``execmem`` (6.10+) that module memory comes from ``execmem_alloc()``, which asks vmalloc with
    ``__GFP_NOWARN`` and prints its own line when it misses (``mm/execmem.c``, ``__execmem_alloc()``);
    ``rox_cache`` (6.15+, 64f6a4e10c05) that on a layout with ``execmem_rox`` module text is carved
    from execmem's cache of 2 MiB ROX chunks (:class:`vmapsim.execmem.RoxCache`).
    """

    name: str
    stages: tuple[s.Stage, ...]
    idempotent: bool = False
    generation: Generation = attrs.field(default=Generation.MODULE_MEMORY, converter=_generation)
    profile: KernelProfile = profiles.LINUX_6_3
    execmem: bool = False
    rox_cache: bool = False
    kernel: str = "6.4"
    proposal: Proposal | None = None
    summary: str = ""
    #: With ``proposal``, the path it was applied to (not part of what a path is: equality ignores it).
    base: Pipeline | None = attrs.field(default=None, eq=False, repr=False)

    def __attrs_post_init__(self) -> None:
        if not text("name", self.name):
            raise InvalidArgument("a pipeline's name is empty")
        if not isinstance(self.stages, tuple) or not all(isinstance(st, s.Stage) for st in self.stages):
            raise InvalidArgument(f"pipeline {self.name!r}: stages={show(self.stages)}: expected a tuple of stages")
        for name in ("idempotent", "execmem", "rox_cache"):
            flag(name, getattr(self, name))
        if not isinstance(self.profile, KernelProfile):
            raise InvalidArgument(f"pipeline {self.name!r}: profile={show(self.profile)}: expected a KernelProfile")
        release(self.kernel)
        if self.proposal is not None and not isinstance(self.proposal, Proposal):
            raise InvalidArgument(f"pipeline {self.name!r}: proposal={show(self.proposal)}: expected a Proposal")
        if self.base is not None and not isinstance(self.base, Pipeline):
            raise InvalidArgument(f"pipeline {self.name!r}: base={show(self.base)}: expected a Pipeline")
        text("summary", self.summary)

    def as_seen_by(self, syscalls: frozenset[Syscall]) -> Pipeline:
        """The path as loads made only by ``syscalls`` meet it: a proposal none of them reaches taken off (its
        :attr:`Proposal.acts_on`) where it only replaces stages, 6.5's idempotence gone without
        ``finit_module()``.  Two paths that look the same to a workload's syscalls (:meth:`same_as`) give it the
        same run.  Runtime complexity: O(stages).

        >>> by_name("kread-dedup").as_seen_by(frozenset({Syscall.INIT_MODULE})).same_as(V6_4)
        True
        """
        path = self
        while path.proposal is not None and path.base is not None and not path.proposal.acts_on & syscalls:
            if path.proposal.before or path.proposal.after_check:
                break  # stages of its own: entered (and timed) by every load, whatever they do
            path = path.base
        if path.idempotent and Syscall.FINIT_MODULE not in syscalls:
            path = attrs.evolve(path, idempotent=False)
        return path

    def same_as(self, other: Pipeline, *, blocks: bool = True) -> bool:
        """Whether the two paths run loads alike: the same stages, idempotence, module memory, execmem and
        allocator rules, whatever their names and summaries; without ``blocks`` (a run that makes no vmap
        block), the rules that act on vmap blocks alone (:data:`~vmapsim.profiles.BLOCK_RULES`) may differ.
        Runtime complexity: O(stages).

        >>> V6_5.same_as(V6_4), V6_5.as_seen_by(frozenset({Syscall.INIT_MODULE})).same_as(V6_4, blocks=False)
        (False, True)
        """
        return (self.stages, self.idempotent, self.generation, self.execmem, self.rox_cache) == (
            other.stages, other.idempotent, other.generation, other.execmem, other.rox_cache
        ) and self.profile.rules(blocks=blocks) == other.profile.rules(blocks=blocks)

    @property
    def decompresses(self) -> bool:
        """Whether ``finit_module()`` takes compressed files (``module_decompress()``, 5.17+).

        Runtime complexity: O(stages).
        """
        return any(isinstance(st, s.Decompress) for st in self.stages)

    @property
    def early_check(self) -> bool:
        """Whether the path has 6.4's ``early_mod_check()`` existence check.  Runtime complexity: O(stages)."""
        return any(isinstance(st, s.ExistenceCheck) for st in self.stages)

    @property
    def changes(self) -> tuple[Change, ...]:
        """What this path does about duplicates beyond 6.3's ``add_unformed_module()``: the kernel's own
        fixes it has, then its proposal.  Runtime complexity: O(stages).

        >>> [c.name for c in PIPELINES["kread-dedup"].changes], V6_3.changes
        (['early_mod_check', 'kread-dedup'], ())
        """
        own = tuple(c for c, has in ((EARLY_CHECK, self.early_check), (IDEMPOTENT, self.idempotent)) if has)
        return own + ((self.proposal.change,) if self.proposal else ())


_TAIL = (s.LayoutAndAllocate(), s.AddUnformed(), s.CompleteFormation(), s.FreeCopy(), s.Init())
_FRONT = (s.Read(), s.Decompress(), s.SignatureCheck(), s.ElfValidate())

#: Up to 6.3: the only duplicate check is add_unformed_module(), after the module memory is allocated.
V6_3 = Pipeline("v6.3", (*_FRONT, *_TAIL), generation=Generation.MODULE_LAYOUT, kernel="6.3",
                summary="duplicates are refused only by add_unformed_module(), after their module memory is "
                "allocated, as on every kernel before 6.4: the long-term 5.10, 5.15 and 6.1 too")  # fmt: skip
#: 6.4: early_mod_check() looks for an existing module before layout (064f4536d139); one area per type.
V6_4 = Pipeline("v6.4", (*_FRONT, s.ExistenceCheck(), *_TAIL), kernel="6.4", summary=EARLY_CHECK.line())
#: 6.5+: concurrent finit_module() of the same inode wait for the first one's result (9b9879fc0327).
V6_5 = Pipeline("v6.5", V6_4.stages, idempotent=True, profile=profiles.LINUX_6_5, kernel="6.5",
                summary=IDEMPOTENT.line())  # fmt: skip
#: The own paths of 6.3, 6.4 and 6.5 as released, by the names that run them without ``kernel``.
RELEASED: dict[str, Pipeline] = {p.name: p for p in (V6_3, V6_4, V6_5)}


def _limit(n: int, name: str = "concurrency-limit") -> Proposal:
    """Linus's sketch in the thread: at most ``n`` loads past a limiter at once (he suggested 50)."""
    return Proposal(name, f"at most {n} loads past a limiter at once", "a sketch in the thread, unmerged",
                    before=(s.ConcurrencyLimit(n),))  # fmt: skip


#: The proposals of the 2023 threads, by name; each was posted against 6.4-rc (``V6_4``).  Only
#: ``finit_module()`` reads and decompresses in the kernel, so the read-side ones act on it alone.
PROPOSALS: dict[str, Proposal] = {
    p.name: p
    for p in (
        # Luis Chamberlain's RFC 2/2.
        Proposal("kread-dedup", "a second read of a path being loaded fails with -EBUSY before allocating",
                 "RFC, unmerged", _FINIT, replace=(s.Read(dedup="path"),)),
        # Rick Edgecombe's idea: read, decompress, check on a page list.
        Proposal("page-list", "read and decompress into pages, vmap() only after the existence check",
                 "proposal, unmerged", _FINIT, replace=(s.Read(pages=True), s.Decompress(pages=True)),
                 after_check=(s.MapPages(),)),
        # Merged in v6.4-rc4, reverted before 6.4.
        Proposal("exclusive-deny", "a second reader of a file being read gets -ETXTBSY", "9828ed3f695a, reverted",
                 _FINIT, replace=(s.Read(dedup="exclusive"),)),
        _limit(50),
    )
}  # fmt: skip

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
    name = "concurrency-limit" if n == 50 else f"concurrency-limit:{n}"  # as proposal_named() spells it
    return _limit(n, name).apply(V6_4, name)


#: Every named pipeline, by name: the three kernel paths as released, and the proposals on 6.4.
PIPELINES: dict[str, Pipeline] = {
    p.name: p for p in (V6_3, V6_4, V6_5, KREAD_DEDUP, PAGE_LIST, exclusive_deny(), concurrency_limit())
}

#: The first release whose x86-64 module text comes from execmem's ROX cache (64f6a4e10c05).
ROX_CACHE = (6, 15)
#: The first release whose ``finit_module()`` decompresses (``CONFIG_MODULE_DECOMPRESS``, 169a58ad824d).
DECOMPRESS = (5, 17)


def _own_summary(release: str, idempotent: bool, early_check: bool) -> str:
    own = ("idempotent finit_module() (6.5) after early_mod_check() (6.4)" if idempotent else
           "early_mod_check() (6.4)" if early_check else "duplicates refused only by add_unformed_module()")
    return f"{release}'s own path: {own}"  # fmt: skip


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
    >>> for_kernel("6.1", "kread-dedup").generation.value
    'module_layout'
    """
    key = profiles.kernel_release(version)  # refuses what is older or newer than the model
    profile = profiles.for_version(version)
    base = V6_3 if key < (6, 4) else V6_4 if key < (6, 5) else V6_5
    name = f"{key[0]}.{key[1]}"
    stages = base.stages if key >= DECOMPRESS else (s.FinitFlags(), *(st for st in base.stages
                                                                      if not isinstance(st, s.Decompress)))
    path = attrs.evolve(base, name=name, stages=stages, profile=profile, execmem=key >= (6, 10),
                        rox_cache=key >= ROX_CACHE, kernel=name,
                        summary=_own_summary(name, base.idempotent, base.early_check))  # fmt: skip
    if proposal is None:
        return path
    if isinstance(proposal, Proposal):
        return proposal.apply(path)
    named = proposal_named(proposal) if isinstance(proposal, str) else None
    if named is None:
        named = by_value_or_name("proposal", proposal, PROPOSALS, Proposal, "proposals")
    return named.apply(path)


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
    return _limit(parse_number(arg, what=f"pipeline {show(name)}: concurrency-limit's N", decimal=True, lo=1,
                               hi=s.MAX_SLOTS), name)


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
    except (KeyError, TypeError):
        raise InvalidArgument(f"unknown pipeline {show(name)}; known: {', '.join(PIPELINES)}") from None


class PathConflict(InvalidArgument):
    """A kernel and a pipeline that name two different load paths (``kernel="6.12"``, ``pipeline="v6.3"``).

    ``kernel`` and ``pipeline`` are the two as given and ``why`` says how they disagree, so a command can
    name its own options.
    """

    def __init__(self, kernel: str, pipeline: str, why: str) -> None:
        super().__init__(f"kernel={kernel!r} and pipeline={pipeline!r} disagree: {why}")
        self.kernel, self.pipeline, self.why = kernel, pipeline, why


def load_path(kernel: str | None, pipeline: str | Pipeline | None, *, default_kernel: str) -> Pipeline:
    """The one load path a kernel and a pipeline name together; the one rule every run and command uses.

    ``pipeline`` is None (the kernel's own path), a proposal's name (on the kernel's path; without a
    kernel, on the 6.4 path it was posted against, as posted), the name of a released path (``v6.3``,
    ``v6.4``, ``v6.5``: 6.3's, 6.4's, 6.5's own path, which agrees with that kernel or with none) or a
    :class:`Pipeline` value (a whole path; a kernel beside it must be its release).  With neither, the
    path is ``default_kernel``'s own.  A disagreement is a :class:`PathConflict`; an unknown name an
    :class:`InvalidArgument` naming it.  Runtime complexity: O(stages).

    >>> load_path("6.3", "v6.3", default_kernel="6.12") is V6_3
    True
    >>> load_path(None, "kread-dedup", default_kernel="6.12").name
    'kread-dedup'
    >>> load_path("6.12", "v6.3", default_kernel="6.12")
    Traceback (most recent call last):
    vmapsim.loader.pipelines.PathConflict: kernel='6.12' and pipeline='v6.3' disagree: v6.3 is 6.3's own load path; ...
    """
    if isinstance(pipeline, Pipeline):
        if kernel is not None and profiles.release(kernel) != profiles.release(pipeline.kernel):
            raise PathConflict(kernel, pipeline.name, f"{pipeline.name} is a whole load path on {pipeline.kernel}")
        return pipeline
    if pipeline is not None and not isinstance(pipeline, str):
        raise InvalidArgument(f"pipeline={show(pipeline)}: expected a Pipeline or a pipeline's name")
    proposal = proposal_named(pipeline) if pipeline is not None else None
    if pipeline is not None and proposal is None:
        released = by_name(pipeline)  # raises, naming the known ones
        if kernel is not None and profiles.release(kernel) != profiles.release(released.kernel):
            raise PathConflict(kernel, pipeline, f"{pipeline} is {released.kernel}'s own load path; on {kernel} give "
                               f"a proposal ({', '.join(PROPOSALS)}) or no pipeline")  # fmt: skip
        return released
    if kernel is None and proposal is not None:
        return by_name(str(pipeline))  # as posted, on the 6.4 path
    return for_kernel(kernel or default_kernel, proposal)


def selection(kernels: Sequence[str | None], pipelines: str | Sequence[str | None] = "all") -> list[
        tuple[str | None, str | None]]:  # fmt: skip
    """The (kernel, pipeline) pairs that ``kernels`` and ``pipelines`` ask for, in order: what ``vmapsim
    boot``, ``load``, ``sweep`` and ``compare`` run by default and on ``--kernel``/``--pipeline``.

    ``"all"``: without a kernel (None) every named pipeline (the released paths, then the proposals as
    posted); with one, its own path and every proposal that applies to it.  Otherwise each pipeline on
    each kernel (a pair that disagrees is refused later, by :func:`load_path`).  Runtime: O(pairs).

    >>> selection([None])[:3]
    [(None, 'v6.3'), (None, 'v6.4'), (None, 'v6.5')]
    >>> selection(["6.3"])  # page-list needs 6.4's existence check
    [('6.3', None), ('6.3', 'kread-dedup'), ('6.3', 'exclusive-deny'), ('6.3', 'concurrency-limit')]
    """
    if isinstance(pipelines, str) and pipelines != "all":
        pipelines = (pipelines,)
    out: list[tuple[str | None, str | None]] = []
    for kernel in kernels:
        if pipelines != "all":
            out += [(kernel, p) for p in pipelines]
        elif kernel is None:
            out += [(None, name) for name in PIPELINES]
        else:  # page-list needs the existence check, which a kernel before 6.4 does not have
            base = for_kernel(kernel)
            out += [(kernel, None), *((kernel, n) for n, prop in PROPOSALS.items() if prop.applies_to(base))]
    return out
