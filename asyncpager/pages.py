"""One pagination stream: any pageable AWS operation as an async iterator of pages.

:func:`paginate` reads botocore's own pagination model for the operation
(input and output tokens, limit key, result keys, more-results key) and
reproduces boto3's paginator page for page, with what boto3 lacks:

* a resume token after *every* page (``resume_token``), in botocore's token
  format, so a checkpoint can be taken at any page and handed to boto3 or to
  asyncpager to go on;
* retries inside the page fetch (throttles, 5xx, resets, timeouts) with
  full-jitter backoff, so a listing never ends early in silence;
* detection of a server that cycles through tokens (over a window of recent
  tokens, not only the last one);
* errors from one exception tree that name the operation and the last token.

A stream is sequential by nature: page ``n + 1`` needs the token in page
``n``. Parallelism comes from running many streams (see ``asyncpager.engine``).
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal, Protocol

import jmespath
import jmespath.exceptions
from botocore.utils import merge_dicts, set_value_from_jmespath

from asyncpager._clock import Clock, SystemClock
from asyncpager._direct import direct_call
from asyncpager.errors import (
    ConfigurationError,
    PaginationError,
    RepeatedTokenError,
)
from asyncpager.item_lines import HELD_LINES, EncodedLines
from asyncpager.retry import Failure, RetryPolicy, classify, translate
from asyncpager.tokens import ResumePoint, decode_token, encode_token

__all__ = [
    "ItemIterator",
    "PageStream",
    "PagingModel",
    "RequestHooks",
    "SearchIterator",
    "paging_model",
    "paginate",
]

Page = dict[str, Any]


class RequestHooks(Protocol):
    """What a stream tells the engine around each request (pacing, stats).

    The engine implements this; a plain :func:`paginate` call has none.
    """

    async def before_request(self, operation: str) -> None:
        """Wait for permission to send one request (the pacer)."""

    def after_response(self, operation: str, page: Page) -> None:
        """A request succeeded (feeds adaptive rates, cost buckets, stats)."""

    def on_failure(self, operation: str, failure: Failure, exc: BaseException) -> None:
        """A request failed and will be retried (or not)."""

    def on_retry(self, operation: str) -> None:
        """The failed request will be sent again, after a backoff."""


@dataclass(frozen=True)
class PagingModel:
    """botocore's pagination model of one operation, compiled once."""

    service: str
    operation: str  # the API name, e.g. ListObjectsV2
    method: str  # the client method, e.g. list_objects_v2
    input_tokens: tuple[str, ...]
    output_tokens: tuple[Any, ...]  # compiled JMESPath
    more_results: Any | None
    result_keys: tuple[Any, ...]
    non_aggregate_keys: tuple[Any, ...]
    limit_key: str | None
    limit_is_string: bool

    @property
    def primary_result_key(self) -> Any | None:
        return self.result_keys[0] if self.result_keys else None


_MODELS: dict[tuple[str, str, str], PagingModel] = {}


def _method_name(client: Any, operation: str) -> str:
    mapping: Mapping[str, str] = client.meta.method_to_api_mapping
    if operation in mapping:
        return operation
    for method, api in mapping.items():
        if api == operation:
            return method
    service = client.meta.service_model.service_name
    raise ConfigurationError(f"{service} has no operation {operation!r}")


def paging_model(client: Any, operation: str) -> PagingModel:
    """The compiled pagination model of ``operation`` on ``client``'s service.

    ``operation`` is the client method (``list_objects_v2``) or the API name
    (``ListObjectsV2``). Raises :class:`ConfigurationError` when the
    operation does not exist or is not pageable.
    """
    service_model = client.meta.service_model
    service = service_model.service_name
    method = _method_name(client, operation)
    key = (service, service_model.api_version, method)
    model = _MODELS.get(key)
    if model is not None:
        return model
    if not client.can_paginate(method):
        raise ConfigurationError(f"{service} {method} is not pageable")
    # botocore's Paginator already parses and compiles the model; its
    # attributes are the single source of truth for token semantics.
    paginator = client.get_paginator(method)
    api_name = client.meta.method_to_api_mapping[method]
    limit_key = paginator._limit_key
    limit_is_string = False
    if limit_key is not None:
        members = service_model.operation_model(api_name).input_shape.members
        shape = members.get(limit_key)
        limit_is_string = shape is not None and shape.type_name == "string"
    model = PagingModel(
        service=service,
        operation=api_name,
        method=method,
        input_tokens=tuple(paginator._input_token),
        output_tokens=tuple(paginator._output_token),
        more_results=paginator._more_results,
        result_keys=tuple(paginator._result_keys or ()),
        non_aggregate_keys=tuple(paginator._non_aggregate_keys),
        limit_key=limit_key,
        limit_is_string=limit_is_string,
    )
    _MODELS[key] = model
    return model


