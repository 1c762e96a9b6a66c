"""Parsed pages kept out of the collector's walks, and cycles still reclaimed."""

from __future__ import annotations

import gc
import json
import weakref
from collections.abc import Iterator
from typing import Any

import botocore.parsers
import botocore.session
import pytest
from botocore.awsrequest import HeadersDict

from asyncpager.parsers import FastParserFactory, freeze_pages
from asyncpager.parsers import _install as install_module

_MODEL = botocore.session.get_session().get_service_model("dynamodb")
_SHAPE = _MODEL.operation_model("Scan").output_shape


@pytest.fixture(autouse=True)
def clean_collector() -> Iterator[None]:
    gc.unfreeze()
    yield
    freeze_pages(None)
    gc.unfreeze()
    assert gc.isenabled()


def parse(items: int) -> dict[str, Any]:
    body = json.dumps(
        {
            "Items": [
                {"pk": {"S": f"k{i}"}, "n": {"M": {"v": {"N": str(i)}}}} for i in range(items)
            ],
            "Count": items,
            "ScannedCount": items,
        }
    ).encode()
    response = {
        "body": body,
        "headers": HeadersDict({}),
        "status_code": 200,
        "context": {"operation_name": "Scan"},
    }
    parser = FastParserFactory(botocore.parsers.ResponseParserFactory(), _MODEL).create_parser(
        "json"
    )
    page: dict[str, Any] = parser.parse(response, _SHAPE)
    assert len(page["Items"]) == items
    return page


class Node:
    def __init__(self) -> None:
        self.me = self


def test_a_large_page_is_frozen_and_cycles_come_back_every_few_parses() -> None:
    freeze_pages(every=2)
    # No automatic collection may reclaim the cycle before the freeze does.
    thresholds = gc.get_threshold()
    gc.set_threshold(10**9)
    try:
        check_freezing()
    finally:
        gc.set_threshold(*thresholds)


def check_freezing() -> None:
    cycle = Node()
    alive = weakref.ref(cycle)
    del cycle  # garbage now, but only the collector can free it
    page = parse(20_000)  # enough new tracked objects to freeze
    assert gc.get_freeze_count() > 0
    assert alive() is not None, "frozen with the page"
    assert page["Items"][0]["pk"] == {"S": "k0"}
    parse(20_000)  # the second: everything unfrozen and collected
    assert gc.get_freeze_count() == 0
    assert alive() is None


def test_small_pages_are_left_to_the_collector() -> None:
    freeze_pages(every=2)
    parse(10)
    assert gc.get_freeze_count() == 0


def test_off_by_default_and_turned_off_with_none() -> None:
    assert install_module._freezer is None
    parse(20_000)
    assert gc.get_freeze_count() == 0
    freeze_pages(every=64)
    parse(20_000)
    assert gc.get_freeze_count() > 0
    freeze_pages(None)
    assert gc.get_freeze_count() == 0
    parse(20_000)
    assert gc.get_freeze_count() == 0


@pytest.mark.parametrize("every", [0, -1])
def test_every_must_be_positive(every: int) -> None:
    with pytest.raises(ValueError, match="positive"):
        freeze_pages(every)
