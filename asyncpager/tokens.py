"""Pagination tokens in botocore's own format.

A token is the base64 of a JSON object mapping each of the operation's input
token names to its value, plus ``boto_truncate_amount`` when ``MaxItems`` cut a
page in the middle (bytes values are base64-encoded and listed under
``boto_encoded_keys``). We reuse botocore's encoder and decoder instead of a
copy, so a token taken from a boto3 paginator resumes here and the other way
round, now and after botocore changes the format.
"""

from __future__ import annotations

import binascii
import json
from collections.abc import Mapping, Sequence
from typing import Any

from botocore.paginate import TokenDecoder, TokenEncoder

from asyncpager.errors import ConfigurationError

__all__ = ["ResumePoint", "decode_token", "encode_token"]

_TRUNCATE = "boto_truncate_amount"
_encoder = TokenEncoder()
_decoder = TokenDecoder()


class ResumePoint:
    """A decoded token: the service's input token values and the in-page offset."""

    __slots__ = ("offset", "values")

    def __init__(self, values: dict[str, Any], offset: int = 0) -> None:
        self.values = values
        self.offset = offset

    def __repr__(self) -> str:
        return f"ResumePoint(values={self.values!r}, offset={self.offset})"

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, ResumePoint)
            and self.values == other.values
            and self.offset == other.offset
        )

    __hash__ = None  # type: ignore[assignment]


def encode_token(values: Mapping[str, Any], offset: int | None = None) -> str:
    """Encode service token values (and an in-page offset) as botocore does.

    botocore writes the offset whenever ``MaxItems`` cut a page, even when it
    is 0; ``None`` leaves it out, as at a page boundary.
    """
    token = dict(values)
    if offset is not None:
        token[_TRUNCATE] = offset
    return str(_encoder.encode(token))


def decode_token(token: str, input_tokens: Sequence[str]) -> ResumePoint:
    """Decode a token made by botocore or by :func:`encode_token`.

    Also accepts botocore's deprecated ``a___b___3`` format, as boto3 does.
    Raises :class:`ConfigurationError` when the token cannot belong to an
    operation whose input tokens are ``input_tokens``.
    """
    if not isinstance(token, str) or not token:
        raise ConfigurationError(f"bad StartingToken: {token!r}")
    try:
        decoded = _decoder.decode(token)
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError, json.JSONDecodeError):
        return _decode_deprecated(token, input_tokens)
    if not isinstance(decoded, dict):
        raise ConfigurationError(f"bad StartingToken: {token!r}")
    offset = decoded.pop(_TRUNCATE, 0)
    if not isinstance(offset, int) or offset < 0:
        raise ConfigurationError(f"bad StartingToken (offset): {token!r}")
    unknown = set(decoded) - set(input_tokens)
    if unknown:
        raise ConfigurationError(
            f"bad StartingToken: it holds {sorted(unknown)}, this operation takes "
            f"{list(input_tokens)}"
        )
    values = {name: decoded.get(name) for name in input_tokens}
    return ResumePoint(values, offset)


def _decode_deprecated(token: str, input_tokens: Sequence[str]) -> ResumePoint:
    parts: list[str] = token.split("___")
    offset = 0
    if len(parts) == len(input_tokens) + 1:
        try:
            offset = int(parts[-1])
            parts = parts[:-1]
        except ValueError:
            parts = [token]
    if len(parts) > len(input_tokens):
        raise ConfigurationError(f"bad StartingToken: {token!r}")
    values: dict[str, Any] = {}
    for i, name in enumerate(input_tokens):
        part = parts[i] if i < len(parts) else None
        values[name] = None if part in (None, "None") else part
    return ResumePoint(values, offset)
