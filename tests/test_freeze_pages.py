"""Parsed pages kept out of the collector's walks, and cycles still reclaimed."""

from __future__ import annotations

import gc
import json
import subprocess
import sys
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


#: What a full collection leaves frozen with nothing else frozen: the
#: interpreter's own (375 objects on Python 3.12, none on 3.11 or 3.13).
RESIDUE = 0


@pytest.fixture(autouse=True)
def clean_collector() -> Iterator[None]:
    global RESIDUE
    gc.unfreeze()
    gc.collect()
    RESIDUE = gc.get_freeze_count()
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
    freeze_pages(every=2, spacing=0)
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
    assert gc.get_freeze_count() == RESIDUE
    assert alive() is None


def test_the_full_collection_waits_for_its_share_of_the_cpu() -> None:
    now = [0.0]
    freeze_pages(every=2, spacing=10, clock=lambda: now[0])
    thresholds = gc.get_threshold()
    gc.set_threshold(10**9)
    try:
        cycle = Node()
        alive = weakref.ref(cycle)
        del cycle
        parse(20_000)
        parse(20_000)  # every=2 reached, but no CPU has passed since the start
        assert gc.get_freeze_count() > 0
        assert alive() is not None
        frozen = gc.get_freeze_count()
        # Expected cost: 1 us per frozen object; 10 times that must pass.
        now[0] = 10 * install_module.FIRST_COST_PER_OBJECT * frozen * 0.9
        parse(20_000)
        parse(20_000)  # not yet: 90% of the spacing
        assert alive() is not None
        now[0] = 10 * install_module.FIRST_COST_PER_OBJECT * (frozen + 200_000)
        parse(20_000)
        parse(20_000)
        assert gc.get_freeze_count() == RESIDUE
        assert alive() is None
        # The collection took no time on this clock: the next one is due
        # after every=2 parses again, whatever is frozen by then.
        freezer = install_module._freezer
        assert freezer is not None
        assert freezer.per_object == 0
        parse(20_000)
        assert gc.get_freeze_count() > 0
        parse(20_000)
        assert gc.get_freeze_count() == RESIDUE
    finally:
        gc.set_threshold(*thresholds)


def test_small_pages_are_left_to_the_collector_once_the_heap_is_frozen() -> None:
    freeze_pages(every=2)
    thresholds = gc.get_threshold()
    gc.set_threshold(10**9)  # no collection but the test's own
    try:
        earlier = Node()
        alive_earlier = weakref.ref(earlier)
        del earlier
        parse(10)
        # The first parse froze the heap as it found it, small page and all,
        # with the garbage it held.
        frozen = gc.get_freeze_count()
        assert frozen > 0
        later = Node()
        alive_later = weakref.ref(later)
        del later
        for _ in range(3):
            parse(10)
        # Later small pages freeze nothing more: what they leave, and the
        # garbage made since, is the collector's. (Reference counting still
        # frees frozen objects: the count may drop.)
        assert gc.get_freeze_count() <= frozen
        gc.collect()
        assert alive_later() is None
        assert alive_earlier() is not None
        freeze_pages(None)  # unfreezes: the rest is the collector's again
        gc.collect()
        assert alive_earlier() is None
    finally:
        gc.set_threshold(*thresholds)


def test_off_by_default_and_turned_off_with_none() -> None:
    assert install_module._freezer is None
    parse(20_000)
    # (A collection may run meanwhile: the interpreter's residue, at most.)
    assert gc.get_freeze_count() <= RESIDUE
    freeze_pages(every=64)
    parse(20_000)
    assert gc.get_freeze_count() > RESIDUE
    freeze_pages(None)
    assert gc.get_freeze_count() == 0
    parse(20_000)
    assert gc.get_freeze_count() <= RESIDUE


@pytest.mark.parametrize("every", [0, -1])
def test_every_must_be_positive(every: int) -> None:
    with pytest.raises(ValueError, match="positive"):
        freeze_pages(every)


def test_spacing_must_not_be_negative() -> None:
    with pytest.raises(ValueError, match="multiple"):
        freeze_pages(spacing=-1)


