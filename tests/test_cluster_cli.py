"""The export command on a local Dask cluster: ``--cluster local:2``."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from asyncpager.testing import Bucket, LatencyModel, LocalEndpoint, Table
from tests.conftest import free_port
from tests.test_cli import env, read_records, run

pytest.importorskip("distributed")

N_KEYS = 9_000
N_ITEMS = 3_000


@pytest.fixture(scope="module")
def endpoint() -> Iterator[LocalEndpoint]:
    with LocalEndpoint(
        buckets=[Bucket("cluster-bucket", N_KEYS, "unicode")],
        tables=[Table("cluster-table", N_ITEMS)],
        latency=LatencyModel(fixed=0.02),
    ) as ep:
        yield ep


def argv_for(endpoint: LocalEndpoint, out: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "asyncpager", "s3", "s3://cluster-bucket", "--shards", "6",
        "--page-size", "200", "--endpoint-url", endpoint.url, "--region", "us-east-1",
        "-o", str(out), "--cluster", "local:2", *extra,
    ]  # fmt: skip


@pytest.mark.slow
def test_cluster_export_equals_the_one_process_export(
    endpoint: LocalEndpoint, tmp_path: Path
) -> None:
    one = tmp_path / "one.jsonl"
    run("s3", "s3://cluster-bucket", "--endpoint-url", endpoint.url, "-o", str(one),
        "--workers", "1")  # fmt: skip
    out, stats = tmp_path / "out.jsonl.gz", tmp_path / "stats.json"
    done = subprocess.run(
        [*argv_for(endpoint, out, "--stats", str(stats))],
        env=env(), capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    expected = sorted(r["Key"] for r in read_records(one))
    got = sorted(r["Key"] for r in read_records(out))
    assert got == expected
    assert len(got) == N_KEYS
    body = json.loads(stats.read_text())
    # One task per worker of the local cluster the command started.
    assert body["tasks"] == 2
    assert body["committed"] == 2
    assert body["items_written"] == N_KEYS
    assert sum(s["items"] for s in body["per_task"].values()) == N_KEYS


@pytest.mark.slow
def test_dynamodb_to_a_folder_of_parts(endpoint: LocalEndpoint, tmp_path: Path) -> None:
    folder = tmp_path / "orders"
    done = run(
        "dynamodb", "cluster-table", "--segments", "4", "--endpoint-url", endpoint.url,
        "-o", f"{folder}/", "--cluster", "local:2", "--rate", "200", "--shared-rate",
        timeout=180,
    )  # fmt: skip
    assert done.returncode == 0
    manifest = json.loads((folder / "_manifest.json").read_text())
    assert manifest["items"] == N_ITEMS
    # Four segments in one group per worker of the local cluster.
    assert len(manifest["parts"]) == 2
    ids = []
    for part in manifest["parts"]:
        ids += [r["pk"] for r in read_records(folder / part["path"])]
    assert len(ids) == len(set(ids)) == N_ITEMS


@pytest.mark.slow
def test_dynamodb_lines_are_those_of_one_process(endpoint: LocalEndpoint, tmp_path: Path) -> None:
    # Both write plain values from raw pages, numbers kept as their text: the
    # same bytes line for line, whichever process wrote them.
    one, joined = tmp_path / "one.jsonl", tmp_path / "joined.jsonl"
    common = ("dynamodb", "cluster-table", "--segments", "4", "--endpoint-url", endpoint.url)
    assert run(*common, "-o", str(one), "--workers", "1").returncode == 0
    done = run(*common, "-o", str(joined), "--cluster", "local:2", timeout=180)
    assert done.returncode == 0
    expected = sorted(one.read_bytes().splitlines())
    assert len(expected) == N_ITEMS
    assert sorted(joined.read_bytes().splitlines()) == expected


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["sigint", "kill-9"])
def test_driver_stopped_then_restarted_with_its_checkpoint(
    endpoint: LocalEndpoint, tmp_path: Path, sig: int
) -> None:
    out, checkpoint = tmp_path / "out.jsonl", tmp_path / "cp.json"
    argv = argv_for(endpoint, out, "--checkpoint", str(checkpoint), "--tasks", "6")
    first = subprocess.Popen(argv, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    # Wait until some groups are committed and others are not.
    root = Path(f"{out}.cluster")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(list(root.glob("group-*"))) < 2:
        time.sleep(0.05)
    first.send_signal(sig)
    _, stderr = first.communicate(timeout=60)
    expected_code = 130 if sig == signal.SIGINT else -signal.SIGKILL
    assert first.returncode == expected_code, stderr
    committed = len(list(root.glob("group-*")))
    assert 2 <= committed < 6 or out.exists()
    final = subprocess.run(argv, env=env(), capture_output=True, text=True, timeout=180)
    assert final.returncode == 0, final.stderr
    keys = [r["Key"] for r in read_records(out)]
    assert len(keys) == len(set(keys)) == N_KEYS
    again = subprocess.run(argv, env=env(), capture_output=True, text=True, timeout=60)
    assert again.returncode == 0
    assert len(read_records(out)) == N_KEYS


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--cluster", "yarn"], "--cluster takes local or local:N"),
        (["--cluster", "local:0"], "needs a whole N >= 1"),
        (["--cluster", "local", "--workers", "2"], "--workers applies without a cluster"),
        (["--cluster", "local", "--scheduler", "tcp://127.0.0.1:1"], "not both"),
        (["--cluster", "local", "--max-items", "5"], "--max-items counts across all items"),
    ],
)
def test_bad_cluster_options_are_one_line_usage_errors(
    tmp_path: Path, extra: list[str], message: str
) -> None:
    done = run("s3", "s3://bkt", "-o", str(tmp_path / "x.jsonl"), *extra, check=False)
    assert done.returncode == 2
    assert message in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert not list(tmp_path.iterdir())


def test_cluster_needs_an_output_file(tmp_path: Path) -> None:
    done = run("s3", "s3://bkt", "--cluster", "local", check=False)
    assert done.returncode == 2
    assert "a cluster export needs -o/--output" in done.stderr


def test_unreachable_scheduler_is_one_line(tmp_path: Path) -> None:
    address = f"tcp://127.0.0.1:{free_port()}"
    done = subprocess.run(
        [sys.executable, "-m", "asyncpager", "s3", "s3://bkt", "--endpoint-url",
         "http://127.0.0.1:9", "-o", str(tmp_path / "x.jsonl"), "--scheduler", address],
        env=env(DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT="2s"),
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 1
    assert f"cannot reach the Dask scheduler {address}" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_without_dask_the_message_says_how_to_get_it(tmp_path: Path) -> None:
    # A `distributed` that cannot be imported, as on an install without the extra.
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "distributed.py").write_text("raise ImportError('not installed')\n")
    done = subprocess.run(
        [sys.executable, "-m", "asyncpager", "s3", "s3://bkt", "-o", str(tmp_path / "x.jsonl"),
         "--cluster", "local", "--endpoint-url", "http://127.0.0.1:9"],
        env=env(PYTHONPATH=str(shim)), capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert "pip install 'asyncpager[dask]'" in done.stderr
    assert not (tmp_path / "x.jsonl").exists()
