"""Compiled response parsers: botocore's output, for a fraction of its CPU.

botocore spends far more CPU parsing a page than the network costs in time:
a 1,000-key ``ListObjectsV2`` page goes through ``dateutil`` once per
``LastModified`` and through a generic, reflective walk of the output shape
for every value; a 1,000-item DynamoDB ``Scan`` page calls a handler for
every attribute of every item. One core then caps the whole process near a
dozen pages per second, whatever the concurrency.

This package compiles each operation's output shape, once, into plain
Python that does only the conversions the shape needs, on top of
ElementTree or orjson/``json``, and installs it under a client::

    import aiobotocore.session
    from asyncpager.parsers import install

    async with session.create_client("s3") as s3:
        install(s3)  # same pages, same types, same key order
        ...

Pages are identical to botocore's, value for value and type for type
(``datetime`` zones included), which differential tests hold against
botocore for generated responses of many operations across the ``rest-xml``,
``query``, ``ec2``, ``json`` and ``rest-json`` protocols and against real
answers from moto and the local endpoint. Whatever is not compiled (other
protocols, streaming bodies, event streams, XML attributes), every error
response and any response the compiled code does not expect goes to
botocore's own parser.

Opting out: ``ASYNCPAGER_FAST_PARSE=0`` in the environment, or
``install(client, enabled=False)``, or :func:`uninstall`.
"""

from __future__ import annotations

from asyncpager.parsers._compiler import RawMode, compile_operation, generated_source
from asyncpager.parsers._install import (
    ENV_VAR,
    FastParserFactory,
    fast_parse_enabled,
    freeze_pages,
    hold_frozen_pages,
    install,
    is_installed,
    uninstall,
)
from asyncpager.parsers._timestamps import iso_timestamp, parse_timestamp

__all__ = [
    "ENV_VAR",
    "FastParserFactory",
    "RawMode",
    "compile_operation",
    "fast_parse_enabled",
    "freeze_pages",
    "generated_source",
    "hold_frozen_pages",
    "install",
    "is_installed",
    "iso_timestamp",
    "parse_timestamp",
    "uninstall",
]