def test_holds_nest_and_leave_a_freezer_found_on_alone() -> None:
    from asyncpager.parsers import hold_frozen_pages

    outer = hold_frozen_pages()
    assert install_module._freezer is not None
    inner = hold_frozen_pages()
    outer()
    outer()  # a second release of the same hold does nothing
    assert install_module._freezer is not None
    inner()
    assert install_module._freezer is None
    # On already (as the command line turns it on): a hold leaves it on.
    freeze_pages()
    hold_frozen_pages()()
    assert install_module._freezer is not None


@pytest.mark.anyio
async def test_a_fetcher_freezes_pages_while_open_and_lets_go_when_cancelled() -> None:
    import anyio

    from asyncpager import Fetcher
    from asyncpager.plan.dynamodb import plan_scan
    from asyncpager.testing import LatencyModel, LocalEndpoint, Table

    # A scan of many-attribute items: each 1,000-item page leaves well over
    # FREEZE_AT tracked objects.
    slow_last = [LatencyModel(fixed=30, service="dynamodb", operation="Scan")]
    with LocalEndpoint(tables=[Table("frozen", 6_000, item_shape="mixed")]) as ep:
        async with Fetcher(freeze_pages=True) as f:
            assert install_module._freezer is not None
            plan = await plan_scan("frozen", segments=1, endpoint_url=ep.url, fetcher=f)
            items = 0
            frozen_seen = False
            async for _stream, page in f.pages(plan.streams):
                items += len(page["Items"])
                if gc.get_freeze_count():
                    frozen_seen = True
            assert items == 6_000
            assert frozen_seen
        assert install_module._freezer is None
        assert gc.get_freeze_count() <= RESIDUE
    # Cancelled mid-request: the hold is let go all the same.
    with LocalEndpoint(tables=[Table("frozen", 10)], latency=slow_last) as ep:
        with anyio.move_on_after(0.5) as scope:
            async with Fetcher(freeze_pages=True) as f:
                plan = await plan_scan("frozen", segments=1, endpoint_url=ep.url, fetcher=f)
                async for _stream, _page in f.pages(plan.streams):
                    pass
        assert scope.cancelled_caught
        assert install_module._freezer is None
        assert gc.get_freeze_count() <= RESIDUE
    async with Fetcher(freeze_pages=False) as f:
        assert install_module._freezer is None


@pytest.mark.anyio
async def test_a_fetcher_freezes_by_default_unless_the_process_froze_objects_itself() -> None:
    from asyncpager import Fetcher

    # What the interpreter itself leaves frozen after a full collection
    # (Python 3.12) is not the process's own doing: the freezer goes on.
    gc.collect()
    assert gc.get_freeze_count() == RESIDUE
    async with Fetcher():
        assert install_module._freezer is not None
        # A second fetcher holds the freezer the first turned on.
        async with Fetcher():
            assert install_module._freezer is not None
        assert install_module._freezer is not None
    assert install_module._freezer is None
    # A process that froze its heap (before forking, say) keeps it frozen:
    # the freezer, which unfreezes everything now and then, stays off.
    kept = Node()
    gc.freeze()
    assert not any(o is kept for o in gc.get_objects())  # frozen: out of the generations
    async with Fetcher():
        assert install_module._freezer is None
    assert gc.get_freeze_count() > 0
    assert not any(o is kept for o in gc.get_objects())
    gc.unfreeze()
    # So does one with its collector off.
    gc.disable()
    try:
        async with Fetcher():
            assert install_module._freezer is None
    finally:
        gc.enable()


def test_a_frozen_heap_is_told_from_the_interpreters_residue() -> None:
    """The line between the two: what the interpreter leaves frozen is under
    it; a bare interpreter that froze its own objects is over it."""
    assert RESIDUE <= install_module.INTERPRETER_FROZEN
    frozen = subprocess.run(
        [sys.executable, "-S", "-c", "import gc; gc.freeze(); print(gc.get_freeze_count())"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert int(frozen) > install_module.INTERPRETER_FROZEN
