"""S3 bodies are parsed once: the check for an error hidden in a 200 answer
keeps its tree for the compiled parser, with botocore's outcomes."""

from __future__ import annotations

import copy
from typing import Any
from urllib.parse import quote_plus

import boto3
from botocore.handlers import _handle_200_error, decode_list_object_v2
from hypothesis import given, settings
from hypothesis import strategies as st

from asyncpager.parsers import install, uninstall
from asyncpager.parsers._compiler import PARSED_ROOT
from asyncpager.parsers._install import _decode_list_objects_v2, _handle_200_error_once


def s3_client() -> Any:
    return boto3.client("s3", region_name="us-east-1", endpoint_url="http://127.0.0.1:9")


def handlers_of(client: Any, event: str) -> list[str]:
    return [h.__name__ for h in client.meta.events._emitter._handlers.prefix_search(event)]


def test_outcomes_match_botocore() -> None:
    model = s3_client().meta.service_model.operation_model("ListObjectsV2")
    bodies = [
        b"<?xml version='1.0'?><Error><Code>InternalError</Code></Error>",
        b"<ListBucketResult><Name>b</Name>",  # cut short
        b"<ListBucketResult><Name>b</Name></ListBucketResult>",
    ]
    for body in bodies:
        theirs: dict[str, Any] = {"status_code": 200, "body": body, "headers": {}}
        ours: dict[str, Any] = {"status_code": 200, "body": body, "headers": {}}
        _handle_200_error(model, theirs)
        _handle_200_error_once(model, ours)
        assert ours["status_code"] == theirs["status_code"]
        assert (PARSED_ROOT in ours) == (theirs["status_code"] == 200)
    assert ours[PARSED_ROOT].tag == "ListBucketResult"


def test_the_collector_is_left_as_it_was_found() -> None:
    import gc

    model = s3_client().meta.service_model.operation_model("ListObjectsV2")
    bodies = [b"<ListBucketResult><Name>b</Name>", b"<ListBucketResult></ListBucketResult>"]
    assert gc.isenabled()
    try:
        for enabled in (True, False):
            if not enabled:
                gc.disable()
            for body in bodies:  # a cut body (a parse error) and a whole one
                _handle_200_error_once(model, {"status_code": 200, "body": body, "headers": {}})
                assert gc.isenabled() is enabled
    finally:
        gc.enable()


def test_install_swaps_the_handler_on_that_client_only() -> None:
    client, other = s3_client(), s3_client()
    event = "before-parse.s3.ListObjectsV2"
    assert install(client, enabled=True)
    names = handlers_of(client, event)
    assert "_handle_200_error_once" in names
    assert "_handle_200_error" not in names
    assert "_handle_200_error" in handlers_of(other, event)
    uninstall(client)
    names = handlers_of(client, event)
    assert "_handle_200_error" in names
    assert "_handle_200_error_once" not in names


def test_install_swaps_the_key_decoder_on_that_client_only() -> None:
    client, other = s3_client(), s3_client()
    event = "after-call.s3.ListObjectsV2"
    assert install(client, enabled=True)
    assert "_decode_list_objects_v2" in handlers_of(client, event)
    assert "decode_list_object_v2" not in handlers_of(client, event)
    assert "decode_list_object_v2" in handlers_of(other, event)
    uninstall(client)
    assert "decode_list_object_v2" in handlers_of(client, event)
    assert "_decode_list_objects_v2" not in handlers_of(client, event)


_TEXTS = st.text(alphabet=st.sampled_from("ab %+2F/é~\u00a0"), max_size=10)
# As they come, or encoded as S3 encodes them: both kinds reach the decoder.
_KEYS = st.one_of(_TEXTS, _TEXTS.map(quote_plus))


@given(
    st.lists(_KEYS, max_size=5),
    st.lists(_KEYS, max_size=3),
    st.dictionaries(st.sampled_from(["Delimiter", "Prefix", "StartAfter"]), _KEYS),
    st.sampled_from(["url", None, "other"]),
    st.booleans(),
)
@settings(max_examples=200, deadline=None, database=None)
def test_keys_are_decoded_as_botocore_decodes_them(
    keys: list[str], prefixes: list[str], top: dict[str, str], encoding: str | None, auto: bool
) -> None:
    parsed: dict[str, Any] = {**top, "Contents": [{"Key": k, "Size": 1} for k in keys]}
    if prefixes:
        parsed["CommonPrefixes"] = [{"Prefix": p} for p in prefixes]
    if encoding is not None:
        parsed["EncodingType"] = encoding
    context = {"encoding_type_auto_set": True} if auto else {}
    theirs, ours = copy.deepcopy(parsed), copy.deepcopy(parsed)
    decode_list_object_v2(theirs, context)
    _decode_list_objects_v2(ours, context)
    assert ours == theirs
