"""Hypothesis strategies for vmapsim inputs, in Hypothesis' own API style.

Use them to property-test code built on vmapsim:

>>> from hypothesis import given
>>> @given(space=spaces(), size=vmalloc_sizes())
... def test_vmalloc_has_guard(space, size):
...     addr = space.vmalloc(size)
...     assert space.area(addr).size >= size + 4096
>>> test_vmalloc_has_guard()
"""

from __future__ import annotations

from hypothesis import strategies as st

from vmapsim import layouts as _layouts
from vmapsim import profiles as _profiles
from vmapsim.layouts import Layout
from vmapsim.profiles import KernelProfile
from vmapsim.space import VmapSpace
from vmapsim.units import PAGE_SIZE

__all__ = ["alignments", "kernel_profiles", "layouts", "spaces", "vmalloc_sizes"]


def layouts() -> st.SearchStrategy[Layout]:
    """Any shipped layout, or an i386 layout with a random ``vmalloc=`` window.

    >>> layouts().example().name  # doctest: +SKIP
    'x86_64'
    """
    fixed = st.sampled_from(sorted(_layouts.LAYOUTS.values(), key=lambda lay: lay.name))
    return fixed | st.integers(16, 256).map(lambda mib: _layouts.i386(vmalloc=mib << 20))


def kernel_profiles() -> st.SearchStrategy[KernelProfile]:
    """Any kernel profile (5.18 to 6.16+)."""
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
