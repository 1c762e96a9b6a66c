"""Joining the part files of a parallel or cluster export into one output."""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
from pathlib import Path

__all__ = ["JOINABLE_FORMATS", "join_parts"]

#: Formats whose part files join into one output.
JOINABLE_FORMATS = ("jsonl", "parquet")


def join_parts(parts: list[Path], output: str | None, fmt: str) -> None:
    """Join part files of one format into ``output`` atomically (``None``:
    copy them to stdout). A Parquet part with no rows may be missing; a
    JSON Lines part may not."""
    if output is None:
        for part in parts:
            with part.open("rb") as handle:
                shutil.copyfileobj(handle, sys.stdout.buffer)
        sys.stdout.buffer.flush()
        return
    target = Path(output)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        if fmt == "parquet":
            _join_parquet(parts, Path(tmp))
        else:
            # A concatenation of JSON Lines files (or of gzip members, or of
            # zstd frames) is itself one valid file.
            with open(tmp, "wb") as out:
                for part in parts:
                    with part.open("rb") as handle:
                        shutil.copyfileobj(handle, out, 1 << 20)
                out.flush()
                os.fsync(out.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _join_parquet(parts: list[Path], tmp: Path) -> None:
    import pyarrow as pa  # type: ignore[import-untyped]
    import pyarrow.parquet as pq  # type: ignore[import-untyped]

    present = [p for p in parts if p.exists()]
    schemas = [pq.read_schema(p) for p in present]
    schema = pa.unify_schemas(schemas, promote_options="permissive") if schemas else pa.schema([])
    with pq.ParquetWriter(tmp, schema) as writer:
        for part in present:
            table = pq.read_table(part)
            for name in schema.names:
                if name not in table.column_names:
                    table = table.append_column(name, pa.nulls(len(table), schema.field(name).type))
            writer.write_table(table.select(schema.names).cast(schema))
    with open(tmp, "rb+") as handle:
        os.fsync(handle.fileno())
