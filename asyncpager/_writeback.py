"""Starting a file's writeback early, and giving back what nobody reads again.

An export commits every few seconds: ``fsync`` then writes back everything
written since the last commit, and the commit waits for it (a megabyte of
output takes the disk about a millisecond here). The consumer waits
behind the commit, the pages queue, and the streams stall: measured on a
DynamoDB export of 390 MB, 0.15 to 0.3 s a commit. Linux can start that
writeback as the bytes are written, without waiting for it
(``sync_file_range`` with ``SYNC_FILE_RANGE_WRITE``), so that the commit's
``fsync`` finds little left to do. Python's ``os`` has no binding for it:
it is called from the C library, where there is one, and is a no-op
elsewhere (the commit's ``fsync`` then does all the work, as before).

The parts of ``--workers`` are copied into the output as they are
committed, and nothing reads their copied bytes again unless a checkpoint
may resume them: :func:`give_back` frees those blocks (``fallocate`` with
``FALLOC_FL_PUNCH_HOLE``), so the parts and the output do not both hold the
whole export on disk at the end.
"""

from __future__ import annotations

import ctypes
import errno
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


def _libc() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    try:
        # The symbols already loaded: the C library is among them.
        # (ctypes.util.find_library would run ldconfig in a subprocess.)
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


_LIBC = _libc()
_sync_file_range: Any = getattr(_LIBC, "sync_file_range", None)
_fallocate: Any = getattr(_LIBC, "fallocate", None)
if _sync_file_range is not None:
    _sync_file_range.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    _sync_file_range.restype = ctypes.c_int
if _fallocate is not None:
    _fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
    _fallocate.restype = ctypes.c_int


def start_writeback(fd: int, offset: int, count: int) -> bool:
    """Start writing ``count`` bytes of ``fd`` from ``offset`` back to disk,
    without waiting; whether the system could. A failure is no loss: the
    next ``fsync`` writes them."""
    if _sync_file_range is None or count <= 0:
        return False
    return bool(_sync_file_range(fd, offset, count, _SYNC_FILE_RANGE_WRITE) == 0)


def give_back(fd: int, offset: int, count: int) -> int:
    """Free the whole blocks of ``fd`` within ``count`` bytes from ``offset``
    (they read as zeros afterwards; the file keeps its size). Returns the
    bytes freed: 0 where the file system or the system cannot."""
    global _fallocate
    start = -(-offset // _BLOCK) * _BLOCK
    end = (offset + count) // _BLOCK * _BLOCK
    if _fallocate is None or end <= start:
        return 0
    mode = _FALLOC_FL_PUNCH_HOLE | _FALLOC_FL_KEEP_SIZE
    if _fallocate(fd, mode, start, end - start) != 0:
        # Not on this file system (EOPNOTSUPP): not worth asking again.
        if ctypes.get_errno() in (errno.EOPNOTSUPP, errno.ENOSYS):
            _fallocate = None
        return 0
    return end - start
