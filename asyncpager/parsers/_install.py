"""Putting compiled parsers under a botocore or aiobotocore client.

Both endpoints parse a response the same way::

    parser = self._response_parser_factory.create_parser(protocol)
    parsed = parser.parse(response_dict, operation_model.output_shape)  # awaited in aiobotocore

(aiobotocore 2.25, the version aioboto3 pins, and 3.x make the same call,
with an ``async def parse``.) The factory is a component of the *session*,
shared by every client the session makes, so :func:`install` leaves it alone
and gives one client's endpoint a wrapping factory instead; the wrapper's
parsers keep ``parse`` sync or async, like the parser they wrap.

The compiled path is taken only for a successful (status < 300),
non-streaming response to an operation whose output shape compiled; error
responses, modeled-error parses, streaming bodies, event streams,
uncompiled shapes and any response the compiled code declines go to the
wrapped botocore parser, unchanged. ``after-call`` handlers (S3's
``EncodingType=url`` decoding among them) still run on the result, as they
would on botocore's.
"""

from __future__ import annotations

import functools
import gc
import inspect
import logging
import os
import re
import time
import xml.etree.ElementTree as ETree
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

from botocore.compat import unquote_str
from botocore.parsers import ResponseParser
from botocore.utils import lowercase_dict

from asyncpager.item_lines import HELD_LINES, ObjectLines, object_lines, split_page
from asyncpager.parsers._compiler import (
    PARSED_ROOT,
    PROTOCOLS,
    CompiledParser,
    RawMode,
    _xml_root,
    compile_operation,
    default_blob_parser,
)
from asyncpager.parsers._timestamps import fast_timestamp, is_default_timestamp_parser
from asyncpager.parsers._xmlrun import PARSED_RUN, RunSpec, run_spec, split, split_lines

__all__ = [
    "ENV_VAR",
    "FastParserFactory",
    "fast_parse_enabled",
    "freeze_pages",
    "hold_frozen_pages",
    "install",
    "is_installed",
    "uninstall",
]

ENV_VAR = "ASYNCPAGER_FAST_PARSE"
_OFF = frozenset({"0", "false", "no", "off"})
_LOG = logging.getLogger("botocore.parsers")


def fast_parse_enabled() -> bool:
    """False when the environment says ``ASYNCPAGER_FAST_PARSE=0`` (or
    ``false``, ``no``, ``off``): :func:`install` then does nothing unless
    asked with ``enabled=True``."""
    return os.environ.get(ENV_VAR, "1").strip().lower() not in _OFF


def _is_default_blob_parser(parser: Callable[[Any], Any]) -> bool:
    return getattr(parser, "__func__", None) is ResponseParser._default_blob_parser


_TOKEN_HEAD = re.compile(r"\s*([A-Za-z0-9_]+)")


@functools.cache
def _paginators(service_name: str, api_version: str) -> Mapping[str, Any]:
    from botocore.exceptions import DataNotFoundError
    from botocore.loaders import create_loader

    try:
        model = create_loader().load_service_model(service_name, "paginators-1", api_version)
    except DataNotFoundError:
        return {}
    pagination: Mapping[str, Any] = model.get("pagination", {})
    return pagination


def output_tokens(service_model: Any, operation_name: str) -> frozenset[str]:
    """The output members ``operation_name``'s paginator reads its next
    token from (``LastEvaluatedKey``; both names of
    ``NextMarker || Contents[-1].Key``): what a caller sends back, so raw
    mode converts them as botocore does."""
    config = _paginators(service_model.service_name, service_model.api_version).get(
        operation_name, {}
    )
    expressions = config.get("output_token", [])
    if isinstance(expressions, str):
        expressions = [expressions]
    names: set[str] = set()
    for expression in expressions:
        for alternative in expression.split("||"):
            head = _TOKEN_HEAD.match(alternative)
            if head is not None:
                names.add(head.group(1))
    return frozenset(names)


