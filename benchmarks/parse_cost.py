"""CPU per page: botocore's response parser against asyncpager's compiled one.

Two pages, built here so the figures do not depend on a server:

* a 1,000-key S3 ``ListObjectsV2`` page (``rest-xml``) with distinct
  ``LastModified`` times, as S3 sends it;
* a 1,000-item DynamoDB ``Scan`` page (``json``), ten attributes per item
  covering S, N, B, BOOL, SS, M and L;
* a 1,000-item DynamoDB ``Scan`` page of flat items, ten scalar attributes
  each (S, N, BOOL and one SS), the shape of the page the parse-cost issue
  measured (botocore: about 33 ms on a quiet machine).

Each parser parses the same response dict through the same
``create_parser(protocol).parse(response, shape)`` call an endpoint makes;
the pages are checked to be identical first. The figure is
``time.process_time()`` per page, the best of several rounds in which the
parsers take turns (other work on the machine only ever adds time, and it
then adds to both). ``asyncpager`` is the installed path with
its defaults (the garbage collector paused during a parse);
``asyncpager, gc on`` is the same code with the collector running, to show
what the pause is worth.

    python -m benchmarks.parse_cost [--rounds 7] [--iterations 10]
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import json
import random
import time
from collections.abc import Callable
from typing import Any

import botocore.parsers
import botocore.session
from botocore.awsrequest import HeadersDict

from asyncpager.parsers import FastParserFactory


def list_objects_page(keys: int = 1000, seed: int = 1) -> bytes:
    rng = random.Random(seed)
    start = dt.datetime(2024, 1, 1)
    parts = [
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
        "<Name>logs-bucket</Name><Prefix>logs/</Prefix>"
        f"<KeyCount>{keys}</KeyCount><MaxKeys>1000</MaxKeys><IsTruncated>true</IsTruncated>"
    ]
    for i in range(keys):
        moment = start + dt.timedelta(seconds=rng.uniform(0, 2 * 365 * 86400))
        modified = moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
        parts.append(
            f"<Contents><Key>logs/2024/{i // 100:02d}/host-{i:06d}.json.gz</Key>"
            f"<LastModified>{modified}</LastModified>"
            f"<ETag>&quot;{rng.getrandbits(128):032x}&quot;</ETag>"
            f"<ChecksumAlgorithm>CRC64NVME</ChecksumAlgorithm><ChecksumType>FULL_OBJECT</ChecksumType>"
            f"<Size>{rng.randrange(1, 1 << 30)}</Size><StorageClass>STANDARD</StorageClass>"
            "</Contents>"
        )
    parts.append(
        "<EncodingType>url</EncodingType>"
        "<NextContinuationToken>1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=</NextContinuationToken>"
        "</ListBucketResult>"
    )
    return "".join(parts).encode()


def _item(rng: random.Random, i: int) -> dict[str, Any]:
    return {
        "pk": {"S": f"customer#{i:08d}"},
        "sk": {"N": str(rng.randrange(10**9))},
        "name": {"S": rng.choice(["Ana", "Bo", "Chloé", "Dmitri", "東京"]) + f" {i}"},
        "active": {"BOOL": rng.random() < 0.5},
        "score": {"N": f"{rng.uniform(-1000, 1000):.3f}"},
        "tags": {"SS": [f"tag-{rng.randrange(100)}" for _ in range(3)]},
        "payload": {"B": base64.b64encode(rng.randbytes(16)).decode()},
        "created": {"S": f"2024-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}"},
        "attrs": {"M": {"color": {"S": "blue"}, "count": {"N": str(rng.randrange(100))}}},
        "history": {"L": [{"S": "login"}, {"N": str(rng.randrange(1000))}]},
    }


def _flat_item(rng: random.Random, i: int) -> dict[str, Any]:
    return {
        "pk": {"S": f"user#{i:08d}"},
        "sk": {"S": f"profile#{rng.randrange(10**6):06d}"},
        "email": {"S": f"user{i}@example.com"},
        "country": {"S": rng.choice(["DE", "FR", "US", "JP", "BR"])},
        "plan": {"S": rng.choice(["free", "pro", "team"])},
        "age": {"N": str(rng.randrange(18, 90))},
        "balance": {"N": f"{rng.uniform(0, 10000):.2f}"},
        "logins": {"N": str(rng.randrange(10000))},
        "verified": {"BOOL": rng.random() < 0.5},
        "roles": {"SS": rng.sample(["admin", "billing", "dev", "ops", "read"], 2)},
    }


def _scan_document(items: list[dict[str, Any]]) -> bytes:
    document = {
        "Items": items,
        "Count": len(items),
        "ScannedCount": len(items),
        "LastEvaluatedKey": {"pk": items[-1]["pk"]},
    }
    return json.dumps(document, ensure_ascii=False).encode()


def scan_page(items: int = 1000, seed: int = 2) -> bytes:
    rng = random.Random(seed)
    return _scan_document([_item(rng, i) for i in range(items)])


def flat_scan_page(items: int = 1000, seed: int = 3) -> bytes:
    rng = random.Random(seed)
    return _scan_document([_flat_item(rng, i) for i in range(items)])


PAGES: list[tuple[str, str, str, Callable[[], bytes], dict[str, str]]] = [
    (
        "S3 ListObjectsV2, 1,000 keys",
        "s3",
        "ListObjectsV2",
        list_objects_page,
        {
            "x-amz-request-id": "EXAMPLE0001",
            "x-amz-id-2": "host",
            "Content-Type": "application/xml",
        },
    ),
    (
        "DynamoDB Scan, 1,000 items x 10 attributes",
        "dynamodb",
        "Scan",
        scan_page,
        {"x-amzn-RequestId": "EXAMPLE0002", "Content-Type": "application/x-amz-json-1.0"},
    ),
    (
        "DynamoDB Scan, 1,000 flat items x 10 scalar attributes",
        "dynamodb",
        "Scan",
        flat_scan_page,
        {"x-amzn-RequestId": "EXAMPLE0003", "Content-Type": "application/x-amz-json-1.0"},
    ),
]


def _best_ms(parsers: list[tuple[Callable[[], Any], int]], rounds: int) -> list[float]:
    """Best ms per page of each ``(parse, iterations)``, the parsers taking
    turns within every round so that they share whatever else the machine
    is doing."""
    best = [float("inf")] * len(parsers)
    for parse, _ in parsers:
        parse()
    for _ in range(rounds):
        for index, (parse, iterations) in enumerate(parsers):
            start = time.process_time()
            for _ in range(iterations):
                parse()
            elapsed = (time.process_time() - start) / iterations
            best[index] = min(best[index], elapsed * 1000)
    return best


def measure(
    session: Any,
    service: str,
    operation: str,
    body: bytes,
    headers: dict[str, str],
    rounds: int,
    iterations: int,
) -> tuple[float, float, float]:
    """ms per page: botocore, asyncpager, asyncpager with the collector on."""
    model = session.get_service_model(service)
    protocol = model.resolved_protocol
    shape = model.operation_model(operation).output_shape
    response = {
        "body": body,
        "headers": HeadersDict(headers),
        "status_code": 200,
        "context": {"operation_name": operation},
    }
    plain = botocore.parsers.ResponseParserFactory()
    fast = FastParserFactory(botocore.parsers.ResponseParserFactory(), model)
    fast_gc = FastParserFactory(botocore.parsers.ResponseParserFactory(), model, pause_gc=False)

    def parse(factory: Any) -> Any:
        return factory.create_parser(protocol).parse(dict(response), shape)

    theirs, ours = parse(plain), parse(fast)
    if ours != theirs or repr(ours) != repr(theirs):
        raise SystemExit(f"{service} {operation}: pages differ")
    # botocore is slow: fewer iterations per round, as many rounds.
    botocore_ms, ours_ms, gc_ms = _best_ms(
        [
            (lambda: parse(plain), max(1, iterations // 5)),
            (lambda: parse(fast), iterations),
            (lambda: parse(fast_gc), iterations),
        ],
        rounds,
    )
    return botocore_ms, ours_ms, gc_ms


def main(argv: list[str] | None = None) -> None:
    options = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    options.add_argument("--rounds", type=int, default=7, help="best of this many rounds")
    options.add_argument("--iterations", type=int, default=10, help="pages per round (ours)")
    args = options.parse_args(argv)

    session = botocore.session.get_session()
    print("| page | body | botocore ms/page | asyncpager ms/page | ratio | asyncpager, gc on |")
    print("|---|---:|---:|---:|---:|---:|")
    for title, service, operation, build, headers in PAGES:
        body = build()
        botocore_ms, ours_ms, gc_ms = measure(
            session, service, operation, body, headers, args.rounds, args.iterations
        )
        print(
            f"| {title} | {len(body) / 1024:.0f} KiB | {botocore_ms:.1f} | {ours_ms:.1f} "
            f"| {botocore_ms / ours_ms:.1f}x | {gc_ms:.1f} |"
        )


if __name__ == "__main__":
    main()
