"""S3 over the REST-XML protocol: ListObjectsV2, ListObjects, ListBuckets,
HeadBucket and GetBucketLocation, for generated buckets; and CreateSession
for directory buckets.

A bucket named as S3 Express One Zone names its directory buckets
(``name--use1-az4--x-s3``, or ``--xa-s3`` in a Local Zone) is served as
one, with the differences AWS documents for ``ListObjectsV2``: keys come
in no particular order (here, blocks of keys in a scrambled order), and
``StartAfter``, a prefix that does not end in ``/`` and a delimiter other
than ``/`` are refused. botocore asks such a bucket for a session
(``CreateSession``) before its first listing. With a delimiter, this
endpoint answers in key order.

A requester-pays bucket refuses a request that does not say it pays
(``x-amz-request-payer: requester``) with 403 ``AccessDenied``.

A request signed for a region other than its bucket's is answered ``301
PermanentRedirect`` with ``x-amz-bucket-region``, as S3 answers it;
``GetBucketLocation`` is answered from anywhere.

Answers are assembled from byte templates, never through an XML library:
every object's ``</Key>...</Contents>`` tail comes from a per-bucket table of
4096 precomputed variants, so a 1000-key page is one pass of list appends.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import unquote

from asyncpager.testing._keys import KeySpace, key_space, url_encode, xml_escape
from asyncpager.testing._specs import Bucket
from asyncpager.testing._wire import (
    Call,
    InvalidToken,
    PageCache,
    Reply,
    Request,
    cyclic,
    decode_token,
    encode_token,
    interleave,
    iso_ms,
    join,
)

__all__ = ["S3Service"]

_DECL = b'<?xml version="1.0" encoding="UTF-8"?>\n'
_NS = b' xmlns="http://s3.amazonaws.com/doc/2006-03-01/"'
_OWNER_ID = "65a011a29cdf8ec533ec3d1ccaae921c" * 2
_OWNER = (f"<Owner><ID>{_OWNER_ID}</ID><DisplayName>asyncpager</DisplayName></Owner>").encode()
_CREATED = 1_672_531_200.0  # 2023-01-01, when every generated bucket was "created"
_SLOTS = 4096
_MAX_KEYS = 1000
_OPEN = b"<Contents><Key>"
#: Keys of a directory bucket come in runs of this many, in scrambled order.
_BLOCK = 97
_SESSION_SECONDS = 300

_STORAGE = ["STANDARD"] * 90 + ["STANDARD_IA"] * 5 + ["GLACIER"] * 3 + ["INTELLIGENT_TIERING"] * 2


class _ObjectMeta:
    """Size, ETag, LastModified, StorageClass and any checksum for each of
    4096 slots.

    Object ``i`` takes slot ``(i + offset) mod 4096`` of a shuffled table:
    deterministic, and a page's tails are one slice of the table.
    """

    def __init__(self, seed: int, checksums: float = 0.0) -> None:
        rng = random.Random(f"s3meta:{seed}")
        # Drawn apart, so that a bucket without checksums is served as it
        # was before they could be asked for.
        sums = random.Random(f"s3checksums:{seed}")
        self.offset = rng.randrange(_SLOTS)
        self.sizes: list[int] = []
        self.tails: list[bytes] = []
        self._owner_tails: list[bytes] | None = None
        self._parts: list[tuple[bytes, bytes, bytes]] = []
        for _ in range(_SLOTS):
            size = 0 if rng.random() < 0.01 else int(2 ** rng.uniform(4, 31))
            etag = f"{rng.getrandbits(128):032x}"
            modified = iso_ms(1_704_067_200 + rng.uniform(0, 2 * 365 * 86400))
            checksum = _checksum(sums) if sums.random() < checksums else ""
            head = (
                f"</Key><LastModified>{modified}</LastModified>"
                f"<ETag>&quot;{etag}&quot;</ETag>{checksum}<Size>{size}</Size>"
            ).encode()
            storage = f"<StorageClass>{rng.choice(_STORAGE)}</StorageClass></Contents>".encode()
            self.sizes.append(size)
            self.tails.append(head + storage)
            self._parts.append((head, _OWNER, storage))

    @property
    def owner_tails(self) -> list[bytes]:
        if self._owner_tails is None:
            self._owner_tails = [b"".join(p) for p in self._parts]
        return self._owner_tails

    def slot(self, i: int) -> int:
        return (i + self.offset) & (_SLOTS - 1)


def _checksum(rng: random.Random) -> str:
    """The checksum members of one object, in the order S3 lists them:
    mostly the CRC64NVME S3 adds itself, now and then one a client chose
    (COMPOSITE for a multipart upload's)."""
    roll = rng.random()
    if roll < 0.9:
        algorithm, kind = "CRC64NVME", "FULL_OBJECT"
    elif roll < 0.95:
        algorithm, kind = "CRC32C", "COMPOSITE"
    else:
        algorithm, kind = "SHA256", "COMPOSITE"
    return f"<ChecksumAlgorithm>{algorithm}</ChecksumAlgorithm><ChecksumType>{kind}</ChecksumType>"


class _S3Bucket:
    def __init__(self, spec: Bucket) -> None:
        self.spec = spec
        self.name = spec.name
        self.name_xml = xml_escape(spec.name).encode()
        self.keys: KeySpace = key_space(spec)
        self.meta = _ObjectMeta(spec.seed, spec.checksums)
        self.directory = is_directory_bucket(spec.name)
        self._ranges: dict[str, tuple[int, int]] = {}

    def prefix_range(self, prefix: str) -> tuple[int, int]:
        found = self._ranges.get(prefix)
        if found is None:
            if len(self._ranges) > 4096:
                self._ranges.clear()
            found = self._ranges[prefix] = self.keys.prefix_range(prefix)
        return found


def is_directory_bucket(name: str) -> bool:
    """Whether ``name`` is a directory bucket's (S3 Express One Zone)."""
    return name.endswith(("--x-s3", "--xa-s3"))


def _scramble(blocks: int) -> tuple[int, int]:
    """``(a, c)`` such that ``j -> (a * j + c) % blocks`` visits every block once."""
    a = max(1, int(blocks * 0.618)) | 1
    while math.gcd(a, blocks) != 1:
        a += 1
    return a, blocks // 3


@dataclass(slots=True)
class _Listing:
    runs: list[tuple[int, int]]
    prefixes: list[str]
    next_pos: int
    truncated: bool
    last: str | None


class S3Error(Exception):
    def __init__(self, status: int, code: str, message: str, **extra: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.extra = status, code, message, extra


def error_reply(
    status: int, code: str, message: str, request_id: str, head: bool = False, **extra: str
) -> Reply:
    """S3's error document (``<Error><Code>..``); a HEAD answer carries no body."""
    fields = "".join(f"<{k}>{xml_escape(v)}</{k}>" for k, v in extra.items())
    body = (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
        f"<Message>{xml_escape(message)}</Message>{fields}"
        f"<RequestId>{request_id}</RequestId><HostId>{request_id}=</HostId></Error>"
    ).encode()
    return Reply(status, body, head_only=head)


def _query(text: str) -> dict[str, str]:
    params: dict[str, str] = {}
    if text:
        for part in text.split("&"):
            name, _, value = part.partition("=")
            params[unquote(name)] = unquote(value)
    return params


def _bucket_from_host(host: str | None) -> str | None:
    """The bucket of a virtual-hosted request (``bucket.localhost:9000``)."""
    if not host:
        return None
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    for suffix in (".localhost", ".s3.amazonaws.com"):
        if name.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    marker = name.find(".s3.")
    if marker > 0 and name.endswith(".amazonaws.com"):
        return name[:marker]
    return None


class S3Service:
    """Routes and answers S3 requests for a fixed set of generated buckets."""

    name = "s3"

    def __init__(self, buckets: Sequence[Bucket], cache: PageCache) -> None:
        self.buckets = {b.name: _S3Bucket(b) for b in buckets}
        self.cache = cache

    # -- routing -------------------------------------------------------------

    def parse(self, request: Request, region: str) -> Call:
        path = request.path
        query = _query(request.query)
        bucket = _bucket_from_host(request.header(b"host"))
        key = ""
        if bucket is None:
            bucket, _, key = unquote(path).lstrip("/").partition("/")
        else:
            key = unquote(path).lstrip("/")
        method = request.method
        operation = "Unsupported"
        has_token = False
        if not bucket:
            if method == "GET":
                operation = "ListBuckets"
                has_token = "continuation-token" in query
        elif key:
            operation = "Unsupported"
        elif method == "HEAD":
            operation = "HeadBucket"
        elif method == "GET":
            if "location" in query:
                operation = "GetBucketLocation"
            elif "session" in query:
                operation = "CreateSession"
            elif query.get("list-type") == "2":
                operation = "ListObjectsV2"
                has_token = bool(query.get("continuation-token"))
            elif not (query.keys() - _V1_PARAMS):
                operation = "ListObjects"
                has_token = bool(query.get("marker"))
        params = (bucket, key, query)
        return Call(self.name, operation, region, request, params, has_token)

    def handle(self, call: Call) -> Reply:
        bucket_name, _, query = call.params
        head = call.request.method == "HEAD"
        try:
            if call.operation == "ListBuckets":
                return self._list_buckets(call, query)
            if call.operation == "Unsupported":
                raise S3Error(
                    501,
                    "NotImplemented",
                    "A header you provided implies functionality that is not implemented",
                )
            bucket = self.buckets.get(bucket_name)
            if bucket is None:
                raise S3Error(
                    404,
                    "NoSuchBucket",
                    "The specified bucket does not exist",
                    BucketName=bucket_name,
                )
            if (
                bucket.spec.requester_pays
                and call.request.header(b"x-amz-request-payer") != "requester"
            ):
                raise S3Error(403, "AccessDenied", "Access Denied")
            if bucket.spec.region != call.region and call.operation != "GetBucketLocation":
                # Signed for another region: S3 points at the bucket's own,
                # and botocore follows (its S3 region redirector).
                return self._elsewhere(call, bucket, head)
            if call.operation == "HeadBucket":
                return Reply(
                    200,
                    b"",
                    headers=((b"x-amz-bucket-region", bucket.spec.region.encode()),),
                    head_only=True,
                )
            if call.operation == "CreateSession":
                return self._create_session(bucket)
            if call.operation == "GetBucketLocation":
                region = "" if bucket.spec.region == "us-east-1" else bucket.spec.region
                body = b"%s<LocationConstraint%s>%s</LocationConstraint>"
                return Reply(200, body % (_DECL, _NS, region.encode()))
            return self._list_objects(call, bucket, query)
        except S3Error as exc:
            return error_reply(
                exc.status, exc.code, exc.message, call.request_id, head, **exc.extra
            )

    def throttle_reply(self, call: Call, code: str) -> Reply:
        if code == "ServiceUnavailable":
            message = "Service is unable to handle request."
        else:
            code, message = "SlowDown", "Please reduce your request rate."
        return error_reply(503, code, message, call.request_id, call.request.method == "HEAD")

    def internal_error(self, call: Call) -> Reply:
        return error_reply(
            500,
            "InternalError",
            "We encountered an internal error. Please try again.",
            call.request_id,
            call.request.method == "HEAD",
        )

    # -- operations ----------------------------------------------------------

    def _list_buckets(self, call: Call, query: dict[str, str]) -> Reply:
        names = sorted(self.buckets)
        prefix = query.get("prefix", "")
        names = [n for n in names if n.startswith(prefix)]
        start = 0
        token = query.get("continuation-token")
        if token:
            try:
                start = decode_token(token, "ListBuckets")
            except InvalidToken:
                return error_reply(
                    400,
                    "InvalidArgument",
                    "The continuation token provided is incorrect",
                    call.request_id,
                )
        limit = _int_param(query, "max-buckets", 10000, call)
        if isinstance(limit, Reply):
            return limit
        page = names[start : start + limit]
        parts = [_DECL, b"<ListAllMyBucketsResult", _NS, b">", _OWNER, b"<Buckets>"]
        for name in page:
            bucket = self.buckets[name]
            parts.append(
                f"<Bucket><Name>{name}</Name><CreationDate>{iso_ms(_CREATED)}</CreationDate>"
                f"<BucketRegion>{bucket.spec.region}</BucketRegion></Bucket>".encode()
            )
        parts.append(b"</Buckets>")
        next_token = None
        if call.repeat_token and token:
            next_token = token
        elif start + limit < len(names):
            next_token = encode_token(start + limit, "ListBuckets")
        if next_token is not None:
            parts.append(f"<ContinuationToken>{next_token}</ContinuationToken>".encode())
        if prefix:
            parts.append(f"<Prefix>{xml_escape(prefix)}</Prefix>".encode())
        parts.append(b"</ListAllMyBucketsResult>")
        return Reply(200, b"".join(parts))

    @staticmethod
    def _elsewhere(call: Call, bucket: _S3Bucket, head: bool) -> Reply:
        region = bucket.spec.region
        reply = error_reply(
            301,
            "PermanentRedirect",
            "The bucket you are attempting to access must be addressed using the specified"
            " endpoint. Please send all future requests to this endpoint.",
            call.request_id,
            head,
            Endpoint=f"{bucket.name}.s3.{region}.amazonaws.com",
            Bucket=bucket.name,
        )
        reply.headers = ((b"x-amz-bucket-region", region.encode()),)
        return reply

    def _create_session(self, bucket: _S3Bucket) -> Reply:
        if not bucket.directory:
            raise S3Error(
                400, "InvalidRequest", "CreateSession is only supported for directory buckets"
            )
        expires = iso_ms(time.time() + _SESSION_SECONDS)
        body = (
            f"<CreateSessionResult{_NS.decode()}><Credentials>"
            f"<SessionToken>session-{bucket.name}</SessionToken>"
            f"<SecretAccessKey>session-secret</SecretAccessKey>"
            f"<AccessKeyId>ASIASESSION</AccessKeyId>"
            f"<Expiration>{expires}</Expiration>"
            f"</Credentials></CreateSessionResult>"
        ).encode()
        return Reply(200, _DECL + body)

    @staticmethod
    def _check_directory(call: Call, query: dict[str, str]) -> None:
        """What a directory bucket's listing refuses."""
        if call.operation != "ListObjectsV2":
            raise S3Error(
                501,
                "NotImplemented",
                "A header you provided implies functionality that is not implemented",
            )
        if query.get("start-after"):
            raise S3Error(
                400,
                "InvalidArgument",
                "StartAfter is not supported for directory buckets",
                ArgumentName="start-after",
                ArgumentValue=query["start-after"],
            )
        prefix = query.get("prefix", "")
        if prefix and not prefix.endswith("/"):
            raise S3Error(
                400,
                "InvalidArgument",
                "Prefixes of directory buckets must end in a delimiter (/)",
                ArgumentName="prefix",
                ArgumentValue=prefix,
            )
        delimiter = query.get("delimiter", "")
        if delimiter and delimiter != "/":
            raise S3Error(
                400,
                "InvalidArgument",
                "The only delimiter directory buckets support is /",
                ArgumentName="delimiter",
                ArgumentValue=delimiter,
            )

    def _list_objects(self, call: Call, bucket: _S3Bucket, query: dict[str, str]) -> Reply:
        if bucket.directory:
            self._check_directory(call, query)
        cache_key = None
        if not call.repeat_token:
            cache_key = (bucket.name, call.operation, call.request.query)
            page = self.cache.get(cache_key)
            if page is not None:
                return Reply(200, page)
        v2 = call.operation == "ListObjectsV2"
        encoding = query.get("encoding-type")
        if encoding is not None and encoding != "url":
            raise S3Error(400, "InvalidArgument", "Invalid Encoding Method specified in Request")
        url = encoding == "url"
        max_keys = _int_param(query, "max-keys", _MAX_KEYS, call)
        if isinstance(max_keys, Reply):
            return max_keys
        max_keys = min(max_keys, _MAX_KEYS)
        prefix = query.get("prefix", "")
        delimiter = query.get("delimiter", "")
        token = query.get("continuation-token") if v2 else None
        marker = query.get("start-after" if v2 else "marker") or None
        scope = f"s3:{bucket.name}"
        if token is not None:
            try:
                position = decode_token(token, scope)
            except InvalidToken:
                raise S3Error(
                    400,
                    "InvalidArgument",
                    "The continuation token provided is incorrect",
                    ArgumentName="continuation-token",
                    ArgumentValue=token,
                ) from None
            if bucket.directory and not delimiter:
                listing = self._scrambled(bucket, prefix, position, max_keys)
            else:
                listing = self._walk(bucket, prefix, delimiter, position, None, max_keys)
        elif bucket.directory and not delimiter:
            listing = self._scrambled(bucket, prefix, 0, max_keys)
        else:
            lo, hi = bucket.prefix_range(prefix)
            position = lo if marker is None else bucket.keys.first_above(marker, lo, hi)
            listing = self._walk(bucket, prefix, delimiter, position, marker, max_keys)

        def enc(text: str) -> bytes:
            return (url_encode(text) if url else xml_escape(text)).encode("utf-8")

        truncated = listing.truncated
        parts = [_DECL, b"<ListBucketResult", _NS, b"><Name>", bucket.name_xml, b"</Name>"]
        parts += [b"<Prefix>", enc(prefix), b"</Prefix>"]
        if v2:
            next_token = None
            if call.repeat_token and token:
                next_token, truncated = token, True
            elif truncated:
                next_token = encode_token(listing.next_pos, scope)
            if token is not None:
                parts += [
                    b"<ContinuationToken>",
                    xml_escape(token).encode(),
                    b"</ContinuationToken>",
                ]
            if next_token is not None:
                parts += [
                    b"<NextContinuationToken>",
                    next_token.encode(),
                    b"</NextContinuationToken>",
                ]
            count = sum(hi - lo for lo, hi in listing.runs) + len(listing.prefixes)
            parts.append(b"<KeyCount>%d</KeyCount>" % count)
        else:
            parts += [b"<Marker>", enc(marker or ""), b"</Marker>"]
            next_marker = listing.last if truncated and delimiter else None
            if call.repeat_token and marker:
                next_marker, truncated = marker, True
            if next_marker is not None:
                parts += [b"<NextMarker>", enc(next_marker), b"</NextMarker>"]
        parts.append(b"<MaxKeys>%d</MaxKeys>" % max_keys)
        if delimiter:
            parts += [b"<Delimiter>", enc(delimiter), b"</Delimiter>"]
        if url:
            parts.append(b"<EncodingType>url</EncodingType>")
        parts.append(
            b"<IsTruncated>true</IsTruncated>" if truncated else b"<IsTruncated>false</IsTruncated>"
        )
        if v2 and marker is not None:
            parts += [b"<StartAfter>", enc(marker), b"</StartAfter>"]
        owner = not v2 or query.get("fetch-owner") == "true"
        meta = bucket.meta
        tails = meta.owner_tails if owner else meta.tails
        for lo, hi in listing.runs:
            position = lo + meta.offset
            for head, ends in bucket.keys.groups(lo, hi, url):
                n = len(ends)
                parts += interleave([_OPEN + head] * n, ends, cyclic(tails, position, n))
                position += n
        for common in listing.prefixes:
            parts += (b"<CommonPrefixes><Prefix>", enc(common), b"</Prefix></CommonPrefixes>")
        parts.append(b"</ListBucketResult>")
        body = join(parts)
        if cache_key is not None:
            self.cache.put(cache_key, body)
        return Reply(200, body)

    @staticmethod
    def _scrambled(bucket: _S3Bucket, prefix: str, position: int, max_keys: int) -> _Listing:
        """A directory bucket's keys: blocks of ``_BLOCK`` keys in a scrambled
        order, from ``position`` (a block's turn times ``_BLOCK``, plus how
        far into it) on."""
        lo, hi = bucket.prefix_range(prefix)
        blocks = -(-(hi - lo) // _BLOCK)
        a, c = _scramble(max(blocks, 1))
        turn, into = divmod(position, _BLOCK)
        runs: list[tuple[int, int]] = []
        taken = 0
        while turn < blocks and taken < max_keys:
            start = lo + ((a * turn + c) % blocks) * _BLOCK
            end = min(start + _BLOCK, hi)
            take = min(end - start - into, max_keys - taken)
            runs.append((start + into, start + into + take))
            taken += take
            into += take
            if start + into == end:
                turn, into = turn + 1, 0
        return _Listing(runs, [], turn * _BLOCK + into, turn < blocks, None)

    @staticmethod
    def _walk(
        bucket: _S3Bucket,
        prefix: str,
        delimiter: str,
        position: int,
        marker: str | None,
        max_keys: int,
    ) -> _Listing:
        """Up to ``max_keys`` entries from index ``position`` on.

        A common prefix counts as one entry and the walk jumps past all of its
        keys at once. A prefix not above ``marker`` was on an earlier page (or
        before StartAfter), so it is skipped, as S3 and moto both do.
        """
        keys = bucket.keys
        lo, hi = bucket.prefix_range(prefix)
        i = max(position, lo)
        if max_keys == 0:
            return _Listing([], [], i, False, None)
        if not delimiter or not keys.may_contain(delimiter):
            end = min(i + max_keys, hi)
            if end <= i:
                return _Listing([], [], end, end < hi, None)
            return _Listing([(i, end)], [], end, end < hi, keys.key(end - 1))
        runs: list[tuple[int, int]] = []
        prefixes: list[str] = []
        run_start = -1
        entries = 0
        last: str | None = None
        start = len(prefix)
        width = len(delimiter)
        key = keys.key
        while i < hi and entries < max_keys:
            k = key(i)
            cut = k.find(delimiter, start)
            if cut < 0:
                if run_start < 0:
                    run_start = i
                i += 1
                entries += 1
                last = k
                continue
            if run_start >= 0:
                runs.append((run_start, i))
                run_start = -1
            common = k[: cut + width]
            i = keys.skip_prefix(common, i, hi)
            if marker is not None and common <= marker:
                continue
            prefixes.append(common)
            entries += 1
            last = common
        if run_start >= 0:
            runs.append((run_start, i))
        return _Listing(runs, prefixes, i, i < hi, last)


_V1_PARAMS = {"prefix", "delimiter", "marker", "max-keys", "encoding-type"}


def _int_param(query: dict[str, str], name: str, default: int, call: Call) -> int | Reply:
    text = query.get(name)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        return error_reply(
            400,
            "InvalidArgument",
            f"Provided {name} not an integer or within integer range",
            call.request_id,
            ArgumentName=name,
            ArgumentValue=text,
        )
    return value
