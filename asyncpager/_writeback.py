"""Starting a file's writeback early, and giving back what nobody reads again.

An export commits every few seconds: ``fsync`` then writes back everything
written since the last commit, and the commit waits for it, the consumer
behind the commit, and the streams behind the consumer (in a 390 MB
DynamoDB export, strace timed the commits' fsyncs at 25-50 ms each).
Linux can start that writeback as the bytes are written, without waiting
for it (``sync_file_range`` with ``SYNC_FILE_RANGE_WRITE``), so that the
commit's ``fsync`` finds little left to do (the same export's: 0.1-3 ms).
Python's ``os`` has no binding for it: it is called from the C library,
where there is one, and is a no-op elsewhere (the commit's ``fsync`` then
does all the work, as before).

The parts of ``--workers`` are copied into the output as they are
committed, and nothing reads their copied bytes again unless a checkpoint
may resume them: :func:`give_back` frees those blocks (``fallocate`` with
``FALLOC_FL_PUNCH_HOLE``), so the parts and the output do not both hold the
whole export on disk at the end.
"""

from __future__ import annotations

import errno
import functools
import sys
from typing import Any

__all__ = ["WRITEBACK_EVERY", "give_back", "start_writeback"]

#: Bytes written between two calls of :func:`start_writeback` by a writer
#: that calls it as it goes: each call is a system call.
WRITEBACK_EVERY = 8 << 20

_SYNC_FILE_RANGE_WRITE = 2
_FALLOC_FL_KEEP_SIZE = 1
_FALLOC_FL_PUNCH_HOLE = 2
#: Only whole blocks are freed; a hole starts and ends on this.
_BLOCK = 4096


class _Calls:
    """The two functions, from the C library where there is one."""

    def __init__(self) -> None:
        self.sync_file_range: Any = None
        self.fallocate: Any = None
        if not sys.platform.startswith("linux"):
            return
        import ctypes

        try:
            # The symbols already loaded: the C library is among them.
            # (ctypes.util.find_library would run ldconfig in a subprocess.)
            libc = ctypes.CDLL(None, use_errno=True)
        except OSError:
            return
        sync_file_range = getattr(libc, "sync_file_range", None)
        if sync_file_range is not None:
            sync_file_range.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
            sync_file_range.restype = ctypes.c_int
        fallocate = getattr(libc, "fallocate", None)
        if fallocate is not None:
            fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
            fallocate.restype = ctypes.c_int
        self.sync_file_range, self.fallocate = sync_file_range, fallocate


#: Found the first time one is needed: ``ctypes`` costs a command about 5 ms
#: to import, and most never write a file.
_calls = functools.cache(_Calls)


def start_writeback(fd: int, offset: int, count: int) -> bool:
    """Start writing ``count`` bytes of ``fd`` from ``offset`` back to disk,
    without waiting; whether the system could. A failure is no loss: the
    next ``fsync`` writes them."""
    call = _calls().sync_file_range if count > 0 else None
    if call is None:
        return False
    return bool(call(fd, offset, count, _SYNC_FILE_RANGE_WRITE) == 0)


def give_back(fd: int, offset: int, count: int) -> int:
    """Free the whole blocks of ``fd`` within ``count`` bytes from ``offset``
    (they read as zeros afterwards; the file keeps its size). Returns the
    bytes freed: 0 where the file system or the system cannot."""
    start = -(-offset // _BLOCK) * _BLOCK
    end = (offset + count) // _BLOCK * _BLOCK
    calls = _calls() if end > start else None
    if calls is None or calls.fallocate is None:
        return 0
    mode = _FALLOC_FL_PUNCH_HOLE | _FALLOC_FL_KEEP_SIZE
    if calls.fallocate(fd, mode, start, end - start) != 0:
        import ctypes

        # Not on this file system (EOPNOTSUPP): not worth asking again.
        if ctypes.get_errno() in (errno.EOPNOTSUPP, errno.ENOSYS):
            calls.fallocate = None
        return 0
    return end - start