class FastParserFactory:
    """A response parser factory for one client: botocore's parsers, fronted
    by compiled ones where the operation compiled.

    ``original`` is the factory the client had; everything this class does
    not define is forwarded to it. Compiled parsers are looked up by the
    identity of the output shape the endpoint passes (the client's operation
    models are cached, so this is one dict lookup per response).
    """

    def __init__(
        self,
        original: Any,
        service_model: Any,
        *,
        raw: RawMode = False,
        pause_gc: bool = True,
    ) -> None:
        self.original = original
        self.service_model = service_model
        self.raw = raw
        self.pause_gc = pause_gc
        self._compiled: dict[tuple[int, str], tuple[Any, CompiledParser | None]] = {}
        self._async: dict[str, bool] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self.original, name)

    def create_parser(self, protocol_name: str) -> Any:
        parser = self.original.create_parser(protocol_name)
        if protocol_name not in PROTOCOLS:
            return parser
        is_async = self._async.get(protocol_name)
        if is_async is None:
            is_async = inspect.iscoroutinefunction(parser.parse)
            self._async[protocol_name] = is_async
        if is_async:
            return _AsyncFastParser(parser, protocol_name, self)
        return _FastParser(parser, protocol_name, self)

    def item_lines(self, response: dict[str, Any]) -> bool:
        """Whether ``response`` is a DynamoDB ``Scan`` or ``Query`` page,
        whose items the ``"lines"`` mode keeps as text."""
        if self.service_model.service_name != "dynamodb":
            return False
        context = response.get("context")
        name = context.get("operation_name") if isinstance(context, dict) else None
        return name in ("Scan", "Query")

    def compiled_for(
        self, shape: Any, response: dict[str, Any], protocol: str, parser: Any
    ) -> CompiledParser | None:
        """The compiled parser for ``shape``, built on first use."""
        key = (id(shape), protocol)
        entry = self._compiled.get(key)
        if entry is not None and entry[0] is shape:
            return entry[1]
        compiled = None
        context = response.get("context")
        name = context.get("operation_name") if isinstance(context, dict) else None
        if name is not None and name in self.service_model.operation_names:
            operation = self.service_model.operation_model(name)
            # Only the operation's own output shape: a modeled error shape or
            # a caller's own shape goes to botocore.
            if operation.output_shape is shape:
                timestamp = parser._timestamp_parser
                if is_default_timestamp_parser(timestamp):
                    timestamp = fast_timestamp
                blob = parser._blob_parser
                if _is_default_blob_parser(blob):
                    blob = default_blob_parser
                compiled = compile_operation(
                    operation,
                    protocol,
                    timestamp_parser=timestamp,
                    blob_parser=blob,
                    raw=self.raw,
                    keep=output_tokens(self.service_model, name) if self.raw else frozenset(),
                )
        self._compiled[key] = (shape, compiled)
        return compiled


class _FastParser:
    """Wraps one botocore parser (``create_parser`` makes one per response)."""

    __slots__ = ("_factory", "_original", "_protocol")

    def __init__(self, original: Any, protocol: str, factory: FastParserFactory) -> None:
        self._original = original
        self._protocol = protocol
        self._factory = factory

    def __getattr__(self, name: str) -> Any:
        return getattr(self._original, name)

    def _fast(self, response: dict[str, Any], shape: Any) -> dict[str, Any] | None:
        if shape is None or response["status_code"] >= 300:
            return None
        compiled = self._factory.compiled_for(shape, response, self._protocol, self._original)
        if compiled is None:
            return None
        if _LOG.isEnabledFor(logging.DEBUG):
            _LOG.debug("Response headers: %r", response["headers"])
            _LOG.debug("Response body:\n%r", response["body"])
        parsed = None
        if self._factory.raw == "lines" and self._factory.item_lines(response):
            parsed = self._with_item_lines(compiled, response)
        if parsed is None:
            parsed = _run(compiled, response, self._factory.pause_gc)
        if parsed is None:
            return None
        held = response.pop(HELD_LINES, None)
        if held is not None:
            if parsed.get("Contents") != []:
                return None  # not what the text was taken for: botocore's
            # Out of botocore's sight until its handlers are done (one
            # URL-decodes every key it finds); the page stream puts it back.
            parsed[HELD_LINES] = ("Contents", held)
        # ResponseParser.parse: status code and lower-cased headers, then the
        # checksum algorithm the checksum handler validated.
        metadata = parsed.get("ResponseMetadata", {})
        metadata["HTTPStatusCode"] = response["status_code"]
        metadata["HTTPHeaders"] = lowercase_dict(response["headers"])
        parsed["ResponseMetadata"] = metadata
        algorithm = response.get("context", {}).get("checksum", {}).get("response_algorithm")
        if algorithm:
            metadata["ChecksumAlgorithm"] = algorithm
        return parsed

    def _with_item_lines(self, compiled: Any, response: dict[str, Any]) -> dict[str, Any] | None:
        # The items stay text (asyncpager.item_lines); the rest of the page
        # is parsed as ever. None: parse the whole body.
        cut = split_page(response["body"])
        if cut is None:
            return None
        parsed = _run(compiled, {**response, "body": cut[0]}, self._factory.pause_gc)
        if parsed is None or type(parsed.get("Count")) is not int or parsed.get("Items") != []:
            return None
        cut[1].set_count(parsed["Count"])
        parsed["Items"] = cut[1]
        return parsed

    def parse(self, response: dict[str, Any], shape: Any) -> Any:
        parsed = self._fast(response, shape)
        if parsed is None:
            return self._original.parse(response, shape)
        return parsed


