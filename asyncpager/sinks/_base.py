"""What every sink shares: the protocol, durable files, and byte-stream sinks.

Crash safety rests on one rule: **a commit returns a state, and nothing the
sink wrote after that state's commit counts.** The export command writes the
state into its checkpoint together with every stream's position (one atomic
file). After a ``kill -9`` at any moment it reopens the sink with the state
of the last checkpoint: the sink throws away whatever it wrote later (a byte
stream is truncated to the committed size, uncommitted Parquet parts are
deleted), and the streams resume from the positions saved with it. Every
item is then in the output exactly once.

A commit must therefore leave the output *complete* up to that point: the
buffered bytes are written and ``fsync``'ed, a gzip member or zstd frame is
ended, and a new file's directory entry is made durable too, before the
state is handed out. Between commits nothing is promised.
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Iterator, Mapping, Sequence
from typing import IO, Any, ClassVar, Protocol, runtime_checkable

from asyncpager._writeback import WRITEBACK_EVERY, start_writeback
from asyncpager.errors import ConfigurationError
from asyncpager.sinks._compress import Compressor, make_compressor, normalise_compression

__all__ = ["ByteSink", "Sink", "check_writable", "fsync_dir"]

#: Version of the state dictionaries; a state of another version is refused.
STATE_VERSION = 1
#: New output files; the checkpoint itself (0o600) is not a sink's.
FILE_MODE = 0o644


@runtime_checkable
class Sink(Protocol):
    """Where an export writes its items. Every method blocks (call it through
    ``anyio.to_thread.run_sync``), and one method runs at a time."""

    @property
    def format(self) -> str:
        """``"jsonl"``, ``"csv"`` or ``"parquet"``."""
        ...

    @property
    def path(self) -> str | None:
        """The output file, ``None`` for a stream such as stdout."""
        ...

    def open(self, state: Mapping[str, Any] | None) -> None:
        """Start (``None``), or resume from the state a previous
        :meth:`commit` returned: throw away anything written after it."""
        ...

    def write(self, records: Sequence[Mapping[str, Any]]) -> None:
        """Add records (buffered: not durable before :meth:`commit`)."""
        ...

    def commit(self) -> dict[str, Any]:
        """Make everything written so far durable, and return the JSON-safe
        state to resume from."""
        ...

    def close(self) -> None:
        """Commit and finalise; idempotent, and resumable if killed half-way."""
        ...

    def abort(self) -> None:
        """Let go of the output without finalising; committed data stays."""
        ...


# -- files ---------------------------------------------------------------------


def fsync_dir(path: str) -> None:
    """Make the entries of directory ``path`` (a new file, a rename) durable."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return  # not possible everywhere (Windows); the data is fsync'ed anyway
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def check_writable(path: str, *, needs_directory: bool = False) -> None:
    """Raise a one-line :class:`ConfigurationError` naming ``path`` when it
    cannot be written, before an export spends time fetching anything.

    ``needs_directory``: the sink creates files next to ``path`` (Parquet's
    parts), so the directory itself must be writable.
    """
    shown = os.fspath(path)
    if os.path.isdir(path):
        raise ConfigurationError(f"cannot write {shown}: it is a directory")
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise ConfigurationError(f"cannot write {shown}: directory {parent} does not exist")
    exists = os.path.exists(path)
    if exists and not os.access(path, os.W_OK):
        raise ConfigurationError(f"cannot write {shown}: permission denied")
    if (needs_directory or not exists) and not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigurationError(f"cannot write {shown}: directory {parent} is not writable")


def cannot_write(path: str, exc: OSError) -> ConfigurationError:
    reason = exc.strerror or str(exc)
    return ConfigurationError(f"cannot write {path}: {reason}")


class _Output(Protocol):
    """Where a :class:`ByteSink` puts its bytes."""

    def start(self, size: int | None) -> None: ...
    def append(self, data: bytes) -> None: ...
    def sync(self) -> int: ...
    def close(self) -> None: ...
    def abort(self) -> None: ...


