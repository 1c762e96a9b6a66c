"""The process backend: shard groups in worker processes of this machine,
committed exactly once, as with any backend."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import anyio
import pytest

from asyncpager import RateLimit, plan_s3
from asyncpager.cluster import ProcessBackend, export_on_cluster
from asyncpager.errors import ConfigurationError
from asyncpager.plan.dynamodb import plan_scan
from asyncpager.testing import Bucket, LatencyModel, LocalEndpoint, Table
from tests import cluster_support as support

pytestmark = pytest.mark.anyio


def _children() -> set[str]:
    """This process's live child processes (Linux), by command line; not
    multiprocessing's resource tracker, which lives as long as this process
    once anything has started it."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        # state, ppid: a zombie has exited already.
        mine = int(fields[1]) == os.getpid() and fields[0] != "Z"
        if mine and "resource_tracker" not in command:
            found.add(f"{entry.name}: {command}")
    return found


async def test_s3_and_dynamodb_plans_export_what_one_process_exports(tmp_path: Path) -> None:
    before = _children()
    with LocalEndpoint(
        buckets=[Bucket("keys", 9_000, "unicode")], tables=[Table("orders", 4_000)]
    ) as ep:
        s3_streams = plan_s3(["s3://keys"], shards=6, endpoint_url=ep.url, region=support.REGION)
        scan = await plan_scan("orders", segments=5, endpoint_url=ep.url, region=support.REGION)
        s3_expected = await support.in_process(s3_streams, tmp_path / "s3-ref.jsonl")
        db_expected = await support.in_process(list(scan.streams), tmp_path / "db-ref.jsonl")
        async with ProcessBackend(2) as backend:
            assert backend.slots == 2
            s3_result = await export_on_cluster(s3_streams, tmp_path / "s3.jsonl", backend=backend)
            db_result = await export_on_cluster(
                list(scan.streams), f"{tmp_path}/orders/", backend=backend
            )
    assert s3_result.complete
    # One group per process by default: the six shards in two.
    assert s3_result.groups == 2
    keys = support.keys_of(tmp_path / "s3.jsonl")
    assert sorted(keys) == sorted(r["Key"] for r in s3_expected)
    assert len(keys) == 9_000
    # The groups ran in worker processes, not here (an attempt is named
    # after the process that ran it).
    ran_in = {str(m["attempt"]).split("-")[0] for m in s3_result.manifests.values()}
    assert ran_in
    assert str(os.getpid()) not in ran_in
    assert db_result.complete
    db_got = support.folder_records(tmp_path / "orders")
    assert sorted(json.dumps(r, sort_keys=True) for r in db_got) == sorted(
        json.dumps(r, sort_keys=True) for r in db_expected
    )
    assert len(db_got) == 4_000
    assert _children() - before == set()


async def test_a_worker_killed_mid_group_every_item_exactly_once(tmp_path: Path) -> None:
    async with ProcessBackend(2) as backend:
        await support.killed_mid_group_exactly_once(backend, tmp_path, 12_000)


async def test_cancelling_the_driver_stops_every_process_and_keeps_commits(
    tmp_path: Path,
) -> None:
    before = _children()
    with LocalEndpoint(buckets=[Bucket("keys", 6_000, "flat")], latency=LatencyModel(0.05)) as ep:
        streams = plan_s3(
            ["s3://keys"], shards=4, endpoint_url=ep.url, region=support.REGION, page_size=100
        )
        started = anyio.Event()

        def watch(bodies: list[dict[str, Any]]) -> None:
            if any(b.get("pages", 0) > 0 for b in bodies):
                started.set()

        async with anyio.create_task_group() as tg:

            async def run() -> None:
                async with ProcessBackend(2) as backend:
                    await export_on_cluster(
                        streams, f"{tmp_path}/out/", backend=backend, tasks=4, on_stats=watch
                    )

            tg.start_soon(run)
            with anyio.fail_after(60):
                await started.wait()
            assert _children() - before  # the pool's processes, the figures' manager
            tg.cancel_scope.cancel()
    assert _children() - before == set()
    # Nothing half-written was committed: every committed group is whole.
    for group in (tmp_path / "out").glob("group-*"):
        manifest = json.loads((group / "manifest.json").read_text())
        lines = (group / manifest["parts"][0]["path"]).read_text().splitlines()
        assert len(lines) == manifest["items"]


async def test_what_the_process_backend_cannot_do_is_one_line(tmp_path: Path) -> None:
    before = _children()
    with pytest.raises(ConfigurationError, match="at least one process"):
        ProcessBackend(0)
    streams = plan_s3(
        ["s3://keys"], shards=2, endpoint_url="http://127.0.0.1:9", region=support.REGION
    )
    async with ProcessBackend(1) as backend:
        with pytest.raises(ConfigurationError, match="shared rate needs a Dask cluster"):
            await export_on_cluster(
                streams,
                f"{tmp_path}/a/",
                backend=backend,
                rate_limits=[RateLimit(10.0, service="s3")],
                shared_rate=True,
            )
        with pytest.raises(ConfigurationError, match="must pickle"):
            await export_on_cluster(
                streams, f"{tmp_path}/b/", backend=backend, records=lambda s, p: []
            )
    assert _children() - before == set()


async def test_workers_are_forked_from_a_server_that_imported_what_they_run(
    tmp_path: Path,
) -> None:
    import multiprocessing

    if "forkserver" not in multiprocessing.get_all_start_methods():
        pytest.skip("no fork server on this platform")
    with LocalEndpoint(buckets=[Bucket("keys", 300, "deep")]) as ep:
        streams = plan_s3(["s3://keys"], shards=3, endpoint_url=ep.url, region=support.REGION)
        async with ProcessBackend(2) as backend:
            result = await export_on_cluster(
                streams,
                f"{tmp_path}/out/",
                backend=backend,
                records=support.objects_with_their_process,
            )
    assert result.complete
    got = support.folder_records(tmp_path / "out")
    assert len(got) == 300
    # Every group ran in a process whose parent is the fork server, not
    # this one, and which had the backend's imports before its group.
    assert all(r["warm"] for r in got)
    parents = {r["parent"] for r in got}
    assert len(parents) == 1
    assert os.getpid() not in parents
