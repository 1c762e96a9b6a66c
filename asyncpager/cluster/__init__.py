"""Run a plan's shards beyond one process: on a Dask cluster, or locally.

::

    from asyncpager import plan_s3
    from asyncpager.cluster import DaskBackend, export_on_cluster

    streams = plan_s3(["s3://big-bucket/"], shards=512)
    async with DaskBackend("tcp://scheduler:8786") as backend:
        result = await export_on_cluster(
            streams, "/shared/export/", backend=backend, checkpoint="/shared/export.ckpt"
        )

The streams are dealt into shard groups; each group is one task that runs
asyncpager's own engine where the backend puts it and writes one part under
a staging folder of its own. The driver commits the first attempt of each
group with one rename, so a worker killed mid-shard costs a rerun of that
group and never a duplicate or a lost item. The output folder must be
reachable at the same path from the driver and every worker (a shared file
system). The backend interface (:class:`Backend`) has three implementations:
:class:`LocalBackend` (this process), :class:`ProcessBackend` (worker
processes of this machine, one per core by default) and :class:`DaskBackend`
(the ``dask`` extra).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from asyncpager.cluster._backend import Backend, LocalBackend
from asyncpager.cluster._driver import ClusterResult, PageRecords, export_on_cluster
from asyncpager.cluster._task import GroupSpec, run_group
from asyncpager.cluster.processes import ProcessBackend

if TYPE_CHECKING:
    from asyncpager.cluster.dask import DaskBackend

__all__ = [
    "Backend",
    "ClusterResult",
    "DaskBackend",
    "GroupSpec",
    "LocalBackend",
    "PageRecords",
    "ProcessBackend",
    "export_on_cluster",
    "run_group",
]


def __getattr__(name: str) -> Any:
    # Dask is optional: import it only when asked for.
    if name == "DaskBackend":
        from asyncpager.cluster.dask import DaskBackend

        return DaskBackend
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
