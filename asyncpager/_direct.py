"""Page requests sent without botocore's per-request machinery.

A page costs botocore about 0.35 ms of CPU on top of parsing and the wire,
whatever its size: events emitted to some thirty handlers through
aiobotocore's awaitable-checking emitter, the endpoint rule set evaluated
afresh, a User-Agent rebuilt, an ``AWSRequest`` prepared into case-folding
header dicts, and a SigV4 signature whose key is derived anew each time. On a
one-key S3 page that is two thirds of the client's CPU; on a 1,000-key page
a fifth. A stream asks the same operation of the same client over and over,
with only its token changing, so most of that work gives the same answer
every time.

:class:`DirectCalls` sends those requests itself and keeps what botocore
would do for each one:

* the handlers of ``provide-client-params``, ``before-parameter-build``,
  ``before-call``, ``before-parse``, ``after-call`` and ``after-call-error``
  are called on every request, in order, with what botocore passes them;
* the parameters are serialized by the client's own serializer, the body
  and headers by botocore's ``prepare_request_dict``, the answer parsed by
  the client's own parser (the compiled one where installed), and checked
  with the endpoint's own ``convert_to_response_dict`` and checksum code;
* every answer, and any failure to send, meets the ``needs-retry``
  handlers as in botocore (with one attempt they mark the answer and
  decline); where one of them asks for the request again (S3's region
  redirect), the request is made again through botocore and nothing learnt
  so far is kept.

What it does not redo each time is learnt from a request botocore makes
(:meth:`DirectCalls._learn`), once per operation and set of parameter names:
the endpoint's URL, headers and signing context, and the User-Agent. Before
any of it is used, the learnt request is built again here, with botocore's
timestamp and invocation id, and must come out identical to what botocore
sent, header for header and byte for byte, signature included; otherwise
requests of that kind keep going through botocore. A request whose endpoint
parameters differ (another bucket or prefix) has its endpoint resolved by
botocore's rule set here, and goes the learnt way if the endpoint is the
same; otherwise botocore makes it, and it is learnt from in turn. (Where
the caller's own parameter handlers run, each new endpoint is learnt from a
request botocore makes, so that they run once per request.)

It is used only where every handler of the events it skips
(endpoint resolution, ``request-created``, ``choose-signer``,
``before-sign``, ``before-send``, ``response-received``) is one of
botocore's that it accounts for (:data:`_KNOWN`), the signature is SigV4
with credentials, and botocore makes one attempt (the engine retries). Any
other client, or a handler registered later, is served by botocore as it is.
``ASYNCPAGER_DIRECT=0`` turns it off.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import hmac
import json
import os
import uuid
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from typing import Any
from urllib.parse import quote, urlsplit

from aiobotocore.endpoint import convert_to_response_dict
from aiobotocore.httpchecksum import apply_request_checksum, handle_checksum_body
from botocore.auth import SIGNED_HEADERS_BLACKLIST, _host_from_url, resolve_auth_scheme_preference
from botocore.awsrequest import (
    AWSPreparedRequest,
    AWSRequestPreparer,
    HeadersDict,
    prepare_request_dict,
)
from botocore.compress import maybe_compress_request
from botocore.exceptions import NoCredentialsError
from botocore.handlers import add_retry_headers
from botocore.httpchecksum import resolve_checksum_context
from botocore.utils import normalize_url_path

__all__ = ["ENV_VAR", "DirectCalls", "Signer", "direct_call", "direct_enabled", "install"]

ENV_VAR = "ASYNCPAGER_DIRECT"
_OFF = frozenset({"0", "false", "no", "off"})
_ATTRIBUTE = "_asyncpager_direct"

#: The handlers of the events this path does not emit, by module and name,
#: and why skipping them changes nothing.
_KNOWN: dict[str, frozenset[str]] = {
    # Their effect (the endpoint, builtins from the bucket's name and the
    # redirect cache) is in the learnt endpoint; a redirect forgets it.
    "before-endpoint-resolution": frozenset(
        {
            "botocore.handlers.customize_endpoint_resolver_builtins",
            "botocore.utils.S3RegionRedirectorv2.redirect_from_cache",
        }
    ),
    # The signature is made here; the User-Agent is the learnt one; the
    # retry headers are set here from the same context.
    "request-created": frozenset(
        {
            "aiobotocore.signers.AioRequestSigner.handler",
            "botocore.useragent.UserAgentString.rebuild_and_replace_user_agent_handler",
            "botocore.handlers.add_retry_headers",
        }
    ),
    # They choose and shape the signature: the learnt request's signature,
    # made again here, shows that they chose plain SigV4.
    "choose-signer": frozenset(
        {
            "botocore.client.ClientCreator._default_s3_presign_to_sigv2",
            "botocore.handlers.set_operation_specific_signer",
            "botocore.handlers._set_auth_scheme_preference_signer",
        }
    ),
    "before-sign": frozenset(
        {
            "botocore.handlers.remove_arn_from_signing_path",
            "botocore.handlers._set_extra_headers_for_unsigned_request",
            "botocore.utils.S3ExpressIdentityResolver.resolve_s3express_identity",
        }
    ),
    "before-send": frozenset(),
    "response-received": frozenset(),
}

#: Parameter handlers of botocore's that change nothing but the request's
#: own parameters and context: run once more for a request (to find its
#: endpoint before botocore makes it), nobody sees it.
_PURE = frozenset(
    {
        "botocore.handlers.set_list_objects_encoding_type_url",
        "botocore.handlers.validate_bucket_name",
        "botocore.handlers.remove_bucket_from_url_paths_from_model",
        "botocore.utils.S3RegionRedirectorv2.annotate_request_context",
        "botocore.client.ClientCreator._inject_s3_input_parameters",
        "botocore.handlers.generate_idempotent_uuid",
        "botocore.handlers._handle_request_validation_mode_member",
        "botocore.handlers.ParameterAlias.alias_parameter_in_call",
        "botocore.handlers.fix_route53_ids",
        "botocore.handlers.sse_md5",
        "botocore.handlers.copy_source_sse_md5",
        "botocore.handlers.validate_ascii_metadata",
    }
)

_LEARNING: ContextVar[list[Any] | None] = ContextVar("asyncpager_direct_learning", default=None)
_EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
_UNSIGNED = "UNSIGNED-PAYLOAD"


def direct_enabled() -> bool:
    """False when the environment says ``ASYNCPAGER_DIRECT=0`` (or ``false``,
    ``no``, ``off``)."""
    return os.environ.get(ENV_VAR, "1").strip().lower() not in _OFF


def _name(handler: Any) -> str:
    return f"{getattr(handler, '__module__', '?')}.{getattr(handler, '__qualname__', '?')}"


class Signer:
    """SigV4 as botocore's ``SigV4Auth`` (``s3=False``) or ``S3SigV4Auth``
    (``s3=True``) signs, for a request whose headers are final: the same
    canonical request, string to sign and ``Authorization`` header. The
    signing key is derived once a day, not once a request."""

    __slots__ = ("_keys", "region", "s3", "service")

    def __init__(self, service: str, region: str, *, s3: bool) -> None:
        self.service = service
        self.region = region
        self.s3 = s3
        self._keys: dict[tuple[str, str], bytes] = {}

    def _key(self, secret: str, day: str) -> bytes:
        key = self._keys.get((secret, day))
        if key is None:
            key = hmac.new(f"AWS4{secret}".encode(), day.encode(), hashlib.sha256).digest()
            for part in (self.region, self.service, "aws4_request"):
                key = hmac.new(key, part.encode(), hashlib.sha256).digest()
            if len(self._keys) > 4:
                self._keys.clear()
            self._keys[(secret, day)] = key
        return key

    def authorization(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        payload_hash: str,
        timestamp: str,
        access_key: str,
        secret_key: str,
    ) -> str:
        """The ``Authorization`` header for this request (``headers`` holds
        everything sent but it: ``X-Amz-Date`` and any token included)."""
        parts = urlsplit(url)
        # S3 signs its path as it is; other services, normalized.
        path = parts.path if self.s3 else quote(normalize_url_path(parts.path), safe="/~")
        query = ""
        if parts.query:
            pairs = sorted(pair.partition("=")[::2] for pair in parts.query.split("&"))
            query = "&".join(f"{k}={v}" for k, v in pairs)
        signed: dict[str, list[str]] = {}
        for name, value in headers.items():
            lower = name.lower()
            if lower not in SIGNED_HEADERS_BLACKLIST:
                signed.setdefault(lower, []).append(value)
        if "host" not in signed:
            signed["host"] = [_host_from_url(url)]
        names = sorted(signed)
        canonical_headers = "\n".join(
            f"{n}:{','.join(' '.join(str(v).split()) for v in signed[n])}" for n in names
        )
        signed_names = ";".join(names)
        canonical = "\n".join(
            (
                method.upper(),
                path,
                query,
                canonical_headers + "\n",
                signed_names,
                payload_hash,
            )
        )
        day = timestamp[:8]
        scope = f"{day}/{self.region}/{self.service}/aws4_request"
        to_sign = "\n".join(
            (
                "AWS4-HMAC-SHA256",
                timestamp,
                scope,
                hashlib.sha256(canonical.encode("utf-8")).hexdigest(),
            )
        )
        signature = hmac.new(
            self._key(secret_key, day), to_sign.encode("utf-8"), hashlib.sha256
        ).hexdigest()
        return (
            f"AWS4-HMAC-SHA256 Credential={access_key}/{scope}, "
            f"SignedHeaders={signed_names}, Signature={signature}"
        )


class _Template:
    """What botocore's request for one endpoint of one operation showed."""

    __slots__ = (
        "context",
        "endpoint_headers",
        "endpoint_url",
        "payload",
        "signer",
        "user_agent",
    )

    def __init__(
        self,
        endpoint_url: str,
        endpoint_headers: dict[str, Any],
        context: dict[str, Any],
        user_agent: str | None,
        signer: Signer,
        payload: str,
    ) -> None:
        self.endpoint_url = endpoint_url
        self.endpoint_headers = endpoint_headers
        #: What endpoint resolution added to the request context.
        self.context = context
        self.user_agent = user_agent
        self.signer = signer
        #: ``sha``: the body's SHA-256 is signed; ``unsigned``: it is not.
        self.payload = payload

    @property
    def endpoint(self) -> tuple[str, dict[str, Any], dict[str, Any]]:
        """What endpoint resolution gave (see ``DirectCalls._endpoint``)."""
        return self.endpoint_url, self.endpoint_headers, self.context


