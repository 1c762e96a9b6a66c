"""A randomised crash soak of the export command, against the local endpoint.

    .venv/bin/python -m tests.crash_soak [--seconds 600] [--seed N]

Each round draws an export (S3 buckets of five key shapes, some of their
objects listed with a checksum, and a directory bucket, whose keys come in
no order, DynamoDB tables,
EC2 instances in three regions or IAM users; one or two workers, or a local
Dask cluster; JSON Lines, gzip, zstd, Parquet or CSV; page sizes, shards,
segments, rates, commit intervals; S3 folders rolled up or a snapshot),
runs it against an endpoint that injects 500s, resets, cut and slow
bodies, repeated tokens and throttles, stops it 0-3 times at a random
moment after a checkpoint save (``kill -9`` mostly, sometimes Ctrl-C), then
runs it to the end (again after an exit 1: a stream failed, progress saved)
and checks that the output holds every item exactly once. Some rounds run
without a checkpoint, stopped at a random moment: each run starts over. A round that
does not is printed with its command and kept in ``--keep`` for a look.

The suite's crash tests stop runs at fixed moments; this finds the moments
they miss. It found two ways to write items twice: a page kept after a
stream failed on a repeated token, and a scan segment resumed from its start
by a checkpoint taken after its last page was written. Not part of the
suite: it runs as long as it is told to.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import io
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from asyncpager.testing import (
    Bucket,
    Ec2Fleet,
    Fault,
    IamUsers,
    LatencyModel,
    LocalEndpoint,
    Table,
    Throttle,
)
from asyncpager.testing._keys import key_space
from tests.conftest import saved_at

BUCKETS = [
    Bucket("soak-deep", 6000, "deep"),
    Bucket("soak-flat", 5000, "flat"),
    Bucket("soak-unicode", 4000, "unicode"),
    # Listed with the checksum S3 adds to new objects: on all, on some.
    Bucket("soak-hot", 5000, "hot", checksums=1.0),
    Bucket("soak-hive", 4000, "hive", checksums=0.5),
    Bucket("soak--use1-az4--x-s3", 3000, "deep"),
]
TABLES = [
    Table("soak-table", 4000, item_shape="mixed"),
    Table("soak-sorted", 3000, sort_key="sk", items_per_partition=10),
]
REGIONS = ("us-east-1", "eu-west-1", "ap-southeast-2")
FLEET = Ec2Fleet(REGIONS, per_region=400)
USERS = IamUsers(700)
FAULTS = [
    Fault("reset", probability=0.02),
    Fault("internal_error", probability=0.03),
    Fault("cut_body", probability=0.01),
    Fault("slow_body", probability=0.01),
    Fault("repeat_token", probability=0.01),
]
#: What the CSV sink puts before a value that a spreadsheet would run.
_FORMULA_START = "=+-@\t\r"


def environment() -> dict[str, str]:
    return dict(
        os.environ,
        AWS_ACCESS_KEY_ID="soak",
        AWS_SECRET_ACCESS_KEY="soak",
        AWS_DEFAULT_REGION="us-east-1",
    )


def read_records(path: Path) -> list[dict[str, Any]]:
    if path.name.endswith(".parquet"):
        import pyarrow.parquet as pq

        return list(pq.read_table(path).to_pylist())
    raw = path.read_bytes()
    if path.name.endswith(".gz"):
        raw = gzip.decompress(raw)
    elif path.name.endswith(".zst"):
        import zstandard

        # Frames are cut at commits (and parts joined): read across them all.
        stream = io.BytesIO(raw)
        raw = zstandard.ZstdDecompressor().stream_reader(stream, read_across_frames=True).read()
    text = raw.decode("utf-8")
    if ".csv" in path.name:
        rows = list(csv.DictReader(io.StringIO(text, newline="")))
        for row in rows:
            for name, value in row.items():
                if len(value) > 1 and value[0] == "'" and value[1] in _FORMULA_START:
                    row[name] = value[1:]
        return rows
    return [json.loads(line) for line in text.splitlines() if line]


def one_round(rng: random.Random, url: str, folder: Path) -> tuple[str, str | None, list[str]]:
    """Run one drawn export to the end; its description, what went wrong
    (``None``: exactly once) and what each run said."""
    kind = rng.choice(["s3", "s3", "s3", "dynamodb", "dynamodb", "ec2", "iam"])
    # Shard groups as tasks on a local Dask cluster, now and then (a cluster
    # takes seconds to start).
    cluster = kind in ("s3", "dynamodb") and rng.random() < 0.12
    workers = "1" if cluster else rng.choice(["1", "1", "2"])
    fmt = rng.choice(
        ["jsonl", "jsonl.gz", "jsonl.zst", "parquet", *(["csv"] if workers == "1" else [])]
    )
    if cluster:
        fmt = rng.choice(["jsonl", "parquet"])
    out, checkpoint = folder / f"out.{fmt}", folder / "cp.json"
    expected: set[str] | int
    if kind == "s3":
        bucket = rng.choice(BUCKETS)
        source = ["s3", f"s3://{bucket.name}", "--page-size", str(rng.choice([100, 250, 1000]))]
        if rng.random() < 0.5:
            source += ["--shards", str(rng.choice([1, 3, 8]))]
        space = key_space(bucket)
        expected = {space.key(i) for i in range(bucket.count)}
        if rng.random() < 0.15:
            # Folders rolled up: a key with a "/" stands for its first folder.
            source += ["--delimiter", "/"]
            expected = {k[: k.index("/") + 1] if "/" in k else k for k in expected}
        if rng.random() < 0.15:
            source.append("--snapshot")  # every generated object is older
    elif kind == "ec2":
        source = ["call", "ec2", "describe_instances", "--regions", ",".join(REGIONS)]
        source += ["--page-size", str(rng.choice([5, 20, 100]))]
        expected = len(REGIONS) * FLEET.per_region // FLEET.per_reservation
    elif kind == "iam":
        source = ["call", "iam", "list_users", "--page-size", str(rng.choice([10, 100]))]
        expected = USERS.count
    else:
        table = rng.choice(TABLES)
        source = ["dynamodb", table.name, "--page-size", str(rng.choice([25, 100, 500]))]
        if rng.random() < 0.5:
            source += ["--segments", str(rng.choice([1, 4, 9]))]
        expected = table.count
    argv = [
        sys.executable, "-m", "asyncpager", *source, "--endpoint-url", url,
        "--region", "us-east-1", "-o", str(out), "--checkpoint", str(checkpoint),
        "--commit-interval", str(rng.choice([0.05, 0.3, 1.0])),
        "--concurrency", str(rng.choice([4, 16])),
        *(["--cluster", "local:2", "--tasks", "6"] if cluster else ["--workers", workers]),
        "--rate", rng.choice(["30", "80", "200"]), "--no-progress",
    ]  # fmt: skip
    # Now and then without a checkpoint: each run then starts over, whatever
    # the one stopped before it left (the parts of --workers included).
    resumable = rng.random() >= 0.15
    if not resumable:
        at = argv.index("--checkpoint")
        del argv[at : at + 2]
    said: list[str] = []
    for _ in range(rng.randint(0, 3)):
        before = saved_at(checkpoint)
        process = subprocess.Popen(
            argv, env=environment(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        deadline = time.monotonic() + 60
        while resumable and saved_at(checkpoint) == before and process.poll() is None:
            if time.monotonic() > deadline:
                break
            time.sleep(0.003)
        time.sleep(rng.uniform(0.0, 0.8) if resumable else rng.uniform(0.3, 1.5))
        sig = rng.choice([signal.SIGKILL, signal.SIGKILL, signal.SIGINT])
        if process.poll() is None:
            process.send_signal(sig)
        _, stderr = process.communicate(timeout=120)
        said.append(f"{sig.name}: exit {process.returncode} {stderr.decode()[-300:]!r}")
    code = None
    for _ in range(6):
        final = subprocess.run(argv, env=environment(), capture_output=True, text=True, timeout=600)
        code = final.returncode
        said.append(f"to the end: exit {code} {final.stderr[-300:]!r}")
        if code == 0:
            break
    shown = [a for a in argv[3:] if not a.startswith(("http://", str(folder)))]
    shown = [a for a in shown if a not in ("--endpoint-url", "-o", "--checkpoint")]
    described = f"to {fmt}: {' '.join(shown)}" + ("" if resumable else " (no checkpoint)")
    if code != 0:
        return described, f"exit {code} after six runs", said
    rows = read_records(out)
    if kind == "s3":
        ids = [str(r.get("Key") or r.get("Prefix")) for r in rows]
    elif kind == "ec2":
        ids = [json.dumps([r.get("_region"), r.get("ReservationId")]) for r in rows]
    elif kind == "iam":
        ids = [str(r["UserName"]) for r in rows]
    else:
        ids = [json.dumps([r.get("pk"), r.get("sk")], default=str) for r in rows]
    if len(ids) != len(set(ids)):
        return described, f"{len(ids) - len(set(ids))} items twice", said
    if isinstance(expected, set) and set(ids) != expected:
        missing, extra = len(expected - set(ids)), len(set(ids) - expected)
        return described, f"{missing} keys missing, {extra} not in the bucket", said
    if isinstance(expected, int) and len(ids) != expected:
        return described, f"{len(ids)} items, not {expected}", said
    return described, None, said


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=600.0)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--keep", type=Path, default=Path(tempfile.gettempdir()) / "crash-soak")
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.randrange(1 << 32)
    rng = random.Random(seed)
    print(f"seed {seed}", flush=True)
    rounds = bad = 0
    with LocalEndpoint(
        buckets=BUCKETS,
        tables=TABLES,
        ec2=FLEET,
        iam=USERS,
        latency=LatencyModel(fixed=0.01, jitter=0.01),
        faults=FAULTS,
        throttles=[Throttle("s3", rate=150.0, burst=20)],
        seed=seed,
    ) as endpoint:
        end = time.monotonic() + args.seconds
        while time.monotonic() < end:
            rounds += 1
            folder = Path(tempfile.mkdtemp(prefix="crash-soak-"))
            described, problem, said = one_round(rng, endpoint.url, folder)
            print(f"{'ok ' if problem is None else 'BAD'} {rounds}: {described}", flush=True)
            if problem is None:
                shutil.rmtree(folder, ignore_errors=True)
                continue
            bad += 1
            kept = args.keep / f"{seed}-{rounds}"
            kept.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(folder), kept)
            print(f"    {problem}; the files are in {kept}", flush=True)
            for line in said:
                print(f"    {line}", flush=True)
    print(f"{rounds} rounds, {bad} bad (seed {seed})", flush=True)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
