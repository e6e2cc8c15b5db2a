"""Module file compression: what kbuild and distributions ship (.ko, .ko.xz, .ko.zst, .ko.gz).

The kernel's own decompressor (``module_decompress()``, kernel/module/decompress.c)
reads the same three formats; xz and gzip come from the standard library, zstd
from the ``zstandard`` package (a well-kept binding of the reference library).

>>> import gzip
>>> decompress(gzip.compress(b"\\x7fELF..."), "gz", "m.ko.gz")[:4]
b'\\x7fELF'
"""

from __future__ import annotations

import lzma
import zlib
from collections.abc import Callable

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


#: The most bytes a module may decompress to (the largest Debian module, amdgpu, is ~50 MiB unstripped of
#: debug info; 512 MiB leaves room for debug builds and stops a decompression bomb long before memory runs out).
MAX_MODULE_BYTES = 512 << 20
_ELF_MAGIC = b"\x7fELF"


def decompress(data: bytes, kind: str, path: str, *, limit: int = MAX_MODULE_BYTES) -> bytes:
    """The ``.ko`` bytes inside a compressed module; :class:`ModuleFileError` if they cannot be had.

    Decompression is streamed and bounded: the first bytes must be an ELF header
    (checked before the rest is expanded), and more than ``limit`` bytes of
    output, a truncated stream or trailing garbage is the file's error.
    Runtime complexity: O(min(size of the output, limit)).

    >>> import lzma
    >>> decompress(lzma.compress(bytes(1 << 20)), "xz", "bomb.ko.xz")
    Traceback (most recent call last):
    ...
    vmapsim.errors.ModuleFileError: bomb.ko.xz: not an ELF file (decompressed data starts 00000000)
    """
    if kind == "none":
        if len(data) > limit:
            raise ModuleFileError(path, f"{len(data)} bytes is more than the limit of {limit}")
        return data
    if kind not in _MAGIC:
        raise ModuleFileError(path, f"unknown compression {kind!r}")
    if not data.startswith(_MAGIC[kind]):
        raise ModuleFileError(path, f"not {kind} data (bad magic {data[:6].hex()})")
    try:
        out = _bounded(data, kind, path, limit)
    except (lzma.LZMAError, OSError, EOFError, zlib.error, zstandard.ZstdError) as e:
        raise ModuleFileError(path, f"{kind} decompression failed: {e}") from None
    except MemoryError:
        raise ModuleFileError(path, f"{kind} decompression ran out of memory") from None
    return out


def _bounded(data: bytes, kind: str, path: str, limit: int) -> bytes:
    """Decompress into one buffer, refused as soon as it passes ``limit``, so a bomb peaks at the limit
    (plus a chunk), not at twice it as a list of chunks and their join did; the ELF magic is checked in
    the first bytes, before the rest is expanded."""
    read = _reader(data, kind, path)
    out = bytearray()
    # never more than one byte past the limit: that byte is what proves the output too long
    while block := read(min(_CHUNK if out else 64, limit + 1 - len(out))):
        if not out and not block.startswith(_ELF_MAGIC[: len(block)]):
            raise ModuleFileError(path, f"not an ELF file (decompressed data starts {block[:4].hex()})")
        out += block
        if len(out) > limit:
            raise ModuleFileError(path, f"decompresses to more than the limit of {limit} bytes")
    return bytes(out)


_CHUNK = 1 << 20


def _reader(data: bytes, kind: str, path: str) -> Callable[[int], bytes]:
    """``read(n)``: at most ``n`` more decompressed bytes, ``b""`` at the end of the stream; a truncated
    stream, or data after it, is the file's error."""
    if kind == "zst":
        # Streams written without a content size in the frame header need the streaming reader.
        return zstandard.ZstdDecompressor().stream_reader(data).read
    unpack = lzma.LZMADecompressor(format=lzma.FORMAT_XZ) if kind == "xz" else zlib.decompressobj(wbits=31)
    name = "xz" if kind == "xz" else "gzip"
    feed = data

    def read(n: int) -> bytes:
        nonlocal feed
        if unpack.eof:
            return b""
        block = unpack.decompress(feed, n)
        # zlib hands back the input it did not use; lzma keeps it, to be fed nothing more
        feed = getattr(unpack, "unconsumed_tail", b"")
        if unpack.eof and unpack.unused_data:
            raise ModuleFileError(path, f"{name} stream is followed by other data")
        if not block and not unpack.eof:  # all the input is given at once: wanting more is a truncation
            raise ModuleFileError(path, f"{name} stream is truncated")
        return block

    return read
