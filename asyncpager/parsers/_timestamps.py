"""Timestamps exactly as botocore's default timestamp parser makes them, fast.

botocore hands every timestamp to ``botocore.utils.parse_timestamp``, which
tries ``float(value)`` and then ``dateutil.parser.parse``: about 50 µs of CPU
for one ``2026-11-26T08:30:00.000Z``, two thirds of a ListObjectsV2 page's
parse cost. Almost every timestamp AWS sends has one of two shapes, so this
module recognises them by their punctuation and builds the ``datetime`` with
the C ``datetime.fromisoformat``; anything else goes to botocore's parser.

What botocore returns, and so what this returns (both checked by tests):

* ISO 8601 text with a ``Z``: dateutil reads ``Z`` as the zone name ``UTC``.
  When ``UTC`` is one of ``time.tzname`` (a machine running in UTC) dateutil
  gives the *local* zone, ``tzlocal()``; otherwise ``tzutc()``. Both are
  reproduced. A local zone with daylight saving time would make dateutil look
  at each date, so then every value goes to botocore's parser.
* Epoch numbers (the JSON protocols): ``datetime.fromtimestamp(value,
  tzlocal())``, the same call botocore makes; on an overflow botocore's own
  parser takes over with its fallbacks.

The zone objects are rebuilt whenever ``time.tzname``/``time.timezone``
change (a ``time.tzset()`` after changing ``TZ``), as botocore's per-call
``tzlocal()`` would see them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, tzinfo
from typing import Any

from botocore.compat import get_tzinfo_options
from botocore.utils import parse_timestamp as _botocore_parse_timestamp
from botocore.utils import tzutc

# The zone classes botocore itself attaches: dateutil's ``tzutc`` and the
# first of ``get_tzinfo_options()`` (``tzlocal``) for epoch numbers.
tzlocal = get_tzinfo_options()[0]

__all__ = ["fast_timestamp", "is_default_timestamp_parser", "parse_timestamp", "refresh_zones"]

_fromisoformat = datetime.fromisoformat
_fromtimestamp = datetime.fromtimestamp
_NAIVE_EPOCH = datetime(1970, 1, 1)


class _Zones:
    """The zones botocore would attach right now, rebuilt when the process's
    time zone settings change."""

    __slots__ = ("key", "local", "zulu_epoch")

    def __init__(self) -> None:
        self.key: tuple[Any, ...] = ()
        self.local: tzinfo = tzlocal()
        # ``zulu_epoch + (naive - _NAIVE_EPOCH)`` is ``naive`` with the zone
        # dateutil gives to ``Z``: datetime + timedelta keeps the tzinfo object
        # and costs a third of ``naive.replace(tzinfo=...)``.
        self.zulu_epoch: datetime | None = None

    def refresh(self) -> None:
        key = (time.tzname, time.timezone, time.altzone, time.daylight)
        if key == self.key:
            return
        local = tzlocal()
        zulu: tzinfo | None
        if "UTC" not in time.tzname:
            zulu = tzutc()
        elif not time.daylight and time.tzname[0] == "UTC":
            zulu = local
        else:
            zulu = None
        self.local = local
        self.zulu_epoch = None if zulu is None else datetime(1970, 1, 1, tzinfo=zulu)
        self.key = key


_zones = _Zones()


def refresh_zones() -> None:
    """Pick up a changed process time zone. Compiled parsers call this once
    per response rather than once per value."""
    _zones.refresh()


def fast_timestamp(value: Any) -> datetime:
    """``botocore.utils.parse_timestamp(value)``, with fast paths for
    ``YYYY-MM-DDTHH:MM:SS[.fff|.ffffff]Z`` and for epoch numbers. Uses the
    zones of the last :func:`refresh_zones`."""
    kind = type(value)
    if kind is str:
        n = len(value)
        if (
            (n == 24 or n == 20 or n == 27)
            and value[4:20:3] == (_FRACTION if n != 20 else _WHOLE)
            and value[n - 1] == "Z"
            and value[11:13] < "24"
            and value.isascii()
        ):
            zulu_epoch = _zones.zulu_epoch
            if zulu_epoch is not None:
                try:
                    return zulu_epoch + (_fromisoformat(value[:-1]) - _NAIVE_EPOCH)
                except ValueError:
                    pass
    elif kind is int or kind is float:
        try:
            return _fromtimestamp(value, _zones.local)
        except (OSError, OverflowError, ValueError):
            pass
    result: datetime = _botocore_parse_timestamp(value)
    return result


_FRACTION = "--T::."
_WHOLE = "--T::Z"


def parse_timestamp(value: Any) -> datetime:
    """``botocore.utils.parse_timestamp(value)``, fast for the usual shapes."""
    _zones.refresh()
    return fast_timestamp(value)


def is_default_timestamp_parser(parser: Callable[[Any], Any]) -> bool:
    """True when ``parser`` is botocore's default, so the fast path above
    gives the same values."""
    import botocore.parsers

    return (
        parser is _botocore_parse_timestamp or parser is botocore.parsers.DEFAULT_TIMESTAMP_PARSER
    )
