"""``python -m asyncpager``: the same as the ``asyncpager`` command."""

from asyncpager.cli import run

run()
