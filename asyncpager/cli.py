"""The ``asyncpager`` command."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    print("asyncpager: no command yet", file=sys.stderr)
    return 2
