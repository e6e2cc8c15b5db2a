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
from collections.abc import Iterator

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
    """Stream-decompress at most ``limit`` bytes, checking the ELF magic in the first chunk."""
    chunks: list[bytes] = []
    total = 0
    for chunk in _stream(data, kind, path):
        if not chunks and not chunk.startswith(_ELF_MAGIC[: len(chunk)]):
            raise ModuleFileError(path, f"not an ELF file (decompressed data starts {chunk[:4].hex()})")
        total += len(chunk)
        if total > limit:
            raise ModuleFileError(path, f"decompresses to more than the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


_CHUNK = 1 << 20


def _stream(data: bytes, kind: str, path: str) -> Iterator[bytes]:
    """The decompressed bytes in chunks of at most 1 MiB (the first one short, for the magic check)."""
    if kind == "zst":
        # Streams written without a content size in the frame header need the streaming reader.
        with zstandard.ZstdDecompressor().stream_reader(data) as reader:
            first = reader.read(64)
            if first:
                yield first
            while block := reader.read(_CHUNK):
                yield block
        return
    if kind == "xz":
        xz = lzma.LZMADecompressor(format=lzma.FORMAT_XZ)
        size = 64
        block = xz.decompress(data, max_length=size)
        while True:
            if block:
                yield block
            if xz.eof:
                break
            if xz.needs_input:
                raise ModuleFileError(path, "xz stream is truncated")
            size = _CHUNK
            block = xz.decompress(b"", max_length=size)
        if xz.unused_data:
            raise ModuleFileError(path, "xz stream is followed by other data")
        return
    gz = zlib.decompressobj(wbits=31)  # gzip framing
    block = gz.decompress(data, 64)
    while True:
        if block:
            yield block
        if gz.eof:
            break
        tail = gz.unconsumed_tail
        block = gz.decompress(tail, _CHUNK)
        if not block and not tail and not gz.eof:
            raise ModuleFileError(path, "gzip stream is truncated")
    if gz.unused_data:
        raise ModuleFileError(path, "gzip stream is followed by other data")
