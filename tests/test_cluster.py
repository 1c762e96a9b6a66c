"""Cluster exports: shard groups as tasks, committed exactly once.

The local backend runs in this process; the Dask tests start a LocalCluster
of 2 worker processes, which fetch from the local endpoint over loopback.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import pytest

from asyncpager import RateLimit, plan_s3
from asyncpager.checkpoint import Checkpoint
from asyncpager.cluster import GroupSpec, LocalBackend, export_on_cluster
from asyncpager.cluster._backend import OnDone
from asyncpager.cluster._layout import commit_attempt
from asyncpager.errors import ConfigurationError
from asyncpager.plan.dynamodb import plan_scan
from asyncpager.testing import Bucket, LatencyModel, LocalEndpoint, Table, Throttle
from tests.cluster_support import (
    REGION,
    folder_records,
    in_process,
    keys_of,
    killed_mid_group_exactly_once,
)

pytestmark = pytest.mark.anyio

# -- the commit model, in this process --------------------------------------


async def test_local_backend_folder_output_equals_the_in_process_export(tmp_path: Path) -> None:
    with LocalEndpoint(buckets=[Bucket("keys", 7_000, "deep")]) as ep:
        streams = plan_s3(["s3://keys"], shards=6, endpoint_url=ep.url, region=REGION)
        expected = await in_process(streams, tmp_path / "ref.jsonl")
        async with LocalBackend(slots=3) as backend:
            result = await export_on_cluster(streams, f"{tmp_path}/out/", backend=backend, tasks=4)
    assert result.complete
    assert result.groups == 4
    assert result.committed == 4
    got = folder_records(tmp_path / "out")
    assert sorted(r["Key"] for r in got) == sorted(r["Key"] for r in expected)
    assert len(expected) == 7_000
    assert not (tmp_path / "out" / "_staging").exists()


async def test_a_second_attempt_of_a_committed_group_is_thrown_away(tmp_path: Path) -> None:
    root = tmp_path / "root"
    for attempt in ("a1", "a2"):
        folder = root / "_staging" / f"group-00002.{attempt}"
        folder.mkdir(parents=True)
        (folder / "part-00002.jsonl").write_text(f'{{"from": "{attempt}"}}\n')
        (folder / "manifest.json").write_text("{}")
    assert commit_attempt(root, {"group": 2, "attempt": "a1"}) is True
    assert commit_attempt(root, {"group": 2, "attempt": "a2"}) is False
    assert (root / "group-00002" / "part-00002.jsonl").read_text() == '{"from": "a1"}\n'
    assert not (root / "_staging" / "group-00002.a2").exists()


class _DriverGone(Exception):
    pass


class _StopAfter(LocalBackend):
    """Runs groups one at a time and stops the driver after ``commits``: a
    driver killed between two commits, as far as the output can tell."""

    def __init__(self, commits: int) -> None:
        super().__init__(slots=1)
        self.commits = commits

    async def run(self, specs: Any, on_done: OnDone) -> None:
        seen = 0

        async def counted(spec: GroupSpec, manifest: dict[str, Any]) -> None:
            nonlocal seen
            await on_done(spec, manifest)
            seen += 1
            if seen >= self.commits:
                raise _DriverGone

        await super().run(specs, counted)


async def test_a_restarted_driver_runs_only_uncommitted_groups(tmp_path: Path) -> None:
    out = tmp_path / "keys.jsonl"
    ckpt = tmp_path / "keys.ckpt"
    with LocalEndpoint(buckets=[Bucket("keys", 5_000, "flat")]) as ep:
        streams = plan_s3(["s3://keys"], shards=5, endpoint_url=ep.url, region=REGION)
        with pytest.raises(_DriverGone):
            await export_on_cluster(
                streams, out, backend=_StopAfter(2), tasks=5, checkpoint=ckpt, fingerprint="k"
            )
        assert not out.exists()
        committed = sorted(p.name for p in (tmp_path / "keys.jsonl.cluster").glob("group-*"))
        assert len(committed) == 2
        first_requests = ep.stats().count("s3")
        ep.reset_stats()
        # The plan comes from the checkpoint: no streams are needed again.
        result = await export_on_cluster([], out, tasks=5, checkpoint=ckpt, fingerprint="k")
        second_requests = ep.stats().count("s3")
    assert result.complete
    assert result.committed == 5
    keys = keys_of(out)
    assert len(keys) == 5_000 == len(set(keys))
    # Only the three uncommitted groups were fetched again.
    assert second_requests < first_requests + second_requests - 2
    state = Checkpoint(ckpt).load("k")
    assert state is not None
    assert state.complete
    assert state.items_written == 5_000
    assert not (tmp_path / "keys.jsonl.cluster").exists()
    again = await export_on_cluster([], out, checkpoint=ckpt, fingerprint="k")
    assert again.already_complete
    assert again.items_written == 5_000


async def test_a_folder_of_another_export_is_not_overwritten(tmp_path: Path) -> None:
    with LocalEndpoint(buckets=[Bucket("keys", 300, "flat")]) as ep:
        streams = plan_s3(["s3://keys"], shards=2, endpoint_url=ep.url, region=REGION)
        await export_on_cluster(streams, f"{tmp_path}/out/")
        before = folder_records(tmp_path / "out")
        with pytest.raises(ConfigurationError, match="holds the parts of another export"):
            await export_on_cluster(streams, f"{tmp_path}/out/")
    assert folder_records(tmp_path / "out") == before


async def test_bad_outputs_are_refused_before_any_request(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="jsonl or parquet, not csv"):
        await export_on_cluster([], tmp_path / "x.csv")
    with pytest.raises(ConfigurationError, match="cannot tell the output format"):
        await export_on_cluster([], tmp_path / "x.bin")
    with pytest.raises(ConfigurationError, match="tasks must be at least 1"):
        await export_on_cluster([], tmp_path / "x.jsonl", tasks=0)


async def test_failed_group_is_not_committed_and_reported(tmp_path: Path) -> None:
    with LocalEndpoint(buckets=[Bucket("keys", 300, "flat")]) as ep:
        streams = plan_s3(
            ["s3://keys", "s3://no-such-bucket"], shards=1, endpoint_url=ep.url, region=REGION
        )
        result = await export_on_cluster(streams, tmp_path / "x.jsonl", tasks=2)
    assert not result.complete
    assert result.committed == 1
    assert list(result.failures) == [1]
    assert "NoSuchBucket" in result.failures[1][0]
    assert not (tmp_path / "x.jsonl").exists()


async def test_cancelling_the_driver_leaves_no_task_and_keeps_commits(tmp_path: Path) -> None:
    with LocalEndpoint(buckets=[Bucket("keys", 3_000, "flat")], latency=LatencyModel(0.05)) as ep:
        streams = plan_s3(["s3://keys"], shards=3, endpoint_url=ep.url, region=REGION)
        with anyio.move_on_after(0.3):
            await export_on_cluster(streams, f"{tmp_path}/out/", backend=LocalBackend(3), tasks=3)
    # Nothing half-written was committed: every committed group is whole.
    for group in (tmp_path / "out").glob("group-*"):
        manifest = json.loads((group / "manifest.json").read_text())
        lines = (group / manifest["parts"][0]["path"]).read_text().splitlines()
        assert len(lines) == manifest["items"]


# -- Dask: a LocalCluster of 2 worker processes -------------------------------

dask = pytest.importorskip("distributed")


def _dask_backend(**options: Any) -> Any:
    from asyncpager.cluster import DaskBackend

    return DaskBackend(workers=2, **options)


@pytest.mark.slow
async def test_dask_s3_and_dynamodb_plans_export_what_one_process_exports(
    tmp_path: Path,
) -> None:
    with LocalEndpoint(
        buckets=[Bucket("keys", 12_000, "unicode")], tables=[Table("orders", 6_000)]
    ) as ep:
        s3_streams = plan_s3(["s3://keys"], shards=6, endpoint_url=ep.url, region=REGION)
        scan = await plan_scan("orders", segments=5, endpoint_url=ep.url, region=REGION)
        s3_expected = await in_process(s3_streams, tmp_path / "s3-ref.jsonl")
        db_expected = await in_process(list(scan.streams), tmp_path / "db-ref.jsonl")
        async with _dask_backend() as backend:
            assert backend.slots == 2
            assert backend.groups_per_slot == 1
            s3_result = await export_on_cluster(
                s3_streams, tmp_path / "s3.jsonl.gz", backend=backend
            )
            db_result = await export_on_cluster(
                list(scan.streams), f"{tmp_path}/orders/", backend=backend
            )
    import gzip

    with gzip.open(tmp_path / "s3.jsonl.gz", "rt") as handle:
        s3_got = [json.loads(line) for line in handle]
    assert s3_result.complete
    # The local cluster the backend started: one group per worker.
    assert s3_result.groups == 2
    assert sorted(r["Key"] for r in s3_got) == sorted(r["Key"] for r in s3_expected)
    assert len(s3_got) == 12_000
    db_got = folder_records(tmp_path / "orders")
    assert db_result.complete
    assert db_result.groups == 2
    key = sorted(db_got[0])
    assert sorted(json.dumps(r, sort_keys=True) for r in db_got) == sorted(
        json.dumps(r, sort_keys=True) for r in db_expected
    ), key
    assert len(db_got) == 6_000


@pytest.mark.slow
async def test_dask_worker_killed_mid_shard_every_item_exactly_once(tmp_path: Path) -> None:
    async with _dask_backend() as backend:
        await killed_mid_group_exactly_once(backend, tmp_path, 16_000)


@pytest.mark.slow
@pytest.mark.parametrize("budget", ["shared-actor", "static-share", "none"])
async def test_dask_rate_budget_holds_across_workers(tmp_path: Path, budget: str) -> None:
    # The endpoint holds its own bucket at the same rate (plus a little for
    # loopback jitter): any excess over the budget is answered SlowDown.
    # Without a budget (the control) the same run is throttled.
    server = Throttle("s3", "ListObjectsV2", rate=12, burst=3)
    with LocalEndpoint(buckets=[Bucket("keys", 4_000, "flat")], throttles=[server]) as ep:
        streams = plan_s3(
            ["s3://keys"], shards=4, endpoint_url=ep.url, region=REGION, page_size=100
        )
        async with _dask_backend() as backend:
            result = await export_on_cluster(
                streams,
                tmp_path / "keys.jsonl",
                backend=backend,
                tasks=4,
                rate_limits=[RateLimit(10, burst=1)] if budget != "none" else [],
                shared_rate=budget == "shared-actor",
                fetcher_options={"split": False},
            )
        stats = ep.stats()
    assert result.complete
    assert len(keys_of(tmp_path / "keys.jsonl")) == 4_000
    assert stats.count("s3", "ListObjectsV2") >= 40
    if budget == "none":
        assert stats.throttled_count("s3") > 0
    else:
        assert stats.throttled_count("s3") == 0


def test_tasks_take_pages_raw_where_the_command_would() -> None:
    from asyncpager.cluster import PageRecords
    from asyncpager.cluster._driver import raw_services_for
    from asyncpager.plan.dynamodb import scan_streams
    from asyncpager.streams import Stream

    ranges = plan_s3(["s3://keys"], shards=3, endpoint_url="http://127.0.0.1:9", region=REGION)
    scans = scan_streams("t", segments=2, region=REGION)
    versions = Stream("s3", "ListObjectVersions", {"Bucket": "keys"}, region=REGION)
    tables = Stream("dynamodb", "ListTables", region=REGION)
    plain = PageRecords()
    assert raw_services_for(ranges, plain, "jsonl") == {"s3": "lines"}
    assert raw_services_for(ranges, plain, "parquet") == {"s3": "lines"}
    assert raw_services_for([*ranges, *scans], plain, "jsonl") == {
        "s3": "lines",
        "dynamodb": "lines",
    }
    assert raw_services_for(scans, plain, "parquet") == {"dynamodb": True}
    # A raw mode holds for every call of its service: not where another
    # operation's answers would be written differently.
    assert raw_services_for([*ranges, versions], plain, "parquet") == {}
    assert raw_services_for([*scans, tables], plain, "jsonl") == {}
    # Query results read the pages as botocore makes them.
    assert raw_services_for(ranges, PageRecords("Contents[].Key"), "jsonl") == {}
    assert raw_services_for(scans, PageRecords(plain_dynamodb=False), "parquet") == {}


async def test_groups_per_slot_is_the_backends_else_four(tmp_path: Path) -> None:
    from asyncpager.cluster import ProcessBackend
    from asyncpager.cluster._driver import GROUPS_PER_SLOT, groups_per_slot

    class OneGroupEach(LocalBackend):
        groups_per_slot = 1

    assert groups_per_slot(LocalBackend()) == GROUPS_PER_SLOT == 4
    assert groups_per_slot(OneGroupEach()) == 1
    assert ProcessBackend.groups_per_slot == 1
    with LocalEndpoint(buckets=[Bucket("keys", 500, "deep")]) as ep:
        streams = plan_s3(["s3://keys"], shards=12, endpoint_url=ep.url, region=REGION)
        async with LocalBackend(slots=2) as backend:
            four = await export_on_cluster(streams, f"{tmp_path}/four/", backend=backend)
        async with OneGroupEach(slots=2) as backend:
            one = await export_on_cluster(streams, f"{tmp_path}/one/", backend=backend)
    assert (four.groups, one.groups) == (8, 2)
    assert four.items_written == one.items_written == 500