class _AsyncFastParser(_FastParser):
    __slots__ = ()

    async def parse(self, response: dict[str, Any], shape: Any) -> Any:
        parsed = self._fast(response, shape)
        if parsed is None:
            return await self._original.parse(response, shape)
        return parsed


class _Freezer:
    """Pages kept out of the collector's walks (see :func:`freeze_pages`)."""

    __slots__ = ("clock", "every", "last", "parses", "per_object", "settled", "spacing")

    def __init__(self, every: int, spacing: float, clock: Callable[[], float]) -> None:
        self.every = every
        self.spacing = spacing
        self.clock = clock
        self.parses = 0
        self.per_object = FIRST_COST_PER_OBJECT
        self.last = clock()  # when the last full collection ended
        self.settled = False  # the heap as the first parse found it is frozen

    def after_parse(self) -> None:
        # Called with the collector paused: gc.freeze() moves every tracked
        # object, the new page's included, out of the generations (a list
        # splice, whatever their number); reference counting still frees
        # them. Cyclic garbage that happened to be alive is frozen with
        # them, so now and then everything goes back and one full
        # collection reclaims it. Only worth it when the parse left many
        # tracked objects: an S3 page's thousand dicts of strings are
        # untracked by the first collection that sees them, and for those
        # the full collections cost more than the walks they save.
        if gc.get_count()[0] < FREEZE_AT:
            if not self.settled:
                # What the process holds at its first page (its modules,
                # botocore's models, the clients) lasts the run: frozen
                # once, it is left out of the full collections that small
                # pages still lead to, which then walk only what came
                # since (a million S3 keys: 4 of them, 163-186 ms of CPU
                # in all, against 8 taking 38-47 ms).
                self.settled = True
                gc.freeze()
            return
        self.settled = True
        self.parses += 1
        if self.parses % self.every:
            gc.freeze()
            return
        # The full collection walks everything alive, queued pages included
        # (measured in a DynamoDB export: 0.7-0.9 s for 850,000 objects, to
        # reclaim 3,349). Its cost hardly depends on the garbage waiting, so
        # it waits until the process has spent ``spacing`` times that cost.
        # (Counting the frozen objects walks a list: once every ``every``.)
        frozen = gc.get_freeze_count()
        if self.clock() - self.last < self.spacing * self.per_object * frozen:
            gc.freeze()
            return
        gc.unfreeze()
        start = self.clock()
        gc.collect()
        self.last = self.clock()
        self.parses = 0
        self.per_object = (self.last - start) / max(frozen, 1)


_freezer: _Freezer | None = None
#: Open blocks that asked for frozen pages (:func:`hold_frozen_pages`), and
#: whether the first of them turned the freezer on (and so turns it off).
_holders = 0
_held_on = False
#: New tracked objects since the last collection above which a page is frozen.
FREEZE_AT = 20_000
#: What a full collection is taken to cost per object before one was timed.
FIRST_COST_PER_OBJECT = 1e-6


