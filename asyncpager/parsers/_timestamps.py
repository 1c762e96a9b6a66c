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

__all__ = [
    "fast_timestamp",
    "is_default_timestamp_parser",
    "iso_timestamp",
    "parse_timestamp",
    "refresh_zones",
    "zulu_epoch",
]

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


def zulu_epoch() -> datetime | None:
    """The epoch in the zone dateutil gives ``Z`` (as of the last
    :func:`refresh_zones`), when that zone is one ``fast_timestamp`` knows:
    ``zulu_epoch() + (naive - datetime(1970, 1, 1))`` is then what it
    returns for a ``Z`` timestamp of the usual shape."""
    return _zones.zulu_epoch


def zulu_is_utc() -> bool:
    """Whether a ``Z`` timestamp is UTC all year as botocore reads it here,
    so that its ISO 8601 text can be written without a datetime (see
    :func:`iso_timestamp`)."""
    _zones.refresh()
    return _zones.zulu_epoch is not None


def fast_timestamp(value: Any) -> datetime:
    """``botocore.utils.parse_timestamp(value)``, with fast paths for
    ``YYYY-MM-DDTHH:MM:SS[.fff|.ffffff]Z`` and for epoch numbers. Uses the
    zones of the last :func:`refresh_zones`."""
    kind = type(value)
    if kind is str:
        naive = _zulu_naive(value)
        zulu_epoch = _zones.zulu_epoch
        if naive is not None and zulu_epoch is not None:
            return zulu_epoch + (naive - _NAIVE_EPOCH)
    elif kind is int or kind is float:
        try:
            return _fromtimestamp(value, _zones.local)
        except (OSError, OverflowError, ValueError):
            pass
    result: datetime = _botocore_parse_timestamp(value)
    return result


_FRACTION = "--T::."
_WHOLE = "--T::Z"


def _zulu_naive(value: str) -> datetime | None:
    """``value`` without its zone, when it has one of the two usual shapes
    with a ``Z`` and dateutil would give that ``Z`` a zone we know (see
    ``_Zones``); otherwise ``None``, for botocore's parser."""
    n = len(value)
    if (
        (n == 24 or n == 20 or n == 27)
        and value[4:20:3] == (_FRACTION if n != 20 else _WHOLE)
        and value[n - 1] == "Z"
        and value[11:13] < "24"
        and value.isascii()
        and _zones.zulu_epoch is not None
    ):
        try:
            return _fromisoformat(value[:-1])
        except ValueError:
            return None
    return None


def iso_timestamp(value: Any) -> str:
    """``fast_timestamp(value).isoformat()``: the text the JSON writers of
    :mod:`asyncpager.convert` make of the timestamp, without the datetime.

    For the two usual shapes with a ``Z`` (while dateutil would give ``Z``
    a zone that is UTC all year) the text is cut from ``value`` once
    ``datetime.fromisoformat`` has accepted it: a fifth of the cost of
    parsing it and writing it back, where the zone's offset is looked up
    by dateutil's Python code. Anything else is parsed and written."""
    if type(value) is str and _zulu_naive(value) is not None:
        # The zone is UTC all year: isoformat() writes +00:00, six digits of
        # a fraction that is not zero, and none of one that is.
        fraction = value[20:-1]
        if fraction.strip("0"):
            return f"{value[:19]}.{fraction.ljust(6, '0')}+00:00"
        return value[:19] + "+00:00"
    return fast_timestamp(value).isoformat()


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
