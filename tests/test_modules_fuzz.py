"""Fuzzing the module readers: truncations, bit flips and random bytes give only ModuleFileError."""

from __future__ import annotations

import lzma
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from vmapsim import ModuleFileError
from vmapsim.modules import KernelConfig, read_module

FIXTURES = Path(__file__).parent / "data" / "modules"
PLAIN = (FIXTURES / "irqbypass.ko").read_bytes()
XZ = (FIXTURES / "msr.ko.xz").read_bytes()
MSR = lzma.decompress(XZ)
CONFIG = KernelConfig()


def _read(data: bytes, name: str) -> None:
    try:
        read_module(data, name, CONFIG)
    except ModuleFileError as e:
        assert e.path == name and e.reason


@given(st.integers(0, len(PLAIN)))
def test_truncated_elf(n: int) -> None:
    _read(PLAIN[:n], "irqbypass.ko")


@given(st.lists(st.tuples(st.integers(0, len(MSR) - 1), st.integers(0, 7)), min_size=1, max_size=8))
@settings(max_examples=300)
def test_bit_flips_in_elf(flips: list[tuple[int, int]]) -> None:
    data = bytearray(MSR)
    for pos, bit in flips:
        data[pos] ^= 1 << bit
    _read(bytes(data), "msr.ko")


@given(st.lists(st.tuples(st.integers(0, 255), st.integers(0, 7)), min_size=1, max_size=4))
def test_bit_flips_in_the_elf_header_and_section_table(flips: list[tuple[int, int]]) -> None:
    # the header and the section headers at the end are where a flip changes structure, not contents
    data = bytearray(MSR)
    shoff = int.from_bytes(MSR[40:48], "little")
    for pos, bit in flips:
        where = pos % 64 if pos < 128 else shoff + (pos * 37) % (len(MSR) - shoff)
        data[where] ^= 1 << bit
    _read(bytes(data), "msr.ko")


@given(st.integers(0, len(XZ)), st.sampled_from(["x.ko.xz", "x.ko.zst", "x.ko.gz", "x.ko"]))
def test_truncated_compressed(n: int, name: str) -> None:
    _read(XZ[:n], name)


@given(st.binary(max_size=300), st.sampled_from(["x.ko.xz", "x.ko.zst", "x.ko.gz", "x.ko"]))
def test_random_bytes(data: bytes, name: str) -> None:
    _read(b"\x7fELF" + data if name == "x.ko" and data[:1] == b"\x02" else data, name)
