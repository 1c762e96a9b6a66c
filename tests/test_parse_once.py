"""S3 bodies are parsed once: the check for an error hidden in a 200 answer
keeps its tree for the compiled parser, with botocore's outcomes."""

from __future__ import annotations

from typing import Any

import boto3
from botocore.handlers import _handle_200_error

from asyncpager.parsers import install, uninstall
from asyncpager.parsers._compiler import PARSED_ROOT
from asyncpager.parsers._install import _handle_200_error_once


def s3_client() -> Any:
    return boto3.client("s3", region_name="us-east-1", endpoint_url="http://127.0.0.1:9")


def handler_names(client: Any) -> list[str]:
    found = client.meta.events._emitter._handlers.prefix_search("before-parse.s3.ListObjectsV2")
    return [h.__name__ for h in found]


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
    assert install(client, enabled=True)
    names = [
        h.__name__
        for h in client.meta.events._emitter._handlers.prefix_search(
            "before-parse.s3.ListObjectsV2"
        )
    ]
    assert "_handle_200_error_once" in names
    assert "_handle_200_error" not in names
    other_names = [
        h.__name__
        for h in other.meta.events._emitter._handlers.prefix_search("before-parse.s3.ListObjectsV2")
    ]
    assert "_handle_200_error" in other_names
    uninstall(client)
    names = [
        h.__name__
        for h in client.meta.events._emitter._handlers.prefix_search(
            "before-parse.s3.ListObjectsV2"
        )
    ]
    assert "_handle_200_error" in names
    assert "_handle_200_error_once" not in names
