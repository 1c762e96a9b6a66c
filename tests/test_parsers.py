"""Compiled parsers against botocore's: the same bodies in, the same pages out.

Three sources of bodies:

* generated from the output shapes (hypothesis), serialized the way each
  protocol sends them, for pageable operations across every compiled
  protocol;
* real answers from moto's server and from the local endpoint, parsed by an
  installed client and by a plain one (and, byte for byte the same response,
  by botocore's parser directly);
* hand-written odd bodies, for the fallback paths.

"Same" is :func:`assert_same`: equal values, identical types (``bool`` is not
``int``, ``tzlocal`` is not ``tzutc``), the same key order, the same UTC
offsets.
"""

from __future__ import annotations

import base64
import datetime as dt
import gc
import json
import random
from collections.abc import Callable, Iterator
from typing import Any
from xml.sax.saxutils import escape

import botocore.parsers
import botocore.session
import pytest
from botocore.awsrequest import HeadersDict
from botocore.exceptions import ClientError
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from asyncpager.parsers import (
    ENV_VAR,
    FastParserFactory,
    compile_operation,
    generated_source,
    install,
    is_installed,
    parse_timestamp,
    uninstall,
)
from asyncpager.parsers import _install as install_module
from asyncpager.parsers._compiler import Fallback, _orjson_loads, json_loads
from asyncpager.parsers._timestamps import fast_timestamp, refresh_zones
from tests.conftest import create_table

_SESSION = botocore.session.get_session()


# -- comparison -------------------------------------------------------------------


def assert_same(ours: Any, theirs: Any, path: str = "$") -> None:
    assert type(ours) is type(theirs), f"{path}: {type(ours)} is not {type(theirs)}"
    if isinstance(theirs, dict):
        assert list(ours) == list(theirs), f"{path}: keys {list(ours)} != {list(theirs)}"
        for key in theirs:
            assert_same(ours[key], theirs[key], f"{path}.{key}")
    elif isinstance(theirs, list):
        assert len(ours) == len(theirs), f"{path}: {len(ours)} items != {len(theirs)}"
        for index, (a, b) in enumerate(zip(ours, theirs, strict=True)):
            assert_same(a, b, f"{path}[{index}]")
    elif isinstance(theirs, dt.datetime):
        assert ours == theirs, f"{path}: {ours!r} != {theirs!r}"
        assert type(ours.tzinfo) is type(theirs.tzinfo), f"{path}: {ours!r} vs {theirs!r}"
        assert ours.utcoffset() == theirs.utcoffset(), f"{path}: offsets differ"
        assert repr(ours) == repr(theirs), f"{path}: {ours!r} != {theirs!r}"
    elif isinstance(theirs, float):
        assert repr(ours) == repr(theirs), f"{path}: {ours!r} != {theirs!r}"
    else:
        assert ours == theirs, f"{path}: {ours!r} != {theirs!r}"


def test_assert_same_catches_differences() -> None:
    utc = dt.datetime(2024, 1, 1, tzinfo=botocore.utils.tzutc())
    local = dt.datetime(2024, 1, 1, tzinfo=botocore.compat.get_tzinfo_options()[0]())
    cases = [
        ({"a": 1, "b": 2}, {"b": 2, "a": 1}),
        ({"a": True}, {"a": 1}),
        ([1.0], [1]),
        ([-0.0], [0.0]),
        (utc.replace(tzinfo=dt.UTC), utc),
    ]
    if local.utcoffset() == utc.utcoffset():
        cases.append((local, utc))
    for ours, theirs in cases:
        with pytest.raises(AssertionError):
            assert_same(ours, theirs)


# -- parsing the same response both ways ----------------------------------------------


