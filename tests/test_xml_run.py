"""S3 listings read as a run of elements: the same pages as botocore's tree.

Every body here is parsed by the compiled parser and by botocore's; the run
path must be *taken* for the strict form (a test that only compared pages
would pass with the run path broken, through the tree) and *declined* for
everything else, with botocore's outcome either way.
"""

from __future__ import annotations

import random
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
from asyncpager.parsers._xmlrun import PARSED_RUN, run_spec, split, unescape
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


def contents(key: str, *, extra: str = "", size: str = "12") -> str:
    return (
        f"<Contents><Key>{key}</Key><LastModified>2024-05-01T10:20:30.123Z</LastModified>"
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
    ours, theirs = parse_both(body)
    assert not isinstance(theirs, Exception), theirs
    assert_same(ours, theirs)
    # Made by the compiled code, not by botocore after a fallback.
    direct = _COMPILED(response_dict("ListObjectsV2", body, _HEADERS))
    assert_same(direct["Contents"], theirs["Contents"])


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
    for key in keys:
        owner = "<Owner><ID>x</ID></Owner>" if rng.random() < 0.3 else ""
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
