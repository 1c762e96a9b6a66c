"""DynamoDB over JSON 1.0: Scan, Query, GetItem, DescribeTable and ListTables.

Items are generated from their index. Everything but the key and ``seq``
comes from one of 256 precomputed attribute sets (JSON fragment plus its size),
chosen by a seeded sequence with period 4096, so a table's exact
``TableSizeBytes`` is O(period), and a page of items is assembled column by
column (keys from tables of 10000 decimal strings, bodies from a slice of the
sequence) with no per-item Python code.

Not modelled: FilterExpression, secondary indexes, writes, and key conditions
other than partition-key equality; they answer ``ValidationException``.
"""

from __future__ import annotations

import base64
import bisect
import itertools
import json
import math
import random
import re
import uuid
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from asyncpager.testing._specs import Table
from asyncpager.testing._wire import Call, PageCache, Reply, Request, cyclic, interleave, join

__all__ = ["DynamoDBService", "item_size"]

_CT = b"application/x-amz-json-1.0"
_PAGE_BYTES = 1 << 20
_PERIOD = 4096
_VARIANTS = 256
_ACCOUNT = "123456789012"
_CREATED = 1_672_531_200.0


class DynamoError(Exception):
    def __init__(self, kind: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.kind, self.message, self.status = kind, message, status


_VALIDATION = "com.amazon.coral.validate#ValidationException"
_NOT_FOUND = "com.amazonaws.dynamodb.v20120810#ResourceNotFoundException"


def error_reply(kind: str, message: str | None, status: int = 400) -> Reply:
    body: dict[str, str] = {"__type": kind}
    if message is not None:
        body["message"] = message
    return Reply(status, json.dumps(body).encode(), _CT)


def _number_size(text: str) -> int:
    digits = text.lstrip("-").replace(".", "").strip("0") or "0"
    return (len(digits) + 1) // 2 + 1


def item_size(value: dict[str, Any]) -> int:
    """DynamoDB's documented size of one attribute value (names not included)."""
    (kind, inner), *_ = value.items()
    if kind == "S":
        return len(inner.encode("utf-8"))
    if kind == "N":
        return _number_size(inner)
    if kind == "B":
        return len(base64.b64decode(inner))
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "SS":
        return sum(len(s.encode("utf-8")) for s in inner)
    if kind == "NS":
        return sum(_number_size(s) for s in inner)
    if kind == "BS":
        return sum(len(base64.b64decode(s)) for s in inner)
    if kind == "L":
        return 3 + sum(item_size(v) + 1 for v in inner)
    if kind == "M":
        return 3 + sum(len(k.encode("utf-8")) + item_size(v) + 1 for k, v in inner.items())
    raise ValueError(f"unknown attribute type {kind}")


_NAMES = ["Ada", "Zoë", "Łukasz", "Søren", "José", "Nnamdi", "李雷", "Ана", "O'Brien", 'Bob "B"']
_CITIES = ["Lisbon", "Kraków", "São Paulo", "Zürich", "東京", "Nairobi", "Reykjavík", "Lima"]


def _variant(rng: random.Random, shape: str) -> dict[str, Any]:
    name = f"{rng.choice(_NAMES)} {rng.randrange(10**6)}"
    attrs: dict[str, Any] = {"name": {"S": name}, "active": {"BOOL": rng.random() < 0.7}}
    if shape == "small":
        return attrs
    attrs.update(
        {
            "score": {"N": f"{rng.uniform(-1000, 1000):.3f}"},
            "blob": {"B": base64.b64encode(rng.randbytes(rng.randrange(1, 48))).decode()},
            "tags": {"SS": sorted({f"tag-{rng.randrange(100)}" for _ in range(3)})},
            "counts": {"NS": sorted({str(rng.randrange(-50, 10**6)) for _ in range(4)})},
            "blobs": {
                "BS": sorted({base64.b64encode(rng.randbytes(4)).decode() for _ in range(2)})
            },
            "history": {
                "L": [
                    {"S": f"login {rng.randrange(1000)}"},
                    {"N": str(rng.randrange(10**9))},
                    {"BOOL": False},
                    {"NULL": True},
                ]
            },
            "profile": {
                "M": {
                    "city": {"S": rng.choice(_CITIES)},
                    "zip": {"N": str(rng.randrange(10000, 99999))},
                    "prefs": {"M": {"dark": {"BOOL": rng.random() < 0.5}, "n": {"L": []}}},
                }
            },
            "nothing": {"NULL": True},
            "created": {"S": f"2024-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}"},
        }
    )
    if shape == "large":
        attrs["payload"] = {
            "S": "".join(rng.choices("abcdefghij \u00e9", k=rng.randrange(3000, 4000)))
        }
    return attrs


def _json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


class _Variants:
    """The 256 attribute sets of one (seed, shape), rendered once."""

    def __init__(self, seed: int, shape: str) -> None:
        rng = random.Random(f"ddb:{seed}:{shape}")
        self.attrs = [_variant(rng, shape) for _ in range(_VARIANTS)]
        self.bodies: list[bytes] = []
        self.sizes: list[int] = []
        self.fields: list[dict[str, tuple[bytes, int]]] = []
        for attrs in self.attrs:
            fields = {
                n: (_json(n) + b":" + _json(v), len(n.encode()) + item_size(v))
                for n, v in attrs.items()
            }
            self.fields.append(fields)
            self.bodies.append(b"".join(b"," + frag for frag, _ in fields.values()))
            self.sizes.append(sum(size for _, size in fields.values()))
        self.sequence = [rng.randrange(_VARIANTS) for _ in range(_PERIOD)]
        self.prefix_sizes = [0]
        for v in self.sequence:
            self.prefix_sizes.append(self.prefix_sizes[-1] + self.sizes[v])
        # By position in the period, each body closing ``seq`` and its item.
        self.closed_bodies = [b'"}' + self.bodies[v] + b"}" for v in self.sequence]
        self.position_sizes = [self.sizes[v] for v in self.sequence]


@lru_cache(maxsize=32)
def _variants(seed: int, shape: str) -> _Variants:
    return _Variants(seed, shape)


_PADDED4 = [b"%04d" % n for n in range(10000)]
_PLAIN = [b"%d" % n for n in range(10000)]


def _decimal_runs(lo: int, hi: int, width: int) -> list[tuple[bytes, list[bytes]]]:
    """``b"%0{width}d" % i`` for ``i`` in ``lo..hi-1`` (plain ``%d`` when width is 0)
    as runs of (shared head, tails), the tails sliced from tables of 10000."""
    out: list[tuple[bytes, list[bytes]]] = []
    i = lo
    while i < hi:
        h, low = divmod(i, 10000)
        stop = min(hi, (h + 1) * 10000)
        if width:
            head = b"%0*d" % (width - 4, h) if width > 4 else b""
            out.append((head, _PADDED4[low : low + stop - i]))
        elif h:
            out.append((b"%d" % h, _PADDED4[low : low + stop - i]))
        else:
            out.append((b"", _PLAIN[low : low + stop - i]))
        i = stop
    return out


def _seq_size(i: int) -> int:
    """The size of ``{"N": str(i)}``: trailing zeros do not count."""
    return _number_size(str(i))


_PLAIN_SIZES = [_seq_size(n) for n in range(10000)]


@lru_cache(maxsize=32)
def _block_sizes(high_digits: int) -> tuple[list[int], int]:
    """Sizes of ``h*10000 + low`` for ``low`` in 0..9999, ``h`` of ``high_digits``
    digits and h > 0 (entry 0 is wrong: it depends on h), and their sum bar entry 0."""
    sizes = [0] * 10000
    for low in range(1, 10000):
        significant = high_digits + len(f"{low:04d}".rstrip("0"))
        sizes[low] = (significant + 1) // 2 + 1
    return sizes, sum(sizes)


def _seq_sizes(lo: int, n: int) -> list[int]:
    """``[_seq_size(i) for i in range(lo, lo + n)]``, by table slices."""
    out: list[int] = []
    i, end = lo, lo + n
    while i < end:
        h, low = divmod(i, 10000)
        stop = min(end, (h + 1) * 10000)
        if h == 0:
            out += _PLAIN_SIZES[low : low + stop - i]
        else:
            part = _block_sizes(len(str(h)))[0][low : low + stop - i]
            if low == 0:
                part[0] = _seq_size(i)
            out += part
        i = stop
    return out


def _seq_total(n: int) -> int:
    """``sum(_seq_size(i) for i in range(n))``, a block of 10000 at a time."""
    full, rest = divmod(n, 10000)
    if not full:
        return sum(_PLAIN_SIZES[:rest])
    total = sum(_PLAIN_SIZES)
    for h in range(1, full):
        total += _block_sizes(len(str(h)))[1] + _seq_size(h * 10000)
    return total + sum(_seq_sizes(full * 10000, rest))


class _TableModel:
    def __init__(self, spec: Table) -> None:
        self.spec = spec
        self.name = spec.name
        self.count = spec.count
        self.per = spec.items_per_partition
        self.partitions = -(-spec.count // self.per)
        self.pk_width = max(8, len(str(max(self.partitions - 1, 0))))
        self.sk_width = max(4, len(str(self.per - 1)))
        self.variants = _variants(spec.seed, spec.item_shape)
        prefix = spec.partition_prefix
        self.pk_re = re.compile(re.escape(prefix) + rf"(\d{{{self.pk_width}}})")
        pk_json = _json(spec.partition_key)
        pre = _json(prefix)[1:-1].replace(b"%", b"%%")
        fmt = b"{" + pk_json + b':{"S":"' + pre + b"%0" + str(self.pk_width).encode() + b'd"}'
        key_fmt = fmt
        self.key_size = len(spec.partition_key.encode()) + len(prefix.encode()) + self.pk_width
        if spec.sort_key is not None:
            sk = b"," + _json(spec.sort_key) + b':{"S":"%0' + str(self.sk_width).encode() + b'd"}'
            fmt += sk
            key_fmt += sk
            self.key_size += len(spec.sort_key.encode()) + self.sk_width
        self.item_fmt = fmt + b',"seq":{"N":"%d"}%s}'
        self.key_fmt = key_fmt + b"}"
        self.seq_name = 3  # len("seq")
        smallest = self.key_size + self.seq_name + 2 + min(self.variants.sizes)
        self.page_items = _PAGE_BYTES // smallest + 1
        """No page can hold more items than this: the 1 MB cut comes first."""
        self.open_pk = b",{" + pk_json + b':{"S":"' + _json(prefix)[1:-1]
        self.open_sk = b'"},' + _json(spec.sort_key or "") + b':{"S":"'
        self.open_seq = b'"},"seq":{"N":"'

    def sizes(self, lo: int, n: int) -> list[int]:
        """The sizes of items ``lo..lo+n-1``."""
        v = self.variants
        bodies = cyclic(v.position_sizes, lo, n)
        fixed = self.key_size + self.seq_name
        return [fixed + b + s for b, s in zip(bodies, _seq_sizes(lo, n), strict=True)]

    def render_run(self, lo: int, hi: int) -> list[bytes]:
        """Items ``lo..hi-1``, comma separated, as parts for one ``join``.

        Every item is ``,{pk...`` + pk digits + ``"},sk...`` + sk digits +
        ``"},"seq":{"N":"`` + seq digits + body: columns of shared constants
        and slices of precomputed tables, interleaved, with no per-item
        allocation.
        """
        parts: list[bytes] = []
        if hi <= lo:
            return parts
        per = self.per
        sort_key = self.spec.sort_key is not None
        zeros = b"0" * self.sk_width
        i = lo
        while i < hi:
            # A run shares the decimal heads of pk, sk and seq.
            p, s = divmod(i, per)
            stop = min(hi, (i // 10000 + 1) * 10000)
            if per > 1:
                stop = min(stop, (p + 1) * per)
            n = stop - i
            ((seq_head, seq_tails),) = _decimal_runs(i, stop, 0)
            if per == 1:
                ((pk_head, pk_tails),) = _decimal_runs(p, p + n, self.pk_width)
                columns = [[self.open_pk + pk_head] * n, pk_tails]
                middle = (self.open_sk + zeros if sort_key else b"") + self.open_seq + seq_head
                columns += [[middle] * n, seq_tails]
            else:
                pk = self.open_pk + b"%0*d" % (self.pk_width, p) + self.open_sk
                columns = []
                for sk_head, sk_tails in _decimal_runs(s, s + n, self.sk_width):
                    columns.append([pk + sk_head] * len(sk_tails))
                    columns.append(sk_tails)
                columns = [
                    [h for c in columns[0::2] for h in c],
                    [t for c in columns[1::2] for t in c],
                    [self.open_seq + seq_head] * n,
                    seq_tails,
                ]
            columns.append(cyclic(self.variants.closed_bodies, i, n))
            parts += interleave(*columns)
            i = stop
        parts[0] = parts[0][1:]  # no comma before the first item
        return parts

    def key_args(self, i: int) -> tuple[int, ...]:
        p, s = divmod(i, self.per)
        return (p, s) if self.spec.sort_key is not None else (p,)

    def render(self, i: int) -> bytes:
        v = self.variants
        return self.item_fmt % (*self.key_args(i), i, v.bodies[v.sequence[i % _PERIOD]])

    def render_key(self, i: int) -> bytes:
        return self.key_fmt % self.key_args(i)

    def size(self, i: int) -> int:
        v = self.variants
        return self.key_size + self.seq_name + _seq_size(i) + v.sizes[v.sequence[i % _PERIOD]]

    def render_projected(self, i: int, names: list[str]) -> bytes:
        v = self.variants
        fields = v.fields[v.sequence[i % _PERIOD]]
        own = json.loads(self.render_key(i))
        own["seq"] = {"N": str(i)}
        parts = []
        for name in names:
            if name in own:
                parts.append(_json(name) + b":" + _json(own[name]))
            elif name in fields:
                parts.append(fields[name][0])
        return b"{" + b",".join(parts) + b"}"

    def total_size(self) -> int:
        n = self.count
        v = self.variants
        full, rest = divmod(n, _PERIOD)
        body = full * v.prefix_sizes[_PERIOD] + v.prefix_sizes[rest]
        return n * (self.key_size + self.seq_name) + _seq_total(n) + body

    def partition_of(self, value: Any) -> int | None:
        if not isinstance(value, dict) or set(value) != {"S"}:
            return None
        match = self.pk_re.fullmatch(value["S"])
        if match is None:
            return None
        p = int(match.group(1))
        return p if p < self.partitions else None

    def index_of(self, key: Any) -> int:
        """The item index of a primary key, or ValidationException."""
        spec = self.spec
        names = {spec.partition_key} | ({spec.sort_key} if spec.sort_key else set())
        if not isinstance(key, dict) or set(key) != names:
            raise DynamoError(
                _VALIDATION,
                "The provided starting key is invalid: "
                "The provided key element does not match the schema",
            )
        p = self.partition_of(key[spec.partition_key])
        s = 0
        if spec.sort_key is not None:
            sk = key[spec.sort_key]
            text = sk.get("S") if isinstance(sk, dict) else None
            if text is None or not text.isdigit() or len(text) != self.sk_width:
                s = -1
            else:
                s = int(text)
        if p is None or not 0 <= s < self.per or p * self.per + s >= self.count:
            raise DynamoError(_VALIDATION, "The provided starting key is invalid")
        return p * self.per + s


_KEY_CONDITION = re.compile(r"\s*(#?[A-Za-z0-9_.-]+)\s*=\s*(:[A-Za-z0-9_]+)\s*")


class DynamoDBService:
    """Routes and answers DynamoDB requests for a fixed set of generated tables."""

    name = "dynamodb"

    def __init__(self, tables: Sequence[Table], cache: PageCache) -> None:
        self.tables = {t.name: _TableModel(t) for t in tables}
        self.cache = cache

    def parse(self, request: Request, region: str) -> Call:
        target = request.header(b"x-amz-target") or ""
        operation = target.rpartition(".")[2] or "Unsupported"
        try:
            params = json.loads(request.body or b"{}")
        except ValueError:
            params = None
        if not isinstance(params, dict):
            params = None
        has_token = bool(params) and (
            "ExclusiveStartKey" in params or "ExclusiveStartTableName" in params
        )
        return Call(self.name, operation, region, request, params, has_token)

    def handle(self, call: Call) -> Reply:
        params = call.params
        if params is None:
            return error_reply(
                "com.amazon.coral.service#SerializationException",
                "Start of structure or map found where not expected.",
            )
        try:
            if call.operation in ("Scan", "Query"):
                return self._read(call, params)
            if call.operation == "GetItem":
                return self._get_item(params)
            if call.operation == "DescribeTable":
                return self._describe(call, params)
            if call.operation == "ListTables":
                return self._list_tables(call, params)
        except DynamoError as exc:
            return error_reply(exc.kind, exc.message, exc.status)
        return error_reply("com.amazon.coral.service#UnknownOperationException", None)

    def throttle_reply(self, call: Call, code: str) -> Reply:
        if code == "ThrottlingException":
            return error_reply(
                "com.amazon.coral.availability#ThrottlingException",
                "Rate of requests exceeds the allowed throughput.",
            )
        return error_reply(
            "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",
            "The level of configured provisioned throughput for the table was exceeded. "
            "Consider increasing your provisioning level with the UpdateTable API.",
        )

    def internal_error(self, call: Call) -> Reply:
        return error_reply(
            "com.amazonaws.dynamodb.v20120810#InternalServerError", "Internal server error", 500
        )

    def _table(self, params: dict[str, Any], describe: bool = False) -> _TableModel:
        name = params.get("TableName")
        if not isinstance(name, str):
            raise DynamoError(
                _VALIDATION, "1 validation error detected: TableName must not be null"
            )
        table = self.tables.get(name)
        if table is None:
            message = "Requested resource not found"
            if describe:
                message += f": Table: {name} not found"
            raise DynamoError(_NOT_FOUND, message)
        return table

    # -- Scan and Query ------------------------------------------------------

    def _read(self, call: Call, params: dict[str, Any]) -> Reply:
        cache_key = None
        if not call.repeat_token:
            cache_key = (call.operation, call.request.body)
            page = self.cache.get(cache_key)
            if page is not None:
                return Reply(200, page, _CT)
        table = self._table(params)
        for unsupported in ("FilterExpression", "ScanFilter", "QueryFilter", "IndexName"):
            if unsupported in params:
                raise DynamoError(
                    _VALIDATION, f"{unsupported} is not supported by the asyncpager local endpoint"
                )
        limit = params.get("Limit")
        if limit is not None and (not isinstance(limit, int) or limit < 1):
            raise DynamoError(
                _VALIDATION,
                "1 validation error detected: Value at 'limit' failed to satisfy constraint: "
                "Member must have value greater than or equal to 1",
            )
        select = params.get("Select", "ALL_ATTRIBUTES")
        names = self._projection(params)
        if select == "SPECIFIC_ATTRIBUTES" and names is None:
            raise DynamoError(_VALIDATION, "SPECIFIC_ATTRIBUTES needs a ProjectionExpression")
        if select not in ("ALL_ATTRIBUTES", "COUNT", "SPECIFIC_ATTRIBUTES"):
            raise DynamoError(_VALIDATION, f"Select {select} needs an index")
        forward = True
        if call.operation == "Scan":
            lo, hi = self._segment(table, params)
        else:
            lo, hi = self._partition(table, params)
            forward = params.get("ScanIndexForward", True) is not False
        start_key = params.get("ExclusiveStartKey")
        if start_key is not None:
            after = table.index_of(start_key)
            lo, hi = (max(lo, after + 1), hi) if forward else (lo, min(hi, after))
        indices = range(lo, hi) if forward else range(hi - 1, lo - 1, -1)
        stop = min(limit if limit is not None else len(indices), len(indices), table.page_items)
        items: list[bytes] = []
        total = 0
        taken = 0
        if forward and names is None:
            # The common case, by columns: sizes, the 1 MB cut, then the items.
            running = list(itertools.accumulate(table.sizes(lo, stop)))
            taken = min(stop, bisect.bisect_left(running, _PAGE_BYTES) + 1)
            total = running[taken - 1] if taken else 0
            if select != "COUNT" and taken:
                items = table.render_run(lo, lo + taken)
        else:
            size = table.size
            for i in indices[:stop]:
                total += size(i)
                taken += 1
                if select != "COUNT":
                    items.append(
                        table.render(i) if names is None else table.render_projected(i, names)
                    )
                if total >= _PAGE_BYTES:
                    break
        last = indices[taken - 1] if taken else None
        more = taken < len(indices) or (limit is not None and taken == limit)
        parts = [b'{"Count":%d,' % taken]
        if select != "COUNT":
            if not forward or names is not None:
                items = interleave(items, [b","] * len(items))[:-1]
            parts += [b'"Items":[', *items, b"],"]
        parts.append(b'"ScannedCount":%d' % taken)
        if call.repeat_token and start_key is not None:
            parts += [b',"LastEvaluatedKey":', _json(start_key)]
        elif more and last is not None:
            parts += [b',"LastEvaluatedKey":', table.render_key(last)]
        capacity = self._capacity(table, params, total)
        if capacity:
            parts += [b',"ConsumedCapacity":', capacity]
        parts.append(b"}")
        body = join(parts)
        if cache_key is not None:
            self.cache.put(cache_key, body)
        return Reply(200, body, _CT)

    @staticmethod
    def _capacity(table: _TableModel, params: dict[str, Any], total: int) -> bytes | None:
        mode = params.get("ReturnConsumedCapacity", "NONE")
        if mode not in ("TOTAL", "INDEXES"):
            return None
        units = max(1, math.ceil(total / 4096)) * (1.0 if params.get("ConsistentRead") else 0.5)
        value: dict[str, Any] = {"TableName": table.name, "CapacityUnits": units}
        if mode == "INDEXES":
            value["Table"] = {"CapacityUnits": units}
        return _json(value)

    @staticmethod
    def _segment(table: _TableModel, params: dict[str, Any]) -> tuple[int, int]:
        segment, total = params.get("Segment"), params.get("TotalSegments")
        if segment is None and total is None:
            return 0, table.count
        if not isinstance(segment, int) or not isinstance(total, int):
            raise DynamoError(
                _VALIDATION,
                "The TotalSegments parameter is required but was not present in the request "
                "when Segment parameter is present",
            )
        if not 1 <= total <= 1_000_000 or not 0 <= segment < total:
            raise DynamoError(
                _VALIDATION,
                f"The Segment parameter is zero-based and must be less than parameter "
                f"TotalSegments: Segment: {segment} is not less than TotalSegments: {total}",
            )
        n = table.count
        return segment * n // total, (segment + 1) * n // total

    @staticmethod
    def _names(params: dict[str, Any], token: str) -> str:
        if token.startswith("#"):
            names = params.get("ExpressionAttributeNames") or {}
            if token not in names:
                raise DynamoError(
                    _VALIDATION,
                    "Value provided in ExpressionAttributeNames unused in expressions: "
                    f"An expression attribute name used in the document path is not defined; "
                    f"attribute name: {token}",
                )
            return str(names[token])
        return token

    def _projection(self, params: dict[str, Any]) -> list[str] | None:
        expression = params.get("ProjectionExpression")
        legacy = params.get("AttributesToGet")
        if expression is None:
            return list(legacy) if legacy else None
        names = []
        for part in str(expression).split(","):
            token = part.strip()
            if not re.fullmatch(r"#?[A-Za-z0-9_-]+", token):
                raise DynamoError(
                    _VALIDATION,
                    "Only top-level attribute names are supported in "
                    f"ProjectionExpression: {token}",
                )
            names.append(self._names(params, token))
        return names

    def _partition(self, table: _TableModel, params: dict[str, Any]) -> tuple[int, int]:
        value: Any = None
        expression = params.get("KeyConditionExpression")
        if expression is not None:
            match = _KEY_CONDITION.fullmatch(str(expression))
            if match is None:
                raise DynamoError(
                    _VALIDATION,
                    "Only 'partition_key = :value' key conditions are supported by the "
                    "asyncpager local endpoint",
                )
            name = self._names(params, match.group(1))
            values = params.get("ExpressionAttributeValues") or {}
            if match.group(2) not in values:
                raise DynamoError(
                    _VALIDATION,
                    "Value provided in ExpressionAttributeValues unused in expressions: "
                    f"An expression attribute value used in expression is not defined; "
                    f"attribute value: {match.group(2)}",
                )
            value = values[match.group(2)]
        else:
            conditions = params.get("KeyConditions") or {}
            if len(conditions) != 1:
                raise DynamoError(
                    _VALIDATION,
                    "Either the KeyConditions or KeyConditionExpression parameter must be "
                    "specified in the request.",
                )
            (name, condition), *_ = conditions.items()
            if condition.get("ComparisonOperator") != "EQ":
                raise DynamoError(_VALIDATION, "Only EQ key conditions are supported")
            value = (condition.get("AttributeValueList") or [None])[0]
        if name != table.spec.partition_key:
            raise DynamoError(
                _VALIDATION,
                "Query condition missed key schema element: " + table.spec.partition_key,
            )
        if not isinstance(value, dict) or set(value) != {"S"}:
            raise DynamoError(
                _VALIDATION,
                "One or more parameter values were invalid: Condition parameter type does not "
                "match schema type",
            )
        p = table.partition_of(value)
        if p is None:
            return 0, 0
        return p * table.per, min((p + 1) * table.per, table.count)

    # -- the rest ------------------------------------------------------------

    def _get_item(self, params: dict[str, Any]) -> Reply:
        table = self._table(params)
        try:
            i = table.index_of(params.get("Key"))
        except DynamoError as exc:
            if "does not match the schema" in exc.message:
                raise DynamoError(
                    _VALIDATION, "The provided key element does not match the schema"
                ) from None
            return Reply(200, b"{}", _CT)
        names = self._projection(params)
        item = table.render(i) if names is None else table.render_projected(i, names)
        return Reply(200, b'{"Item":' + item + b"}", _CT)

    def _describe(self, call: Call, params: dict[str, Any]) -> Reply:
        table = self._table(params, describe=True)
        spec = table.spec
        schema = [{"AttributeName": spec.partition_key, "KeyType": "HASH"}]
        attrs = [{"AttributeName": spec.partition_key, "AttributeType": "S"}]
        if spec.sort_key is not None:
            schema.append({"AttributeName": spec.sort_key, "KeyType": "RANGE"})
            attrs.append({"AttributeName": spec.sort_key, "AttributeType": "S"})
        description = {
            "AttributeDefinitions": attrs,
            "TableName": spec.name,
            "KeySchema": schema,
            "TableStatus": "ACTIVE",
            "CreationDateTime": _CREATED,
            "ProvisionedThroughput": {
                "NumberOfDecreasesToday": 0,
                "ReadCapacityUnits": 0,
                "WriteCapacityUnits": 0,
            },
            "TableSizeBytes": table.total_size(),
            "ItemCount": spec.count,
            "TableArn": f"arn:aws:dynamodb:{call.region}:{_ACCOUNT}:table/{spec.name}",
            "TableId": str(
                uuid.UUID(int=random.Random(f"tid:{spec.name}:{spec.seed}").getrandbits(128))
            ),
            "BillingModeSummary": {
                "BillingMode": "PAY_PER_REQUEST",
                "LastUpdateToPayPerRequestDateTime": _CREATED,
            },
            "TableClassSummary": {"TableClass": "STANDARD"},
            "DeletionProtectionEnabled": False,
        }
        return Reply(200, _json({"Table": description}), _CT)

    def _list_tables(self, call: Call, params: dict[str, Any]) -> Reply:
        limit = params.get("Limit", 100)
        if not isinstance(limit, int) or not 1 <= limit <= 100:
            raise DynamoError(
                _VALIDATION,
                "1 validation error detected: Value at 'limit' failed to satisfy constraint: "
                "Member must have value less than or equal to 100",
            )
        names = sorted(self.tables)
        start = params.get("ExclusiveStartTableName")
        if start is not None:
            names = [n for n in names if n > start]
        page = names[:limit]
        body: dict[str, Any] = {"TableNames": page}
        if call.repeat_token and start is not None:
            body["LastEvaluatedTableName"] = start
        elif len(names) > limit:
            body["LastEvaluatedTableName"] = page[-1]
        return Reply(200, _json(body), _CT)