def freeze_pages(
    every: int | None = 64,
    *,
    spacing: float = 50.0,
    clock: Callable[[], float] = time.process_time,
) -> None:
    """Keep parsed pages out of the cyclic garbage collector's walks.

    Paused during a parse, the collector still walks a page's objects once
    it runs again: the first collection after a parse traverses every
    object the parse made (measured in a DynamoDB export: 13% of the CPU,
    under the lowercase_dict that happened to allocate next). Pages hold
    no reference cycles, so they need no walk at all: with this, after a
    compiled parse that left many tracked objects (``FREEZE_AT``) every
    tracked object of the process is frozen (``gc.freeze()``), and now and
    then everything is unfrozen and collected in full, which also reclaims
    any cyclic garbage frozen in between: after at least ``every`` such
    parses, once the process has used ``spacing`` times the CPU that
    collection is expected to cost (the last one's cost per object, times
    the objects frozen) since the previous one, so that these collections
    take at most about ``1 / spacing`` of the CPU. ``spacing=0`` collects
    every ``every`` parses; ``clock`` is the CPU clock (tests pass their
    own). The first compiled parse freezes what the process holds then
    (modules, models, clients), whatever the page's size: smaller pages
    are left to the collector, whose full collections then walk only what
    came since, not the whole heap again.

    It changes the whole process's collector, so the library leaves it off;
    the command line turns it on for its own process. ``None`` turns it off
    (and unfreezes).
    """
    global _freezer
    if every is not None and every < 1:
        raise ValueError(f"every is a positive number of parses, not {every}")
    if spacing < 0:
        raise ValueError(f"spacing is a multiple of a collection's cost, not {spacing}")
    if _freezer is not None and every is None:
        gc.unfreeze()
    _freezer = None if every is None else _Freezer(every, spacing, clock)


def freezing() -> bool:
    """Whether the freezer is on (:func:`freeze_pages`)."""
    return _freezer is not None


#: Objects the interpreter keeps frozen of its own accord: none on Python
#: 3.11 and 3.13, but 3.12 (3.12.1 measured) leaves 375 in the permanent
#: generation after every full collection, from its start on. A process
#: that froze its heap froze thousands: a bare interpreter's own objects
#: alone are 4,000 to 11,000.
INTERPRETER_FROZEN = 1_000


def heap_frozen() -> bool:
    """Whether the process froze objects of its own (``gc.freeze()``)."""
    return gc.get_freeze_count() > INTERPRETER_FROZEN


def hold_frozen_pages() -> Callable[[], None]:
    """:func:`freeze_pages` with its defaults until the returned function is
    called, unless it was on already (the command line's): then it stays as
    it was. Holds nest; the freezer goes off with the last one that turned
    it on (``Fetcher(freeze_pages=True)`` holds it while it is open)."""
    global _holders, _held_on
    if _holders == 0:
        _held_on = _freezer is None
        if _held_on:
            freeze_pages()
    _holders += 1
    released = False

    def release() -> None:
        global _holders, _held_on
        nonlocal released
        if released:
            return
        released = True
        _holders -= 1
        if _holders == 0 and _held_on:
            _held_on = False
            freeze_pages(None)

    return release


def _run(
    compiled: CompiledParser, response: dict[str, Any], pause_gc: bool
) -> dict[str, Any] | None:
    """Run ``compiled``; ``None`` when botocore's parser must take over.

    A page is tens of thousands of new containers that all survive the
    parse; the cyclic collector would walk them (and, through the
    generations it promotes them to, the whole heap) again and again while
    they are built, which costs as much as building them. So the collector
    is paused for the one synchronous call (never across an ``await``) and
    put back as it was found.
    """
    if pause_gc and gc.isenabled():
        gc.disable()
        try:
            return compiled(response)
        except Exception:
            return None
        finally:
            freezer = _freezer
            if freezer is not None:
                freezer.after_parse()
            gc.enable()
    try:
        return compiled(response)
    except Exception:
        return None


