"""Benchmarks of asyncpager against boto3 and its peers (see README.md)."""


def compile_asyncpager() -> None:
    """Write asyncpager's bytecode before anything is timed.

    An installed package has it (pip compiles it on install), and so has a
    source tree once imported, unless ``PYTHONDONTWRITEBYTECODE`` is set, as
    it is on some machines (this one): then every command compiled
    asyncpager's modules as it started, 0.08-0.1 s of CPU (a quarter of the
    imports) that no user pays. ``compileall`` writes it whatever that
    setting says, and Python reads it whatever it says.
    """
    import compileall
    import os

    import asyncpager

    compileall.compile_dir(os.path.dirname(asyncpager.__file__), quiet=1)


def checksum_share(text: str) -> float:
    """An ``argparse`` type: the share (0 to 1) of S3 objects listed with
    the checksum S3 adds to every new object (``--checksums``)."""
    import argparse

    share = float(text)
    if not 0.0 <= share <= 1.0:
        raise argparse.ArgumentTypeError(f"a share of the objects, 0 to 1: {text}")
    return share