_REFUSED = object()
#: What a request botocore sent more than once teaches: ask again later.
_AGAIN = object()
_LEARN_TRIES = 3
_MAX_TEMPLATES = 4096
_MAX_REFUSED = 16


class DirectCalls:
    """The direct path of one client (see the module's docstring)."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self._events = client.meta.events
        self._emitter: Any = getattr(self._events, "_emitter", None)
        # What the handlers are read from: botocore's emitter behind its
        # aliaser. Another emitter has no direct path.
        if not (
            hasattr(self._events, "_alias_event_name")
            and hasattr(self._emitter, "_handlers")
            and hasattr(self._emitter, "_lookup_cache")
        ):
            raise TypeError("not botocore's event emitter")
        self._service_model = client.meta.service_model
        self._service_id = self._service_model.service_id.hyphenize()
        self._templates: dict[Any, Any] = {}
        self._families: dict[Any, _Template] = {}
        self._tries: dict[Any, int] = {}
        #: Per kind of request, endpoints whose requests could not be rebuilt.
        self._refused_endpoints: dict[Any, list[Any]] = {}
        self._handlers: dict[str, list[Any]] = {}
        self._handlers_from: Any = None
        self._parsers: dict[str, Any] = {}
        self._eligible: dict[str, bool] = {}
        #: Requests sent here, and requests botocore made (to learn or fall back).
        self.sent = 0
        self.learnt = 0
        self.refused = 0
        self._events.register_last(f"before-send.{self._service_id}", self._capture)
        self._events.register_last(
            f"before-endpoint-resolution.{self._service_id}", self._capture_params
        )

    # -- which handlers ----------------------------------------------------

    def _handlers_for(self, event: str) -> list[Any]:
        """The handlers botocore's emitter would call for ``event``, cached
        until a handler is registered or removed (the emitter then starts a
        new lookup cache)."""
        emitter = self._emitter
        cache = getattr(emitter, "_lookup_cache", None)
        if cache is not self._handlers_from:
            self._handlers.clear()
            self._eligible.clear()
            self._handlers_from = cache
        handlers = self._handlers.get(event)
        if handlers is None:
            name = self._events._alias_event_name(event)
            handlers = self._handlers[event] = list(emitter._handlers.prefix_search(name))
        return handlers

    def usable(self, operation_name: str) -> bool:
        """Whether requests of ``operation_name`` may go this way now."""
        self._handlers_for("before-send")  # drops stale answers first
        known = self._eligible.get(operation_name)
        if known is not None:
            return known
        self._eligible[operation_name] = ok = self._check(operation_name)
        return ok

    def _check(self, operation_name: str) -> bool:
        """One attempt, SigV4 with credentials, an operation with nothing
        streamed, compressed, checksummed or discovered, and no handler on
        the skipped events but botocore's known ones (and this path's)."""
        client = self._client
        config = client.meta.config
        retries = getattr(config, "retries", None) or {}
        if retries.get("total_max_attempts") != 1:
            return False
        signer = getattr(client, "_request_signer", None)
        if signer is None or getattr(signer, "_credentials", None) is None:
            return False
        if getattr(signer, "signature_version", None) not in ("v4", "s3v4"):
            return False
        model = self._service_model.operation_model(operation_name)
        if (
            model.has_streaming_input
            or model.has_streaming_output
            or model.has_event_stream_output
            or model.endpoint_discovery
            or model.http_checksum
            or model.request_compression
        ):
            return False
        for event, known in _KNOWN.items():
            name = f"{event}.{self._service_id}"
            if event != "before-endpoint-resolution":
                name = f"{name}.{operation_name}"
            for handler in self._handlers_for(name):
                if handler == self._capture or handler == self._capture_params:
                    continue
                if _name(handler) not in known:
                    return False
        return True

    # -- a call ------------------------------------------------------------

    def _context(self, model: Any) -> dict[str, Any]:
        # As _make_api_call starts it.
        config = self._client.meta.config
        if model.auth and config.auth_scheme_preference:
            auth_type = resolve_auth_scheme_preference(
                config.auth_scheme_preference.split(","), model.auth
            )
        else:
            auth_type = model.resolved_auth_type
        return {
            "client_region": self._client.meta.region_name,
            "client_config": config,
            "has_streaming_input": model.has_streaming_input,
            "auth_type": auth_type,
            "unsigned_payload": model.unsigned_payload,
            "auth_options": self._service_model.metadata.get("auth"),
        }

    async def _emit(self, event: str, **kwargs: Any) -> list[Any]:
        results = []
        for handler in self._handlers_for(event):
            result = handler(**kwargs)
            if hasattr(result, "__await__"):
                result = await result
            results.append(result)
        return results

    async def _params(
        self, model: Any, api_params: Mapping[str, Any]
    ) -> tuple[Any, dict[str, Any]]:
        """The parameters and request context as ``_emit_api_params`` leaves
        them (on a copy: the caller's dict is not changed)."""
        suffix = f"{self._service_id}.{model.name}"
        context = self._context(model)
        params: Any = dict(api_params)
        for response in await self._emit(
            f"provide-client-params.{suffix}", params=params, model=model, context=context
        ):
            if response is not None:
                params = response
                break
        await self._emit(
            f"before-parameter-build.{suffix}", params=params, model=model, context=context
        )
        return params, context

    async def call(self, operation_name: str, api_params: Mapping[str, Any]) -> Any:
        """What ``client._make_api_call(operation_name, api_params)`` returns
        or raises."""
        model = self._service_model.operation_model(operation_name)
        key = self._key(model, api_params)
        template = self._templates.get(key)
        if isinstance(template, _Template):
            params, context = await self._params(model, api_params)
            return await self._send(operation_name, model, api_params, params, context, template)
        if template is _REFUSED:
            self.refused += 1
            return await self._client._make_api_call(operation_name, dict(api_params))
        # Until it is known, requests of its kind are botocore's.
        if len(self._templates) >= _MAX_TEMPLATES:
            # Bounded, whatever the number of prefixes listed: forgotten
            # endpoints are resolved again (families are kept).
            self._templates.clear()
            self._tries.clear()
        self._templates[key] = _REFUSED
        kind = key[0]
        try:
            family = self._families.get(kind)
            refused = self._refused_endpoints.get(kind, [])
            if (family is not None or refused) and self._pure(model):
                # A new endpoint for a kind of request seen before (another
                # prefix, say), resolved here: it may be one learnt, or one
                # whose requests could not be built here (an S3 Express
                # bucket's, signed with its session's keys), either way
                # without a request from botocore to learn from.
                params, context = await self._params(model, api_params)
                endpoint = await self._endpoint(model, params, dict(context))
                if family is not None and endpoint == family.endpoint:
                    self._templates[key] = family
                    return await self._send(
                        operation_name, model, api_params, params, context, family
                    )
                if endpoint in refused:
                    self.refused += 1
                    return await self._client._make_api_call(operation_name, dict(api_params))
            learnt, endpoint, result = await self._learn(model, api_params)
        except BaseException:
            self._templates.pop(key, None)
            raise
        if isinstance(learnt, _Template):
            self._templates[key] = learnt
            self._families.setdefault(kind, learnt)
        elif learnt is _AGAIN:
            # botocore sent it more than once (a redirect to the bucket's
            # region): the next request of the kind goes straight there, and
            # is learnt from, a few times at most.
            tries = self._tries.get(key, 0) + 1
            self._tries[key] = tries
            if tries < _LEARN_TRIES:
                self._templates.pop(key, None)
        elif endpoint is not None and len(refused) < _MAX_REFUSED:
            self._refused_endpoints.setdefault(kind, []).append(endpoint)
        return result

    def _pure(self, model: Any) -> bool:
        """Whether the parameter handlers are botocore's own, which may run
        twice for one request (here, then in botocore) unseen."""
        suffix = f"{self._service_id}.{model.name}"
        return all(
            _name(handler) in _PURE
            for event in ("provide-client-params", "before-parameter-build")
            for handler in self._handlers_for(f"{event}.{suffix}")
        )

    def _key(self, model: Any, params: Mapping[str, Any]) -> Any:
        # What chooses the endpoint: the parameters the rule set reads.
        return (self._family(model, params), *self._endpoint_values(model, params))

    def _family(self, model: Any, params: Mapping[str, Any]) -> Any:
        # Requests whose signature and User-Agent botocore makes alike: one
        # operation, one set of parameter names.
        return (model.name, frozenset(params))

    def _endpoint_values(self, model: Any, params: Mapping[str, Any]) -> list[Any]:
        values = [_hashable(params.get(m.member_name)) for m in model.context_parameters or ()]
        if getattr(model, "operation_context_parameters", None):
            values.append(json.dumps(params, sort_keys=True, default=repr))
        return values

    async def _endpoint(
        self, model: Any, params: Mapping[str, Any], context: dict[str, Any]
    ) -> tuple[str, dict[str, Any], dict[str, Any]]:
        """The endpoint's URL and headers, and what resolving it added to
        the request context: botocore's rule set, asked as botocore asks it."""
        before = dict(context)
        url, headers, properties = await self._client._resolve_endpoint_ruleset(
            model, params, context
        )
        if properties:
            context["endpoint_properties"] = properties
        added = {k: v for k, v in context.items() if k not in before or before[k] is not v}
        return url, dict(headers or {}), added

    def _request_dict(
        self,
        model: Any,
        params: Mapping[str, Any],
        context: dict[str, Any],
        template: _Template,
        invocation_id: str,
    ) -> dict[str, Any]:
        """The request dict botocore would make (``_convert_to_request_dict``
        and what ``_make_api_call`` and ``_send_request`` add to it)."""
        client = self._client
        # A copy per request: handlers may change what they are given.
        context.update(_copy_context(template.context))
        request_dict: dict[str, Any] = client._serializer.serialize_to_request(params, model)
        if not client._client_config.inject_host_prefix:
            request_dict.pop("host_prefix", None)
        request_dict["headers"].update(template.endpoint_headers)
        prepare_request_dict(
            request_dict,
            endpoint_url=template.endpoint_url,
            user_agent=template.user_agent,
            context=context,
        )
        resolve_checksum_context(request_dict, model, params)
        retries = context.setdefault("retries", {})
        retries["attempt"] = 1
        retries["invocation-id"] = invocation_id
        return request_dict

    async def _before_call(
        self, model: Any, request_dict: dict[str, Any], context: dict[str, Any]
    ) -> Any:
        """``before-call``, then what ``_make_api_call`` does to the request
        dict before it is sent; a handler's answer where one gave it."""
        for response in await self._emit(
            f"before-call.{self._service_id}.{model.name}",
            model=model,
            params=request_dict,
            request_signer=self._client._request_signer,
            context=context,
        ):
            if response is not None:
                return response
        maybe_compress_request(self._client.meta.config, request_dict, model)
        apply_request_checksum(request_dict)
        return None

    def _prepared(
        self,
        request_dict: dict[str, Any],
        template: _Template,
        timestamp: str,
        credentials: Any,
    ) -> Any:
        """The signed, prepared request: as ``create_request`` makes it, the
        signer's headers set before the signature and the retry headers and
        ``Content-Length`` after, where botocore sets them."""
        method = request_dict["method"]
        url = request_dict["url"]
        shell = _Shell(method, request_dict["body"], request_dict["headers"])
        body = _PREPARER._prepare_body(shell)
        signed = body.encode("utf-8") if isinstance(body, str) else body
        headers = dict(request_dict["headers"])
        if template.payload == "unsigned":
            payload_hash = _UNSIGNED
        elif signed:
            payload_hash = hashlib.sha256(signed).hexdigest()
        else:
            payload_hash = _EMPTY_SHA256
        # As SigV4Auth._modify_request_before_signing: any Authorization goes
        # first, then the date, the token and (S3) the payload's hash are set.
        _replace(headers, "Authorization", None)
        _replace(headers, "X-Amz-Date", timestamp)
        if credentials.token:
            _replace(headers, "X-Amz-Security-Token", credentials.token)
        if template.signer.s3 or template.payload == "unsigned":
            _replace(headers, "X-Amz-Content-SHA256", payload_hash)
        _replace(
            headers,
            "Authorization",
            template.signer.authorization(
                method,
                url,
                headers,
                payload_hash,
                timestamp,
                credentials.access_key,
                credentials.secret_key,
            ),
        )
        if template.user_agent is not None:
            _replace(headers, "User-Agent", template.user_agent)
        shell.headers = headers
        request = AWSPreparedRequest(
            method,
            url,
            _PREPARER._prepare_headers(shell, body),
            body,
            False,
            request_dict["context"],
        )
        add_retry_headers(request)
        return request

    async def _send(
        self,
        operation_name: str,
        model: Any,
        api_params: Mapping[str, Any],
        params: Mapping[str, Any],
        context: dict[str, Any],
        template: _Template,
    ) -> Any:
        client = self._client
        endpoint = client._endpoint
        suffix = f"{self._service_id}.{operation_name}"
        request_dict = self._request_dict(model, params, context, template, str(uuid.uuid4()))
        http: Any = None
        parsed: Any = None
        answered = await self._before_call(model, request_dict, context)
        if answered is not None:
            http, parsed = answered
        else:
            credentials = await client._request_signer._credentials.get_frozen_credentials()
            if credentials is None:
                # What botocore's signer raises, inside _make_request.
                missing = NoCredentialsError()
                await self._emit(f"after-call-error.{suffix}", exception=missing, context=context)
                raise missing
            # botocore's clock: get_current_datetime is utcnow, naive.
            timestamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
            request = self._prepared(request_dict, template, timestamp, credentials)
            self.sent += 1
            try:
                http = await endpoint.http_session.send(request)
            except Exception as exc:
                # What _send_request does with a failure to send: the retry
                # handlers see it (they decline: one attempt), then it is raised.
                if await self._needs_retry(model, request_dict, None, exc):
                    return await self._again(operation_name, api_params)
                await self._emit(f"after-call-error.{suffix}", exception=exc, context=context)
                raise
            try:
                parser = self._parser()
                response_dict = await convert_to_response_dict(http, model)
                await handle_checksum_body(http, response_dict, context, model)
                customized: dict[str, Any] = {}
                await self._emit(
                    f"before-parse.{suffix}",
                    operation_model=model,
                    response_dict=response_dict,
                    customized_response_dict=customized,
                )
                parsed = parser.parse(response_dict, model.output_shape)
                if hasattr(parsed, "__await__"):
                    parsed = await parsed
                parsed.update(customized)
                if http.status_code >= 300:
                    await endpoint._add_modeled_error_fields(response_dict, parsed, model, parser)
                # Every answer meets the retry handlers, as in botocore: with
                # one attempt they mark it (MaxAttemptsReached) and decline,
                # but S3's redirector asks for a redirected request again.
                if await self._needs_retry(model, request_dict, (http, parsed), None):
                    return await self._again(operation_name, api_params)
            except Exception as exc:
                await self._emit(f"after-call-error.{suffix}", exception=exc, context=context)
                raise
            metadata = parsed.get("ResponseMetadata")
            if metadata is not None:
                metadata["RetryAttempts"] = 0
        await self._emit(
            f"after-call.{suffix}", http_response=http, parsed=parsed, model=model, context=context
        )
        if http.status_code >= 300:
            error_code = context.get("error_code_override") or parsed.get("Error", {}).get("Code")
            raise client.exceptions.from_code(error_code)(parsed, operation_name)
        return parsed

    async def _needs_retry(
        self,
        model: Any,
        request_dict: dict[str, Any],
        response: tuple[Any, Any] | None,
        caught_exception: Exception | None,
    ) -> bool:
        """The endpoint's ``_needs_retry`` for a first attempt: whether a
        handler asks for the request again (after the delay it says)."""
        for delay in await self._emit(
            f"needs-retry.{self._service_id}.{model.name}",
            response=response,
            endpoint=self._client._endpoint,
            operation=model,
            attempts=1,
            caught_exception=caught_exception,
            request_dict=request_dict,
        ):
            if delay is not None:
                await asyncio.sleep(delay)
                return True
        return False

    def _parser(self) -> Any:
        protocol = self._service_model.resolved_protocol
        parser = self._parsers.get(protocol)
        if parser is None:
            factory = self._client._endpoint._response_parser_factory
            parser = self._parsers[protocol] = factory.create_parser(protocol)
        return parser

    async def _again(self, operation_name: str, api_params: Mapping[str, Any]) -> Any:
        """botocore's retry of an answer that asked for one (a redirect):
        nothing learnt is trusted any longer."""
        self._templates.clear()
        self._families.clear()
        self._tries.clear()
        self._refused_endpoints.clear()
        return await self._client._make_api_call(operation_name, dict(api_params))

    # -- learning ----------------------------------------------------------

    def _capture(self, request: Any, **kwargs: Any) -> None:
        seen = _LEARNING.get()
        if seen is not None:
            seen.append(("sent", request))

    def _capture_params(self, params: Any, context: Any, **kwargs: Any) -> None:
        seen = _LEARNING.get()
        if seen is not None:
            # As the parameter handlers left them, before the endpoint.
            seen.append(("params", (dict(params), _copy_context(context))))

    async def _learn(
        self, model: Any, api_params: Mapping[str, Any]
    ) -> tuple[_Template | object | None, Any, Any]:
        """botocore's answer to this request, what it teaches (None when the
        request cannot be built again here exactly, ``_AGAIN`` when botocore
        sent it more than once) and the endpoint it went to."""
        seen: list[tuple[str, Any]] = []
        token = _LEARNING.set(seen)
        try:
            result = await self._client._make_api_call(model.name, dict(api_params))
        finally:
            _LEARNING.reset(token)
        self.learnt += 1
        kinds = [kind for kind, _ in seen]
        if kinds != ["params", "sent"]:
            return (_AGAIN if kinds.count("sent") > 1 else None), None, result
        (params, context), sent = seen[0][1], seen[1][1]
        try:
            endpoint = await self._endpoint(model, dict(params), _copy_context(context))
            template = await self._template(model, params, context, endpoint, sent)
        except Exception:
            # Whatever it cannot rebuild stays botocore's.
            return None, None, result
        return template, endpoint, result

    async def _template(
        self,
        model: Any,
        params: Mapping[str, Any],
        context: dict[str, Any],
        endpoint: tuple[str, dict[str, Any], dict[str, Any]],
        sent: Any,
    ) -> _Template | None:
        client = self._client
        headers = HeadersDict((k, _text(v)) for k, v in sent.headers.items())
        authorization = headers.get("Authorization") or ""
        scope_at = authorization.find("Credential=")
        if not authorization.startswith("AWS4-HMAC-SHA256 ") or scope_at < 0:
            return None
        scope = authorization[scope_at + len("Credential=") :].split(",", 1)[0].split("/")
        timestamp = headers.get("X-Amz-Date")
        invocation = headers.get("amz-sdk-invocation-id")
        if len(scope) != 5 or not timestamp or not invocation:
            return None
        region, service = scope[2], scope[3]
        credentials = await client._request_signer._credentials.get_frozen_credentials()
        if credentials is None:
            return None
        endpoint_url, endpoint_headers, added = endpoint
        template = _Template(
            endpoint_url,
            endpoint_headers,
            added,
            headers.get("User-Agent"),
            Signer(service, region, s3=client._request_signer.signature_version == "s3v4"),
            "sha",
        )
        # The same request, built again here (once: the payload's signing
        # changes only the signature): identical, or not used.
        again = _copy_context(context)
        request_dict = self._request_dict(model, params, again, template, invocation)
        if await self._before_call(model, request_dict, again) is not None:
            return None
        for payload in ("sha", "unsigned"):
            template.payload = payload
            rebuilt = self._prepared(request_dict, template, timestamp, credentials)
            if _same_request(rebuilt, sent):
                return template
        return None


def _copy_context(context: Mapping[str, Any]) -> dict[str, Any]:
    # Handlers change nested dicts of the context too (the redirector's).
    return {k: dict(v) if isinstance(v, dict) else v for k, v in context.items()}


class _Shell:
    """What botocore's ``AWSRequestPreparer`` reads of a request."""

    __slots__ = ("data", "headers", "method")

    def __init__(self, method: str, data: Any, headers: Any) -> None:
        self.method = method
        self.data = data
        self.headers = headers


_PREPARER = AWSRequestPreparer()


def _replace(headers: dict[str, Any], name: str, value: Any) -> None:
    """Set ``name`` as botocore's case-blind headers do: any spelling of it
    goes first (and with ``value`` None, that is all)."""
    lower = name.lower()
    for key in [k for k in headers if k.lower() == lower]:
        del headers[key]
    if value is not None:
        headers[name] = value


def _same_request(ours: Any, theirs: Any) -> bool:
    if ours.method != theirs.method or ours.url != theirs.url:
        return False
    if _body_bytes(ours.body) != _body_bytes(theirs.body):
        return False
    a = {k.lower(): str(v) for k, v in ours.headers.items()}
    b = {k.lower(): _text(v) for k, v in theirs.headers.items()}
    return a == b


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _body_bytes(body: Any) -> bytes:
    if body is None:
        return b""
    if isinstance(body, str):
        return body.encode("utf-8")
    if isinstance(body, (bytes, bytearray)):
        return bytes(body)
    return repr(body).encode()


def _hashable(value: Any) -> Any:
    try:
        hash(value)
    except TypeError:
        return json.dumps(value, sort_keys=True, default=repr)
    return value


def install(client: Any) -> DirectCalls | None:
    """Give ``client`` a direct path (once); None where it cannot have one."""
    calls: DirectCalls | None = getattr(client, _ATTRIBUTE, None)
    if calls is not None:
        return calls
    try:
        calls = DirectCalls(client)
    except Exception:
        return None
    setattr(client, _ATTRIBUTE, calls)
    return calls


def direct_call(
    client: Any, operation_name: str, fallback: Callable[..., Any]
) -> Callable[..., Any]:
    """``fallback`` (the client's method for ``operation_name``) sent on the
    direct path where the client has one and the operation can take it."""
    calls: DirectCalls | None = getattr(client, _ATTRIBUTE, None)
    if calls is None:
        return fallback

    async def call(**kwargs: Any) -> Any:
        if calls.usable(operation_name):
            return await calls.call(operation_name, kwargs)
        return await fallback(**kwargs)

    return call
