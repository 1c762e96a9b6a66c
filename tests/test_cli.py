"""The ``asyncpager`` command, run for real as a subprocess."""

from __future__ import annotations

import contextlib
import csv
import gzip
import io
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from asyncpager.testing import Bucket, LatencyModel, LocalEndpoint, Table
from tests.conftest import create_table, put_s3_keys, saved_at
from tests.test_paginate_parity import AWKWARD_KEYS
from tests.test_writeback import punches

SECRET = "cli-test-secret-Zq81xWv0"  # a known value, searched for in everything written


def env(**extra: str) -> dict[str, str]:
    out = dict(os.environ)
    out.update(
        AWS_ACCESS_KEY_ID="AKIDCLITEST",
        AWS_SECRET_ACCESS_KEY=SECRET,
        AWS_SESSION_TOKEN="cli-test-session-token-Y7",
        AWS_DEFAULT_REGION="us-east-1",
    )
    out.update(extra)
    return out


def run(*argv: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-m", "asyncpager", *argv],
        capture_output=True,
        text=True,
        env=env(),
        timeout=timeout,
        check=False,
    )
    if check and done.returncode != 0:
        raise AssertionError(f"exit {done.returncode}: {done.stderr}")
    return done


@pytest.fixture(scope="module")
def moto_data(moto_server: str) -> dict[str, Any]:
    import boto3

    s3 = boto3.client("s3", region_name="us-east-1", endpoint_url=moto_server)
    bucket = f"cli-{uuid.uuid4().hex[:10]}"
    s3.create_bucket(Bucket=bucket)
    put_s3_keys(s3, bucket, AWKWARD_KEYS)
    ddb = boto3.client("dynamodb", region_name="us-east-1", endpoint_url=moto_server)
    table = f"cli-{uuid.uuid4().hex[:10]}"
    create_table(ddb, table)
    for i in range(40):
        ddb.put_item(
            TableName=table,
            Item={
                "pk": {"S": f"p{i:03d}"},
                "n": {"N": "12345678901234567890.123456789"},
                "b": {"B": bytes([i, 1, 2])},
                "ss": {"SS": ["a", "b"]},
                "formula": {"S": '=HYPERLINK("x")'},
            },
        )
    return {"bucket": bucket, "table": table, "url": moto_server}


def read_records(path: Path) -> list[dict[str, Any]]:
    name = path.name
    if name.endswith(".parquet"):
        import pyarrow.parquet as pq

        return list(pq.read_table(path).to_pylist())
    raw = path.read_bytes()
    if name.endswith(".gz"):
        raw = gzip.decompress(raw)
        name = name[:-3]
    elif name.endswith(".zst"):
        import zstandard

        # Frames are cut at commits (and parts joined): read across them all.
        reader = zstandard.ZstdDecompressor().stream_reader(
            io.BytesIO(raw), read_across_frames=True
        )
        raw = reader.read()
        name = name[:-4]
    text = raw.decode("utf-8")
    if name.endswith(".csv"):
        return list(csv.DictReader(io.StringIO(text, newline="")))
    return [json.loads(line) for line in text.splitlines() if line]


def formats() -> Iterator[str]:
    yield "out.jsonl"
    yield "out.jsonl.gz"
    yield "out.csv"
    try:
        import zstandard  # noqa: F401

        yield "out.jsonl.zst"
    except ImportError:
        pass
    try:
        import pyarrow  # noqa: F401

        yield "out.parquet"
    except ImportError:
        pass


@pytest.mark.parametrize("name", list(formats()))
def test_s3_export_equals_boto3(moto_data: dict[str, Any], tmp_path: Path, name: str) -> None:
    out = tmp_path / name
    run(
        "s3", f"s3://{moto_data['bucket']}", "--endpoint-url", moto_data["url"],
        "--region", "us-east-1", "-o", str(out), "--shards", "5", "--page-size", "4",
    )  # fmt: skip
    keys = [r["Key"] for r in read_records(out)]
    assert sorted(keys) == sorted(AWKWARD_KEYS)
    assert len(keys) == len(set(keys))


def test_s3_to_stdout_with_query(moto_data: dict[str, Any]) -> None:
    done = run(
        "s3", f"s3://{moto_data['bucket']}/many/", "--endpoint-url", moto_data["url"],
        "--region", "us-east-1", "--query", "Contents[].Key",
    )  # fmt: skip
    values = sorted(json.loads(line)["value"] for line in done.stdout.splitlines())
    assert values == sorted(k for k in AWKWARD_KEYS if k.startswith("many/"))
    assert done.stderr == ""  # not a terminal: nothing but errors


def test_dynamodb_export_numbers_exact(moto_data: dict[str, Any], tmp_path: Path) -> None:
    out = tmp_path / "t.jsonl"
    run(
        "dynamodb", moto_data["table"], "--endpoint-url", moto_data["url"],
        "--region", "us-east-1", "-o", str(out), "--segments", "4", "--page-size", "7",
    )  # fmt: skip
    text = out.read_text()
    assert text.count("12345678901234567890.123456789") == 40
    rows = read_records(out)
    assert sorted(r["pk"] for r in rows) == [f"p{i:03d}" for i in range(40)]


