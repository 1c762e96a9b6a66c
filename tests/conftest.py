"""Shared fixtures: a real moto server on 127.0.0.1 and a free port."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

# Credentials for the local endpoints only; never real ones. Set before any
# botocore session is created so nothing reads the machine's own profile.
os.environ["AWS_ACCESS_KEY_ID"] = "testing"
os.environ["AWS_SECRET_ACCESS_KEY"] = "testing"
os.environ["AWS_SESSION_TOKEN"] = "testing"
os.environ["AWS_DEFAULT_REGION"] = "us-east-1"
os.environ.pop("AWS_PROFILE", None)
os.environ["AWS_CONFIG_FILE"] = os.devnull
os.environ["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull
os.environ["AWS_EC2_METADATA_DISABLED"] = "true"


import logging

logging.getLogger("werkzeug").setLevel(logging.WARNING)


def _without_moto_stubber() -> None:
    """Importing moto adds its in-process stubber to every botocore client
    made afterwards (a ``before-send`` handler). The tests talk to moto's
    server over HTTP and never mock in-process, so the clients here are made
    as they are without moto installed: with the handlers a user's clients
    have, and so with the direct request path (see asyncpager._direct),
    whichever test imported moto first."""
    import botocore.handlers
    from moto.core.models import botocore_stubber

    builtins = botocore.handlers.BUILTIN_HANDLERS
    builtins[:] = [entry for entry in builtins if entry[1] is not botocore_stubber]


_without_moto_stubber()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def local_zone() -> Iterator[Callable[[str], None]]:
    """Sets the process's time zone (``TZ``) for a test, then puts it back."""
    saved = os.environ.get("TZ")

    def use(zone: str) -> None:
        os.environ["TZ"] = zone
        time.tzset()

    try:
        yield use
    finally:
        if saved is None:
            os.environ.pop("TZ", None)
        else:
            os.environ["TZ"] = saved
        time.tzset()


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    """One moto server for the whole session; tests use unique resource names."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def boto3_client(moto_server: str) -> Any:
    import boto3

    def make(service: str, region: str = "us-east-1") -> Any:
        return boto3.client(service, region_name=region, endpoint_url=moto_server)

    return make


@pytest.fixture
async def aio_client(moto_server: str) -> AsyncIterator[Any]:
    """A factory of aiobotocore clients, all closed when the test ends."""
    from contextlib import AsyncExitStack

    from aiobotocore.session import get_session

    session = get_session()
    async with AsyncExitStack() as stack:

        async def make(service: str, region: str = "us-east-1") -> Any:
            return await stack.enter_async_context(
                session.create_client(service, region_name=region, endpoint_url=moto_server)
            )

        yield make


def saved_at(path: Path) -> tuple[int, int] | None:
    """Which save of ``path`` is there: each save of a checkpoint is a new
    file renamed into place (``None``: not saved yet)."""
    try:
        found = path.stat()
    except FileNotFoundError:
        return None
    return found.st_ino, found.st_mtime_ns


def create_table(ddb: Any, name: str, key_type: str = "S") -> str:
    """A pay-per-request table ``name`` keyed by ``pk`` (a string, or
    ``"B"``: bytes), made with a boto3 client; returns its name."""
    ddb.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": key_type}],
        BillingMode="PAY_PER_REQUEST",
    )
    return name


def put_s3_keys(s3: Any, bucket: str, keys: list[str], body: bytes = b"x") -> None:
    """Upload ``keys``; those moto's server cannot take in a URL path (a
    newline) go through a browser-style POST upload, where the key is a form
    field."""
    import requests

    for key in keys:
        if "\n" in key:
            post = s3.generate_presigned_post(bucket, key)
            answer = requests.post(
                post["url"], data=post["fields"], files={"file": ("f", body)}, timeout=30
            )
            answer.raise_for_status()
        else:
            s3.put_object(Bucket=bucket, Key=key, Body=body)
