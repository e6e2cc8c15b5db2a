"""Hypothesis strategies for vmapsim inputs, in Hypothesis' own API style, and a state machine.

Use them to property-test code built on vmapsim:

>>> from hypothesis import given
>>> @given(space=spaces(), size=vmalloc_sizes())
... def test_vmalloc_has_guard(space, size):
...     addr = space.vmalloc(size)
...     assert space.area(addr).size >= size + 4096
>>> test_vmalloc_has_guard()

Strategies take keyword-only arguments with defaults and check them when called, so a bad argument is a
:class:`~vmapsim.errors.InvalidArgument` at once, not a failure deep in a test.  :class:`VmapSpaceMachine`
is a ``RuleBasedStateMachine`` over one space whose invariants are the space's own; run it with
``VmapSpaceMachine.TestCase`` or subclass it to add rules.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import attrs
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from vmapsim import layouts as _layouts
from vmapsim import profiles as _profiles
from vmapsim.checks import integer, number, show
from vmapsim.errors import InvalidArgument, VmapAllocationError
from vmapsim.layouts import Layout
from vmapsim.loader import Request, Schedule
from vmapsim.loader.request import SYSCALLS
from vmapsim.modules import Catalog, ModuleImage
from vmapsim.profiles import KernelProfile
from vmapsim.space import VmapSpace
from vmapsim.units import PAGE_SIZE

__all__ = [
    "Operation",
    "VmapSpaceMachine",
    "alignments",
    "catalogs",
    "kernel_profiles",
    "layouts",
    "module_images",
    "operations",
    "requests",
    "schedules",
    "spaces",
    "vmalloc_sizes",
    "workloads",
]


def layouts() -> st.SearchStrategy[Layout]:
    """Any shipped layout, or an i386 layout with a random ``vmalloc=`` window.

    >>> from hypothesis import find
    >>> find(layouts(), lambda lay: True).name  # the simplest: the first by name
    'arm64_48'
    """
    fixed = st.sampled_from(sorted(_layouts.LAYOUTS.values(), key=lambda lay: lay.name))
    return fixed | st.integers(16, 256).map(lambda mib: _layouts.i386(vmalloc=mib << 20))


def kernel_profiles() -> st.SearchStrategy[KernelProfile]:
    """Any kernel profile (5.4 to 6.16+)."""
    return st.sampled_from(_profiles.PROFILES)


def vmalloc_sizes(max_pages: int = 1100) -> st.SearchStrategy[int]:
    """Byte sizes from 1 to ``max_pages`` pages, often not page multiples."""
    return st.integers(1, max_pages * PAGE_SIZE)


def alignments(max_order: int = 22) -> st.SearchStrategy[int]:
    """Powers of two from 1 to ``2**max_order`` bytes."""
    return st.integers(0, max_order).map(lambda k: 1 << k)


def spaces(
    layout: st.SearchStrategy[Layout] | None = None,
    cpus: st.SearchStrategy[int] | None = None,
    profile: st.SearchStrategy[KernelProfile] | None = None,
) -> st.SearchStrategy[VmapSpace]:
    """Fresh :class:`~vmapsim.VmapSpace` objects over the given (or any) layout, CPUs and profile."""
    return st.builds(
        VmapSpace,
        layout if layout is not None else layouts(),
        cpus=cpus if cpus is not None else st.integers(1, 512),
        profile=profile if profile is not None else kernel_profiles(),
    )


#: What an :class:`Operation` may call.
OPERATIONS = ("vmalloc", "vmap", "vm_map_ram", "ioremap", "free", "purge", "vm_unmap_aliases")


@attrs.frozen
class Operation:
    """One call on a :class:`~vmapsim.VmapSpace`, as a value: an allocation, a purge, or the free of a
    live allocation (the ``index``-th, modulo how many are live; nothing when none is).

    :meth:`apply` makes the call; an allocation that does not fit is an outcome, not an error.

    >>> space, live = VmapSpace(_layouts.X86_64), []
    >>> Operation("vmalloc", 5000).apply(space, live); Operation("free").apply(space, live); live
    []
    """

    name: str
    size: int = PAGE_SIZE
    align: int = 1
    cpu: int = 0
    index: int = 0

    def __attrs_post_init__(self) -> None:
        if self.name not in OPERATIONS:
            raise InvalidArgument(f"name={show(self.name)}: expected one of {', '.join(OPERATIONS)}")
        integer("size", self.size, 1)
        integer("align", self.align, 1)
        integer("cpu", self.cpu, 0)
        integer("index", self.index, 0)

    def apply(self, space: VmapSpace, live: list[tuple[str, int, int]]) -> None:
        """Call it on ``space``; ``live`` holds (call, address, pages) of what is allocated.  O(the call)."""
        name, cpu = self.name, self.cpu % space.cpus
        try:
            if name == "vmalloc":
                live.append((name, space.vmalloc(self.size, align=self.align, cpu=cpu), 0))
            elif name == "vmap":
                live.append((name, space.vmap(max(1, self.size // PAGE_SIZE), cpu=cpu), 0))
            elif name == "vm_map_ram":
                pages = max(1, self.size // PAGE_SIZE)
                live.append((name, space.vm_map_ram(pages, cpu=cpu), pages))
            elif name == "ioremap":
                live.append((name, space.ioremap(self.size, cpu=cpu), 0))
            elif name == "free":
                if live:
                    call, addr, pages = live.pop(self.index % len(live))
                    if call == "vm_map_ram":
                        space.vm_unmap_ram(addr, pages)
                    else:
                        {"vmalloc": space.vfree, "vmap": space.vunmap, "ioremap": space.iounmap}[call](addr)
            else:
                getattr(space, name)()
        except VmapAllocationError:
            pass  # the window is full: the kernel's allocation fails the same way


def operations(*, max_pages: int = 600, max_cpu: int = 7) -> st.SearchStrategy[Operation]:
    """:class:`Operation` values: sizes up to ``max_pages`` pages, CPUs up to ``max_cpu`` (taken modulo the
    space's).  Runtime complexity: O(1) per draw.

    >>> from hypothesis import find
    >>> find(operations(max_pages=4), lambda op: op.name == "vmap").size
    1
    """
    integer("max_pages", max_pages, 1)
    integer("max_cpu", max_cpu, 0)
    return st.builds(
        Operation,
        st.sampled_from(OPERATIONS),
        size=vmalloc_sizes(max_pages),
        align=alignments(16),
        cpu=st.integers(0, max_cpu),
        index=st.integers(0, 1 << 16),
    )


def _catalog(catalog: Catalog | str) -> Catalog:
    if isinstance(catalog, str):
        return Catalog.builtin(catalog)
    if not isinstance(catalog, Catalog):
        raise InvalidArgument(f"catalog={show(catalog)}: expected a Catalog or a shipped catalog's name")
    return catalog


def module_images(*, catalog: Catalog | str = "debian-6.12-amd64") -> st.SearchStrategy[ModuleImage]:
    """Modules of a catalog (a shipped one by default), shrinking toward the first by name.

    Runtime complexity: O(modules) once, O(1) per draw.

    >>> from hypothesis import find
    >>> find(module_images(), lambda m: m.name.startswith("dm_")).name
    'dm_bio_prison'
    """
    cat = _catalog(catalog)
    return st.sampled_from(sorted(cat, key=lambda m: m.name))


def catalogs(
    *, catalog: Catalog | str = "debian-6.12-amd64", min_size: int = 1, max_size: int = 12
) -> st.SearchStrategy[Catalog]:
    """Subsets of a catalog holding ``min_size`` to ``max_size`` chosen modules and every module they depend
    on (so dependency lookups never fail).  Runtime complexity: O(modules) once, O(size · depth) per draw.

    >>> from hypothesis import find
    >>> sorted(m.name for m in find(catalogs(), lambda c: "dm_mod" in c))  # dm_bufio needs dm_mod
    ['dm_bufio', 'dm_mod']
    """
    cat = _catalog(catalog)
    integer("min_size", min_size, 1)
    integer("max_size", max_size, min_size)
    names = sorted(m.name for m in cat)

    def subset(chosen: list[str]) -> Catalog:
        keep = {m.name for name in chosen for m in cat.closure(name)}
        return attrs.evolve(cat, modules={n: cat[n] for n in sorted(keep)},
                            order=tuple(n for n in cat.order if n in keep))  # fmt: skip

    return st.lists(st.sampled_from(names), min_size=min_size, max_size=max_size, unique=True).map(subset)


def requests(
    *,
    modules: st.SearchStrategy[str] | Sequence[str] = ("loop", "dm_mod", "msr"),
    cpus: int = 4,
    max_time: float = 0.05,
) -> st.SearchStrategy[Request]:
    """:class:`~vmapsim.loader.Request` values: a module (names, or a strategy of names), a CPU below
    ``cpus``, an arrival in ``[0, max_time]`` seconds and either syscall.  Runtime: O(1) per draw.

    >>> from hypothesis import find
    >>> find(requests(cpus=2), lambda r: r.cpu == 1)
    Request(module='loop', cpu=1, time=0.0, path=None, inode=None, syscall='finit_module', init_errno=0, after=None)
    """
    integer("cpus", cpus, 1)
    number("max_time", max_time, 0)
    if isinstance(modules, st.SearchStrategy):
        names = modules
    elif isinstance(modules, str) or not isinstance(modules, Sequence) or not modules:
        raise InvalidArgument(f"modules={show(modules)}: expected module names or a strategy of them")
    else:
        names = st.sampled_from(list(modules))
    return st.builds(
        Request,
        names,
        cpu=st.integers(0, cpus - 1),
        time=st.floats(0, max_time, allow_nan=False),
        syscall=st.sampled_from(SYSCALLS),
    )


def workloads(
    *,
    modules: Sequence[str] = ("loop", "dm_mod", "msr"),
    cpus: int = 4,
    min_size: int = 1,
    max_size: int = 8,
    max_time: float = 0.05,
) -> st.SearchStrategy[list[Request]]:
    """Lists of :func:`requests`, ``min_size`` to ``max_size`` long, for ``simulate(..., cpus=cpus)``.

    Runtime complexity: O(size) per draw.

    >>> from hypothesis import find
    >>> [r.module for r in find(workloads(max_size=3), lambda w: len(w) == 3)]
    ['loop', 'loop', 'loop']
    """
    integer("min_size", min_size, 0)
    integer("max_size", max_size, min_size)
    return st.lists(requests(modules=modules, cpus=cpus, max_time=max_time), min_size=min_size, max_size=max_size)


def schedules(
    *, items: int, span: float = 0.05, bound: float = 0.25, max_factors: int = 32, max_choices: int = 16
) -> st.SearchStrategy[Schedule]:
    """:class:`~vmapsim.loader.Schedule` values for a workload of ``items`` requests or jobs: arrivals in
    ``[0, span]``, up to ``max_factors`` duration factors within ``1 ± bound`` (then a seeded jitter of
    ``bound``), up to ``max_choices`` tie-breaks.  Runtime complexity: O(items + factors) per draw.

    >>> from hypothesis import find
    >>> find(schedules(items=3), lambda s: s.choices).arrivals
    (0.0, 0.0, 0.0)
    """
    integer("items", items, 0)
    number("span", span, 0)
    number("bound", bound, 0, 0.99)
    integer("max_factors", max_factors, 0)
    integer("max_choices", max_choices, 0)
    times = st.floats(0, span, allow_nan=False)
    return st.builds(
        Schedule,
        arrivals=st.lists(times, min_size=items, max_size=items).map(tuple),
        factors=st.lists(st.floats(1 - bound, 1 + bound, allow_nan=False), max_size=max_factors).map(tuple),
        choices=st.lists(st.integers(0, 7), max_size=max_choices).map(tuple),
        jitter=st.just(bound),
        seed=st.integers(0, 2**32 - 1),
    )


class VmapSpaceMachine(RuleBasedStateMachine):
    """A Hypothesis state machine over one :class:`~vmapsim.VmapSpace`: any sequence of allocations, frees
    and purges, with the space's invariants checked after every step.

    Invariants: the busy, lazily freed, pooled and free ranges tile the kernel's address space; in each
    window busy + lazy + pooled is the pinned count and never above the peak; every live allocation is
    still a busy area.  ``layout`` is a class attribute a subclass may change; subclass it to add rules
    or invariants.

    >>> from hypothesis import settings
    >>> class Quick(VmapSpaceMachine):
    ...     pass
    >>> Quick.TestCase.settings = settings(max_examples=5, stateful_step_count=10, deadline=None)
    >>> Quick.TestCase().runTest()
    """

    #: A small window, so that allocations fail, purge and retry often.
    layout: Layout = _layouts.i386(vmalloc=8 << 20)

    def __init__(self) -> None:
        super().__init__()
        self.space: VmapSpace | None = None
        self.live: list[tuple[str, int, int]] = []

    @initialize(cpus=st.sampled_from([1, 2, 4]), profile=kernel_profiles())
    def start(self, cpus: int, profile: KernelProfile) -> None:
        """A fresh space."""
        self.space = VmapSpace(self.layout, cpus=cpus, profile=profile)

    @precondition(lambda self: self.space is not None)
    @rule(op=operations(max_pages=300))
    def call(self, op: Operation) -> None:
        """One operation on the space."""
        assert self.space is not None
        op.apply(self.space, self.live)

    @invariant()
    def ranges_tile_the_address_space(self) -> None:
        """Busy, lazy, pooled and free ranges: sorted, touching, covering up to the end of the KVA."""
        if self.space is None:
            return
        s = self.space
        ranges = sorted(s.busy_ranges() + s.lazy_ranges() + s.pooled_ranges() + s.free_ranges())
        assert all(a[1] == b[0] for a, b in itertools.pairwise(ranges)), "ranges overlap or leave a gap"
        assert ranges[-1][1] == s.layout.kva_end

    @invariant()
    def pinned_bytes_add_up(self) -> None:
        """Per window: busy + lazy + pooled == pinned <= peak; the whole window is pinned or free."""
        if self.space is None:
            return
        for region in self.space.regions:
            u = self.space.usage(region)
            pinned = self.space.pinned(region.name)
            assert u.busy + u.lazy + u.pooled == pinned <= self.space.peak_pinned(region.name)
            assert pinned + u.free == region.size

    @invariant()
    def live_allocations_are_busy(self) -> None:
        """What the machine allocated and did not free is still a busy area."""
        if self.space is None:
            return
        for _, addr, _ in self.live:
            assert self.space.find_area(addr) is not None