class Spy:
    """Counts compiled parses that ran and the ones that fell back."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.ran = 0
        self.fell_back = 0
        original = install_module._run

        def run(compiled: Any, response: Any, pause_gc: bool) -> Any:
            result = original(compiled, response, pause_gc)
            if result is None:
                self.fell_back += 1
            else:
                self.ran += 1
            return result

        monkeypatch.setattr(install_module, "_run", run)


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> Spy:
    return Spy(monkeypatch)


def response_dict(
    operation: str, body: bytes, headers: dict[str, str], status: int = 200
) -> dict[str, Any]:
    return {
        "body": body,
        "headers": HeadersDict(headers),
        "status_code": status,
        "context": {"operation_name": operation},
    }


def both_ways(
    service: str, operation: str, response: dict[str, Any], **factory_args: Any
) -> tuple[Any, Any]:
    """(compiled, botocore) parses of one response; exceptions are returned."""
    model = _SESSION.get_service_model(service)
    shape = model.operation_model(operation).output_shape
    protocol = model.resolved_protocol

    def attempt(parse: Callable[[], Any]) -> Any:
        try:
            return parse()
        except Exception as exc:
            return exc

    plain = botocore.parsers.ResponseParserFactory()
    theirs = attempt(lambda: plain.create_parser(protocol).parse(dict(response), shape))
    fast = FastParserFactory(botocore.parsers.ResponseParserFactory(), model, **factory_args)
    ours = attempt(lambda: fast.create_parser(protocol).parse(dict(response), shape))
    return ours, theirs


# -- bodies generated from shapes ----------------------------------------------------

_TEXT = st.text(
    alphabet=st.one_of(
        # U+FFFE and U+FFFF are not XML characters: no service sends them.
        st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="\ufffe\uffff"),
        st.sampled_from(" \t\n&<>\"'%+/~"),
    ),
    max_size=8,
)
_DATETIMES = st.datetimes(min_value=dt.datetime(1971, 1, 1), max_value=dt.datetime(2099, 12, 31))


def _iso(value: dt.datetime, style: int) -> str:
    if style == 0:
        return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"
    if style == 1:
        return value.strftime("%Y-%m-%dT%H:%M:%SZ")
    if style == 2:
        return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    if style == 3:
        return value.strftime("%Y-%m-%dT%H:%M:%S+00:00")
    return value.strftime("%a, %d %b %Y %H:%M:%S GMT")


class Draw:
    """Values for a shape, drawn with hypothesis, depth-limited (recursive
    shapes such as DynamoDB's AttributeValue end in empty structures)."""

    def __init__(self, draw: Callable[[Any], Any], protocol: str) -> None:
        self.draw = draw
        self.protocol = protocol

    def value(self, shape: Any, depth: int) -> Any:
        kind = shape.type_name
        draw = self.draw
        if kind in ("string", "character"):
            enum = shape.enum if hasattr(shape, "enum") else []
            if enum and draw(st.booleans()):
                return draw(st.sampled_from(enum))
            return draw(_TEXT)
        if kind in ("integer", "long"):
            return draw(st.integers(-(2**40), 2**40))
        if kind in ("float", "double"):
            return draw(st.floats(allow_nan=False, allow_infinity=False, width=64))
        if kind == "boolean":
            return draw(st.booleans())
        if kind == "timestamp":
            return (draw(_DATETIMES), draw(st.integers(0, 4)))
        if kind == "blob":
            return draw(st.binary(max_size=12))
        if kind == "list":
            size = 0 if depth > 3 else draw(st.integers(0, 3))
            return [self.value(shape.member, depth + 1) for _ in range(size)]
        if kind == "map":
            size = 0 if depth > 3 else draw(st.integers(0, 3))
            keys = draw(st.lists(_TEXT, min_size=size, max_size=size, unique=True))
            return {k: self.value(shape.value, depth + 1) for k in keys}
        assert kind == "structure", kind
        out = {}
        if shape.is_tagged_union:
            name = draw(st.sampled_from(list(shape.members)))
            return {name: self.value(shape.members[name], depth + 1)}
        for name, member in shape.members.items():
            if member.serialization.get("location") or depth > 4:
                continue
            if draw(st.integers(0, 9)) < 7:
                out[name] = self.value(member, depth + 1)
        return out


def _xml_name(member: Any, name: str) -> str:
    if member.type_name == "list" and member.serialization.get("flattened"):
        inner = member.member.serialization.get("name")
        if inner:
            return str(inner)
    return str(member.serialization.get("name") or name)


class XmlWriter:
    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def scalar(self, shape: Any, value: Any) -> str:
        kind = shape.type_name
        if kind == "boolean":
            return "true" if value else "false"
        if kind == "timestamp":
            return _iso(*value)
        if kind == "blob":
            return base64.b64encode(value).decode()
        if kind in ("float", "double"):
            return repr(value)
        return escape(str(value))

    def content(self, shape: Any, value: Any) -> str:
        kind = shape.type_name
        if kind == "structure":
            return "".join(self.children(shape, value))
        if kind == "list":
            tag = shape.member.serialization.get("name", "member")
            return "".join(f"<{tag}>{self.content(shape.member, v)}</{tag}>" for v in value)
        if kind == "map":
            return "".join(self.entry(shape, k, v) for k, v in value.items())
        return self.scalar(shape, value)

    def entry(self, shape: Any, key: Any, value: Any, tag: str = "entry") -> str:
        k = shape.key.serialization.get("name") or "key"
        v = shape.value.serialization.get("name") or "value"
        inner = self.content(shape.key, key), self.content(shape.value, value)
        return f"<{tag}><{k}>{inner[0]}</{k}><{v}>{inner[1]}</{v}></{tag}>"

    def children(self, shape: Any, value: dict[str, Any]) -> list[str]:
        out = []
        for name, item in value.items():
            member = shape.members[name]
            tag = _xml_name(member, name)
            flattened = member.serialization.get("flattened")
            if member.type_name == "list" and flattened:
                out += [f"<{tag}>{self.content(member.member, v)}</{tag}>" for v in item]
            elif member.type_name == "map" and flattened:
                out += [self.entry(member, k, v, tag) for k, v in item.items()]
            else:
                out.append(f"<{tag}>{self.content(member, item)}</{tag}>")
        self.rng.shuffle(out)
        if self.rng.random() < 0.2:
            out.insert(self.rng.randrange(len(out) + 1), "<SomethingNew>x</SomethingNew>")
        return out


def _json_value(shape: Any, value: Any, rng: random.Random, protocol: str) -> Any:
    kind = shape.type_name
    if kind == "timestamp":
        moment, style = value
        if protocol == "json" or style == 4:
            epoch = moment.replace(tzinfo=dt.UTC).timestamp()
            return int(epoch) if style % 2 else epoch
        return _iso(moment, style)
    if kind == "blob":
        return base64.b64encode(value).decode()
    if kind == "list":
        return [_json_value(shape.member, v, rng, protocol) for v in value]
    if kind == "map":
        return {k: _json_value(shape.value, v, rng, protocol) for k, v in value.items()}
    if kind == "structure":
        out = {
            shape.members[name].serialization.get("name", name): _json_value(
                shape.members[name], v, rng, protocol
            )
            for name, v in value.items()
        }
        items = list(out.items())
        rng.shuffle(items)
        if shape.is_tagged_union:
            return dict(items)
        if rng.random() < 0.2:
            items.append(("somethingNew", {"x": [1]}))
        if rng.random() < 0.2 and shape.members:
            items.append((rng.choice(list(shape.members)), None))
        return dict(items)
    if kind == "boolean" and protocol == "rest-json" and rng.random() < 0.3:
        return "true" if value else "false"
    return value


_WORD = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_.", min_size=1, max_size=8)


def _header_value(shape: Any) -> st.SearchStrategy[str]:
    kind = shape.type_name
    if kind == "boolean":
        return st.sampled_from(["true", "false"])
    if kind in ("integer", "long"):
        return st.integers(0, 2**40).map(str)
    if kind == "timestamp":
        return _DATETIMES.map(lambda moment: _iso(moment, 4))
    if kind == "list":
        return st.lists(_WORD, min_size=1, max_size=3).map(", ".join)
    return _WORD


@st.composite
def responses(draw: Callable[[Any], Any], service: str, operation: str) -> dict[str, Any]:
    model = _SESSION.get_service_model(service)
    protocol = model.resolved_protocol
    shape = model.operation_model(operation).output_shape
    value = Draw(draw, protocol).value(shape, 0)
    rng = draw(st.randoms(use_true_random=False))
    headers: dict[str, str] = {"Content-Type": "text/xml", "Date": "Tue, 01 Jul 2025 00:00:00 GMT"}
    for name, member in shape.members.items():
        location = member.serialization.get("location")
        if location == "header" and draw(st.booleans()):
            headers[member.serialization.get("name", name)] = draw(_header_value(member))
        elif location == "headers":
            headers[member.serialization.get("name", "") + "Key-One"] = "one"
    request_id = "req-" + str(draw(st.integers(0, 999)))
    if protocol in ("json", "rest-json"):
        if draw(st.booleans()):
            headers["x-amzn-RequestId"] = request_id
        document = json.dumps(_json_value(shape, value, rng, protocol)).encode()
        return response_dict(operation, document, headers)
    writer = XmlWriter(rng)
    xmlns = ' xmlns="http://example.com/doc/2020-01-01/"' if draw(st.booleans()) else ""
    inner = "".join(writer.children(shape, value))
    if protocol == "rest-xml":
        headers["x-amz-request-id"] = request_id
        if draw(st.booleans()):
            headers["x-amz-id-2"] = "host/" + request_id
        root = shape.serialization.get("name", operation + "Result")
        payload = shape.serialization.get("payload")
        if payload is not None:
            inner = writer.content(shape.members[payload], value.get(payload, {}))
            root = shape.members[payload].serialization.get("name", payload)
        body = f'<?xml version="1.0" encoding="UTF-8"?>\n<{root}{xmlns}>{inner}</{root}>'
    elif protocol == "query":
        wrapper = shape.serialization["resultWrapper"]
        metadata = f"<ResponseMetadata><RequestId>{request_id}</RequestId></ResponseMetadata>"
        body = (
            f"<{operation}Response{xmlns}><{wrapper}>{inner}</{wrapper}>{metadata}"
            f"</{operation}Response>"
        )
    else:
        body = (
            f"<{operation}Response{xmlns}><requestId>{request_id}</requestId>{inner}"
            f"</{operation}Response>"
        )
    return response_dict(operation, body.encode(), headers)


GENERATED = [
    ("s3", "ListObjectsV2"),
    ("s3", "ListObjectVersions"),
    ("s3", "ListBuckets"),
    ("s3", "ListMultipartUploads"),
    ("s3", "ListParts"),
    ("s3", "GetBucketLifecycleConfiguration"),
    ("dynamodb", "Scan"),
    ("dynamodb", "Query"),
    ("dynamodb", "ListTables"),
    ("dynamodb", "ListBackups"),
    ("ec2", "DescribeInstances"),
    ("ec2", "DescribeSecurityGroups"),
    ("ec2", "DescribeVolumes"),
    ("ec2", "DescribeImages"),
    ("iam", "ListUsers"),
    ("iam", "ListRoles"),
    ("iam", "GetAccountAuthorizationDetails"),
    ("logs", "DescribeLogGroups"),
    ("logs", "FilterLogEvents"),
    ("sqs", "ListQueues"),
    ("sns", "ListTopics"),
    ("sns", "ListSubscriptions"),
    ("lambda", "ListFunctions"),
    ("cloudformation", "ListStacks"),
    ("cloudformation", "DescribeStacks"),
    ("ecs", "ListClusters"),
    ("ecs", "DescribeServices"),
    ("kms", "ListKeys"),
    ("route53", "ListHostedZones"),
    ("route53", "ListResourceRecordSets"),
    ("glue", "GetTables"),
    ("cloudfront", "ListDistributions"),
    ("apigateway", "GetRestApis"),
    ("sqs", "GetQueueAttributes"),
    ("cloudwatch", "DescribeAlarms"),
]


@pytest.mark.parametrize(("service", "operation"), GENERATED)
def test_generated_responses_parse_like_botocore(service: str, operation: str) -> None:
    model = _SESSION.get_service_model(service)
    operation_model = model.operation_model(operation)
    compiled = compile_operation(
        operation_model, model.resolved_protocol, timestamp_parser=fast_timestamp
    )
    assert compiled is not None, generated_source(
        operation_model, model.resolved_protocol, timestamp_parser=fast_timestamp
    )

    @settings(
        max_examples=20,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        database=None,
        # Shrinking whole responses takes minutes; a failure is reported
        # with the response that failed, as generated.
        phases=[Phase.explicit, Phase.reuse, Phase.generate],
    )
    @given(responses(service, operation))
    def check(response: dict[str, Any]) -> None:
        ours, theirs = both_ways(service, operation, response)
        assert not isinstance(theirs, Exception), theirs
        assert_same(ours, theirs)
        # And it was the compiled code, not the fallback, that made it.
        refresh_zones()
        direct = compiled(dict(response))
        expected = dict(theirs)
        metadata = {
            k: v
            for k, v in expected["ResponseMetadata"].items()
            if k not in ("HTTPStatusCode", "HTTPHeaders")
        }
        if metadata or "ResponseMetadata" in direct:
            expected["ResponseMetadata"] = metadata
        else:
            del expected["ResponseMetadata"]
        assert_same(direct, expected)

    check()


# -- DynamoDB attribute values --------------------------------------------------------

_AV_TEXT = st.one_of(
    st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=6),
    # "null" inside a string, and a digit run long enough to send the body to json.loads.
    st.sampled_from(["null", "", "S", "12345678901234567890123"]),
)
# Attribute names and map keys, tag names among them.
_AV_NAMES = st.one_of(
    _AV_TEXT, st.sampled_from(["S", "N", "B", "M", "L", "SS", "BOOL", "NULL", "__type"])
)

