"""JSON Lines: one item per line, written by :func:`asyncpager.convert.plain_to_json_line`.

The simplest output to resume: every commit ends on a line boundary, so
cutting the file back to the committed size leaves whole lines only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from asyncpager.convert import plain_to_json_line
from asyncpager.sinks._base import ByteSink

__all__ = ["JsonlSink"]


class JsonlSink(ByteSink):
    """Items as JSON Lines (``.jsonl``, ``.ndjson``, ``.json``), optionally
    gzip- or zstd-compressed. Values are written as :mod:`asyncpager.convert`
    describes: numbers exact, datetimes ISO 8601, bytes base64."""

    format: ClassVar[str] = "jsonl"

    def encode(self, records: Sequence[Mapping[str, Any]]) -> bytes:
        return b"".join(map(plain_to_json_line, records))
