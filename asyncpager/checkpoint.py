"""The checkpoint of an export: where every stream stands, and the output's
committed state, written together and atomically.

A checkpoint is one JSON file. Each save writes a temporary file beside it,
fsyncs it, renames it over the old one and fsyncs the folder, so a crash at any
instant leaves either the previous checkpoint or the new one, never a mix. It
is created readable by its owner only (0600): it names buckets, tables and
accounts.

A checkpoint belongs to one command: its ``fingerprint`` is a hash of what
decides the output (the command, its sources, parameters, format and output
path). Loading it for another command is refused, so two exports are never
silently mixed into one output.

It never holds credentials: streams carry profile *names* and endpoints, not
keys, and tests search every file written for a known secret.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from asyncpager.errors import ConfigurationError
from asyncpager.sinks._base import fsync_dir
from asyncpager.streams import Stream

__all__ = ["Checkpoint", "CheckpointState", "fingerprint"]

FORMAT_VERSION = 1


def fingerprint(command: Mapping[str, Any]) -> str:
    """A stable hash of what decides an export's output."""
    body = json.dumps(command, sort_keys=True, default=str)
    return hashlib.sha256(body.encode()).hexdigest()


@dataclass
class CheckpointState:
    """What a checkpoint holds."""

    fingerprint: str
    streams: list[Stream]
    sink: dict[str, Any] | None = None
    items_written: int = 0
    complete: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "asyncpager_checkpoint": FORMAT_VERSION,
            "fingerprint": self.fingerprint,
            "complete": self.complete,
            "items_written": self.items_written,
            "sink": self.sink,
            "streams": [s.to_json() for s in self.streams],
            "extra": self.extra,
        }


class Checkpoint:
    """A checkpoint file at ``path``.

    ``durable=False`` saves without waiting for the disk (no ``fsync``): for
    the checkpoint of a scratch part (see :class:`~asyncpager.sinks.ByteSink`),
    read only by the process gathering it while the export runs. Each save
    still replaces the file whole.
    """

    def __init__(self, path: str | os.PathLike[str], durable: bool = True) -> None:
        self.path = Path(path)
        self.durable = durable

    def check_writable(self) -> None:
        """Fail early, before any work, when the checkpoint cannot be written."""
        folder = self.path.parent if str(self.path.parent) else Path(".")
        if not folder.is_dir():
            raise ConfigurationError(f"checkpoint folder does not exist: {folder}")
        if not os.access(folder, os.W_OK):
            raise ConfigurationError(f"checkpoint folder is not writable: {folder}")
        if self.path.exists() and self.path.is_dir():
            raise ConfigurationError(f"checkpoint path is a folder: {self.path}")

    def load(self, expected_fingerprint: str) -> CheckpointState | None:
        """The saved state, ``None`` if there is none yet.

        Raises :class:`ConfigurationError` for a corrupt file or one written
        for another command.
        """
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise ConfigurationError(f"cannot read checkpoint {self.path}: {exc}") from None
        state = self._parse(raw)
        if state.fingerprint != expected_fingerprint:
            raise ConfigurationError(
                f"checkpoint {self.path} was written for another command or plan; "
                "use another --checkpoint path or delete it"
            )
        return state

    def peek(self) -> CheckpointState | None:
        """The saved state, whichever command saved it; ``None`` when there
        is none or it cannot be read (for a look at another process's
        checkpoint while it runs: each save replaces the file whole)."""
        try:
            return self._parse(self.path.read_bytes())
        except (OSError, ConfigurationError):
            return None

    def _parse(self, raw: bytes) -> CheckpointState:
        try:
            data = json.loads(raw)
            if not isinstance(data, dict) or data.get("asyncpager_checkpoint") != FORMAT_VERSION:
                raise ValueError("not an asyncpager checkpoint")
            return CheckpointState(
                fingerprint=str(data["fingerprint"]),
                streams=[Stream.from_json(s) for s in data["streams"]],
                sink=data.get("sink"),
                items_written=int(data.get("items_written", 0)),
                complete=bool(data.get("complete", False)),
                extra=dict(data.get("extra") or {}),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigurationError(f"corrupt checkpoint {self.path}: {exc}") from None

    def save(self, state: CheckpointState) -> None:
        """Replace the checkpoint atomically (write, fsync, rename, fsync folder)."""
        body = json.dumps(state.to_json(), sort_keys=True, separators=(",", ":")).encode()
        folder = self.path.parent if str(self.path.parent) else Path(".")
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=folder)
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(body)
                handle.flush()
                if self.durable:
                    os.fsync(handle.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        if self.durable:
            fsync_dir(str(folder))