# Values at an attribute-value position that are not one well-formed member:
# botocore has an answer (or an error) of its own for each.
_ODD_ATTRIBUTE_VALUES: list[Any] = [
    None,
    {},
    {"S": None},
    {"S": "a", "N": "1"},
    {"N": "1", "S": "a"},
    {"S": "a", "N": None},
    # One member left once nulls are dropped: the general structure path.
    {"SS": "ab", "N": None},
    {"SS": ["a"], "N": None},
    {"B": "AAE=", "S": None},
    {"M": {"k": {"B": "AAE="}}, "S": None},
    {"L": [{"B": "AAE="}], "S": None},
    {"X": "y"},
    {"__type": "t"},
    {"__type": "t", "S": "a"},
    {"S": 5},
    {"S": ["x"]},
    {"S": {"S": "x"}},
    {"BOOL": "true"},
    {"M": 0},
    {"M": None},
    {"M": []},
    {"M": "ab"},
    {"M": {"k": None}},
    {"M": {"k": "x"}},
    {"L": ""},
    {"L": "ab"},
    {"L": 0},
    {"L": {}},
    {"L": {"a": {"S": "x"}}},
    {"L": [None]},
    {"L": ["S"]},
    {"SS": "ab"},
    {"SS": ""},
    {"SS": 0},
    {"SS": {}},
    {"SS": [None, "a"]},
    {"NS": "12"},
    {"BS": "AA=="},
    {"BS": [None]},
    {"BS": ["A"]},
    {"B": "A"},
    {"B": "é"},
    {"B": "!!!!"},
    {"B": 5},
    {"B": None},
    "S",
    ["S"],
    0,
    "",
    [],
]


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class AttributeValues:
    """DynamoDB attribute values drawn with hypothesis: well-formed (nested M
    and L, B and BS, empty maps, lists and sets) or, when ``odd``, now and then
    one of ``_ODD_ATTRIBUTE_VALUES``; ``drew_odd`` says whether one was drawn."""

    def __init__(self, draw: Callable[[Any], Any], odd: bool) -> None:
        self.draw = draw
        self.odd = odd
        self.drew_odd = False

    def value(self, depth: int) -> Any:
        draw = self.draw
        if self.odd and draw(st.integers(0, 11)) == 0:
            self.drew_odd = True
            return draw(st.sampled_from(_ODD_ATTRIBUTE_VALUES))
        kinds = ["S", "N", "B", "BOOL", "NULL", "SS", "NS", "BS"]
        if depth < 3:
            kinds += ["M", "L"]
        kind = draw(st.sampled_from(kinds))
        if kind == "S":
            return {"S": draw(_AV_TEXT)}
        if kind == "N":
            return {"N": str(draw(st.integers(-(10**25), 10**25)))}
        if kind == "B":
            return {"B": _b64(draw(st.binary(max_size=8)))}
        if kind == "BOOL":
            return {"BOOL": draw(st.booleans())}
        if kind == "NULL":
            return {"NULL": True}
        if kind == "SS":
            return {"SS": draw(st.lists(_AV_TEXT, max_size=3))}
        if kind == "NS":
            return {"NS": [str(n) for n in draw(st.lists(st.integers(), max_size=3))]}
        if kind == "BS":
            return {"BS": [_b64(b) for b in draw(st.lists(st.binary(max_size=4), max_size=3))]}
        if kind == "M":
            return {"M": self.attributes(depth + 1)}
        return {"L": [self.value(depth + 1) for _ in range(draw(st.integers(0, 3)))]}

    def attributes(self, depth: int) -> dict[str, Any]:
        names = self.draw(st.lists(_AV_NAMES, max_size=4, unique=True))
        return {name: self.value(depth) for name in names}


