"""Layouts and kernel profiles are data with the kernel's numbers."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vmapsim import InvalidArgument, layouts, profiles
from vmapsim.units import GiB, MiB, TiB


def test_x86_64_windows() -> None:
    assert layouts.X86_64.vmalloc.size == 32 * TiB - 1  # VMALLOC_END is the inclusive last byte
    assert layouts.X86_64.modules.size == 1008 * MiB
    assert layouts.X86_64_NOKASLR.modules.size == 1520 * MiB
    assert layouts.X86_64_LA57.vmalloc.size == 12800 * TiB - 1
    assert layouts.X86_64.region_of(0xFFFFC90000000000).name == "vmalloc"  # type: ignore[union-attr]
    assert layouts.X86_64.region_of(0x1000) is None


def test_other_architectures() -> None:
    assert layouts.ARM64_48.modules.size == 128 * MiB and layouts.ARM64_48.modules.end == layouts.ARM64_48.vmalloc.start
    assert layouts.RISCV64_SV39.vmalloc.size == 64 * GiB
    assert layouts.RISCV64_SV48.vmalloc.size == 32 * TiB
    assert layouts.RISCV64_SV57.vmalloc.size == 16 * 1024 * TiB
    i = layouts.i386()
    assert i.vmalloc.size == 120 * MiB and i.regions == (i.vmalloc,) and i.kva_end == 2**32 - 1


@pytest.mark.parametrize("bad", [0, -MiB, 4097, 2 * GiB])
def test_i386_rejects_bad_vmalloc_sizes(bad: int) -> None:
    with pytest.raises(InvalidArgument, match=str(bad)):
        layouts.i386(vmalloc=bad)


def test_layout_lookup() -> None:
    assert layouts.by_name("arm64_48") is layouts.ARM64_48
    with pytest.raises(InvalidArgument, match="'x86'"):
        layouts.by_name("x86")
    with pytest.raises(InvalidArgument):
        layouts.X86_64.region("percpu")


@pytest.mark.parametrize(
    "version,name",
    [("5.4", "5.4"), ("5.10.0-46-amd64", "5.4"), ("5.11", "5.11"), ("5.15.0-91-generic", "5.11"), ("5.16", "5.16"),
     ("5.17.15", "5.16"), ("5.18", "5.18"), ("6.1.0-56-amd64", "5.18"), ("6.3", "6.3"), ("6.4.6", "6.3"),
     ("6.5", "6.5"), ("6.8", "6.5"),
     ("6.9.0", "6.9"), ("6.10", "6.9"), ("6.11", "6.11"), ("6.12.117+deb12-amd64", "6.11"), ("6.19", "6.16"),
     ("7.0", "6.16")],
)  # fmt: skip
def test_profile_for_version(version: str, name: str) -> None:
    assert profiles.for_version(version).name == name


@pytest.mark.parametrize("bad", ["5.3", "4.19.0", "", "six", "6"])
def test_profile_rejects_old_or_malformed_versions(bad: str) -> None:
    with pytest.raises(InvalidArgument):
        profiles.for_version(bad)


def test_profile_features() -> None:
    assert profiles.DEFAULT is profiles.LINUX_6_3
    assert [p.node_pools for p in profiles.PROFILES] == [False] * 6 + [True] * 3
    # up to 5.17 the lazy drain runs in the freeing context; up to 5.10 the lazy list is given back newest first
    assert [p.sync_drain for p in profiles.PROFILES] == [True] * 3 + [False] * 6
    assert [p.purge_newest_first for p in profiles.PROFILES] == [True] + [False] * 8
    assert [p.search.value for p in profiles.PROFILES[:4]] == ["size+align-1", "size+align-1", "size", "adjusted"]
    assert not profiles.LINUX_5_18.vmap_ram_flag and profiles.LINUX_6_3.vmap_ram_flag
    assert profiles.LINUX_6_9.failure_message(4096, 1, 2).startswith("vmap allocation for size 4096 failed")


@given(st.integers(1, (768 << 20) // 4096))  # up to 768 MiB: the 3G/1G split leaves less than 1 GiB
def test_an_i386_layout_is_found_by_its_own_name(pages: int) -> None:
    lay = layouts.i386(vmalloc=pages * 4096)
    assert layouts.by_name(lay.name) == lay  # the name a command prints is one --layout takes