def install(
    client: Any,
    *,
    enabled: bool | None = None,
    raw: RawMode = False,
    pause_gc: bool = True,
) -> bool:
    """Parse ``client``'s responses with compiled parsers where they exist.

    Works on botocore, boto3, aiobotocore and aioboto3 clients; returns
    whether the client now uses them. ``enabled=None`` follows the
    ``ASYNCPAGER_FAST_PARSE`` environment variable (on unless it says
    ``0``); ``False`` leaves the client alone. Installing again replaces
    the settings.

    ``raw=True`` skips conversions nobody reads when the page is written out
    as it came (DynamoDB JSON straight to a file): blobs stay base64 text,
    timestamps stay as sent, ``rest-json`` numbers and booleans stay as
    decoded, and JSON subtrees that are then left with nothing to convert
    are handed over exactly as decoded (unknown keys and ``null`` members
    included, in wire order). Pages then differ from botocore's on purpose.
    The members a paginator reads its next token from are still converted:
    they are sent back. ``raw="json"`` is the same, with every timestamp as
    the ISO 8601 text that :func:`asyncpager.convert.plain_to_json_line`
    writes for botocore's datetime (``2024-01-05T04:28:29.281000+00:00``):
    for pages that are only written as JSON, the same bytes at a fraction
    of the cost. ``raw="lines"`` is ``"json"``, with the items of DynamoDB
    ``Scan`` and ``Query`` pages and the objects of S3 ``ListObjectsV2``
    pages kept as the JSON Lines the writer would make of them, made from
    the text that came (:mod:`asyncpager.item_lines`).

    ``pause_gc`` pauses the cyclic garbage collector during each compiled
    parse (see ``_run``); S3's error check always builds its tree with the
    collector paused.
    """
    if enabled is None:
        enabled = fast_parse_enabled()
    if not enabled:
        return False
    endpoint = client._endpoint
    factory = endpoint._response_parser_factory
    if isinstance(factory, FastParserFactory):
        factory = factory.original
    endpoint._response_parser_factory = FastParserFactory(
        factory, client.meta.service_model, raw=raw, pause_gc=pause_gc
    )
    if client.meta.service_model.service_name == "s3":
        _parse_s3_once(client, lines=raw == "lines")
    return True


def _handle_200_error_lines(operation_model: Any, response_dict: Any, **kwargs: Any) -> None:
    """:func:`_handle_200_error_once` for clients in raw ``"lines"`` mode: a
    ListObjectsV2 page's objects are made into JSON Lines from the text
    (:func:`asyncpager.item_lines.object_lines`) instead of read as values."""
    _check_200(operation_model, response_dict, lines=True)


def _handle_200_error_once(operation_model: Any, response_dict: Any, **kwargs: Any) -> None:
    """botocore's ``_handle_200_error``, keeping the tree it parses.

    S3 may answer 200 with an ``<Error>`` body, so botocore parses every S3
    body once to look at its root, then the parser parses it again: a third
    of the CPU of a ListObjectsV2 page. This does the same check, with the
    same parser and the same outcome (a malformed body or an ``Error`` root
    turn the status into 500 so it is retried), and leaves the tree for the
    compiled parser.
    """
    _check_200(operation_model, response_dict, lines=False)


def _check_200(operation_model: Any, response_dict: Any, *, lines: bool) -> None:
    from botocore.handlers import _should_handle_200_error

    if not _should_handle_200_error(operation_model, response_dict):
        return
    body = response_dict.get("body")
    if response_dict.get("status_code") != 200 or not body:
        return
    # The tree is most of a page's new objects: built with the collector
    # paused, as the compiled parse that reads it is (see ``_run``).
    paused = gc.isenabled()
    if paused:
        gc.disable()
    try:
        # A listing's run of like elements is read without a tree; the rest
        # of the body still is one, checked as botocore checks it.
        spec = _run_spec(operation_model)
        made = None
        if lines and spec is not None and operation_model.name == "ListObjectsV2":
            # botocore URL-decodes the keys of a page that says so.
            encoded = b"<EncodingType>url</EncodingType>" in body
            made = split_lines(body, spec, _xml_root, partial(object_lines, url_encoded=encoded))
        if made is not None:
            root, response_dict[HELD_LINES] = made
            response_dict[PARSED_RUN] = []  # the compiled parse reads no run
        else:
            parts = None if spec is None else split(body, spec, _xml_root)
            if parts is None:
                root = _xml_root(body)
            else:
                root, response_dict[PARSED_RUN] = parts
    except ETree.ParseError:
        response_dict["status_code"] = 500
        return
    finally:
        if paused:
            gc.enable()
    if root.tag == "Error":
        response_dict["status_code"] = 500
        response_dict.pop(PARSED_RUN, None)
        response_dict.pop(HELD_LINES, None)
        return
    response_dict[PARSED_ROOT] = root


_RUN_SPECS: dict[int, tuple[Any, RunSpec | None]] = {}