@st.composite
def dynamodb_pages(draw: Callable[[Any], Any], odd: bool) -> tuple[bytes, bool]:
    """A Scan/Query body and whether it holds an odd attribute value."""
    values = AttributeValues(draw, odd)
    items: list[Any] = [values.attributes(0) for _ in range(draw(st.integers(0, 5)))]
    if odd and draw(st.integers(0, 5)) == 0:
        # botocore keeps a null item as None, as the compiled code does.
        items.insert(draw(st.integers(0, len(items))), None)
    document: dict[str, Any] = {"Items": items, "Count": len(items), "ScannedCount": len(items)}
    if draw(st.booleans()):
        document["LastEvaluatedKey"] = values.attributes(0)
    body = json.dumps(document, ensure_ascii=draw(st.booleans())).encode()
    return body, values.drew_odd


def _assert_same_outcome(ours: Any, theirs: Any) -> None:
    if isinstance(theirs, Exception):
        assert type(ours) is type(theirs), (ours, theirs)
        assert str(ours) == str(theirs)
    else:
        assert_same(ours, theirs)


@pytest.mark.parametrize("odd", [False, True], ids=["well-formed", "odd"])
@pytest.mark.parametrize("operation", ["Scan", "Query"])
def test_dynamodb_attribute_values_parse_like_botocore(operation: str, odd: bool, spy: Spy) -> None:
    @settings(
        max_examples=80,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        database=None,
    )
    @given(dynamodb_pages(odd))
    def check(page: tuple[bytes, bool]) -> None:
        body, drew_odd = page
        spy.ran = spy.fell_back = 0
        response = response_dict(operation, body, {"x-amzn-requestid": "r"})
        ours, theirs = both_ways("dynamodb", operation, response)
        _assert_same_outcome(ours, theirs)
        if not drew_odd:
            # Well-formed pages are the compiled code's, not botocore's.
            assert not isinstance(theirs, Exception), theirs
            assert (spy.ran, spy.fell_back) == (1, 0)

    check()


