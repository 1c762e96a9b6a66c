"""What the engine runs: a :class:`Stream` (one sequential pagination walk) and
the :class:`Cursor` that walks it.

A :class:`Stream` is an immutable description: service, region (and profile
or endpoint), operation, parameters, and a ``position`` to start from. The
position is the cursor's own notion of "where it stands": a botocore token
for plain operations, the last key listed for an S3 key-range shard. The
engine never looks inside it; it only stores, for every page it delivered, the
position right after that page, and hands ``stream.at(position)`` back as the
stream that resumes after it (the checkpoint is a list of those).

A cursor may be *splittable*: an S3 key-range shard that turns out to be
large gives away the upper part of its remaining range as a new stream, so
that idle request slots find work (``Cursor.split``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from asyncpager.pages import PageStream, RequestHooks
from asyncpager.retry import RetryPolicy

__all__ = ["Cursor", "OperationCursor", "Stream"]

Page = dict[str, Any]


def _frozen(value: Any) -> Any:
    """A JSON-stable form of parameters, for ids and equality."""
    return json.loads(json.dumps(value, sort_keys=True, default=_json_default))


def _json_default(value: Any) -> Any:
    if isinstance(value, bytes | bytearray):
        return {"__bytes__": bytes(value).hex()}
    if isinstance(value, set | frozenset):
        return sorted(value, key=repr)
    return repr(value)


def _thawed(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"__bytes__"}:
            return bytes.fromhex(value["__bytes__"])
        return {k: _thawed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_thawed(v) for v in value]
    return value


@dataclass(frozen=True, eq=False)
class Stream:
    """One pagination walk for the engine.

    ``kind`` picks the cursor: ``"operation"`` pages any pageable operation
    (the default); planners register others (``"s3-range"``). ``shape``
    holds what such a cursor needs beyond ``params`` (an S3 range's bounds).
    ``labels`` travel with every item the stream yields (region, account).
    ``position`` is where to start: ``None`` for the beginning.
    """

    service: str
    operation: str
    params: Mapping[str, Any] = field(default_factory=dict)
    region: str | None = None
    profile: str | None = None
    endpoint_url: str | None = None
    position: Any = None
    page_size: int | None = None
    max_items: int | None = None
    kind: str = "operation"
    shape: Mapping[str, Any] = field(default_factory=dict)
    labels: Mapping[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """A stable id of everything but the position (checkpoints key on it)."""
        body = {
            "service": self.service,
            "operation": self.operation,
            "params": _frozen(self.params),
            "region": self.region,
            "profile": self.profile,
            "endpoint_url": self.endpoint_url,
            "page_size": self.page_size,
            "max_items": self.max_items,
            "kind": self.kind,
            "shape": _frozen(self.shape),
        }
        digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
        return digest[:20]

    @property
    def name(self) -> str:
        """A readable name for messages: ``s3 us-east-1 ListObjectsV2 Bucket=b``,
        and its part of the listing (a key range, a segment) if it has one."""
        if not self.shape:
            return self.source
        return f"{self.source} " + " ".join(f"{k}={v!r}" for k, v in sorted(self.shape.items()))

    @property
    def source(self) -> str:
        """The listing it is a part of, for messages: its name without its
        key range or segment."""
        params = " ".join(
            f"{k}={v}" for k, v in sorted(self.params.items()) if isinstance(v, str | int)
        )
        parts = [self.service, self.region or "-", self.operation]
        if self.profile:
            parts.insert(0, f"[{self.profile}]")
        if params:
            parts.append(params)
        return " ".join(parts)

    def at(self, position: Any) -> Stream:
        """The same stream, starting at ``position``."""
        return dataclasses.replace(self, position=position)

    def reshaped(self, **shape: Any) -> Stream:
        """The same stream with some shape fields replaced."""
        return dataclasses.replace(self, shape={**self.shape, **shape})

    def to_json(self) -> dict[str, Any]:
        """A JSON-safe description (for checkpoints and reports)."""
        return {
            "service": self.service,
            "operation": self.operation,
            "params": _frozen(self.params),
            "region": self.region,
            "profile": self.profile,
            "endpoint_url": self.endpoint_url,
            "position": self.position,
            "page_size": self.page_size,
            "max_items": self.max_items,
            "kind": self.kind,
            "shape": _frozen(self.shape),
            "labels": _frozen(self.labels),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Stream:
        """The inverse of :meth:`to_json` (bytes in params come back as bytes)."""
        return cls(
            service=data["service"],
            operation=data["operation"],
            params=_thawed(data.get("params") or {}),
            region=data.get("region"),
            profile=data.get("profile"),
            endpoint_url=data.get("endpoint_url"),
            position=data.get("position"),
            page_size=data.get("page_size"),
            max_items=data.get("max_items"),
            kind=data.get("kind", "operation"),
            shape=data.get("shape") or {},
            labels=data.get("labels") or {},
        )

    def __repr__(self) -> str:
        return f"Stream({self.name}, position={self.position!r})"


class Cursor(Protocol):
    """Walks one :class:`Stream`, page after page."""

    stream: Stream

    async def next_page(self) -> Page | None:
        """The next page, or ``None`` when the stream is done."""

    @property
    def position(self) -> Any:
        """Where the stream stands after the last page returned."""

    @property
    def finished(self) -> bool:
        """Whether the last page returned was the stream's last: the engine
        then ends the stream as it hands that page over, not once it asks
        for another (a position after a last page may read as the start)."""

    def count_items(self, page: Page) -> int:
        """How many items ``page`` holds (for the figures)."""

    def split(self, *, again: bool = False) -> tuple[Stream, Stream] | None:
        """Give away part of the remaining work.

        Returns ``(narrowed_self, new_stream)``: the stream this cursor now
        walks (to be used for resume specs from now on) and a new independent
        stream; or ``None`` when the stream cannot split (or will not yet: a
        split may cost a page, so a cursor may split once per page it got,
        unless ``again``: another process is idle and asks for work).
        """

    async def aclose(self) -> None:
        """Stop early."""


class OperationCursor:
    """The cursor of a plain pageable operation: a :class:`PageStream`."""

    def __init__(
        self,
        stream: Stream,
        client: Any,
        *,
        hooks: RequestHooks | None,
        retry: RetryPolicy | None,
        clock: Any,
    ) -> None:
        self.stream = stream
        config: dict[str, Any] = {}
        if stream.position is not None:
            config["StartingToken"] = stream.position
        if stream.page_size is not None:
            config["PageSize"] = stream.page_size
        if stream.max_items is not None:
            config["MaxItems"] = stream.max_items
        self._pages = PageStream(
            client,
            stream.operation,
            stream.params,
            pagination_config=config,
            retry=retry,
            clock=clock,
            hooks=hooks,
        )

    async def next_page(self) -> Page | None:
        try:
            return await self._pages.__anext__()
        except StopAsyncIteration:
            return None

    @property
    def position(self) -> Any:
        return self._pages.resume_token

    @property
    def finished(self) -> bool:
        # A PageStream is done after its last page (its resume token is then
        # None, which as a position means its start).
        return self._pages.done

    def count_items(self, page: Page) -> int:
        key = self._pages.model.primary_result_key
        found = key.search(page) if key is not None else None
        return len(found) if isinstance(found, list) else 0

    def split(self, *, again: bool = False) -> tuple[Stream, Stream] | None:
        return None

    async def aclose(self) -> None:
        await self._pages.aclose()