def _run_spec(operation_model: Any) -> RunSpec | None:
    shape = operation_model.output_shape
    entry = _RUN_SPECS.get(id(shape))
    if entry is None or entry[0] is not shape:
        entry = (shape, run_spec(shape))
        _RUN_SPECS[id(shape)] = entry
    return entry[1]


def _finish_object_lines(parsed: Any, context: Any, **kwargs: Any) -> None:
    """After the keys are decoded (:func:`_decode_list_objects_v2`), on the same condition:
    the keys of a page held as lines are URL-decoded when botocore set the
    page's encoding itself (a caller who asked for it gets them encoded)."""
    held = parsed.get(HELD_LINES) if isinstance(parsed, dict) else None
    if held is not None and isinstance(held[1], ObjectLines):
        held[1].finish(_botocore_decodes(parsed, context))


def _botocore_decodes(parsed: Any, context: Any) -> bool:
    """Whether botocore URL-decodes this page's keys: it set the page's
    encoding itself (``decode_list_object_v2``'s condition)."""
    return parsed.get("EncodingType") == "url" and bool(context.get("encoding_type_auto_set"))


def _decode_list_objects_v2(parsed: Any, context: Any, **kwargs: Any) -> None:
    """botocore's ``decode_list_object_v2``, for the keys that need it.

    botocore calls ``unquote_plus`` on every key of a page whose encoding it
    set itself; a key without ``%`` or ``+`` comes back as the same string,
    so only the others are passed to it here (a tenth of the cost on a page
    of plain keys: 4% of a library listing's CPU)."""
    if not _botocore_decodes(parsed, context):
        return
    for name in ("Delimiter", "Prefix", "StartAfter"):
        if name in parsed:
            parsed[name] = unquote_str(parsed[name])
    for top, child in (("Contents", "Key"), ("CommonPrefixes", "Prefix")):
        if top in parsed:
            for member in parsed[top]:
                value = member[child]
                if "%" in value or "+" in value:
                    member[child] = unquote_str(value)


def _parse_s3_once(client: Any, lines: bool = False) -> None:
    from botocore.handlers import _handle_200_error, decode_list_object_v2

    events = client.meta.events
    events.unregister("after-call.s3.ListObjectsV2", decode_list_object_v2)
    events.unregister("after-call.s3.ListObjectsV2", _decode_list_objects_v2)
    events.register_first("after-call.s3.ListObjectsV2", _decode_list_objects_v2)
    # The client's emitter is its own copy: other clients keep botocore's handler.
    events.unregister("before-parse.s3.*", _handle_200_error)
    events.unregister("before-parse.s3.*", _handle_200_error_once)
    events.unregister("before-parse.s3.*", _handle_200_error_lines)
    handler = _handle_200_error_lines if lines else _handle_200_error_once
    events.register_first("before-parse.s3.*", handler)
    events.unregister("after-call.s3.ListObjectsV2", _finish_object_lines)
    if lines:
        events.register("after-call.s3.ListObjectsV2", _finish_object_lines)


def uninstall(client: Any) -> None:
    """Give ``client`` back the parser factory it had before :func:`install`."""
    endpoint = client._endpoint
    factory = endpoint._response_parser_factory
    if isinstance(factory, FastParserFactory):
        endpoint._response_parser_factory = factory.original
    if client.meta.service_model.service_name == "s3":
        from botocore.handlers import _handle_200_error, decode_list_object_v2

        events = client.meta.events
        events.unregister("after-call.s3.ListObjectsV2", _decode_list_objects_v2)
        events.unregister("after-call.s3.ListObjectsV2", decode_list_object_v2)
        events.register_first("after-call.s3.ListObjectsV2", decode_list_object_v2)
        events.unregister("before-parse.s3.*", _handle_200_error_once)
        events.unregister("before-parse.s3.*", _handle_200_error_lines)
        events.unregister("after-call.s3.ListObjectsV2", _finish_object_lines)
        events.unregister("before-parse.s3.*", _handle_200_error)
        events.register_first("before-parse.s3.*", _handle_200_error)


def is_installed(client: Any) -> bool:
    """Whether ``client`` parses with compiled parsers."""
    return isinstance(client._endpoint._response_parser_factory, FastParserFactory)
