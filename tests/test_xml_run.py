"""S3 listings read as a run of elements: the same pages as botocore's tree.

Every body here is parsed by the compiled parser and by botocore's; the run
path must be *taken* for the strict form (a test that only compared pages
would pass with the run path broken, through the tree) and *declined* for
everything else, with botocore's outcome either way.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any
from xml.sax.saxutils import escape

import botocore.session
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from asyncpager.parsers import compile_operation
from asyncpager.parsers._compiler import PARSED_ROOT, _xml_root
from asyncpager.parsers._install import _handle_200_error_once
from asyncpager.parsers._timestamps import fast_timestamp
from asyncpager.parsers._uniform import UniformReader
from asyncpager.parsers._xmlrun import (
    _MAX_SIGNATURES,
    PARSED_RUN,
    TEXT,
    ZULU,
    UniformRun,
    run_spec,
    split,
    unescape,
)
from tests.test_parsers import assert_same, both_ways, response_dict

_MODEL = botocore.session.get_session().get_service_model("s3")
_LIST = _MODEL.operation_model("ListObjectsV2")
_SPEC = run_spec(_LIST.output_shape)
_COMPILED = compile_operation(_LIST, "rest-xml", timestamp_parser=fast_timestamp)
assert _COMPILED is not None
_HEADERS = {"x-amz-request-id": "req-1", "Content-Type": "application/xml"}
_HEAD = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    '<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
    "<Name>bucket</Name><Prefix></Prefix><KeyCount>3</KeyCount><MaxKeys>1000</MaxKeys>"
    "<IsTruncated>false</IsTruncated>"
)
_TAIL = "</ListBucketResult>"


def contents(
    key: str, *, extra: str = "", size: str = "12", modified: str = "2024-05-01T10:20:30.123Z"
) -> str:
    return (
        f"<Contents><Key>{key}</Key><LastModified>{modified}</LastModified>"
        f"<ETag>&quot;0123456789abcdef&quot;</ETag>{extra}<Size>{size}</Size>"
        "<StorageClass>STANDARD</StorageClass></Contents>"
    )


def body_of(*elements: str, head: str = _HEAD, tail: str = _TAIL) -> bytes:
    return (head + "".join(elements) + tail).encode()


def parse_both(body: bytes) -> tuple[Any, Any]:
    return both_ways("s3", "ListObjectsV2", response_dict("ListObjectsV2", body, _HEADERS))


def test_the_listing_shape_has_a_run() -> None:
    assert _SPEC is not None
    assert (_SPEC.member, _SPEC.tag) == ("Contents", "Contents")
    assert [f.name for f in _SPEC.fields][:3] == ["Key", "LastModified", "ETag"]
    # ListBuckets' list is wrapped, not flattened: no run.
    assert run_spec(_MODEL.operation_model("ListBuckets").output_shape) is None


FULL = contents(
    "photos/2024/a&amp;b &lt;c&gt; &#x1F600; &#233;t&#xE9; &apos;q&apos;",
    extra=(
        "<ChecksumAlgorithm>CRC32</ChecksumAlgorithm><ChecksumAlgorithm>SHA256</ChecksumAlgorithm>"
        "<ChecksumType>FULL_OBJECT</ChecksumType>"
    ),
)
WITH_OWNER = (
    "<Contents><Key>k2</Key><Size>0</Size><StorageClass>GLACIER</StorageClass>"
    "<Owner><DisplayName>me</DisplayName><ID>abc</ID></Owner>"
    "<RestoreStatus><IsRestoreInProgress>true</IsRestoreInProgress>"
    "<RestoreExpiryDate>2025-01-01T00:00:00.000Z</RestoreExpiryDate></RestoreStatus></Contents>"
)
EMPTY_PARTS = "<Contents><Key></Key><Owner></Owner><RestoreStatus></RestoreStatus></Contents>"

STRICT = {
    "plain": body_of(contents("a"), contents("b"), contents("c")),
    "entities, lists, unicode": body_of(FULL, contents("ünïcödé/ключ/鍵")),
    "owner and restore status": body_of(contents("a"), WITH_OWNER),
    "empty texts and structures": body_of(EMPTY_PARTS),
    "one element": body_of(contents("only")),
    "common prefixes after the run": body_of(
        contents("a/1"),
        tail="<CommonPrefixes><Prefix>b/</Prefix></CommonPrefixes>" + _TAIL,
    ),
    "tabs and newlines in text": body_of(contents("a\tb\nc")),
    "a character reference to a carriage return": body_of(contents("a&#13;b&#xD;")),
    "indented document around the run": body_of(
        contents("a"), head=_HEAD.replace("<Name>", "\n  <Name>"), tail="\n" + _TAIL + "\n"
    ),
}


@pytest.mark.parametrize("name", list(STRICT))
def test_strict_runs_are_read_without_a_tree(name: str) -> None:
    body = STRICT[name]
    assert _SPEC is not None
    assert split(body, _SPEC, _xml_root) is not None, name
    _assert_compiled_as_botocore(body)


DECLINED = {
    "members out of model order": body_of(
        "<Contents><Size>1</Size><Key>a</Key></Contents>", contents("b")
    ),
    "a member twice": body_of("<Contents><Key>a</Key><Size>1</Size><Size>2</Size></Contents>"),
    "an unknown member": body_of("<Contents><Key>a</Key><New>x</New></Contents>"),
    "space between elements": body_of(contents("a"), " ", contents("b")),
    "text between elements": body_of(contents("a"), "junk", contents("b")),
    "a stray closing tag between elements": body_of(
        contents("a"), "junk</Contents>", contents("b")
    ),
    "a stray closing tag after the run": body_of(contents("a"), "</Contents>"),
    "a comment before the run": body_of(contents("a"), head=_HEAD + "<!-- <Contents> -->"),
    "a comment inside the run": body_of(contents("a"), "<!-- x -->", contents("b")),
    "another element inside the run": body_of(
        contents("a"), "<CommonPrefixes><Prefix>p/</Prefix></CommonPrefixes>", contents("b")
    ),
    "an empty-element tag before the run": body_of(contents("a"), head=_HEAD + "<Contents/>"),
    "an attribute": body_of('<Contents a="1"><Key>a</Key></Contents>', contents("b")),
    "a raw carriage return": body_of(contents("a\rb")),
    "a CDATA section": body_of(contents("<![CDATA[a]]>")),
    "a stray ]]>": body_of(contents("a]]>b")),
    "an undefined entity": body_of(contents("a&nbsp;b")),
    "a bare ampersand": body_of(contents("a & b")),
    "a reference to NUL": body_of(contents("a&#0;b")),
    "a reference to a surrogate": body_of(contents("a&#xD800;b")),
    "a control character": body_of(contents("a\x01b")),
    "invalid UTF-8": _HEAD.encode()
    + contents("a").encode().replace(b"<Key>a", b"<Key>\xff", 1)
    + _TAIL.encode(),
    "cut short after the run": body_of(contents("a"), tail=""),
    "the run deeper than the root's children": body_of("<Wrapper>", contents("a"), "</Wrapper>"),
    "not a number where one is due": body_of(contents("a", size="twelve")),
    "a namespace prefix": body_of('<Contents><s:Key xmlns:s="u">a</s:Key></Contents>'),
}


@pytest.mark.parametrize("name", list(DECLINED))
def test_anything_else_takes_the_tree_with_botocores_outcome(name: str) -> None:
    body = DECLINED[name]
    assert _SPEC is not None
    parts = split(body, _SPEC, _xml_root)
    ours, theirs = parse_both(body)
    if name == "not a number where one is due":
        # The run's form is strict; the value is the parser's business, and
        # it hands the body to botocore, whose error it then is.
        assert parts is not None
    else:
        assert parts is None, name
    if isinstance(theirs, Exception):
        assert type(ours) is type(theirs), (ours, theirs)
    else:
        assert_same(ours, theirs)


def test_the_error_check_keeps_the_run_and_botocores_outcomes() -> None:
    good = STRICT["entities, lists, unicode"]
    response: dict[str, Any] = {"status_code": 200, "body": good, "headers": {}}
    _handle_200_error_once(_LIST, response)
    assert response["status_code"] == 200
    assert response[PARSED_ROOT].tag.endswith("ListBucketResult")
    assert len(response[PARSED_RUN]) == 2
    for body, status in [
        (body_of(contents("a"), tail=""), 500),  # cut short after the run
        (b"<Error><Code>InternalError</Code>" + contents("a").encode() + b"</Error>", 500),
        (body_of(contents("a")), 200),
    ]:
        response = {"status_code": 200, "body": body, "headers": {}}
        _handle_200_error_once(_LIST, response)
        assert response["status_code"] == status, body
        assert (PARSED_RUN in response) == (status == 200)


def test_unescape_reads_references_as_expat_does() -> None:
    text = "&quot;a&amp;lt;&#65;&#x42;&apos;&gt;"
    assert unescape(text) == _xml_root(f"<a>{text}</a>".encode()).text


_KEY_CHARS = st.text(
    alphabet=st.one_of(
        st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="\ufffe\uffff"),
        st.sampled_from("\t\n&<>\"'%+/~ ]"),
    ),
    max_size=12,
)


def _xml_text(text: str, rng: random.Random) -> str:
    # Each character as itself (escaped) or as a character reference, as
    # servers may send it.
    entities = {'"': "&quot;", "'": "&apos;"} if rng.random() < 0.5 else {}
    return "".join(f"&#{ord(ch)};" if rng.random() < 0.1 else escape(ch, entities) for ch in text)


@given(st.lists(_KEY_CHARS, min_size=1, max_size=20), st.randoms(use_true_random=False))
@settings(
    max_examples=100,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
def test_generated_keys_read_like_botocore(keys: list[str], rng: random.Random) -> None:
    elements = []
    # Owners on no element, some or all: uniform runs and mixed ones.
    rate = rng.choice([0.0, 0.3, 1.0])
    for key in keys:
        owner = "<Owner><ID>x</ID></Owner>" if rng.random() < rate else ""
        element = contents(_xml_text(key, rng))
        elements.append(element.replace("</Contents>", owner + "</Contents>"))
    body = body_of(*elements)
    assert _SPEC is not None
    assert split(body, _SPEC, _xml_root) is not None
    ours, theirs = parse_both(body)
    assert not isinstance(theirs, Exception), theirs
    assert_same(ours, theirs)


# -- raw "json" mode: timestamps as the text the JSON writers make ---------------

_TIMES = [
    "2024-05-01T10:20:30.123Z",
    "2024-05-01T10:20:30.000Z",
    "2024-05-01T10:20:30Z",
    "2024-05-01T10:20:30.000100Z",
    "2024-05-01T10:20:30.120000Z",
    "1999-12-31T23:59:59.999Z",
    "2024-02-29T00:00:00.001Z",
]


@pytest.mark.parametrize("name", [*STRICT, *DECLINED])
def test_json_mode_writes_what_botocores_page_writes(name: str) -> None:
    from asyncpager.convert import plain_to_json_line

    body = {**STRICT, **DECLINED}[name]
    for when in _TIMES:
        timed = body.replace(b"2024-05-01T10:20:30.123Z", when.encode())
        response = response_dict("ListObjectsV2", timed, _HEADERS)
        ours, theirs = both_ways("s3", "ListObjectsV2", response, raw="json")
        if isinstance(theirs, Exception):
            assert isinstance(ours, Exception)
            continue
        written = [plain_to_json_line(item) for item in ours.get("Contents", [])]
        assert written == [plain_to_json_line(item) for item in theirs.get("Contents", [])]
        if ours.get("Contents") and "LastModified" in ours["Contents"][0]:
            assert isinstance(ours["Contents"][0]["LastModified"], str)


_SHAPED = st.builds(
    lambda y, mo, d, h, mi, s, fraction: (
        f"{y:04d}-{mo:02d}-{d:02d}T{h:02d}:{mi:02d}:{s:02d}{fraction}Z"
    ),
    st.integers(1, 9999),
    st.integers(0, 13),
    st.integers(0, 32),
    st.integers(0, 25),
    st.integers(0, 61),
    st.integers(0, 61),
    st.one_of(
        st.just(""),
        st.integers(0, 999).map(lambda f: f".{f:03d}"),
        st.integers(0, 999_999).map(lambda f: f".{f:06d}"),
    ),
)


@settings(max_examples=300, deadline=None)
@given(st.one_of(_SHAPED, st.text(max_size=30), st.floats(0, 4e9), st.integers(0, 4_000_000_000)))
def test_iso_timestamp_is_fast_timestamps_isoformat(value: Any) -> None:
    from asyncpager.parsers import iso_timestamp
    from asyncpager.parsers._timestamps import refresh_zones

    refresh_zones()
    assert outcome(iso_timestamp, value) == outcome(lambda v: fast_timestamp(v).isoformat(), value)


def outcome(function: Any, value: Any) -> Any:
    """What ``function(value)`` returns, or the type of what it raises."""
    try:
        return function(value)
    except Exception as exc:
        return type(exc)


# -- uniform runs: every element holds the members of the first -----------------

_ONE_CHECKSUM = (
    "<ChecksumAlgorithm>CRC64NVME</ChecksumAlgorithm><ChecksumType>FULL_OBJECT</ChecksumType>"
)

UNIFORM = {
    "quoted ETags (the usual page)": body_of(contents("a"), contents("b"), contents("c")),
    "no references": body_of(*(contents(k).replace("&quot;", "") for k in "abc")),
    "other references": body_of(
        contents("a&amp;b"), contents("&#233;t&#xE9; &apos;q&apos;"), contents("&lt;c&gt;")
    ),
    "one checksum algorithm each": body_of(*(contents(k, extra=_ONE_CHECKSUM) for k in "ab")),
    "owner and restore status on every element": body_of(
        WITH_OWNER, WITH_OWNER.replace("k2", "k3")
    ),
    "empty texts and structures": body_of(EMPTY_PARTS, EMPTY_PARTS),
    "a lone member": body_of(
        "<Contents><Key>a</Key></Contents>", "<Contents><Key>b</Key></Contents>"
    ),
    "timestamps without a fraction, or of six digits": body_of(
        contents("a", modified="2024-05-01T10:20:30Z"),
        contents("b", modified="2024-05-01T10:20:30.000100Z"),
    ),
    "timestamps of another shape, first to last": body_of(
        contents("a", modified="2024-05-01T10:20:30+00:00"),
        contents("b", modified="2024-05-01T10:20:30.5Z"),
        contents("c", modified="2024-05-01T10:20:30.123Z"),
    ),
}

MIXED = {
    "a later element lacks a member": body_of(contents("a"), "<Contents><Key>b</Key></Contents>"),
    "a later element has a member the first lacks": body_of(
        "<Contents><Key>a</Key></Contents>", contents("b")
    ),
    "two checksum algorithms": body_of(FULL, contents("b")),
    "an owner on some elements": body_of(contents("a"), WITH_OWNER),
    "a timestamp of another shape after a usual one": body_of(
        contents("a"), contents("b", modified="2024-05-01T10:20:30+00:00")
    ),
}


def _run_of(body: bytes) -> Any:
    assert _SPEC is not None
    parts = split(body, _SPEC, _xml_root)
    assert parts is not None
    return parts[1]


def _assert_compiled_as_botocore(body: bytes) -> None:
    ours, theirs = parse_both(body)
    assert not isinstance(theirs, Exception), theirs
    assert_same(ours, theirs)
    # Made by the compiled code, not by botocore after a fallback.
    direct = _COMPILED(response_dict("ListObjectsV2", body, _HEADERS))
    assert_same(direct["Contents"], theirs["Contents"])


@pytest.mark.parametrize("name", list(UNIFORM))
def test_uniform_runs_are_read_by_their_own_expression(name: str) -> None:
    run = _run_of(UNIFORM[name])
    assert isinstance(run, UniformRun), name
    assert len(run) == UNIFORM[name].count(b"<Contents>")
    _assert_compiled_as_botocore(UNIFORM[name])


@pytest.mark.parametrize("name", list(MIXED))
def test_runs_of_mixed_elements_are_read_by_the_general_expression(name: str) -> None:
    run = _run_of(MIXED[name])
    assert isinstance(run, list), name
    _assert_compiled_as_botocore(MIXED[name])


def test_a_signature_says_what_the_first_element_holds() -> None:
    timestamps = [f.name for f in _SPEC.fields].index("LastModified") if _SPEC else -1
    usual = _run_of(UNIFORM["quoted ETags (the usual page)"])
    assert usual.signature[timestamps] == ZULU
    assert usual.references == 1
    other = _run_of(UNIFORM["timestamps of another shape, first to last"])
    assert other.signature[timestamps] == TEXT
    assert _run_of(UNIFORM["no references"]).references == 0
    assert _run_of(UNIFORM["other references"]).references == 2


def test_signatures_are_remembered_up_to_a_bound() -> None:
    spec = run_spec(_LIST.output_shape)  # a spec of its own: an empty memory
    assert spec is not None
    first = split(body_of(contents("a"), contents("b")), spec, _xml_root)
    assert first is not None
    assert isinstance(first[1], UniformRun)
    assert len(spec.uniform) == 1
    for n in range(_MAX_SIGNATURES - 1):
        spec.uniform[(n,)] = spec.element  # stands for one more signature
    # Full: a new signature is read by the general expression; a known one
    # still by its own.
    new = split(body_of(*(contents(k, extra=_ONE_CHECKSUM) for k in "ab")), spec, _xml_root)
    assert new is not None
    assert isinstance(new[1], list)
    known = split(body_of(contents("c"), contents("d")), spec, _xml_root)
    assert known is not None
    assert isinstance(known[1], UniformRun)


@pytest.mark.parametrize(
    "zone",
    # The last: a zone named UTC with summer time, where a Z is not UTC all
    # year to dateutil and timestamps take the slow form.
    ["UTC", "America/New_York", "Asia/Kolkata", "UTC0BST,M3.5.0/1,M10.5.0"],
)
def test_uniform_timestamps_match_botocore_in_every_zone(
    zone: str, local_zone: Callable[[str], None]
) -> None:
    local_zone(zone)
    times = ["2024-05-01T10:20:30.123Z", "2024-01-01T00:00:00Z", "1999-12-31T23:59:59.999999Z"]
    body = body_of(*(contents(str(n), modified=t) for n, t in enumerate(times)))
    assert isinstance(_run_of(body), UniformRun)
    _assert_compiled_as_botocore(body)


@settings(max_examples=200, deadline=None, database=None)
@given(st.lists(_SHAPED, min_size=1, max_size=6))
def test_generated_timestamps_in_uniform_runs_read_like_botocore(times: list[str]) -> None:
    # Months, days, hours and minutes out of range included: botocore's
    # outcome, whichever reader the run takes.
    body = body_of(*(contents(str(n), modified=t) for n, t in enumerate(times)))
    ours, theirs = parse_both(body)
    if isinstance(theirs, Exception):
        assert type(ours) is type(theirs)
    else:
        assert_same(ours, theirs)


def test_the_function_for_a_signature_is_one_comprehension() -> None:
    run = _run_of(UNIFORM["quoted ETags (the usual page)"])
    readers = [v for v in _COMPILED.__globals__.values() if isinstance(v, UniformReader)]
    assert len(readers) == 1
    source = readers[0].source(run.signature, run.references)
    # No test per member, no tag cut off: a display per element.
    assert "if '&' not in" in source
    assert "_fromiso(a1)" in source
    assert "[5:" not in source
    assert source.count(" for ") == 2  # the zone's two forms