@pytest.mark.parametrize("value", _ODD_ATTRIBUTE_VALUES, ids=repr)
def test_odd_attribute_values_get_botocores_answer(value: Any) -> None:
    # The same value as an attribute, in a map, in a list, and next to
    # well-formed values that the compiled code converts (a blob).
    well_formed = {"b": {"B": "AAE="}, "m": {"M": {"x": {"BS": ["AQ=="]}}}}
    items = [
        {**well_formed, "odd": value},
        {**well_formed, "m": {"M": {"x": {"S": "y"}, "odd": value}}},
        {**well_formed, "l": {"L": [{"N": "1"}, value, {"B": "AAE="}]}},
    ]
    for item in items:
        body = json.dumps({"Items": [item], "Count": 1, "LastEvaluatedKey": item}).encode()
        response = response_dict("Scan", body, {"x-amzn-requestid": "r"})
        _assert_same_outcome(*both_ways("dynamodb", "Scan", response))


# -- timestamps ---------------------------------------------------------------------


TIMESTAMPS = [
    "2026-11-26T08:30:00.000Z",
    "2026-11-26T08:30:00Z",
    "2026-11-26T08:30:00.123456Z",
    "1999-12-31T23:59:59.999Z",
    "2024-02-29T12:00:00.000Z",
    "2024-07-01T12:00:00.000Z",
    "2026-11-26T08:30:00+00:00",
    "2026-11-26T08:30:00.000+02:00",
    "Thu, 26 Nov 2026 08:30:00 GMT",
    "2026-11-26 08:30:00Z",
    "1700000000",
    1_700_000_000,
    1_700_000_000.25,
    0,
    "2024-02-30T00:00:00.000Z",
    "2024-01-01T24:00:00.000Z",
    "2024-01-01T23:60:00.000Z",
    "\uff12\uff10\uff12\uff14-01-01T00:00:00.000Z",  # full-width digits
    "not a time",
]


@pytest.mark.parametrize("zone", ["UTC", "America/New_York", "Europe/London", "Asia/Kolkata"])
def test_timestamps_match_botocore_in_every_zone(
    zone: str, local_zone: Callable[[str], None]
) -> None:
    local_zone(zone)
    for value in TIMESTAMPS:
        try:
            theirs: Any = botocore.utils.parse_timestamp(value)
        except Exception as exc:
            theirs = type(exc)
        try:
            ours: Any = parse_timestamp(value)
        except Exception as exc:
            ours = type(exc)
        if isinstance(theirs, type):
            assert ours is theirs, value
        else:
            assert_same(ours, theirs, repr(value))


@given(_DATETIMES, st.integers(0, 4))
@settings(max_examples=200, deadline=None, database=None)
def test_generated_timestamps_match_botocore(moment: dt.datetime, style: int) -> None:
    text = _iso(moment, style)
    assert_same(parse_timestamp(text), botocore.utils.parse_timestamp(text), text)


# -- tokenizer ----------------------------------------------------------------------

_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@given(_JSON)
@settings(max_examples=200, deadline=None, database=None)
def test_json_tokenizer_reads_what_json_loads_reads(value: Any) -> None:
    body = json.dumps(value, ensure_ascii=False).encode()
    assert_same(json_loads(body), json.loads(body.decode()))


@pytest.mark.parametrize(
    ("body", "declined"),
    [
        (b'{"a": 1, "a": 2, "b": 3}', False),
        (b'{"a": -0}', False),
        (b'{"a": -0.0}', False),
        (b'{"a": 0.1, "b": 5e-324, "c": 1.7976931348623157e308}', False),
        (b'{"a": 123456789012345678901234567890}', False),
        (b'{"a": 18446744073709551616, "b": -9223372036854775809}', False),
        (b'{"a": "\\u00e9\\u6771", "b": "\\ud83d\\ude00"}', False),
        # Only json.loads reads these: botocore's parser takes the body.
        (b'{"a": 1e400}', True),
        (b'{"a": NaN}', True),
        (b'{"a": "\\ud800"}', True),
        (b'\xef\xbb\xbf{"a": 1}', True),
    ],
)
def test_json_tokenizer_edge_cases(body: bytes, declined: bool) -> None:
    try:
        expected: Any = json.loads(body.decode())
    except ValueError:
        expected = ValueError
    if expected is ValueError or (declined and _orjson_loads is not None):
        with pytest.raises((Fallback, ValueError)):
            json_loads(body)
    else:
        assert_same(json_loads(body), expected)


# -- fallback -----------------------------------------------------------------------


def test_streaming_and_odd_shapes_are_not_compiled() -> None:
    s3 = _SESSION.get_service_model("s3")
    for operation in ("GetObject", "SelectObjectContent", "GetBucketAcl"):
        compiled = compile_operation(
            s3.operation_model(operation), "rest-xml", timestamp_parser=fast_timestamp
        )
        assert compiled is None, operation
    cbor = _SESSION.get_service_model("dynamodb").operation_model("Scan")
    assert compile_operation(cbor, "smithy-rpc-v2-cbor", timestamp_parser=fast_timestamp) is None


