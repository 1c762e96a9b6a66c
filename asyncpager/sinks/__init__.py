"""Output writers for the export command, with crash-safe commits.

::

    sink = open_sink("items.jsonl.gz", None)      # format and compression from the name
    sink.open(checkpoint.get("sink"))             # None the first time
    sink.write(records)                           # buffered
    checkpoint["sink"] = sink.commit()            # durable; saved with stream positions
    sink.close()                                  # final commit (Parquet: merge)

A commit makes everything written so far durable and returns a JSON-safe
state; reopening with that state throws away whatever was written after it.
Saved atomically with the streams' positions, it makes an export that is
killed at any moment and run again hold every item exactly once. See
:mod:`asyncpager.sinks._base`.

======================================  ==========  =======================================
name                                    format      resume by
======================================  ==========  =======================================
``.jsonl``, ``.ndjson``, ``.json``      jsonl       truncating to the committed size
``.csv``                                csv         truncating to the committed size
``.parquet``                            parquet     deleting uncommitted part files
... + ``.gz`` / ``.zst``                (same)      one gzip member / zstd frame per commit
``None`` or ``"-"`` (stdout)            jsonl, csv  no resume: a checkpoint needs a file
======================================  ==========  =======================================
"""

from __future__ import annotations

import os
import sys
from typing import IO, Any

from asyncpager.errors import ConfigurationError
from asyncpager.sinks._base import ByteSink, Sink, check_writable
from asyncpager.sinks._compress import COMPRESSIONS, normalise_compression
from asyncpager.sinks.csv import CsvSink
from asyncpager.sinks.jsonl import JsonlSink
from asyncpager.sinks.parquet import ParquetSink

__all__ = [
    "COMPRESSIONS",
    "FORMATS",
    "ByteSink",
    "CsvSink",
    "JsonlSink",
    "ParquetSink",
    "Sink",
    "detect_format",
    "open_sink",
]

#: Canonical format names.
FORMATS = ("jsonl", "csv", "parquet")

_FORMAT_NAMES = {
    "jsonl": "jsonl",
    "json": "jsonl",
    "ndjson": "jsonl",
    "jsonlines": "jsonl",
    "csv": "csv",
    "parquet": "parquet",
    "pq": "parquet",
}
_COMPRESSION_SUFFIXES = {".gz": "gzip", ".gzip": "gzip", ".zst": "zstd", ".zstd": "zstd"}

#: Options each format takes, besides ``compression``.
_OPTIONS: dict[str, frozenset[str]] = {
    "jsonl": frozenset({"compresslevel", "buffer_size", "durable"}),
    "csv": frozenset(
        {"compresslevel", "buffer_size", "columns", "extra_column", "raw_formulas", "durable"}
    ),
    "parquet": frozenset({"compresslevel", "row_group_size", "columns", "extra_column"}),
}


def detect_format(path: str) -> tuple[str | None, str]:
    """``(format, compression)`` told by a file name: ``"x.csv.gz"`` ->
    ``("csv", "gzip")``; the format is ``None`` when the name does not tell."""
    name = os.path.basename(path).lower()
    stem, suffix = os.path.splitext(name)
    compression = _COMPRESSION_SUFFIXES.get(suffix)
    if compression is None:
        compression = "none"
    else:
        stem, suffix = os.path.splitext(stem)
    return _FORMAT_NAMES.get(suffix.lstrip(".")), compression


def _format_name(fmt: str) -> str:
    found = _FORMAT_NAMES.get(fmt.lower())
    if found is None:
        raise ConfigurationError(f"unknown output format {fmt!r}: use {', '.join(FORMATS)}")
    return found


def open_sink(
    path: str | None,
    fmt: str | None = None,
    *,
    compression: str | None = None,
    stream: IO[bytes] | None = None,
    **options: Any,
) -> Sink:
    """A sink for ``path`` (``None`` or ``"-"``: ``stream``, by default
    stdout), not opened yet: call :meth:`Sink.open` next.

    ``fmt`` (``jsonl``, ``csv``, ``parquet``) and ``compression`` (``gzip``,
    ``zstd``, ``none``) default to what the file name says
    (``items.csv.zst``); stdout defaults to uncompressed JSON Lines. A
    ``compression`` that contradicts the name's suffix is refused rather
    than writing zstd into a ``.gz`` file. For Parquet, ``compression`` is the codec
    inside the file. ``options`` go to the format's sink (:class:`JsonlSink`,
    :class:`CsvSink`, :class:`ParquetSink`).

    Raises :class:`ConfigurationError` (one line, naming the path) when the
    path cannot be written, the format cannot be told, or an option is
    unknown, before any item is fetched.
    """
    if path == "-":
        path = None
    if path is not None:
        path = os.fspath(path)
        named_fmt, named_compression = detect_format(path)
    else:
        named_fmt, named_compression = None, "none"
    if fmt is not None:
        fmt = _format_name(fmt)
    elif named_fmt is not None:
        fmt = named_fmt
    elif path is None:
        fmt = "jsonl"
    else:
        raise ConfigurationError(
            f"cannot tell the output format of {path}: name it .jsonl, .csv or .parquet "
            "(optionally + .gz or .zst), or give the format"
        )

    unknown = set(options) - _OPTIONS[fmt]
    if unknown:
        raise ConfigurationError(f"unknown option for {fmt} output: {', '.join(sorted(unknown))}")

    if fmt == "parquet":
        if path is None:
            raise ConfigurationError("parquet output needs a file path, not stdout")
        if named_compression != "none":
            raise ConfigurationError(
                f"cannot write {path}: Parquet compresses inside the file; name it .parquet "
                "and choose the codec with compression="
            )
        check_writable(path, needs_directory=True)
        return ParquetSink(path, compression=compression, **options)

    chosen = normalise_compression(compression) if compression is not None else named_compression
    if named_compression != "none" and chosen != named_compression:
        ending = {"gzip": ".gz", "zstd": ".zst", "none": "no compression suffix"}
        raise ConfigurationError(
            f"cannot write {path}: {chosen} compression needs a name ending in {ending[chosen]}"
        )
    cls: type[ByteSink] = JsonlSink if fmt == "jsonl" else CsvSink
    if path is None:
        return cls(None, stream=stream or sys.stdout.buffer, compression=chosen, **options)
    check_writable(path)
    return cls(path, compression=chosen, **options)
