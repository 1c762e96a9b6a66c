"""What the clients of one session have in common, built once.

botocore builds every client from nothing. For EC2 that is about 30 ms of
CPU per client, three quarters of it spent building, again, the service
model and the client class: some 800 methods, each with an operation model
for its docstring. A planner that lists one service in 17 regions pays it
17 times, and the duplicates stay on the heap, where the garbage collector
walks them for the rest of the run. Two things are the same for every
client of one service made from one session:

* the **service model** (``botocore.model.ServiceModel``): read-only once
  built; its caches (operation models, shapes) then fill once for every
  region, and the compiled parsers meet the same shapes;
* the **client class**: its methods only name their operation; everything
  that differs between clients (region, endpoint, signer, handlers) lives
  on the instance.

One thing is the same for every session of the process: the **data loader**
(the JSON files botocore reads: models, endpoints, partitions, rule sets),
so that planning, which reads the same files through a session of its own,
does not decode them a second time (:func:`share_loader`).

One is the same for every client with the same TLS settings: the **SSL
context**. aiobotocore builds one per client, on its first request, loading
the whole CA bundle each time (about 45 ms of CPU); 17 regions pay it 17
times, although TLS contexts are made to be shared by many connections
(:class:`SslContexts`).

And one is the same for every request of a client: its **User-Agent**
string. botocore assembles it from about fifteen parts, sanitising each,
twice per request (once for the request, once more in a handler that adds
the features the request used): a twentieth of a small request's CPU.
:func:`cache_user_agent` remembers the string per set of features, the
only input that changes from one request to the next.

aiobotocore's session makes a new ``AioClientCreator`` inside each
``create_client`` call, so there is no instance to configure. The creator's
two methods that build the model and the class are therefore wrapped once,
at the class, and the wrappers do exactly what botocore does unless the current
context names a :class:`SharedParts` (:func:`sharing`, set by the Fetcher
around its own ``create_client`` calls). Every other client in the process
is made as before.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any

__all__ = [
    "ClientSharing",
    "SharedParts",
    "SslContexts",
    "cache_user_agent",
    "preload_service_data",
    "share_loader",
    "sharing",
]

_CURRENT: ContextVar[SharedParts | None] = ContextVar("asyncpager_shared_parts", default=None)
_WRAPPED = "_asyncpager_shares_parts"
#: One loader per data path, for the whole process.
_LOADERS: dict[Any, Any] = {}


class SharedParts:
    """Service models and client classes of the clients of one session.

    Keep one per session: a client class comes out of the session's
    ``creating-client-class`` handlers, which another session may not have.
    """

    __slots__ = ("classes", "models")

    def __init__(self) -> None:
        self.models: dict[tuple[str, str | None], Any] = {}
        # Keyed by the model the class was built from, kept alongside so the
        # id cannot be reused by another model.
        self.classes: dict[tuple[str, int], tuple[Any, type]] = {}


@contextlib.contextmanager
def sharing(parts: SharedParts) -> Iterator[None]:
    """Clients created inside this block (in this context) share ``parts``."""
    _wrap_creator()
    token = _CURRENT.set(parts)
    try:
        yield
    finally:
        _CURRENT.reset(token)


class ClientSharing:
    """Everything a set of clients (a Fetcher's) share, in one place::

    with sharing.creating(session):
        client = await ... session.create_client(...) ...
    sharing.made(client)
    """

    def __init__(self) -> None:
        self._parts: dict[int, tuple[Any, SharedParts]] = {}
        self._ssl = SslContexts()

    def creating(self, session: Any) -> contextlib.AbstractContextManager[None]:
        """Clients ``session`` creates in this block share their model and class."""
        entry = self._parts.get(id(session))
        if entry is None or entry[0] is not session:
            entry = self._parts[id(session)] = (session, SharedParts())
        return sharing(entry[1])

    def made(self, client: Any) -> None:
        """``client`` takes its SSL context from the set and caches its User-Agent."""
        self._ssl.share(client)
        cache_user_agent(client)


def share_loader(session: Any) -> None:
    """Make ``session`` read botocore's data files through the process's
    loader for its data path (the first session to ask provides it).

    Call it before the session loads anything. A session whose configuration
    cannot be read (say, a missing profile) is left alone: creating a client
    then raises botocore's own error, as before.
    """
    try:
        path = session.get_config_variable("data_path")
        loader = _LOADERS.get(path)
        if loader is None:
            _LOADERS[path] = session.get_component("data_loader")
        elif session.get_component("data_loader") is not loader:
            session.register_component("data_loader", loader)
    except Exception:
        return


def preload_service_data(service: str) -> None:
    """Decode botocore's data files for ``service`` (its model, endpoint
    rules and paginators, and the partitions) into the process's shared
    loader (see :func:`share_loader`).

    A process that forks its workers afterwards decodes them once for all:
    the first S3 client of a process that imported everything costs about
    0.25 CPU-s cold and 0.09 warm, most of it decoding these files, and each
    ``--workers`` process and the coordinator's sampling client make one.
    A file botocore cannot find is left for the client to report.
    """
    import botocore.session

    try:
        session = botocore.session.Session()
        share_loader(session)
        loader = session.get_component("data_loader")
    except Exception:
        return  # a configuration botocore cannot read: the command reports it
    for name in ("partitions", "sdk-default-configuration", "endpoints"):
        with contextlib.suppress(Exception):
            loader.load_data(name)
    # The calls botocore makes, so that their cache entries are the ones hit.
    for kind in ("service-2", "endpoint-rule-set-1"):
        with contextlib.suppress(Exception):
            loader.load_service_model(service, kind, api_version=None)
    with contextlib.suppress(Exception):
        version = session.get_service_model(service).api_version
        loader.load_service_model(service, "paginators-1", version)


def _wrap_creator() -> None:
    from aiobotocore.client import AioClientCreator

    if getattr(AioClientCreator, _WRAPPED, False):
        return
    load_model = AioClientCreator._load_service_model
    make_class = AioClientCreator._create_client_class

    def _load_service_model(self: Any, service_name: str, api_version: Any = None) -> Any:
        parts = _CURRENT.get()
        if parts is None:
            return load_model(self, service_name, api_version)
        key = (service_name, api_version)
        model = parts.models.get(key)
        if model is None:
            model = parts.models[key] = load_model(self, service_name, api_version)
        return model

    # Async in every aiobotocore this package supports (2.25 and up).
    async def _create_client_class(self: Any, service_name: str, service_model: Any) -> Any:
        parts = _CURRENT.get()
        if parts is None:
            return await make_class(self, service_name, service_model)
        entry = parts.classes.get((service_name, id(service_model)))
        if entry is not None and entry[0] is service_model:
            return entry[1]
        cls = await make_class(self, service_name, service_model)
        parts.classes[service_name, id(service_model)] = (service_model, cls)
        return cls

    AioClientCreator._load_service_model = _load_service_model
    AioClientCreator._create_client_class = _create_client_class
    setattr(AioClientCreator, _WRAPPED, True)


class SslContexts:
    """The SSL contexts of a set of clients, one per distinct TLS setting.

    :meth:`share` makes a client's HTTP session take its contexts from here.
    aiobotocore builds them in a worker thread when a client first connects,
    and the first requests of many clients go out at once: each setting is
    built once, under a lock, and the others wait for it. (aiobotocore
    before 3 builds them inline, in a method that also makes the connector:
    its clients are left as they are.)
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._built: dict[tuple[Any, ...], Any] = {}
        self._building: dict[tuple[Any, ...], threading.Lock] = {}

    def share(self, client: Any) -> bool:
        """Whether ``client``'s contexts now come from here (only aiobotocore's
        own aiohttp session and asyncpager's LeanHTTPSession, whose inputs are
        known, are changed)."""
        from aiobotocore.httpsession import AIOHTTPSession

        from asyncpager._http import LeanHTTPSession

        http: Any = getattr(getattr(client, "_endpoint", None), "http_session", None)
        if type(http) not in (AIOHTTPSession, LeanHTTPSession):
            return False
        build = getattr(http, "_build_ssl_contexts", None)
        settings = _tls_settings(http)
        if build is None or settings is None:
            return False

        def _build_ssl_contexts(proxy_url: Any) -> Any:
            return self._get((*settings, proxy_url), build, proxy_url)

        http._build_ssl_contexts = _build_ssl_contexts
        return True

    def _get(self, key: tuple[Any, ...], build: Any, proxy_url: Any) -> Any:
        built = self._built.get(key)
        if built is not None:
            return built
        with self._lock:
            lock = self._building.setdefault(key, threading.Lock())
        with lock:
            built = self._built.get(key)
            if built is None:
                built = self._built[key] = build(proxy_url)
        return built


