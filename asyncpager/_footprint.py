"""What a parsed page costs in memory, as the engine's byte budget counts it.

The budget used to count a page at its ``Content-Length``: the bytes on the
wire. Parsed, a page is several times that: a DynamoDB page of typed items
(a dict per item, a dict per attribute value, a string per name and value)
took about twelve bytes of memory per byte of JSON, so a 256 MB budget held
two gigabytes of pages; an S3 page of 1,000 keys takes about two.
:class:`PageSizer` walks a few pages of each operation once, learns how many
bytes of memory a byte on the wire becomes, and counts every later page at
its wire size times that.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

__all__ = ["PageSizer", "footprint"]

#: A page this large on the wire is a fair sample of its operation: its
#: ratio is kept and no later page of the operation is walked.
SAMPLE_BYTES = 64 * 1024
#: Small pages are walked at most this many times per operation (their fixed
#: part, the response metadata, weighs more than in a full page).
SAMPLES = 8
#: The wire size taken for a page whose answer had no Content-Length (a
#: chunked answer). The ratio is learnt against it too, so the estimate is
#: the walked page's footprint.
UNKNOWN_WIRE = 1024


def footprint(obj: object) -> int:
    """Bytes held by ``obj`` and every dict, list and tuple under it, each
    object counted once (``sys.getsizeof``: the item-lines types count the
    text they hold)."""
    seen: set[int] = set()
    total = 0
    stack: list[Any] = [obj]
    getsizeof = sys.getsizeof
    while stack:
        item = stack.pop()
        key = id(item)
        if key in seen:
            continue
        seen.add(key)
        total += getsizeof(item)
        kind = type(item)
        if kind is dict:
            stack.extend(item)
            stack.extend(item.values())
        elif kind is list or kind is tuple:
            stack.extend(item)
    return total


def wire_size(page: Mapping[str, Any]) -> int:
    """The page's ``Content-Length``, or :data:`UNKNOWN_WIRE`."""
    meta = page.get("ResponseMetadata")
    if isinstance(meta, Mapping):
        headers = meta.get("HTTPHeaders")
        if isinstance(headers, Mapping):
            length = headers.get("content-length")
            if length is not None:
                try:
                    return max(1, int(length))
                except (TypeError, ValueError):
                    pass
    return UNKNOWN_WIRE


class PageSizer:
    """Memory per wire byte, learnt per operation from its first pages."""

    __slots__ = ("_ratios",)

    def __init__(self) -> None:
        # kind -> (largest ratio seen, pages walked, settled)
        self._ratios: dict[Any, tuple[float, int, bool]] = {}

    def size(self, kind: Any, page: Mapping[str, Any], wire: int) -> int:
        """The bytes ``page`` (``wire`` bytes when it came) holds in memory."""
        known = self._ratios.get(kind)
        if known is not None and known[2]:
            return int(wire * known[0])
        ratio = max(1.0, footprint(page) / wire)
        walked = 1
        if known is not None:
            # The largest: an estimate too high costs a little parallelism,
            # one too low costs memory nobody agreed to.
            ratio = max(ratio, known[0])
            walked += known[1]
        self._ratios[kind] = (ratio, walked, wire >= SAMPLE_BYTES or walked >= SAMPLES)
        return int(wire * ratio)
