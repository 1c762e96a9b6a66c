"""What the cluster tests share: the reference export, reading outputs back,
and killing a worker part way through a group."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

from asyncpager import Fetcher, plan_s3
from asyncpager.cluster import Backend, ClusterResult, export_on_cluster
from asyncpager.export import export
from asyncpager.sinks import open_sink
from asyncpager.testing import Bucket, LatencyModel, LocalEndpoint

REGION = "us-east-1"


def keys_of(path: Path) -> list[str]:
    return [json.loads(line)["Key"] for line in path.read_text().splitlines()]


def folder_records(root: Path) -> list[dict[str, Any]]:
    manifest = json.loads((root / "_manifest.json").read_text())
    out: list[dict[str, Any]] = []
    for part in manifest["parts"]:
        lines = (root / part["path"]).read_text().splitlines()
        assert len(lines) == part["items"]
        out += [json.loads(line) for line in lines]
    assert len(out) == manifest["items"]
    return out


async def in_process(streams: list[Any], path: Path) -> list[dict[str, Any]]:
    """The reference: the ordinary one-process export of the same streams."""
    from asyncpager.cluster import PageRecords

    async with Fetcher() as fetcher:
        await export(streams, open_sink(str(path)), PageRecords(), fetcher=fetcher)
    return [json.loads(line) for line in path.read_text().splitlines()]  # noqa: ASYNC240


def kill_a_group_part_way(killed: dict[str, Any]) -> Callable[[list[dict[str, Any]]], None]:
    """An ``on_stats`` that kills, once, the process running a group part way
    through its shard, and records which in ``killed``."""

    def watch(bodies: list[dict[str, Any]]) -> None:
        if killed:
            return
        for body in bodies:
            if body.get("pages", 0) >= 3 and body.get("streams_done", 0) == 0:
                pid = int(str(body["process"]).rsplit(":", 1)[1])
                killed.update(group=body["group"], pid=pid, attempt=body["attempt"])
                os.kill(pid, signal.SIGKILL)
                return

    return watch


async def killed_mid_group_exactly_once(backend: Backend, tmp_path: Path, count: int) -> None:
    """Export ``count`` keys on ``backend`` (entered), killing the process of
    a group part way through its shard: every key is written once, and the
    killed group's committed attempt is a later one."""
    killed: dict[str, Any] = {}
    with LocalEndpoint(buckets=[Bucket("keys", count, "flat")], latency=LatencyModel(0.04)) as ep:
        # One shard per group and no splitting: each group is one long walk.
        streams = plan_s3(
            ["s3://keys"], shards=4, endpoint_url=ep.url, region=REGION, page_size=100
        )
        result: ClusterResult = await export_on_cluster(
            streams,
            tmp_path / "keys.jsonl",
            backend=backend,
            tasks=4,
            fetcher_options={"split": False},
            on_stats=kill_a_group_part_way(killed),
        )
    assert killed, "no task was seen part way through its shard"
    assert result.complete
    keys = keys_of(tmp_path / "keys.jsonl")
    assert len(keys) == count == len(set(keys))
    # The killed group ran again, in a new attempt that was committed.
    assert len(result.attempts[killed["group"]]) >= 2
    assert result.manifests[killed["group"]]["attempt"] != killed["attempt"]


def objects_with_their_process(stream: Any, page: dict[str, Any]) -> list[dict[str, Any]]:
    """A records function (module-level: it pickles) that labels each S3
    object with what the process that ran it had imported before its group
    began, and with that process's parent."""
    import sys

    warm = "asyncpager.cluster._warm" in sys.modules
    return [
        {"Key": o["Key"], "warm": warm, "parent": os.getppid()} for o in page.get("Contents") or ()
    ]