def _tls_settings(http: Any) -> tuple[Any, ...] | None:
    """Everything aiobotocore's ``_build_ssl_contexts`` reads besides the
    proxy URL, or ``None`` when the session does not look as expected."""
    try:
        proxy = http._proxy_config.settings or {}
        proxy_cert = proxy.get("proxy_client_cert")
        return (
            http._verify,
            http._cert_file,
            http._key_file,
            proxy.get("proxy_ca_bundle"),
            tuple(proxy_cert) if isinstance(proxy_cert, list) else proxy_cert,
        )
    except AttributeError:
        return None


def cache_user_agent(client: Any) -> bool:
    """Make ``client`` build its User-Agent string once per set of features.

    botocore's ``UserAgentString.to_string`` reads the client's fixed
    settings (SDK, platform, configuration, application id) and one thing
    that may change per request: the features the client and the request's
    context have registered. The string is kept per set of features, so a
    request that registers a new one gets botocore's string for it. Returns
    whether the client's creator is botocore's, and so now cached.
    """
    from botocore.context import get_context
    from botocore.useragent import UserAgentString

    creator: Any = getattr(client, "_user_agent_creator", None)
    if type(creator) is not UserAgentString or not hasattr(creator, "_client_features"):
        return False
    build = creator.to_string
    strings: dict[frozenset[str], str] = {}

    def to_string() -> str:
        context = get_context()
        features = frozenset(creator._client_features or ())
        if context is not None and context.features:
            features = features.union(context.features)
        text = strings.get(features)
        if text is None:
            text = strings[features] = build()
        return text

    # Both uses (the request dict and the request-created handler) call the
    # instance's to_string.
    creator.to_string = to_string
    return True