def test_csv_neutralises_formulas(moto_data: dict[str, Any], tmp_path: Path) -> None:
    out = tmp_path / "t.csv"
    run(
        "dynamodb", moto_data["table"], "--endpoint-url", moto_data["url"],
        "--region", "us-east-1", "-o", str(out),
    )  # fmt: skip
    rows = read_records(out)
    assert all(not r["formula"].startswith("=") for r in rows)
    raw = tmp_path / "raw.csv"
    run(
        "dynamodb", moto_data["table"], "--endpoint-url", moto_data["url"],
        "--region", "us-east-1", "-o", str(raw), "--csv-raw-formulas",
    )  # fmt: skip
    assert all(r["formula"].startswith("=") for r in read_records(raw))


def test_call_across_regions_labels_items(moto_server: str, tmp_path: Path) -> None:
    import boto3

    regions = ["us-west-2", "ap-northeast-1", "eu-north-1"]
    queue = f"cli-{uuid.uuid4().hex[:8]}"
    for region in regions:
        boto3.client("sqs", region_name=region, endpoint_url=moto_server).create_queue(
            QueueName=f"{queue}-{region}"
        )
    out = tmp_path / "q.jsonl"
    run(
        "call", "sqs", "list_queues", "--params", json.dumps({"QueueNamePrefix": queue}),
        "--regions", ",".join(regions), "--endpoint-url", moto_server, "-o", str(out),
    )  # fmt: skip
    rows = read_records(out)
    assert sorted(r["_region"] for r in rows) == sorted(regions)
    assert all(r["value"].endswith(r["_region"]) for r in rows)


BAD_INPUTS = [
    (["s3", "bucket/key"], "not an s3:// URL"),
    (["s3", "s3://"], "no bucket"),
    (["call", "nosuchservice", "list_things"], "unknown service"),
    (["call", "s3", "list_everything"], "no operation"),
    (["call", "s3", "get_object"], "not pageable"),
    (["call", "s3", "list_buckets", "--region", "mars-north-9"], "unknown region"),
    (["call", "s3", "list_objects_v2", "--params", "{nope"], "not valid JSON"),
    (["s3", "s3://b-b-b", "--query", "Contents[."], "invalid --query"),
    (["s3", "s3://b-b-b", "--rate", "0"], "positive number"),
    (["s3", "s3://b-b-b", "--rate", "-3"], "positive number"),
    (["dynamodb", "t", "--segments", "0"], "at least 1"),
    (["dynamodb", "t", "--segments", "1000001"], "between 1 and 1000000"),
    (["s3", "s3://b-b-b", "-o", "/nonexistent-dir/x/out.jsonl"], "/nonexistent-dir/x"),
    (["s3", "s3://b-b-b", "--endpoint-url", "ftp://host"], "http(s) URL"),
    (["s3", "s3://b-b-b", "--checkpoint", "cp.json"], "needs -o"),
    (["frobnicate"], "invalid choice"),
    (["s3", "s3://b-b-b", "--params", '{"StartAfter": "k"}'], "set by the planner"),
    (["s3", "s3://b-b-b", "--params", '{"RequestPayers": "requester"}'], "takes no RequestPayers"),
    (["s3", "s3://b-b-b", "--params", "[1]"], "must be a JSON object"),
]


@pytest.mark.parametrize(("argv", "message"), BAD_INPUTS)
def test_bad_input_is_one_line_and_exit_2(argv: list[str], message: str) -> None:
    done = run(*argv, check=False)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert message in lines[0]
    assert "Traceback" not in done.stderr


def test_the_command_sends_as_many_requests_at_once_as_the_library() -> None:
    import inspect

    from asyncpager import Fetcher
    from asyncpager.cli import build_parser

    default = inspect.signature(Fetcher.__init__).parameters["concurrency"].default
    for command in (["s3", "s3://b-b-b"], ["dynamodb", "tbl"], ["call", "iam", "list_users"]):
        assert build_parser().parse_args(command).concurrency == default == 64


