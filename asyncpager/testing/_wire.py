"""The pieces every service handler shares: requests, answers, tokens, a page cache."""

from __future__ import annotations

import base64
import binascii
import dataclasses
import datetime
import struct
import zlib
from collections import OrderedDict
from collections.abc import Hashable
from typing import Any

__all__ = [
    "Call",
    "InvalidToken",
    "PageCache",
    "Reply",
    "Request",
    "decode_token",
    "encode_token",
    "cyclic",
    "interleave",
    "iso_ms",
    "iso_s",
    "join",
]


@dataclasses.dataclass(slots=True)
class Request:
    """One parsed HTTP request; header names are lower-case bytes."""

    method: str
    target: str
    headers: dict[bytes, bytes]
    body: bytes

    @property
    def path(self) -> str:
        return self.target.partition("?")[0]

    @property
    def query(self) -> str:
        return self.target.partition("?")[2]

    def header(self, name: bytes) -> str | None:
        value = self.headers.get(name)
        return None if value is None else value.decode("latin-1")


@dataclasses.dataclass(slots=True)
class Reply:
    """One answer. ``headers`` excludes Content-Length and Connection."""

    status: int
    body: bytes = b""
    content_type: bytes = b"application/xml"
    headers: tuple[tuple[bytes, bytes], ...] = ()
    head_only: bool = False
    """Send Content-Length of ``body`` but no body (an answer to HEAD)."""


@dataclasses.dataclass(slots=True)
class Call:
    """A request once its service and operation are known."""

    service: str
    operation: str
    region: str
    request: Request
    params: Any = None
    has_token: bool = False
    request_id: str = ""
    repeat_token: bool = False
    """Fault: answer with the token the request carried (a server bug)."""


class InvalidToken(ValueError):
    """A continuation token this endpoint did not issue for this listing."""


_TOKEN = struct.Struct(">BQI")


def encode_token(position: int, scope: str) -> str:
    """An opaque token (base64, like S3's) for ``position`` in listing ``scope``.

    The scope checksum makes a token from another bucket, table or region an
    error instead of a silent jump.
    """
    raw = _TOKEN.pack(1, position, zlib.crc32(scope.encode("utf-8")))
    return base64.b64encode(raw + b"\x5a\xa5").decode("ascii")


def decode_token(token: str, scope: str) -> int:
    """The position ``encode_token`` stored, or :class:`InvalidToken`."""
    try:
        raw = base64.b64decode(token.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError) as exc:
        raise InvalidToken(token) from exc
    if len(raw) != _TOKEN.size + 2:
        raise InvalidToken(token)
    version, position, check = _TOKEN.unpack(raw[: _TOKEN.size])
    if version != 1 or check != zlib.crc32(scope.encode("utf-8")):
        raise InvalidToken(token)
    return int(position)


def cyclic(table: list[Any], start: int, n: int) -> list[Any]:
    """``[table[(start + k) % len(table)] for k in range(n)]``, by slicing."""
    size = len(table)
    start %= size
    out = table[start : start + n]
    while len(out) < n:
        out += table[: min(size, n - len(out))]
    return out


def interleave(*columns: list[bytes]) -> list[bytes]:
    """``[a0, b0, a1, b1, ...]`` from equally long lists, by slice assignment."""
    width = len(columns)
    out: list[bytes] = [b""] * (width * len(columns[0]))
    for k, column in enumerate(columns):
        out[k::width] = column
    return out


def join(parts: list[bytes]) -> bytes:
    """``b"".join(parts)`` in groups of 1024.

    bytes.join allocates an 80-byte buffer record per part; past ~1600 parts
    that array crosses malloc's mmap threshold and the join gets 20x slower.
    """
    if len(parts) <= 1024:
        return b"".join(parts)
    return b"".join([b"".join(parts[k : k + 1024]) for k in range(0, len(parts), 1024)])


_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)


def iso_ms(seconds: float) -> str:
    """``2024-05-01T12:00:00.000Z``: S3's LastModified and CreationDate,
    EC2's LaunchTime. The format has milliseconds, but these services keep
    whole seconds: the fraction is always ``.000``."""
    moment = _EPOCH + datetime.timedelta(seconds=int(seconds))
    return moment.strftime("%Y-%m-%dT%H:%M:%S.000Z")


def iso_s(seconds: float) -> str:
    """``2024-05-01T12:00:00Z``: IAM's CreateDate."""
    moment = _EPOCH + datetime.timedelta(seconds=int(seconds))
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


class PageCache:
    """Rendered answers kept by request, up to ``max_bytes`` (least recently used go).

    Generated pages are pure functions of the request, so a benchmark that
    walks the same listing twice is served from here at almost no cost.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.size = 0
        self.hits = 0
        self._pages: OrderedDict[Hashable, bytes] = OrderedDict()

    def get(self, key: Hashable) -> bytes | None:
        page = self._pages.get(key)
        if page is not None:
            self._pages.move_to_end(key)
            self.hits += 1
        return page

    def put(self, key: Hashable, page: bytes) -> None:
        if len(page) > self.max_bytes // 4:
            return
        old = self._pages.pop(key, None)
        if old is not None:
            self.size -= len(old)
        self._pages[key] = page
        self.size += len(page)
        while self.size > self.max_bytes:
            _, dropped = self._pages.popitem(last=False)
            self.size -= len(dropped)

    def clear(self) -> None:
        self._pages.clear()
        self.size = 0