@pytest.mark.parametrize(
    ("service", "operation", "body"),
    [
        # botocore iterates the string's characters: a list of one-letter names.
        ("dynamodb", "ListTables", b'{"TableNames": "abc"}'),
        # A null document: botocore fails to add metadata to None.
        ("dynamodb", "Scan", b"null"),
        # Not JSON: botocore keeps the text as a message and parses nothing.
        ("dynamodb", "Scan", b"<html>busy</html>"),
        # A map where a list was expected: botocore iterates its keys.
        ("dynamodb", "Scan", b'{"Items": {"a": {"S": "x"}}}'),
        # A scalar element twice: botocore gives a list of elements.
        ("iam", "ListUsers", None),
        (
            "s3",
            "ListObjectsV2",
            b"<ListBucketResult><Name>a</Name><MaxKeys>x</MaxKeys></ListBucketResult>",
        ),
        ("s3", "ListObjectsV2", b"<ListBucketResult><Name>a</Name"),
    ],
)
def test_responses_the_compiled_code_declines_get_botocores_answer(
    service: str, operation: str, body: bytes | None, spy: Spy
) -> None:
    if body is None:
        body = (
            b"<ListUsersResponse><ListUsersResult><Users><member><UserName>a</UserName>"
            b"<UserName>b</UserName></member></Users></ListUsersResult></ListUsersResponse>"
        )
    response = response_dict(operation, body, {"x-amzn-requestid": "r", "x-amz-request-id": "r"})
    ours, theirs = both_ways(service, operation, response)
    assert spy.fell_back == 1
    assert spy.ran == 0
    if isinstance(theirs, Exception):
        assert type(ours) is type(theirs)
        assert str(ours) == str(theirs)
    elif service == "iam":
        # botocore hands back the two elements themselves; compare their text.
        names = [e.text for e in theirs["Users"][0]["UserName"]]
        assert names == ["a", "b"]
        assert [e.text for e in ours["Users"][0]["UserName"]] == names
    else:
        assert_same(ours, theirs)


def test_error_responses_go_to_botocore(spy: Spy) -> None:
    body = (
        b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>NoSuchBucket</Code>'
        b"<Message>The specified bucket does not exist</Message><BucketName>b</BucketName>"
        b"<RequestId>r</RequestId><HostId>h</HostId></Error>"
    )
    response = response_dict("ListObjectsV2", body, {"x-amz-request-id": "r"}, status=404)
    ours, theirs = both_ways("s3", "ListObjectsV2", response)
    assert spy.ran == 0
    assert spy.fell_back == 0
    assert_same(ours, theirs)
    assert ours["Error"]["Code"] == "NoSuchBucket"


def test_custom_timestamp_parser_is_honoured() -> None:
    model = _SESSION.get_service_model("s3")
    shape = model.operation_model("ListObjectsV2").output_shape
    body = (
        b"<ListBucketResult><Contents><Key>k</Key><LastModified>2024-01-05T04:28:29.281Z"
        b"</LastModified></Contents></ListBucketResult>"
    )
    response = response_dict("ListObjectsV2", body, {})
    plain = botocore.parsers.ResponseParserFactory()
    plain.set_parser_defaults(timestamp_parser=str.upper)
    fast = FastParserFactory(plain, model)
    ours = fast.create_parser("rest-xml").parse(dict(response), shape)
    theirs = plain.create_parser("rest-xml").parse(dict(response), shape)
    assert_same(ours, theirs)
    assert ours["Contents"][0]["LastModified"] == "2024-01-05T04:28:29.281Z"


def test_raw_mode_hands_over_dynamodb_items_as_sent() -> None:
    items = [
        {"pk": {"S": "a"}, "b": {"B": "AAE="}, "m": {"M": {"x": {"BS": ["AA=="]}}}},
        {"pk": {"S": "b"}, "n": {"NULL": True}, "l": {"L": [{"N": "1"}, {"B": "AQ=="}]}},
    ]
    body = json.dumps({"Items": items, "Count": 2, "ScannedCount": 2}).encode()
    response = response_dict("Scan", body, {"x-amzn-requestid": "r"})
    ours, theirs = both_ways("dynamodb", "Scan", response, raw=True)
    assert ours["Items"] == items
    assert ours["Count"] == 2
    assert theirs["Items"][0]["b"] == {"B": b"\x00\x01"}


def test_raw_mode_converts_the_token_that_is_sent_back() -> None:
    # Items stay as sent, but LastEvaluatedKey goes back as ExclusiveStartKey:
    # a blob left as base64 text would be encoded a second time.
    key = {"pk": {"B": "AAE="}, "sk": {"N": "1"}}
    body = json.dumps({"Items": [key], "Count": 1, "LastEvaluatedKey": key}).encode()
    response = response_dict("Scan", body, {"x-amzn-requestid": "r"})
    ours, theirs = both_ways("dynamodb", "Scan", response, raw=True)
    assert ours["Items"] == [{"pk": {"B": "AAE="}, "sk": {"N": "1"}}]
    assert ours["LastEvaluatedKey"] == theirs["LastEvaluatedKey"]
    assert ours["LastEvaluatedKey"]["pk"] == {"B": b"\x00\x01"}


def test_raw_mode_pages_a_binary_key_table_exactly(boto3_client: Any) -> None:
    dynamodb = boto3_client("dynamodb")
    create_table(dynamodb, "raw-binary", "B")
    keys = {bytes([n, 255 - n, 7]) for n in range(40)}
    for key in keys:
        dynamodb.put_item(TableName="raw-binary", Item={"pk": {"B": key}})
    assert install(dynamodb, raw=True) is True
    seen: list[bytes] = []
    pages = 0
    for page in dynamodb.get_paginator("scan").paginate(
        TableName="raw-binary", PaginationConfig={"PageSize": 7}
    ):
        pages += 1
        seen += [base64.b64decode(item["pk"]["B"]) for item in page["Items"]]
    assert pages >= 6
    assert sorted(seen) == sorted(keys)


def test_raw_mode_keeps_xml_timestamps_as_text() -> None:
    body = (
        b"<ListBucketResult><Contents><Key>k</Key><LastModified>2024-01-05T04:28:29.281Z"
        b"</LastModified><Size>3</Size></Contents></ListBucketResult>"
    )
    response = response_dict("ListObjectsV2", body, {"x-amz-request-id": "r"})
    ours, theirs = both_ways("s3", "ListObjectsV2", response, raw=True)
    assert ours["Contents"] == [{"Key": "k", "LastModified": "2024-01-05T04:28:29.281Z", "Size": 3}]
    assert isinstance(theirs["Contents"][0]["LastModified"], dt.datetime)