def _token_key(values: Mapping[str, Any]) -> str:
    return json.dumps(values, sort_keys=True, default=repr)


class PageStream:
    """The pages of one operation, fetched one after another.

    Iterate it once with ``async for``. ``resume_token`` is, after each page
    you received, the token that resumes right after that page (``None`` once
    the listing is complete). Use it as ``PaginationConfig={"StartingToken":
    ...}`` here or in boto3.
    """

    def __init__(
        self,
        client: Any,
        operation: str,
        params: Mapping[str, Any],
        *,
        pagination_config: Mapping[str, Any] | None = None,
        retry: RetryPolicy | None = None,
        clock: Clock | None = None,
        hooks: RequestHooks | None = None,
        on_repeated_token: Literal["raise", "stop"] = "raise",
        token_window: int = 128,
    ) -> None:
        self.model = paging_model(client, operation)
        # The client's method, sent on the direct path where the client has
        # one (clients the Fetcher makes: see asyncpager._direct).
        self._call = direct_call(client, self.model.operation, getattr(client, self.model.method))
        if on_repeated_token not in ("raise", "stop"):
            raise ConfigurationError("on_repeated_token must be 'raise' or 'stop'")
        if token_window < 1:
            raise ConfigurationError("token_window must be at least 1")
        config = dict(pagination_config or {})
        unknown = set(config) - {"MaxItems", "PageSize", "StartingToken"}
        if unknown:
            raise ConfigurationError(f"unknown PaginationConfig keys: {sorted(unknown)}")
        self._params = dict(params)
        self._max_items = _int_or_none(config.get("MaxItems"), "MaxItems")
        if self._max_items is not None and self._max_items < 0:
            raise ConfigurationError("MaxItems must not be negative")
        page_size = config.get("PageSize")
        if page_size is not None:
            if self.model.limit_key is None:
                raise ConfigurationError(
                    f"PageSize is not supported for {self.model.service} {self.model.method}"
                )
            page_size = str(page_size) if self.model.limit_is_string else int(page_size)
            self._params[self.model.limit_key] = page_size
        starting = config.get("StartingToken")
        self._start: ResumePoint | None = None
        self._request_token: dict[str, Any] = {name: None for name in self.model.input_tokens}
        if starting is not None:
            self._start = decode_token(starting, self.model.input_tokens)
            self._request_token = dict(self._start.values)
        self._retry = retry or RetryPolicy()
        self._clock = clock or SystemClock()
        self._hooks = hooks
        self._on_repeated = on_repeated_token
        self._recent: deque[str] = deque(maxlen=token_window)
        self._recent_set: set[str] = set()
        self._first = True
        self._done = False
        self._total_items = 0
        self.resume_token: str | None = starting
        """Token that resumes right after the last page received."""
        self.non_aggregate_part: dict[str, Any] = {}
        self.stopped_on_repeated_token = False
        self.pages = 0
        self.items_seen = 0
        self.requests = 0
        self.retries = 0
        self.throttles = 0
        if starting is not None:
            self._remember(self._request_token)

    # -- iteration -------------------------------------------------------

    def __aiter__(self) -> PageStream:
        return self

    async def __aenter__(self) -> PageStream:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop: no further request is sent. Holds no connection of its own."""
        self._done = True

    @property
    def done(self) -> bool:
        return self._done

    @property
    def result_keys(self) -> tuple[Any, ...]:
        return self.model.result_keys

    async def __anext__(self) -> Page:
        if self._done:
            raise StopAsyncIteration
        kwargs = dict(self._params)
        for name, value in self._request_token.items():
            if value is not None and value != "None":
                kwargs[name] = value
            else:
                kwargs.pop(name, None)
        try:
            page, next_token = await self._fetch(kwargs)
        except BaseException:
            self._done = True
            raise
        return self._accept(page, next_token)

    def _accept(self, page: Page, next_token: dict[str, Any]) -> Page:
        held = page.pop(HELD_LINES, None)
        if held is not None:
            # Items kept as text, held out of botocore's handlers' way.
            page[held[0]] = held[1]
        primary = self.model.primary_result_key
        starting_offset = 0
        if self._first:
            self._first = False
            if self._start is not None and primary is not None:
                # botocore reshapes the first page whenever a StartingToken
                # was given, offset or not; parity means doing the same.
                starting_offset = self._start.offset
                self._cut_first_page(page, primary, starting_offset)
            self._record_non_aggregate(page)
        items = (primary.search(page) if primary is not None else None) or []
        count = len(items)
        self.pages += 1
        if (
            primary is not None
            and self._max_items is not None
            and self._total_items + count > self._max_items
        ):
            keep = count - (self._total_items + count - self._max_items)
            set_value_from_jmespath(page, primary.expression, items[:keep])
            self._total_items += keep
            self.items_seen += keep
            self.resume_token = encode_token(self._request_token, keep + starting_offset)
            self._done = True
            return page
        self._total_items += count
        self.items_seen += count
        if not next_token or all(v is None for v in next_token.values()):
            self.resume_token = None
            self._done = True
            return page
        self.resume_token = encode_token(next_token)
        if self._max_items is not None and self._total_items == self._max_items:
            self._done = True
            return page
        if self._on_repeated == "stop" and self._seen(next_token):
            # In "raise" mode _fetch never lets such a page through (see
            # _repeats).
            self.stopped_on_repeated_token = True
            self._done = True
            return page
        self._remember(next_token)
        self._request_token = next_token
        return page

    def _repeats(self, page: Page, token: dict[str, Any]) -> bool:
        """Whether ``token``, the next token of ``page``, is one the stream
        has already followed, and the stream (raising on repeats) would
        follow it.

        Such a page is not delivered, and the stream's position stays before
        it: delivered, the only position after it would be the repeated
        token, which leads back to pages already delivered, so a run resumed
        from it (a checkpoint, ``last_token``) would deliver them twice (a
        crash soak of the export found one page written twice this way).
        The request is sent again, as after a 5xx, and only an answer that
        repeats every time fails the stream.
        """
        if self._on_repeated != "raise":
            return False
        if not token or all(v is None for v in token.values()) or not self._seen(token):
            return False
        primary = self.model.primary_result_key
        if self._max_items is not None and primary is not None:
            # A page that reaches MaxItems ends the stream: its token is not followed.
            held = page.get(HELD_LINES)
            items = held[1] if held is not None else primary.search(page) or ()
            offset = self._start.offset if self._first and self._start is not None else 0
            if self._total_items + max(0, len(items) - offset) >= self._max_items:
                return False
        return True

    def _cut_first_page(self, page: Page, primary: Any, offset: int) -> None:
        # The starting token points inside a page: drop what was delivered
        # before, exactly as botocore's PageIterator._handle_first_request.
        data = primary.search(page)
        kept = data[offset:] if isinstance(data, list | str | EncodedLines) else None
        set_value_from_jmespath(page, primary.expression, kept)
        for key in self.model.result_keys[1:]:
            sample = key.search(page)
            empty: Any
            if isinstance(sample, list):
                empty = []
            elif isinstance(sample, str):
                empty = ""
            elif isinstance(sample, int | float):
                empty = sample
            else:
                empty = None
            set_value_from_jmespath(page, key.expression, empty)

    def _record_non_aggregate(self, page: Page) -> None:
        part: dict[str, Any] = {}
        for expression in self.model.non_aggregate_keys:
            set_value_from_jmespath(part, expression.expression, expression.search(page))
        self.non_aggregate_part = part

    def _next_token(self, page: Page) -> dict[str, Any]:
        if self.model.more_results is not None and not self.model.more_results.search(page):
            return {}
        tokens: dict[str, Any] = {}
        for output, name in zip(self.model.output_tokens, self.model.input_tokens, strict=True):
            value = output.search(page)
            tokens[name] = value if value else None
        return tokens

    def _seen(self, token: Mapping[str, Any]) -> bool:
        return _token_key(token) in self._recent_set

    def _remember(self, token: Mapping[str, Any]) -> None:
        key = _token_key(token)
        if len(self._recent) == self._recent.maxlen:
            self._recent_set.discard(self._recent[0])
        self._recent.append(key)
        self._recent_set.add(key)

    async def _fetch(self, kwargs: dict[str, Any]) -> tuple[Page, dict[str, Any]]:
        """A page, retried as needed, and its next token (read once)."""
        operation = self.model.operation
        failures = 0
        while True:
            if self._hooks is not None:
                await self._hooks.before_request(operation)
            self.requests += 1
            try:
                page: Page = await self._call(**kwargs)
                next_token = self._next_token(page)
                if self._repeats(page, next_token):
                    raise RepeatedTokenError(
                        f"the server repeated a pagination token seen within the last "
                        f"{self._recent.maxlen} pages: {next_token}",
                        operation=operation,
                        last_token=self.resume_token,
                    )
            except Exception as exc:
                # A repeated token is a fault of this one answer: asked again,
                # the server may well answer right (see _repeats).
                failure = (
                    Failure.TRANSIENT if isinstance(exc, RepeatedTokenError) else classify(exc)
                )
                if self._hooks is not None:
                    self._hooks.on_failure(operation, failure, exc)
                if failure is Failure.THROTTLED:
                    self.throttles += 1
                failures += 1
                if failure is Failure.FATAL or failures >= self._retry.attempts_for(failure):
                    error = translate(exc, operation=operation, last_token=self.resume_token)
                    if error is None:
                        raise
                    raise error from exc
                self.retries += 1
                if self._hooks is not None:
                    self._hooks.on_retry(operation)
                await self._clock.sleep(self._retry.backoff(failures - 1))
                continue
            if self._hooks is not None:
                self._hooks.after_response(operation, page)
            return page, next_token

    # -- derived iterators -----------------------------------------------

    def items(self) -> ItemIterator:
        """The items under the primary result key, page after page, flattened."""
        if self.model.primary_result_key is None:
            raise PaginationError(
                f"{self.model.service} {self.model.method} has no result key",
                operation=self.model.operation,
            )
        return ItemIterator(self, self.model.primary_result_key)

    def search(self, expression: str) -> SearchIterator:
        """Apply a JMESPath expression to each page, as boto3's ``search``.

        A list result is flattened into its elements; anything else is
        yielded as it is (``None`` included, as boto3 does).
        """
        try:
            compiled = jmespath.compile(expression)
        except jmespath.exceptions.JMESPathError as exc:
            raise ConfigurationError(f"invalid JMESPath expression {expression!r}: {exc}") from exc
        return SearchIterator(self, compiled)

    async def build_full_result(self) -> dict[str, Any]:
        """Every page merged into one response, as boto3's ``build_full_result``."""
        complete: dict[str, Any] = {}
        async for page in self:
            for expression in self.model.result_keys:
                value = expression.search(page)
                if value is None:
                    continue
                existing = expression.search(complete)
                if existing is None:
                    set_value_from_jmespath(complete, expression.expression, value)
                elif isinstance(value, list):
                    existing.extend(value)
                elif isinstance(value, int | float | str):
                    set_value_from_jmespath(complete, expression.expression, existing + value)
        merge_dicts(complete, self.non_aggregate_part)
        if self.resume_token is not None:
            complete["NextToken"] = self.resume_token
        return complete


