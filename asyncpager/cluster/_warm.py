"""What a process backend's worker runs, imported once by the fork server.

:class:`~asyncpager.cluster.ProcessBackend` starts its workers from a fork
server (``multiprocessing``'s ``forkserver`` method, where there is one): a
fresh single-threaded process that imports this module once and forks a
worker whenever the pool asks for one. Spawned, each worker imported
botocore, aiobotocore, aiohttp and the sinks itself (0.5-1 s of CPU each,
all at the start of the export); forked from the server, it starts with
them, with the one botocore session its tasks share, and with S3's and
DynamoDB's service data decoded (0.13 and 0.02 s of CPU, paid once in the
server instead of in every worker; other services' on first use, as
before).
"""

from __future__ import annotations

import contextlib

from asyncpager.cluster import _task
from asyncpager.parallel import _before_the_share, warm_up

warm_up(("s3", "dynamodb"))
_before_the_share()
with contextlib.suppress(ImportError):
    import uvloop  # noqa: F401

_task._process_session()