@pytest.mark.parametrize("pause_gc", [True, False])
def test_collector_state_is_restored(pause_gc: bool) -> None:
    body = json.dumps({"TableNames": ["a", "b"]}).encode()
    response = response_dict("ListTables", body, {})
    seen = []
    original = compile_operation(
        _SESSION.get_service_model("dynamodb").operation_model("ListTables"),
        "json",
        timestamp_parser=fast_timestamp,
    )
    assert original is not None

    def compiled(response: Any) -> Any:
        seen.append(gc.isenabled())
        return original(response)

    for enabled_before in (True, False):
        if not enabled_before:
            gc.disable()
        try:
            assert install_module._run(compiled, response, pause_gc) is not None
            assert gc.isenabled() is enabled_before
        finally:
            gc.enable()
    assert seen == ([False, False] if pause_gc else [True, False])


def test_opt_out(monkeypatch: pytest.MonkeyPatch, boto3_client: Any) -> None:
    s3 = boto3_client("s3")
    monkeypatch.setenv(ENV_VAR, "0")
    assert install(s3) is False
    assert not is_installed(s3)
    assert install(s3, enabled=True) is True
    assert is_installed(s3)
    uninstall(s3)
    assert not is_installed(s3)
    monkeypatch.setenv(ENV_VAR, "1")
    assert install(s3) is True
    assert install(s3, raw=True) is True
    factory = s3._endpoint._response_parser_factory
    assert isinstance(factory, FastParserFactory)
    assert factory.raw
    assert not isinstance(factory.original, FastParserFactory)


# -- real answers: moto ------------------------------------------------------------------


def _without_volatile(page: dict[str, Any]) -> dict[str, Any]:
    page = dict(page)
    metadata = page.pop("ResponseMetadata")
    assert set(metadata) >= {"HTTPStatusCode", "HTTPHeaders", "RetryAttempts"}
    return page


class Pair:
    """A plain client, an installed one, and botocore's parse of exactly the
    response the installed client parsed."""

    def __init__(self, make: Callable[..., Any], service: str) -> None:
        self.plain = make(service)
        self.fast = make(service)
        assert install(self.fast, enabled=True)
        self.captured: list[dict[str, Any]] = []
        service_id = self.fast.meta.service_model.service_id.hyphenize()
        self.fast.meta.events.register(f"before-parse.{service_id}.*", self._capture)

    def _capture(self, response_dict: dict[str, Any], **_: Any) -> None:
        self.captured.append(dict(response_dict))

    def call(self, method: str, **kwargs: Any) -> dict[str, Any]:
        ours = getattr(self.fast, method)(**kwargs)
        theirs = getattr(self.plain, method)(**kwargs)
        assert_same(_without_volatile(ours), _without_volatile(theirs))
        # The very response the installed client parsed, through botocore.
        response = self.captured[-1]
        operation = self.fast.meta.method_to_api_mapping[method]
        model = self.fast.meta.service_model
        parser = botocore.parsers.create_parser(model.resolved_protocol)
        again = parser.parse(response, model.operation_model(operation).output_shape)
        self.fast.meta.events.emit(
            f"after-call.{model.service_id.hyphenize()}.{operation}",
            http_response=None,
            parsed=again,
            model=model.operation_model(operation),
            context={"encoding_type_auto_set": kwargs.get("EncodingType") is None},
        )
        expected = dict(again)
        got: dict[str, Any] = dict(ours)
        got_metadata = dict(got.pop("ResponseMetadata"))
        got_metadata.pop("RetryAttempts")
        assert_same(got_metadata, expected.pop("ResponseMetadata"))
        assert_same(got, expected)
        return got | {"ResponseMetadata": ours["ResponseMetadata"]}


AWKWARD_KEYS = [
    "plain.txt",
    "with space/and+plus",
    "percent%41%2F",
    "amp&lt<gt>\"quote'",
    "tilde~é/東京/ｱ/😀",
    "line\nbreak",
    "a" * 1000,
    "trailing/",
    "  leading spaces",
]


def test_moto_s3(boto3_client: Any, spy: Spy) -> None:
    from tests.conftest import put_s3_keys

    pair = Pair(boto3_client, "s3")
    pair.plain.create_bucket(Bucket="parsers-awkward")
    put_s3_keys(pair.plain, "parsers-awkward", AWKWARD_KEYS)
    page = pair.call("list_objects_v2", Bucket="parsers-awkward")
    assert sorted(o["Key"] for o in page["Contents"]) == sorted(AWKWARD_KEYS)
    assert isinstance(page["Contents"][0]["LastModified"], dt.datetime)
    page = pair.call("list_objects_v2", Bucket="parsers-awkward", EncodingType="url")
    assert any("%" in o["Key"] for o in page["Contents"])
    pair.call("list_objects_v2", Bucket="parsers-awkward", Delimiter="/", MaxKeys=3)
    pair.call("list_objects_v2", Bucket="parsers-awkward", Prefix="with space/", FetchOwner=True)
    pair.call("list_objects", Bucket="parsers-awkward", Delimiter="/")
    pair.call("list_object_versions", Bucket="parsers-awkward")
    pair.call("list_buckets")
    assert spy.ran >= 7
    assert spy.fell_back == 0
    # Not compiled (XML attributes) and streaming: botocore's parser, same pages.
    pair.call("get_bucket_acl", Bucket="parsers-awkward")
    body = pair.fast.get_object(Bucket="parsers-awkward", Key="plain.txt")["Body"].read()
    assert body == b"x"
    for client in (pair.fast, pair.plain):
        with pytest.raises(ClientError) as caught:
            client.list_objects_v2(Bucket="parsers-missing")
        assert caught.value.response["Error"]["Code"] == "NoSuchBucket"
    assert spy.fell_back == 0