class _FileOutput:
    """A file written at its end, truncated back on resume and on abort.

    Unbuffered on purpose (the sink buffers): a buffered writer would flush
    leftovers on close, past the size :meth:`abort` just truncated to.
    """

    def __init__(self, path: str, durable: bool = True) -> None:
        self.path = path
        self.durable = durable
        self._file: io.FileIO | None = None
        self._committed = 0
        self._dir_synced = False
        #: Where the file ends, and from where its writeback is not yet
        #: started (see asyncpager._writeback).
        self._end = 0
        self._unstarted = 0

    def start(self, size: int | None) -> None:
        flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
        try:
            fd = os.open(self.path, flags, FILE_MODE)
        except OSError as exc:
            raise cannot_write(self.path, exc) from exc
        try:
            actual = os.fstat(fd).st_size
            if size is not None and actual < size:
                raise ConfigurationError(
                    f"cannot resume {self.path}: it holds {actual} bytes, fewer than the "
                    f"{size} committed by the checkpoint (was it changed or replaced?)"
                )
            target = 0 if size is None else size
            if actual != target:
                os.ftruncate(fd, target)
            os.lseek(fd, target, os.SEEK_SET)
            self._file = io.FileIO(fd, "w", closefd=True)
        except BaseException:
            os.close(fd)
            raise
        self._committed = self._end = self._unstarted = target
        # A fresh start may have created the file: its directory entry has to
        # be durable before a checkpoint refers to it.
        self._dir_synced = size is not None

    def append(self, data: bytes) -> None:
        assert self._file is not None
        view = memoryview(data)
        while view:
            written = self._file.write(view)
            view = view[written:]
        self._end += len(data)
        if self.durable and self._end - self._unstarted >= WRITEBACK_EVERY:
            # The next commit's fsync then waits for the last few megabytes
            # only, not for everything written since the last one.
            start_writeback(self._file.fileno(), self._unstarted, self._end - self._unstarted)
            self._unstarted = self._end

    def sync(self) -> int:
        assert self._file is not None
        # Not durable: handed to the system, which any reader of the file sees.
        if self.durable:
            os.fsync(self._file.fileno())
            self._unstarted = self._end
            if not self._dir_synced:
                fsync_dir(os.path.dirname(os.path.abspath(self.path)))
                self._dir_synced = True
        self._committed = self._end
        return self._committed

    def close(self) -> None:
        if self._file is not None:
            file, self._file = self._file, None
            file.close()

    def abort(self) -> None:
        if self._file is None:
            return
        file, self._file = self._file, None
        try:
            # Leave a file that ends at the last commit: readable as it is
            # (no half gzip member), and what a resume would cut it to anyway.
            os.ftruncate(file.fileno(), self._committed)
        except OSError:
            pass
        finally:
            file.close()


class _StreamOutput:
    """A stream owned by someone else (stdout): written and flushed, never closed."""

    def __init__(self, stream: IO[bytes]) -> None:
        self._stream = stream
        self._size = 0

    def start(self, size: int | None) -> None:
        self._size = 0

    def append(self, data: bytes) -> None:
        self._stream.write(data)
        self._size += len(data)

    def sync(self) -> int:
        self._stream.flush()
        return self._size

    def close(self) -> None:
        self._stream.flush()

    def abort(self) -> None:
        # A closed pipe: nobody is reading any more.
        with contextlib.suppress(OSError, ValueError):
            self._stream.flush()


# -- sinks of bytes -----------------------------------------------------------


