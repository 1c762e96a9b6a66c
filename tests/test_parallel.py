"""How ``--workers`` hands out work: the first deal, and shares of what is left
saved before a worker hears of them."""

from __future__ import annotations

from pathlib import Path

import pytest

from asyncpager.checkpoint import Checkpoint
from asyncpager.parallel import _Deal, first_deal
from asyncpager.streams import Stream

pytestmark = pytest.mark.anyio


def shards(n: int) -> list[Stream]:
    return [Stream("s3", "ListObjectsV2", {"Bucket": "b"}, shape={"lo": str(i)}) for i in range(n)]


def names(streams: list[Stream]) -> list[str]:
    return [s.shape["lo"] for s in streams]


def test_first_deal_is_half_the_plan_round_robin() -> None:
    groups, pool = first_deal(shards(10), 2)
    assert [names(g) for g in groups] == [["0", "2", "4"], ["1", "3"]]
    assert names(pool) == ["5", "6", "7", "8", "9"]


def test_first_deal_gives_every_worker_a_stream_where_it_can() -> None:
    groups, pool = first_deal(shards(3), 3)
    assert [names(g) for g in groups] == [["0"], ["1"], ["2"]]
    assert pool == []
    groups, pool = first_deal(shards(1), 2)
    assert [names(g) for g in groups] == [["0"], []]


async def test_shares_shrink_and_are_saved_before_they_are_given(tmp_path: Path) -> None:
    checkpoint = Checkpoint(tmp_path / "main.ckpt")
    groups, pool = first_deal(shards(20), 2)
    deal = _Deal(groups, pool, checkpoint, "fp")
    deal.save()
    sizes = []
    while True:
        given = await deal.give(1)
        if not given:
            break
        sizes.append(len(given))
        state = checkpoint.load("fp")
        assert state is not None
        saved_groups = state.extra["groups"]
        saved_pool = [Stream.from_json(s) for s in state.extra["pool"]]
        # What was given is in the saved group, and no longer in the pool.
        saved_given = [Stream.from_json(s) for s in saved_groups[1][-len(given) :]]
        assert [s.to_json() for s in saved_given] == [s.to_json() for s in given]
        assert not set(names(saved_pool)) & set(names(given))
    assert sizes == [2, 2, 1, 1, 1, 1, 1, 1]
    assert sum(sizes) == 10
    assert await deal.give(0) == []
    dealt = [s for g in deal.groups for s in g]
    assert sorted(names(dealt), key=int) == [str(i) for i in range(20)]
