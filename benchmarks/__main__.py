"""``python -m benchmarks``: the whole suite; ``--help`` for the options."""

import sys

from benchmarks.suite import main

sys.exit(main())
