"""Compression that can stop at any commit: gzip members and zstd frames.

A crash-safe export truncates its output back to the size of the last commit
and goes on from there, so the compressed stream must be *complete* at every
commit. Both formats allow that: a file made of several gzip members one
after the other is one valid gzip file (``gzip.open`` and ``zcat`` read all
of them), and likewise for zstd frames (``zstd -d``, or
``zstandard.ZstdDecompressor().stream_reader(f, read_across_frames=True)``).
Each :meth:`Compressor.finish` ends the current member or frame; the next
write opens a new one. A member costs about 20 bytes, nothing at the usual
commit intervals.
"""

from __future__ import annotations

import importlib
import zlib
from typing import Any, Protocol

from asyncpager.errors import ConfigurationError

__all__ = ["COMPRESSIONS", "Compressor", "make_compressor", "normalise_compression"]

#: Canonical names, and what each may be spelled as.
COMPRESSIONS = ("none", "gzip", "zstd")
_ALIASES = {
    "none": "none",
    "": "none",
    "gzip": "gzip",
    "gz": "gzip",
    "zstd": "zstd",
    "zst": "zstd",
    "zstandard": "zstd",
}


def normalise_compression(name: str | None) -> str:
    """``"gz"`` -> ``"gzip"``, ``None`` -> ``"none"``; anything else unknown
    raises :class:`ConfigurationError`."""
    if name is None:
        return "none"
    found = _ALIASES.get(name.lower())
    if found is None:
        raise ConfigurationError(
            f"unknown compression {name!r}: use one of {', '.join(COMPRESSIONS)}"
        )
    return found


class Compressor(Protocol):
    """Turns a byte stream into compressed bytes, in self-contained pieces."""

    name: str

    def compress(self, data: bytes) -> bytes:
        """Compressed bytes for ``data`` (possibly none yet: they are held back)."""
        ...

    def finish(self) -> bytes:
        """End the current member or frame: everything written so far is
        now decodable from the bytes returned so far. No-op (``b""``) when
        nothing was written since the last finish."""
        ...


class _Identity:
    name = "none"

    def compress(self, data: bytes) -> bytes:
        return data

    def finish(self) -> bytes:
        return b""


class _Gzip:
    """One gzip member per commit, through zlib directly (``wbits=31``
    writes the gzip header and trailer; the header's mtime is 0, so the same
    input gives the same bytes)."""

    name = "gzip"

    def __init__(self, level: int | None) -> None:
        self._level = 6 if level is None else level
        if not 0 <= self._level <= 9:
            raise ConfigurationError("gzip compression level must be between 0 and 9")
        self._obj: Any = None

    def compress(self, data: bytes) -> bytes:
        if self._obj is None:
            self._obj = zlib.compressobj(self._level, zlib.DEFLATED, 31)
        out: bytes = self._obj.compress(data)
        return out

    def finish(self) -> bytes:
        if self._obj is None:
            return b""
        obj, self._obj = self._obj, None
        out: bytes = obj.flush(zlib.Z_FINISH)
        return out


def _zstandard() -> Any:
    try:
        return importlib.import_module("zstandard")
    except ImportError:
        raise ConfigurationError(
            "zstd compression needs zstandard: pip install 'asyncpager[zstd]'"
        ) from None


class _Zstd:
    """One zstd frame per commit, with a content checksum in each."""

    name = "zstd"

    def __init__(self, level: int | None) -> None:
        zstandard = _zstandard()
        self._flush_finish = zstandard.COMPRESSOBJ_FLUSH_FINISH
        try:
            self._compressor = zstandard.ZstdCompressor(
                level=3 if level is None else level, write_checksum=True
            )
        except (ValueError, zstandard.ZstdError) as exc:
            raise ConfigurationError(f"bad zstd compression level {level!r}: {exc}") from None
        self._obj: Any = None

    def compress(self, data: bytes) -> bytes:
        if self._obj is None:
            self._obj = self._compressor.compressobj()
        out: bytes = self._obj.compress(data)
        return out

    def finish(self) -> bytes:
        if self._obj is None:
            return b""
        obj, self._obj = self._obj, None
        out: bytes = obj.flush(self._flush_finish)
        return out


def make_compressor(name: str | None, level: int | None = None) -> Compressor:
    """A fresh compressor for ``name`` (any spelling :func:`normalise_compression` takes)."""
    canonical = normalise_compression(name)
    if canonical == "gzip":
        return _Gzip(level)
    if canonical == "zstd":
        return _Zstd(level)
    return _Identity()
