"""Joining the part files of a parallel or cluster export into one output."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import sys
import tempfile
from pathlib import Path

from asyncpager._writeback import give_back, start_writeback
from asyncpager.checkpoint import Checkpoint

__all__ = ["JOINABLE_FORMATS", "PartGatherer", "join_parts"]

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


class PartGatherer:
    """JSON Lines parts copied into one output while their workers write them.

    Joined only at the end, the parts were copied and ``fsync``'ed after
    the last worker was done: a second pass over the whole output, which
    took a second per 170 MB here and grows with the export. Instead, each
    part's committed prefix (its checkpoint's sink ``size``, which a resumed
    worker never cuts below) is appended to ``gathering`` as it grows, and
    written back to disk while the workers run; at the end only what came
    after their last commits is left to copy. The output holds each part's
    commits in the order they were gathered: every cut is at a commit, so a
    line (or gzip member, or zstd frame) is never split, and JSON Lines
    have no order across streams anyway.

    ``gathering`` is a scratch file beside the parts (same folder, so the
    final rename is atomic): a run that stops for any reason leaves its
    parts as they were and a later run gathers afresh. ``None`` gathers
    into standard output instead, so that what reads it gets the items as
    they are committed, as from one process, not all at the end.

    ``scratch``: nothing resumes the parts (no checkpoint), so the blocks of
    what is copied from them are given back to the file system as it goes
    (:func:`asyncpager._writeback.give_back`), and a run that stops leaves
    them useless.
    """

    def __init__(
        self,
        parts: list[Path],
        checkpoints: list[Path],
        gathering: Path | None,
        scratch: bool = False,
    ) -> None:
        self.parts = parts
        self.checkpoints = checkpoints
        self.gathering = gathering
        self.scratch = scratch
        self.copied = [0] * len(parts)
        #: Bytes given back to the file system, from each part's start.
        self.freed = [0] * len(parts)
        self._fd: int | None = None
        self._size = 0  # bytes copied into the output, their writeback started

    def _out(self) -> int:
        if self._fd is None:
            if self.gathering is None:
                sys.stdout.flush()
                sys.stdout.buffer.flush()
                self._fd = sys.stdout.buffer.fileno()
            else:
                flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
                self._fd = os.open(self.gathering, flags, 0o644)
        return self._fd

    def gather(self) -> int:
        """Append what the parts committed since the last call; the bytes
        appended. Runs in a thread beside the workers."""
        added = 0
        for index, checkpoint in enumerate(self.checkpoints):
            end = committed_size(checkpoint)
            if end is not None:
                added += self._take(index, end)
        if added and self.gathering is not None:
            os.fdatasync(self._out())
        return added

    def finish(self, output: str | None) -> None:
        """Append the rest of every part (each worker has exited, its part
        complete) and rename the whole into ``output``, durably (standard
        output: nothing more)."""
        fd = self._out()
        for index, part in enumerate(self.parts):
            self._take(index, part.stat().st_size)
        if self.gathering is None:
            return
        assert output is not None
        os.fsync(fd)
        os.close(fd)
        self._fd = None
        os.chmod(self.gathering, 0o644)
        os.replace(self.gathering, output)

    def close(self) -> None:
        """Give up: the scratch file goes, the parts stay."""
        if self.gathering is None:
            return
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        with contextlib.suppress(OSError):
            os.unlink(self.gathering)

    def _take(self, index: int, end: int) -> int:
        start = self.copied[index]
        if end <= start:
            return 0
        out = self._out()
        mode = "r+b" if self.scratch else "rb"
        with self.parts[index].open(mode) as source:
            _copy_range(source.fileno(), out, start, end - start)
            if self.scratch:
                # Nothing reads the copied bytes again: the part and the
                # output do not both keep the whole export on disk, and what
                # the part's writer never had written back never is.
                self.freed[index] += give_back(
                    source.fileno(), self.freed[index], end - self.freed[index]
                )
        self.copied[index] = end
        if self.gathering is not None:
            # Started now, the writeback is mostly done by the next fdatasync
            # (and the last one, before the output is renamed into place).
            start_writeback(out, self._size, end - start)
        self._size += end - start
        return end - start


def committed_size(checkpoint: Path) -> int | None:
    """The part size a worker's checkpoint vouches for; ``None`` when there
    is none yet (or none once complete: the whole part is then)."""
    state = Checkpoint(checkpoint).peek()
    size = state.sink.get("size") if state is not None and state.sink else None
    return size if isinstance(size, int) else None


def _copy_range(source: int, target: int, offset: int, count: int) -> None:
    """``count`` bytes of ``source`` from ``offset`` onto the end of
    ``target``: in the kernel where it can, through a buffer elsewhere."""
    copy = getattr(os, "copy_file_range", None)
    while count > 0:
        done = 0
        if copy is not None:
            try:
                done = copy(source, target, min(count, 1 << 30), offset)
            except OSError as exc:
                # Not between these two (a pipe, a file opened to append,
                # another file system on an old kernel): through a buffer.
                fallback = (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.EBADF)
                if exc.errno not in fallback:
                    raise
                copy = None
                continue
        else:
            chunk = os.pread(source, min(count, 1 << 20), offset)
            done = len(chunk)
            view = memoryview(chunk)
            while view:
                view = view[os.write(target, view) :]
        if done == 0:
            raise OSError(f"part shorter than its checkpoint says (at byte {offset})")
        offset += done
        count -= done
