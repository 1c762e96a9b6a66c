"""The live progress display of the export command (rich, on stderr).

Drawn only on a terminal unless asked for, so that piped runs print nothing
but errors on stderr. It reads the engine's :class:`~asyncpager.engine.Stats`
through the fetcher's ``on_stats`` hook; it never sees a request, a header or
a credential.
"""

from __future__ import annotations

import sys
from types import TracebackType
from typing import Any

from asyncpager.engine import Stats

__all__ = ["Progress", "describe", "describe_many"]


def _rate(value: float) -> str:
    return f"{value:,.0f}"


def describe(stats: Stats, total_items: int | None = None) -> str:
    """One line of figures: items, pages, rate, streams, throttles, retries, ETA."""
    parts = [
        f"{stats.items:,} items",
        f"{stats.pages:,} pages",
        f"{_rate(stats.items_per_second)} items/s",
        f"streams {stats.streams_done:,}/{stats.streams_total:,}",
        f"throttles {stats.throttles:,}",
        f"retries {stats.retries:,}",
    ]
    if stats.streams_failed:
        parts.append(f"failed {stats.streams_failed:,}")
    if total_items and stats.items_per_second > 0:
        left = max(0, total_items - stats.items) / stats.items_per_second
        parts.append(f"~{_duration(left)} left of ~{total_items:,}")
    return " · ".join(parts)


def describe_many(parts: list[dict[str, Any]]) -> str:
    """One line for the figures of several worker processes together."""

    def total(key: str) -> float:
        return sum(float(p.get(key) or 0) for p in parts)

    elapsed = max((float(p.get("elapsed") or 0) for p in parts), default=0.0)
    rate = total("items") / elapsed if elapsed > 0 else 0.0
    return " · ".join(
        [
            f"{int(total('items')):,} items",
            f"{int(total('pages')):,} pages",
            f"{_rate(rate)} items/s",
            f"streams {int(total('streams_done')):,}/{int(total('streams_total')):,}",
            f"throttles {int(total('throttles')):,}",
            f"retries {int(total('retries')):,}",
            f"{len(parts)} workers",
        ]
    )


def _duration(seconds: float) -> str:
    seconds = int(seconds + 0.5)
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


class Progress:
    """A live line on stderr while an export runs, and a summary at the end."""

    def __init__(self, *, enabled: bool, total_items: int | None = None) -> None:
        self.enabled = enabled
        self.total_items = total_items
        self._live: Any = None
        self._console: Any = None

    def __enter__(self) -> Progress:
        if self.enabled:
            from rich.console import Console
            from rich.live import Live
            from rich.text import Text

            self._console = Console(stderr=True)
            self._live = Live(
                Text("starting…"), console=self._console, refresh_per_second=4, transient=True
            )
            self._live.__enter__()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._live is not None:
            self._live.__exit__(exc_type, exc, tb)
            self._live = None

    def update(self, stats: Stats) -> None:
        if self._live is not None:
            from rich.text import Text

            self._live.update(Text(describe(stats, self.total_items)))

    def update_many(self, line: str) -> None:
        if self._live is not None:
            from rich.text import Text

            self._live.update(Text(line))

    def say(self, line: str) -> None:
        if self.enabled:
            print(line, file=sys.stderr)

    def summary(self, stats: Stats, written: int) -> None:
        if self.enabled:
            print(
                f"asyncpager: wrote {written:,} items in {stats.elapsed:.1f}s ({describe(stats)})",
                file=sys.stderr,
            )