class ItemIterator:
    """Items of one result key, across pages. ``aclose()`` stops the stream."""

    def __init__(self, pages: PageStream, key: Any) -> None:
        self._pages = pages
        self._key = key
        self._buffer: deque[Any] = deque()

    def __aiter__(self) -> ItemIterator:
        return self

    async def __anext__(self) -> Any:
        while not self._buffer:
            page = await self._pages.__anext__()
            self._buffer.extend(self._key.search(page) or ())
        return self._buffer.popleft()

    async def aclose(self) -> None:
        await self._pages.aclose()

    async def __aenter__(self) -> ItemIterator:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class SearchIterator(ItemIterator):
    """JMESPath results across pages (see :meth:`PageStream.search`)."""

    async def __anext__(self) -> Any:
        while not self._buffer:
            page = await self._pages.__anext__()
            result = self._key.search(page)
            if isinstance(result, list):
                self._buffer.extend(result)
            else:
                self._buffer.append(result)
        return self._buffer.popleft()

    async def __aenter__(self) -> SearchIterator:
        return self


def _int_or_none(value: Any, name: str) -> int | None:
    if value is None:
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ConfigurationError(f"{name} must be an integer, not {value!r}") from None


def paginate(
    client: Any,
    operation: str,
    /,
    *,
    PaginationConfig: Mapping[str, Any] | None = None,  # boto3's name
    retry: RetryPolicy | None = None,
    clock: Clock | None = None,
    hooks: RequestHooks | None = None,
    on_repeated_token: Literal["raise", "stop"] = "raise",
    token_window: int = 128,
    **params: Any,
) -> PageStream:
    """Page through ``operation`` on an aiobotocore (or aioboto3) ``client``.

    ``params`` are the operation's parameters; ``PaginationConfig`` takes
    ``MaxItems``, ``PageSize`` and ``StartingToken`` as in boto3::

        async for page in asyncpager.paginate(s3, "list_objects_v2", Bucket="b"):
            ...

    Retries happen inside each page fetch (``retry``); waits read ``clock``.
    An answer whose next token the stream has already followed (within the
    last ``token_window`` pages) is asked for again like a 5xx; one that
    repeats it every time raises :class:`RepeatedTokenError`, that page not
    delivered. ``on_repeated_token="stop"`` delivers it and ends the stream
    instead.
    """
    return PageStream(
        client,
        operation,
        params,
        pagination_config=PaginationConfig,
        retry=retry,
        clock=clock,
        hooks=hooks,
        on_repeated_token=on_repeated_token,
        token_window=token_window,
    )
