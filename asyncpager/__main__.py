"""``python -m asyncpager``: the same as the ``asyncpager`` command."""

import sys

from asyncpager.cli import main

sys.exit(main())