def test_corrupt_checkpoint_is_refused(tmp_path: Path) -> None:
    checkpoint = tmp_path / "cp.json"
    checkpoint.write_text("{not json")
    done = run(
        "s3", "s3://b-b-b", "-o", str(tmp_path / "o.jsonl"), "--checkpoint", str(checkpoint),
        check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert "corrupt checkpoint" in done.stderr
    assert checkpoint.read_text() == "{not json"


def test_unreachable_endpoint_is_clear(tmp_path: Path) -> None:
    from tests.conftest import free_port

    port = free_port()
    done = run(
        "s3", "s3://b-b-b", "--endpoint-url", f"http://127.0.0.1:{port}",
        "-o", str(tmp_path / "o.jsonl"), check=False, timeout=300,
    )  # fmt: skip
    assert done.returncode == 1
    # Every key range fails alike, each naming its own URL (its range's
    # start-after): one line says it, with the URL's path.
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert re.fullmatch(
        r"asyncpager: \d+ streams of s3 \S+ ListObjectsV2 Bucket=b-b-b failed: "
        r"EndpointConnectionError: Could not connect to the endpoint URL: "
        rf'"http://127\.0\.0\.1:{port}/b-b-b"; operation=ListObjectsV2',
        lines[0],
    ), lines


@pytest.mark.parametrize(("workers", "resumable"), [("1", False), ("2", False), ("2", True)])
def test_a_missing_bucket_is_one_line_and_the_others_are_written(
    tmp_path: Path, workers: str, resumable: bool
) -> None:
    # Each key range of the missing bucket fails alike (with two workers,
    # in both): said once, with how many; the bucket that is there is
    # written whole, by two workers as by one.
    out = tmp_path / "o.jsonl"
    stats = tmp_path / "stats.json"
    argv = ["--workers", workers, "-o", str(out), "--shards", "6", "--region", "us-east-1"]
    argv += ["--stats", str(stats)]
    if resumable:
        argv += ["--checkpoint", str(tmp_path / "cp.json")]
    with LocalEndpoint(buckets=[Bucket("here", 700, "deep")]) as ep:
        runs = [
            run("s3", "s3://here", "s3://not-here", "--endpoint-url", ep.url, *argv, check=False)
            for _ in range(2 if resumable else 1)
        ]
    for done in runs:
        assert done.returncode == 1, done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1, done.stderr
        assert re.fullmatch(
            r"asyncpager: \d+ streams of s3 us-east-1 ListObjectsV2 Bucket=not-here failed: "
            r"NoSuchBucket: .*",
            lines[0],
        ), lines
        assert int(lines[0].split()[1]) >= 2
    # After a rerun from the checkpoint too: each key once.
    written = [json.loads(line) for line in out.read_text().splitlines()]
    assert {item["_bucket"] for item in written} == {"here"}
    assert len(written) == len({item["Key"] for item in written}) == 700
    # Without a checkpoint nothing resumes from the parts: none are left.
    assert (Path(f"{out}.workers").exists()) == (resumable and workers == "2")
    # --stats lists each failed stream, from every worker.
    failures = json.loads(stats.read_text())["failures"]
    assert len(failures) == int(lines[0].split()[1])
    assert {f["source"] for f in failures} == {"s3 us-east-1 ListObjectsV2 Bucket=not-here"}


@pytest.mark.parametrize("workers", ["1", "2"])
def test_buckets_in_two_regions_export_from_one_command(tmp_path: Path, workers: str) -> None:
    buckets = [Bucket("eu-keys", 2_500, "deep", region="eu-west-1"), Bucket("us-keys", 300)]
    out = tmp_path / "o.jsonl"
    with LocalEndpoint(buckets=buckets) as ep:
        run(
            *("s3", "s3://eu-keys", "s3://us-keys", "--endpoint-url", ep.url),
            *("--region", "us-east-1", "-o", str(out), "--workers", workers),
        )
    rows = read_records(out)
    assert len(rows) == len({(r["_bucket"], r["Key"]) for r in rows}) == 2_800
    assert sum(r["_bucket"] == "eu-keys" for r in rows) == 2_500


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_requester_pays_bucket_exports_with_its_params(tmp_path: Path, workers: str) -> None:
    out = tmp_path / "o.jsonl"
    with LocalEndpoint(buckets=[Bucket("paid", 3_000, "deep", requester_pays=True)]) as ep:
        argv = ["s3", "s3://paid", "--endpoint-url", ep.url, "--region", "us-east-1"]
        argv += ["-o", str(out), "--workers", workers]
        refused = run(*argv, check=False)
        run(*argv, "--params", '{"RequestPayer": "requester", "FetchOwner": true}')
    assert refused.returncode == 1
    (line,) = refused.stderr.strip().splitlines()
    assert "AccessDenied" in line
    rows = read_records(out)
    assert len(rows) == len({r["Key"] for r in rows}) == 3_000
    assert all(r["Owner"]["ID"] for r in rows)  # FetchOwner reached every request


def test_one_process_samples_the_keys_once_and_not_to_resume(tmp_path: Path) -> None:
    # A bucket that one page holds: the sample (two listings at once), then
    # one listing (not a short first page and a split). A large one starts
    # with a shard per request slot. A run that goes on from its checkpoint
    # runs the checkpoint's streams: it samples nothing.
    buckets = [Bucket("page", 1_000, "flat"), Bucket("large", 30_000, "deep")]
    with LocalEndpoint(buckets=buckets) as ep:

        def export(url: str, *more: str) -> tuple[dict[str, Any], int]:
            before = ep.stats().requests.get(("s3", "ListObjectsV2"), 0)
            stats = tmp_path / "stats.json"
            run(
                *("s3", url, "--endpoint-url", ep.url, "--region", "us-east-1"),
                *("-o", str(tmp_path / "o.jsonl"), "--workers", "1", "--stats", str(stats)),
                *more,
            )
            sent = ep.stats().requests.get(("s3", "ListObjectsV2"), 0) - before
            return json.loads(stats.read_text()), sent

        figures, sent = export("s3://page")
        assert (figures["requests"], figures["streams_total"], sent) == (1, 1, 3)
        assert len(read_records(tmp_path / "o.jsonl")) == 1_000
        checkpoint = ["--checkpoint", str(tmp_path / "cp.json")]
        figures, sent = export("s3://large", *checkpoint)
        assert figures["streams_total"] >= 64
        assert sent == figures["requests"] + 2  # the sample: folders, and keys
        assert len(read_records(tmp_path / "o.jsonl")) == 30_000
        _, sent = export("s3://large", *checkpoint)  # already complete
        assert sent == 0


@pytest.mark.anyio
async def test_a_sample_that_fails_is_asked_twice_at_most() -> None:
    # A sample that fails costs a blind cut, not the listing, which retries
    # on its own: one retry, not three (five seconds against an endpoint
    # that cannot be reached, before the listing's first request).
    import argparse

    from asyncpager.cli import _sample_urls
    from asyncpager.plan.s3 import KeySample
    from asyncpager.testing import Fault

    broken = Fault("internal_error", service="s3", probability=1.0)
    with LocalEndpoint(buckets=[Bucket("failing", 10)], faults=[broken]) as ep:
        args = argparse.Namespace(
            profile=None, region="us-east-1", endpoint_url=ep.url, no_verify_ssl=False,
            concurrency=64, urls=["s3://failing"],
        )  # fmt: skip
        assert await _sample_urls(args, {}) == {"s3://failing": KeySample()}
        # Two listings at once, each sent twice.
        assert ep.stats().count("s3", "ListObjectsV2") == 4


def test_a_configuration_botocore_cannot_read_is_one_line(tmp_path: Path) -> None:
    # With --workers, the shard cuts are sampled before any stream runs: the
    # error comes from there, outside the streams that report their own.
    from tests.conftest import free_port

    config = tmp_path / "config"
    config.write_text("[default\nbroken")
    done = subprocess.run(
        [sys.executable, "-m", "asyncpager", "s3", "s3://b-b-b", "--workers", "2",
         "--endpoint-url", f"http://127.0.0.1:{free_port()}", "-o", str(tmp_path / "o.jsonl")],
        capture_output=True, text=True, env=env(AWS_CONFIG_FILE=str(config)),
        timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"asyncpager: error: Unable to parse config file: {config}"
    ]
    assert not (tmp_path / "o.jsonl").exists()


# -- crash safety, against the fast local endpoint -----------------------------

N_KEYS = 30_000
N_ITEMS = 6_000


@pytest.fixture(scope="module")
def endpoint() -> Iterator[LocalEndpoint]:
    with LocalEndpoint(
        buckets=[Bucket("crash-bucket", N_KEYS, "unicode")],
        tables=[Table("crash-table", N_ITEMS)],
        latency=LatencyModel(fixed=0.02),
    ) as ep:
        yield ep


def export_argv(endpoint: LocalEndpoint, kind: str, out: Path, checkpoint: Path) -> list[str]:
    # Paced so that a run lasts at least a second and a bit (120 S3 pages,
    # 240 DynamoDB pages), however fast the machine: the crash tests stop
    # a run a few tenths of a second after its first save, and two workers
    # on a fast machine had finished by then. The burst is small: by
    # default it is the rate, and 100 of the 120 pages went at once (a run
    # with its modules' bytecode written finished 0.1 s after its first save).
    source = ["s3", "s3://crash-bucket", "--shards", "6", "--page-size", "250",
              "--rate", "100", "--burst", "5"]  # fmt: skip
    if kind == "dynamodb":
        source = ["dynamodb", "crash-table", "--segments", "5", "--page-size", "25",
                  "--rate", "200", "--burst", "5"]  # fmt: skip
    return [
        sys.executable, "-m", "asyncpager", *source, "--endpoint-url", endpoint.url,
        "--region", "us-east-1", "-o", str(out), "--checkpoint", str(checkpoint),
        "--commit-interval", "0.05", "--concurrency", "8",
    ]  # fmt: skip


def interrupt_and_resume(
    argv: list[str], sig: int, delays: list[float]
) -> list[subprocess.CompletedProcess[str]]:
    """Run ``argv`` and stop it with ``sig`` ``delay`` seconds after its first
    save of the checkpoint (each save is a new file renamed into place), for
    each delay; then run it to the end. Timed from the first save, not from
    the start, so that a faster machine or command still stops mid-way."""
    checkpoint = Path(argv[argv.index("--checkpoint") + 1])
    outcomes = []
    for delay in delays:
        before = saved_at(checkpoint)
        process = subprocess.Popen(argv, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while saved_at(checkpoint) == before and process.poll() is None:
            assert time.monotonic() < deadline, "no checkpoint saved in 60 s"
            time.sleep(0.005)
        time.sleep(delay)
        process.send_signal(sig)
        stdout, stderr = process.communicate(timeout=60)
        outcomes.append(
            subprocess.CompletedProcess(argv, process.returncode, stdout.decode(), stderr.decode())
        )
    final = subprocess.run(argv, env=env(), capture_output=True, text=True, timeout=300)
    assert final.returncode == 0, final.stderr
    outcomes.append(final)
    return outcomes


@pytest.mark.parametrize(
    ("kind", "name"),
    [("s3", "out.jsonl"), ("s3", "out.jsonl.gz"), ("dynamodb", "out.csv"), ("s3", "out.parquet")],
)
def test_kill_9_then_resume_exactly_once(
    endpoint: LocalEndpoint, tmp_path: Path, kind: str, name: str
) -> None:
    if name.endswith(".parquet"):
        pytest.importorskip("pyarrow")
    out, checkpoint = tmp_path / name, tmp_path / "cp.json"
    argv = export_argv(endpoint, kind, out, checkpoint)
    outcomes = interrupt_and_resume(argv, signal.SIGKILL, [0.3, 0.1, 0.4])
    assert all(o.returncode == -signal.SIGKILL for o in outcomes[:-1])
    rows = read_records(out)
    ids = [r["Key"] if kind == "s3" else r["pk"] for r in rows]
    total = N_KEYS if kind == "s3" else N_ITEMS
    assert len(ids) == len(set(ids)) == total
    assert oct(checkpoint.stat().st_mode & 0o777) == oct(0o600)


@pytest.mark.parametrize("kind", ["s3", "dynamodb"])
def test_a_stream_failed_on_a_repeated_token_resumes_exactly_once(
    tmp_path: Path, kind: str
) -> None:
    # One stream (one shard, one segment, one request at a time): its first
    # eight answers that carry a token send an old token back, as many as it
    # tries, so it fails once; the next run finds the server mended. Before,
    # the page that carried the old token was written and the checkpoint
    # resumed from that token: found by a crash soak, one page twice.
    from asyncpager.testing import Fault

    with LocalEndpoint(
        buckets=[Bucket("repeat-bucket", 2_000, "deep")],
        tables=[Table("repeat-table", 400)],
        faults=[Fault("repeat_token", first=8)],
    ) as ep:
        out, checkpoint = tmp_path / "out.jsonl", tmp_path / "cp.json"
        source = ["s3", "s3://repeat-bucket", "--shards", "1", "--page-size", "250"]
        if kind == "dynamodb":
            source = ["dynamodb", "repeat-table", "--segments", "1", "--page-size", "50"]
        argv = [
            *source, "--endpoint-url", ep.url, "--region", "us-east-1", "-o", str(out),
            "--checkpoint", str(checkpoint), "--concurrency", "1", "--workers", "1",
        ]  # fmt: skip
        failed = run(*argv, check=False)
        assert failed.returncode == 1, failed.stderr
        assert "repeated a pagination token" in failed.stderr
        run(*argv)
    rows = read_records(out)
    ids = [r["Key"] if kind == "s3" else r["pk"] for r in rows]
    assert len(ids) == len(set(ids)) == (2_000 if kind == "s3" else 400)


def test_sigint_saves_exits_130_and_resumes(endpoint: LocalEndpoint, tmp_path: Path) -> None:
    out, checkpoint = tmp_path / "out.jsonl", tmp_path / "cp.json"
    argv = export_argv(endpoint, "s3", out, checkpoint)
    outcomes = interrupt_and_resume(argv, signal.SIGINT, [0.4, 0.2])
    assert [o.returncode for o in outcomes[:-1]] == [130, 130]
    assert all("progress saved" in o.stderr for o in outcomes[:-1])
    keys = [r["Key"] for r in read_records(out)]
    assert len(keys) == len(set(keys)) == N_KEYS
    # Run again: nothing left to do, nothing written twice.
    again = subprocess.run(argv, env=env(), capture_output=True, text=True, timeout=120)
    assert again.returncode == 0
    assert len(read_records(out)) == N_KEYS


def test_checkpoint_of_another_command_is_refused(endpoint: LocalEndpoint, tmp_path: Path) -> None:
    out, checkpoint = tmp_path / "out.jsonl", tmp_path / "cp.json"
    argv = export_argv(endpoint, "s3", out, checkpoint)
    subprocess.run(argv, env=env(), capture_output=True, text=True, timeout=300, check=True)
    other = [a if a != "250" else "100" for a in argv]  # another page size, another plan
    done = subprocess.run(other, env=env(), capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "another command" in done.stderr


def test_no_secret_anywhere(endpoint: LocalEndpoint, tmp_path: Path) -> None:
    out, checkpoint, stats = tmp_path / "out.jsonl", tmp_path / "cp.json", tmp_path / "s.json"
    argv = [*export_argv(endpoint, "dynamodb", out, checkpoint), "--stats", str(stats)]
    first = subprocess.Popen(argv, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(1.0)
    first.send_signal(signal.SIGINT)
    stdout1, stderr1 = first.communicate(timeout=60)
    second = subprocess.run(
        [*argv, "--progress"], env=env(), capture_output=True, timeout=300, check=True
    )
    failing = run(
        "dynamodb", "no-such-table", "--endpoint-url", endpoint.url, "-o",
        str(tmp_path / "x.jsonl"), check=False,
    )  # fmt: skip
    assert failing.returncode == 1
    written = [stdout1, stderr1, second.stdout, second.stderr]
    written += [failing.stdout.encode(), failing.stderr.encode()]
    written += [p.read_bytes() for p in tmp_path.iterdir() if p.is_file()]
    for blob in written:
        assert SECRET.encode() not in blob
        assert b"cli-test-session-token" not in blob
        assert b"Signature=" not in blob
    body = json.loads(stats.read_text())
    assert body["items_written"] > 0


@pytest.mark.parametrize("name", ["out.jsonl.gz", "out.parquet"])
def test_workers_kill_9_then_resume_exactly_once(
    endpoint: LocalEndpoint, tmp_path: Path, name: str
) -> None:
    if name.endswith(".parquet"):
        pytest.importorskip("pyarrow")
    out, checkpoint = tmp_path / name, tmp_path / "cp.json"
    argv = [*export_argv(endpoint, "s3", out, checkpoint), "--workers", "2"]
    outcomes = interrupt_and_resume(argv, signal.SIGKILL, [0.5, 0.3])
    assert all(o.returncode == -signal.SIGKILL for o in outcomes[:-1])
    keys = [r["Key"] for r in read_records(out)]
    assert len(keys) == len(set(keys)) == N_KEYS
    assert not (tmp_path / f"{name}.workers").exists()
    # The coordinator's kill took its workers with it: nothing writes any more.
    size = out.stat().st_size
    time.sleep(0.5)
    assert out.stat().st_size == size


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT])
def test_workers_without_a_checkpoint_start_over_when_run_again(
    endpoint: LocalEndpoint, tmp_path: Path, sig: int
) -> None:
    # Nothing resumes parts without a checkpoint (and what was gathered of
    # them is given back): a second run starts over, whatever the first left.
    out = tmp_path / "out.jsonl"
    argv = [*export_argv(endpoint, "s3", out, tmp_path / "unused"), "--workers", "2"]
    at = argv.index("--checkpoint")
    del argv[at : at + 2]
    parts = tmp_path / "out.jsonl.workers"
    process = subprocess.Popen(argv, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not out.exists() and process.poll() is None:
        # Stopped once a worker's part has been gathered from.
        gathering = parts / "gathering.tmp"
        if gathering.exists() and gathering.stat().st_size > 0:
            break
        assert time.monotonic() < deadline, "nothing gathered in 60 s"
        time.sleep(0.005)
    process.send_signal(sig)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode != 0, "finished before it was stopped"
    if sig == signal.SIGINT:
        assert b"interrupted" in stderr
        assert not parts.exists()
    done = subprocess.run(argv, env=env(), capture_output=True, timeout=300)
    assert done.returncode == 0, done.stderr
    keys = [r["Key"] for r in read_records(out)]
    assert len(keys) == len(set(keys)) == N_KEYS
    assert not parts.exists()


def test_workers_gather_their_parts_into_the_output_as_they_go(
    endpoint: LocalEndpoint, tmp_path: Path
) -> None:
    # Two streams of 20 ms pages, 300 pages: three seconds at least, so
    # commits (every 50 ms) are gathered (every 0.5 s) while workers write.
    out = tmp_path / "out.jsonl"
    scratch = tmp_path / "out.jsonl.workers" / "gathering.tmp"
    argv = [sys.executable, "-m", "asyncpager", "s3", "s3://crash-bucket", "--endpoint-url",
            endpoint.url, "--region", "us-east-1", "-o", str(out), "--workers", "2",
            "--shards", "2", "--page-size", "100", "--concurrency", "1",
            "--commit-interval", "0.05"]  # fmt: skip
    parts = [scratch.parent / f"part-000{i}.jsonl" for i in range(2)]
    process = subprocess.Popen(argv, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    gathered = 0  # seen while a worker still runs
    freed = 0  # bytes of a part given back once gathered (no checkpoint resumes them)
    while process.poll() is None:
        with contextlib.suppress(OSError):
            size = scratch.stat().st_size
            if set(_worker_processes()) - {process.pid}:
                gathered = max(gathered, size)
                for part in parts:
                    stat = part.stat()
                    freed = max(freed, stat.st_size - stat.st_blocks * 512)
        time.sleep(0.02)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr
    assert gathered > 0
    if punches(tmp_path):
        assert freed > 0
    keys = [r["Key"] for r in read_records(out)]
    assert len(keys) == len(set(keys)) == N_KEYS
    assert not scratch.parent.exists()


def test_workers_write_standard_output_as_they_go(endpoint: LocalEndpoint) -> None:
    # As from one process, a reader of the output gets lines while the
    # workers still run, not all of them at the end.
    argv = [sys.executable, "-m", "asyncpager", "s3", "s3://crash-bucket", "--endpoint-url",
            endpoint.url, "--region", "us-east-1", "--workers", "2", "--shards", "2",
            "--page-size", "100", "--concurrency", "1", "--commit-interval", "0.05"]  # fmt: skip
    with subprocess.Popen(
        argv, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    ) as process:
        assert process.stdout is not None
        assert process.stderr is not None
        first_line = process.stdout.readline()
        workers_running = bool(set(_worker_processes()) - {process.pid})
        # Read through the same buffer as the first line (communicate()
        # would read the pipe beside it and miss what that buffer holds).
        rest = process.stdout.read()
        stderr = process.stderr.read()
        assert process.wait(timeout=60) == 0, stderr
    assert workers_running
    keys = [json.loads(line)["Key"] for line in (first_line + rest).splitlines()]
    assert len(keys) == len(set(keys)) == N_KEYS


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_reader_that_goes_away_is_one_line(endpoint: LocalEndpoint, workers: str) -> None:
    # `| head -1`: the error is the closed pipe, said once, not what the
    # broken output says when committed afterwards.
    argv = [sys.executable, "-m", "asyncpager", "s3", "s3://crash-bucket", "--endpoint-url",
            endpoint.url, "--region", "us-east-1", "--workers", workers,
            "--page-size", "100", "--concurrency", "2"]  # fmt: skip
    with subprocess.Popen(
        argv, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    ) as process:
        assert process.stdout is not None
        assert process.stderr is not None
        assert json.loads(process.stdout.readline())["Key"]
        process.stdout.close()
        stderr = process.stderr.read().decode()
        assert process.wait(timeout=60) == 1
    assert stderr.splitlines() == ["asyncpager: error: Broken pipe"]


def test_workers_writing_to_standard_output_leave_no_folder_behind(
    endpoint: LocalEndpoint, tmp_path: Path
) -> None:
    # Their parts are written in a folder of the temporary directory: gone
    # after a run that wrote everything, one that failed, and one whose
    # reader went away.
    temp = tmp_path / "tmp"
    temp.mkdir()
    base = [sys.executable, "-m", "asyncpager", "s3", "--endpoint-url", endpoint.url,
            "--region", "us-east-1", "--workers", "2", "--page-size", "500"]  # fmt: skip
    done = subprocess.run(
        [*base, "s3://crash-bucket"], env=env(TMPDIR=str(temp)), capture_output=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.splitlines()) == N_KEYS
    done = subprocess.run(
        [*base, "s3://no-such-bucket"], env=env(TMPDIR=str(temp)), capture_output=True, check=False
    )
    assert done.returncode == 1
    assert b"NoSuchBucket" in done.stderr
    with subprocess.Popen(
        [*base, "s3://crash-bucket"],
        env=env(TMPDIR=str(temp)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    ) as process:
        assert process.stdout is not None
        assert json.loads(process.stdout.readline())["Key"]
        process.stdout.close()
        assert process.wait(timeout=60) == 1
    assert list(temp.iterdir()) == []


def test_workers_refuse_csv_and_a_changed_worker_count(
    endpoint: LocalEndpoint, tmp_path: Path
) -> None:
    csv_out = tmp_path / "out.csv"
    done = run("s3", "s3://crash-bucket", "--endpoint-url", endpoint.url, "-o", str(csv_out),
               "--workers", "2", check=False)  # fmt: skip
    assert done.returncode == 2
    assert "jsonl or parquet" in done.stderr
    # The workers were started before the check, to import while it ran:
    # they were told to stop, and did, before the command returned.
    assert _worker_processes() == []
    out, checkpoint = tmp_path / "out.jsonl", tmp_path / "cp.json"
    argv = [*export_argv(endpoint, "s3", out, checkpoint), "--workers", "2"]
    interrupt_and_resume(argv, signal.SIGKILL, [0.3])
    three = [*argv[:-1], "3"]
    again = subprocess.run(three, env=env(), capture_output=True, text=True, timeout=120)
    assert again.returncode == 2
    assert "--workers" in again.stderr


def test_s3_lines_carry_botocores_timestamps(moto_data: dict[str, Any], tmp_path: Path) -> None:
    # The command reads S3 listings for JSON Lines in raw "json" mode: each
    # LastModified is cut from the wire text. It must be what writing
    # botocore's datetime gives, and CSV (which gets datetimes) must agree.
    import boto3

    from asyncpager.convert import plain_to_json_line

    s3 = boto3.client("s3", region_name="us-east-1", endpoint_url=moto_data["url"])
    expected = {
        o["Key"]: json.loads(plain_to_json_line(o))
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=moto_data["bucket"])
        for o in page.get("Contents", [])
    }
    lines, table = tmp_path / "out.jsonl", tmp_path / "out.csv"
    common = (f"s3://{moto_data['bucket']}", "--endpoint-url", moto_data["url"])
    run("s3", *common, "-o", str(lines), "--workers", "1")
    run("s3", *common, "-o", str(table), "--workers", "1")
    got = {r["Key"]: r for r in read_records(lines)}
    assert got == expected
    assert all("+00:00" in r["LastModified"] for r in got.values())
    assert {r["Key"]: r["LastModified"] for r in read_records(table)} == {
        k: r["LastModified"] for k, r in got.items()
    }


def test_raw_services_only_where_the_output_is_the_same() -> None:
    from asyncpager.cli import raw_services

    assert raw_services("s3", False, None, True) == {"s3": "lines"}
    assert raw_services("s3", False, None, False) == {}
    assert raw_services("s3", False, None, False, csv=True) == {"s3": "lines"}
    assert raw_services("s3", False, object(), False, csv=True) == {}
    assert raw_services("s3", False, object(), True) == {}
    assert raw_services("dynamodb", True, None, True) == {"dynamodb": "lines"}
    assert raw_services("dynamodb", True, None, False) == {"dynamodb": True}
    assert raw_services("dynamodb", False, None, True) == {"dynamodb": True}
    assert raw_services("dynamodb", False, None, False) == {}
    assert raw_services("dynamodb", False, object(), True) == {}
    assert raw_services("call", False, None, True) == {}


def test_dynamodb_json_export_writes_botocores_items(moto_server: str, tmp_path: Path) -> None:
    """``--dynamodb-json`` to JSON Lines parses pages raw: every line must be
    what botocore's parsed item gives, blobs and blob sets included."""
    import boto3

    from asyncpager.convert import plain_to_json_line

    client = boto3.client("dynamodb", region_name="us-east-1", endpoint_url=moto_server)
    table = f"typed-{uuid.uuid4().hex[:8]}"
    create_table(client, table)
    for i in range(30):
        client.put_item(
            TableName=table,
            Item={
                "pk": {"S": f"k{i}"},
                "b": {"B": bytes([i, 0, 255 - i]) * (i % 4 + 1)},
                "blobs": {"BS": [b"\x00" * (i + 1), b"\xfe\xff" + bytes([i])]},
                "n": {"N": f"{i}.50"},
                "ns": {"NS": ["1", f"-{i}.25"]},
                "s": {"S": f'caf\u00e9 {i} "q"'},
                "nested": {"M": {"b": {"B": b"nested" + bytes([i])}, "l": {"L": [{"NULL": True}]}}},
                "flag": {"BOOL": i % 2 == 0},
            },
        )
    out = tmp_path / "typed.jsonl"
    run(
        "dynamodb", table, "--dynamodb-json", "--endpoint-url", moto_server,
        "--region", "us-east-1", "-o", str(out), "--segments", "3", "--page-size", "4",
    )  # fmt: skip
    expected = [
        plain_to_json_line(item)
        for page in client.get_paginator("scan").paginate(TableName=table)
        for item in page["Items"]
    ]
    assert isinstance(client.scan(TableName=table, Limit=1)["Items"][0]["b"]["B"], bytes)
    got = out.read_bytes().splitlines(keepends=True)
    assert len(got) == 30
    assert sorted(got) == sorted(expected)


@pytest.mark.parametrize("spawn", ["0", "1"])
def test_workers_stats_carry_each_workers_figures(
    endpoint: LocalEndpoint, tmp_path: Path, spawn: str
) -> None:
    """Forked workers (Linux) and spawned ones (elsewhere) alike."""
    out, stats = tmp_path / "out.jsonl", tmp_path / "stats.json"
    argv = [sys.executable, "-m", "asyncpager", "s3", "s3://crash-bucket", "--endpoint-url",
            endpoint.url, "-o", str(out), "--workers", "2", "--stats", str(stats)]  # fmt: skip
    done = subprocess.run(
        argv, env=env(ASYNCPAGER_WORKERS_SPAWN=spawn), capture_output=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert _worker_processes() == []
    body = json.loads(stats.read_text())
    assert body["items_written"] == N_KEYS
    per_worker = body["per_worker"]
    assert len(per_worker) == 2
    assert sum(w["items_written"] for w in per_worker) == N_KEYS
    assert all(w["requests"] > 0 for w in per_worker)


def test_workers_are_handed_the_shards_left(endpoint: LocalEndpoint, tmp_path: Path) -> None:
    out, stats = tmp_path / "out.jsonl", tmp_path / "stats.json"
    run("s3", "s3://crash-bucket", "--endpoint-url", endpoint.url, "-o", str(out),
        "--workers", "2", "--shards", "16", "--stats", str(stats))  # fmt: skip
    keys = [r["Key"] for r in read_records(out)]
    assert len(keys) == len(set(keys)) == N_KEYS
    per_worker = json.loads(stats.read_text())["per_worker"]
    # Each started with 4 of the 16 shards; the other 8 were asked for (and
    # parts of running shards, once none were left).
    shards = [w["streams_total"] - w["splits"] for w in per_worker]
    assert sum(shards) == 16 + sum(w["given"] for w in per_worker)
    assert max(shards) > 4


def stealing_argv(endpoint: LocalEndpoint, tmp_path: Path) -> list[str]:
    # One shard each: a worker asks for more from the start (it has fewer
    # than ASK_BELOW streams), and with nothing left to hand out it is
    # given parts of the other's running shard.
    return [sys.executable, "-m", "asyncpager", "s3", "s3://crash-bucket", "--endpoint-url",
            endpoint.url, "--region", "us-east-1", "-o", str(tmp_path / "out.jsonl"),
            "--workers", "2", "--shards", "2", "--page-size", "250", "--concurrency", "2",
            "--commit-interval", "0.05", "--stats", str(tmp_path / "s.json")]  # fmt: skip


def test_a_worker_out_of_work_takes_part_of_anothers(
    endpoint: LocalEndpoint, tmp_path: Path
) -> None:
    done = subprocess.run(
        stealing_argv(endpoint, tmp_path), env=env(), capture_output=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    keys = [r["Key"] for r in read_records(tmp_path / "out.jsonl")]
    assert len(keys) == len(set(keys)) == N_KEYS
    per_worker = json.loads((tmp_path / "s.json").read_text())["per_worker"]
    given = sum(w["given"] for w in per_worker)
    assert given > 0
    # Every stream given away was run by the other worker.
    taken = sum(w["streams_total"] - w["splits"] for w in per_worker)
    assert taken == 2 + given


def test_taking_part_of_anothers_work_survives_kill_9(
    endpoint: LocalEndpoint, tmp_path: Path
) -> None:
    # Shards are narrowed on one side and parts taken on the other, each
    # saved before the other hears of it: any kill leaves every key once.
    checkpoint = tmp_path / "cp.json"
    # Paced (120 pages, two seconds at least), so that each run is still
    # listing when it is killed, however fast the machine (see export_argv).
    # The burst is small too: by default it is the rate, and a resumed run
    # with fewer than 60 pages left sent them all at once and finished
    # before its kill came.
    argv = [*stealing_argv(endpoint, tmp_path), "--checkpoint", str(checkpoint),
            "--rate", "60", "--burst", "5"]  # fmt: skip
    outcomes = interrupt_and_resume(argv, signal.SIGKILL, [0.5, 0.3, 0.4])
    assert all(o.returncode == -signal.SIGKILL for o in outcomes[:-1])
    keys = [r["Key"] for r in read_records(tmp_path / "out.jsonl")]
    assert len(keys) == len(set(keys)) == N_KEYS


def _worker_processes() -> list[int]:
    """Live ``--workers`` worker processes on this machine (Linux)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        # Spawned workers run the module; forked ones keep their
        # coordinator's command line.
        forked = b"-m" in cmdline and b"asyncpager" in cmdline and b"--workers" in cmdline
        if b"asyncpager.parallel" in cmdline or forked:
            found.append(int(entry.name))
    return found
