"""Module file compression: what kbuild and distributions ship (.ko, .ko.xz, .ko.zst, .ko.gz).

The kernel's own decompressor (``module_decompress()``, kernel/module/decompress.c)
reads the same three formats; xz and gzip come from the standard library, zstd
from the ``zstandard`` package (a well-kept binding of the reference library).

>>> import gzip
>>> decompress(gzip.compress(b"\\x7fELF..."), "gz", "m.ko.gz")[:4]
b'\\x7fELF'
"""

from __future__ import annotations

import gzip
import lzma
import zlib

import zstandard

from vmapsim.errors import ModuleFileError

__all__ = ["COMPRESSIONS", "compression_of", "decompress"]

#: File-name suffix of each compression, as kmod and kbuild name them.
COMPRESSIONS = {".ko": "none", ".ko.xz": "xz", ".ko.zst": "zst", ".ko.gz": "gz"}
_MAGIC = {"xz": b"\xfd7zXZ\x00", "zst": b"\x28\xb5\x2f\xfd", "gz": b"\x1f\x8b"}


def compression_of(name: str) -> str | None:
    """``"none"``, ``"xz"``, ``"zst"`` or ``"gz"`` from a module file name; None if not a module.

    Runtime complexity: O(1).

    >>> compression_of("kvm.ko.zst"), compression_of("notes.txt")
    ('zst', None)
    """
    for suffix, kind in COMPRESSIONS.items():
        if name.endswith(suffix):
            return kind
    return None


def decompress(data: bytes, kind: str, path: str) -> bytes:
    """The ``.ko`` bytes inside a compressed module; :class:`ModuleFileError` if they cannot be had.

    Runtime complexity: O(size of the output).
    """
    if kind == "none":
        return data
    if kind not in _MAGIC:
        raise ModuleFileError(path, f"unknown compression {kind!r}")
    if not data.startswith(_MAGIC[kind]):
        raise ModuleFileError(path, f"not {kind} data (bad magic {data[:6].hex()})")
    try:
        if kind == "xz":
            return lzma.decompress(data, format=lzma.FORMAT_XZ)
        if kind == "gz":
            return gzip.decompress(data)
        # Streams written without a content size in the frame header need the streaming reader.
        with zstandard.ZstdDecompressor().stream_reader(data) as reader:
            return reader.read()
    except (lzma.LZMAError, OSError, EOFError, zlib.error, zstandard.ZstdError) as e:
        raise ModuleFileError(path, f"{kind} decompression failed: {e}") from None