def test_moto_dynamodb(boto3_client: Any, spy: Spy) -> None:
    pair = Pair(boto3_client, "dynamodb")
    create_table(pair.plain, "parsers-types")
    for n in range(25):
        pair.plain.put_item(
            TableName="parsers-types",
            Item={
                "pk": {"S": f"item-{n:03d} é"},
                "n": {"N": str(n * 1.5)},
                "b": {"B": bytes([n, 0, 255])},
                "ss": {"SS": ["a", "b"]},
                "ns": {"NS": ["1", "2.5"]},
                "bs": {"BS": [b"\x00", b"\x01\x02"]},
                "m": {"M": {"x": {"S": "y"}, "deep": {"M": {"z": {"BOOL": n % 2 == 0}}}}},
                "l": {"L": [{"S": "one"}, {"N": "2"}, {"NULL": True}, {"B": b"\x03"}]},
                "null": {"NULL": True},
                "bool": {"BOOL": False},
            },
        )
    pair.call("scan", TableName="parsers-types", Limit=10)
    pair.call("scan", TableName="parsers-types", ReturnConsumedCapacity="INDEXES")
    pair.call(
        "query",
        TableName="parsers-types",
        KeyConditionExpression="pk = :v",
        ExpressionAttributeValues={":v": {"S": "item-003 é"}},
    )
    pair.call("list_tables")
    pair.call("describe_table", TableName="parsers-types")
    assert spy.ran >= 5
    for client in (pair.fast, pair.plain):
        with pytest.raises(ClientError) as caught:
            client.scan(TableName="parsers-missing")
        assert caught.value.response["Error"]["Code"] == "ResourceNotFoundException"
    assert spy.fell_back == 0


def test_moto_ec2_iam_logs_and_more(boto3_client: Any, spy: Spy) -> None:
    ec2 = Pair(boto3_client, "ec2")
    ec2.plain.run_instances(ImageId="ami-12c6146b", MinCount=3, MaxCount=3, InstanceType="t3.micro")
    ec2.call("describe_instances")
    ec2.call("describe_security_groups")
    ec2.call("describe_regions")
    iam = Pair(boto3_client, "iam")
    for n in range(4):
        iam.plain.create_user(UserName=f"parsers-user-{n}", Path="/team/")
        iam.plain.tag_user(UserName=f"parsers-user-{n}", Tags=[{"Key": "k", "Value": str(n)}])
    iam.call("list_users", MaxItems=2)
    iam.call("list_users", PathPrefix="/team/")
    logs = Pair(boto3_client, "logs")
    for n in range(3):
        logs.plain.create_log_group(logGroupName=f"/parsers/group-{n}")
    logs.call("describe_log_groups", logGroupNamePrefix="/parsers/")
    sqs = Pair(boto3_client, "sqs")
    sqs.plain.create_queue(QueueName="parsers-queue")
    sqs.call("list_queues")
    sns = Pair(boto3_client, "sns")
    sns.plain.create_topic(Name="parsers-topic")
    sns.call("list_topics")
    kms = Pair(boto3_client, "kms")
    kms.plain.create_key()
    kms.call("list_keys")
    assert spy.ran >= 9
    assert spy.fell_back == 0
    with pytest.raises(ClientError) as caught:
        iam.fast.get_user(UserName="parsers-missing")
    assert caught.value.response["Error"]["Code"] == "NoSuchEntity"


@pytest.mark.anyio
async def test_aiobotocore_client(aio_client: Any, spy: Spy) -> None:
    plain = await aio_client("s3")
    fast = await aio_client("s3")
    assert install(fast, enabled=True)
    await plain.create_bucket(Bucket="parsers-aio")
    for key in ("a", "b/c", "d e"):
        await plain.put_object(Bucket="parsers-aio", Key=key, Body=b"1")
    ours = await fast.list_objects_v2(Bucket="parsers-aio")
    theirs = await plain.list_objects_v2(Bucket="parsers-aio")
    assert_same(_without_volatile(ours), _without_volatile(theirs))
    assert spy.ran == 1
    with pytest.raises(ClientError):
        await fast.list_objects_v2(Bucket="parsers-aio-missing")
    dynamodb = await aio_client("dynamodb")
    assert install(dynamodb, enabled=True)
    tables = await dynamodb.list_tables()
    assert isinstance(tables["TableNames"], list)
    assert spy.ran == 2
    assert spy.fell_back == 0


# -- real answers: the local endpoint ------------------------------------------------------


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    from asyncpager.testing import Bucket, Ec2Fleet, IamUsers, LocalEndpoint, Table

    with LocalEndpoint(
        buckets=[Bucket("parsers-deep", 3000, "deep"), Bucket("parsers-uni", 2000, "unicode")],
        tables=[Table("parsers-mixed", 1500)],
        ec2=Ec2Fleet(regions=("us-east-1",), per_region=40),
        iam=IamUsers(count=30),
    ) as ep:
        yield ep.url


def test_local_endpoint_pages(endpoint: str, spy: Spy) -> None:
    import boto3

    def make(service: str) -> Any:
        return boto3.client(service, region_name="us-east-1", endpoint_url=endpoint)

    s3 = Pair(make, "s3")
    page = s3.call("list_objects_v2", Bucket="parsers-uni")
    s3.call(
        "list_objects_v2",
        Bucket="parsers-uni",
        ContinuationToken=page["NextContinuationToken"],
        EncodingType="url",
    )
    s3.call("list_objects_v2", Bucket="parsers-deep", Delimiter="/", FetchOwner=True)
    dynamodb = Pair(make, "dynamodb")
    dynamodb.call("scan", TableName="parsers-mixed")
    ec2 = Pair(make, "ec2")
    ec2.call("describe_instances")
    iam = Pair(make, "iam")
    iam.call("list_users")
    assert spy.ran >= 6
    assert spy.fell_back == 0


def test_fallback_exception_is_internal() -> None:
    assert issubclass(Fallback, Exception)
    compiled = compile_operation(
        _SESSION.get_service_model("dynamodb").operation_model("ListTables"),
        "json",
        timestamp_parser=fast_timestamp,
    )
    assert compiled is not None
    with pytest.raises(Fallback):
        compiled(response_dict("ListTables", b'{"TableNames": "abc"}', {}))