def check_state(state: Mapping[str, Any], *, fmt: str, path: str | None, compression: str) -> None:
    """Refuse a state that belongs to another output: resuming from it would
    cut the wrong file or mix formats."""
    if not isinstance(state, Mapping) or state.get("version") != STATE_VERSION:
        raise ConfigurationError("the checkpoint's output state is not one this version can resume")
    if state.get("format") != fmt:
        raise ConfigurationError(
            f"the checkpoint was written for {state.get('format')} output, not {fmt}"
        )
    if state.get("compression") != compression:
        raise ConfigurationError(
            f"the checkpoint was written with {state.get('compression')} compression, "
            f"not {compression}"
        )
    if path is not None and state.get("path") != os.path.abspath(path):
        raise ConfigurationError(
            f"the checkpoint belongs to output {state.get('path')}, not {os.path.abspath(path)}"
        )


def check_phase(phase: str) -> None:
    """Raise unless a sink in ``phase`` may be written to."""
    if phase != "open":
        raise ConfigurationError(
            {
                "new": "open() the sink first",
                "broken": "the sink failed while writing: abort() it and resume from its state",
            }.get(phase, "the sink is closed")
        )


class ByteSink:
    """A sink whose output is one byte stream: records are encoded
    (:meth:`encode`), buffered, compressed, and appended.

    The file's committed size is the whole resume state: a crash leaves at
    most some bytes past it (a half line, a half gzip member), and
    :meth:`open` cuts them off. Subclasses add their own keys to the state
    (:meth:`extra_state`, :meth:`restore`).

    ``durable=False`` is for a scratch file that nothing resumes (a part of
    ``--workers`` without a checkpoint, copied into the output as it is
    committed): a commit hands its bytes to the system, where any reader of
    the file sees them, without waiting for the disk, and the state still
    says where a consistent cut ends. It does not survive a crash of the
    machine. Otherwise each commit is ``fsync``'ed, and the writeback of
    what is written starts as it goes (see :mod:`asyncpager._writeback`).
    """

    format: ClassVar[str] = ""

    def __init__(
        self,
        path: str | None,
        *,
        stream: IO[bytes] | None = None,
        compression: str | None = None,
        compresslevel: int | None = None,
        buffer_size: int = 1 << 20,
        durable: bool = True,
    ) -> None:
        if (path is None) == (stream is None):
            raise ConfigurationError("give exactly one of path and stream")
        if buffer_size < 1:
            raise ConfigurationError("buffer_size must be at least 1")
        self.path = None if path is None else os.fspath(path)
        self.compression = normalise_compression(compression)
        self._level = compresslevel
        self._compressor: Compressor = make_compressor(self.compression, compresslevel)
        self._output: _Output
        if stream is not None:
            self._output = _StreamOutput(stream)
        else:
            assert self.path is not None
            self._output = _FileOutput(self.path, durable)
        self._buffer: list[bytes] = []
        self._buffered = 0
        self._buffer_size = buffer_size
        self._records = 0  # committed
        self._pending = 0  # written since the last commit
        self._size = 0
        self._state: dict[str, Any] | None = None
        self._phase = "new"

    # -- to override ------------------------------------------------------

    def encode(self, records: Sequence[Mapping[str, Any]]) -> bytes:
        """The bytes of ``records`` in this format."""
        raise NotImplementedError

    def extra_state(self) -> dict[str, Any]:
        """Format-specific keys to keep in the state (a CSV header)."""
        return {}

    def restore(self, state: Mapping[str, Any]) -> None:
        """Take back what :meth:`extra_state` saved."""

    # -- the protocol -----------------------------------------------------

    @property
    def state(self) -> dict[str, Any] | None:
        """The state of the last commit (``None`` before the first)."""
        return self._state

    def open(self, state: Mapping[str, Any] | None) -> None:
        if self._phase != "new":
            raise ConfigurationError("a sink can be opened only once")
        if state is not None:
            if self.path is None:
                raise ConfigurationError("a checkpoint needs a file output")
            check_state(state, fmt=self.format, path=self.path, compression=self.compression)
            size = state.get("size")
            records = state.get("records")
            if not isinstance(size, int) or not isinstance(records, int) or size < 0:
                raise ConfigurationError("the checkpoint's output state is damaged")
            self.restore(state)
            self._output.start(size)
            self._size = size
            self._records = records
            self._state = dict(state)
        else:
            self._output.start(None)
        self._phase = "open"

    def write(self, records: Sequence[Mapping[str, Any]]) -> None:
        if records:
            # may raise; nothing has changed yet
            self.write_encoded(self.encode_records(records), len(records))
        else:
            self._check_open()

    def commit(self) -> dict[str, Any]:
        self._check_open()
        with self._breaks():
            self._drain()
            tail = self._compressor.finish()
            if tail:
                self._output.append(tail)
            self._size = self._output.sync()
        self._records += self._pending
        self._pending = 0
        state: dict[str, Any] = {
            "version": STATE_VERSION,
            "format": self.format,
            "compression": self.compression,
            "path": None if self.path is None else os.path.abspath(self.path),
            "size": self._size,
            "records": self._records,
        }
        state.update(self.extra_state())
        self._state = state
        return dict(state)

    def close(self) -> None:
        if self._phase in ("closed", "aborted"):
            return
        if self._phase == "new":
            self._phase = "closed"
            return
        try:
            self.commit()
        except BaseException:
            self.abort()
            raise
        self._output.close()
        self._phase = "closed"

    def abort(self) -> None:
        if self._phase not in ("open", "broken"):
            self._phase = "aborted" if self._phase == "new" else self._phase
            return
        self._phase = "aborted"
        self._buffer.clear()
        self._buffered = 0
        self._pending = 0
        self._output.abort()

    # -- in two steps ------------------------------------------------------

    def encode_records(self, records: Sequence[Mapping[str, Any]]) -> bytes:
        """The first half of :meth:`write`: ``records`` encoded, nothing
        written. Blocks on nothing, so the exporter calls it in the event
        loop's thread, where the page's records were made: they are
        encoded and let go of there, and only bytes cross to the worker
        thread. Pass the result to :meth:`write_encoded`, before anything
        else is encoded (a CSV header is decided by the first records)."""
        self._check_open()
        return self.encode(records)

    def write_encoded(self, data: bytes, count: int) -> None:
        """The second half of :meth:`write`: add the bytes
        :meth:`encode_records` made of ``count`` records (buffered: not
        durable before :meth:`commit`)."""
        chunks = self.buffer_encoded(data, count)
        if chunks is not None:
            self.write_chunks(chunks)

    def buffer_encoded(self, data: bytes, count: int) -> list[bytes] | None:
        """:meth:`write_encoded` without the write: the bytes are kept in
        memory, and once they fill the buffer it is emptied and its chunks
        come back, for :meth:`write_chunks` before anything else writes.
        Blocks on nothing: the exporter calls it in the event loop's
        thread, and only full buffers go to the sink's own."""
        self._check_open()
        self._pending += count
        if not data:
            return None
        self._buffer.append(data)
        self._buffered += len(data)
        if self._buffered < self._buffer_size:
            return None
        return self._take_buffer()

    def write_chunks(self, chunks: list[bytes]) -> None:
        """Compress and append what :meth:`buffer_encoded` gave back."""
        self._check_open()
        with self._breaks():
            self._append(chunks)

    # -- internals --------------------------------------------------------

    def _check_open(self) -> None:
        check_phase(self._phase)

    @contextlib.contextmanager
    def _breaks(self) -> Iterator[None]:
        """Failing here (disk full) leaves bytes half-written: refuse to go
        on, so that nothing is committed on top of them. ``abort()`` cuts
        the file back to the last commit."""
        try:
            yield
        except BaseException:
            self._phase = "broken"
            raise

    def _drain(self) -> None:
        if self._buffer:
            self._append(self._take_buffer())

    def _take_buffer(self) -> list[bytes]:
        chunks, self._buffer = self._buffer, []
        self._buffered = 0
        return chunks

    def _append(self, chunks: list[bytes]) -> None:
        out = self._compressor.compress(b"".join(chunks))
        if out:
            self._output.append(out)
