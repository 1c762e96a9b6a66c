"""Parts of a ``--workers`` export gathered into one output as they are
committed (asyncpager.sinks.join.PartGatherer).

What must hold: only what a part's checkpoint vouches for is copied while
its worker runs; at the end the rest of every part follows; the output is
then every part's bytes exactly once, cut only at commits; and a gathering
that is given up leaves the parts as they were and no scratch file.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from asyncpager.checkpoint import Checkpoint, CheckpointState
from asyncpager.sinks.join import PartGatherer, committed_size


def commit(checkpoint: Path, size: int | None, complete: bool = False) -> None:
    """What a worker saves at a commit (a complete one says no size)."""
    sink = {"closed": True} if complete else {"size": size, "records": 0}
    Checkpoint(checkpoint).save(CheckpointState("fp", [], sink=sink, complete=complete))


@pytest.fixture
def two_parts(tmp_path: Path) -> tuple[list[Path], list[Path], PartGatherer]:
    parts = [tmp_path / "part-0000.jsonl", tmp_path / "part-0001.jsonl"]
    checkpoints = [tmp_path / "part-0000.ckpt", tmp_path / "part-0001.ckpt"]
    return parts, checkpoints, PartGatherer(parts, checkpoints, tmp_path / "gathering.tmp")


def test_only_committed_bytes_are_gathered_and_the_rest_at_the_end(
    tmp_path: Path, two_parts: tuple[list[Path], list[Path], PartGatherer]
) -> None:
    parts, checkpoints, gatherer = two_parts
    parts[0].write_bytes(b'{"a":1}\n{"a":2}\n')
    parts[1].write_bytes(b'{"b":1}\n')
    # Nothing committed yet: nothing is copied, not even the bytes on disk.
    assert gatherer.gather() == 0
    commit(checkpoints[0], 8)  # the first line only
    assert gatherer.gather() == 8
    assert (tmp_path / "gathering.tmp").read_bytes() == b'{"a":1}\n'
    # The same commit again adds nothing.
    assert gatherer.gather() == 0
    with parts[1].open("ab") as handle:
        handle.write(b'{"b":2}\n')
    commit(checkpoints[1], 16)
    commit(checkpoints[0], 16)
    assert gatherer.gather() == 24
    with parts[0].open("ab") as handle:
        handle.write(b'{"a":3}\n')  # after the last commit
    commit(checkpoints[0], None, complete=True)
    output = tmp_path / "out.jsonl"
    gatherer.finish(str(output))
    assert output.read_bytes() == (
        b'{"a":1}\n' + b'{"a":2}\n' + b'{"b":1}\n{"b":2}\n' + b'{"a":3}\n'
    )
    assert not (tmp_path / "gathering.tmp").exists()
    # The parts are untouched: a crash before the main checkpoint says
    # "complete" still finds them whole.
    assert parts[0].read_bytes() == b'{"a":1}\n{"a":2}\n{"a":3}\n'


def test_gzip_members_gathered_at_commits_read_as_one_file(
    tmp_path: Path, two_parts: tuple[list[Path], list[Path], PartGatherer]
) -> None:
    parts, checkpoints, gatherer = two_parts
    lines = [[f'{{"k":"{p}-{n}"}}\n'.encode() for n in range(6)] for p in range(2)]
    for part in parts:
        part.write_bytes(b"")
    for step in range(3):
        for p, part in enumerate(parts):
            with part.open("ab") as handle:
                handle.write(gzip.compress(b"".join(lines[p][2 * step : 2 * step + 2])))
            commit(checkpoints[p], part.stat().st_size)
        gatherer.gather()
    output = tmp_path / "out.jsonl.gz"
    gatherer.finish(str(output))
    got = gzip.decompress(output.read_bytes()).splitlines(keepends=True)
    assert sorted(got) == sorted(lines[0] + lines[1])
    assert got[:2] == lines[0][:2]  # each part's commits keep their order


def test_a_part_shorter_than_its_checkpoint_is_an_error(
    two_parts: tuple[list[Path], list[Path], PartGatherer],
) -> None:
    parts, checkpoints, gatherer = two_parts
    parts[0].write_bytes(b"{}\n")
    commit(checkpoints[0], 10)
    with pytest.raises(OSError, match="shorter than its checkpoint"):
        gatherer.gather()
    gatherer.close()


def test_giving_up_leaves_the_parts_and_no_scratch_file(
    tmp_path: Path, two_parts: tuple[list[Path], list[Path], PartGatherer]
) -> None:
    parts, checkpoints, gatherer = two_parts
    parts[0].write_bytes(b'{"a":1}\n')
    commit(checkpoints[0], 8)
    assert gatherer.gather() == 8
    gatherer.close()
    assert not (tmp_path / "gathering.tmp").exists()
    assert parts[0].read_bytes() == b'{"a":1}\n'
    gatherer.close()  # twice is fine


def test_committed_size_of_missing_torn_and_complete_checkpoints(tmp_path: Path) -> None:
    path = tmp_path / "part.ckpt"
    assert committed_size(path) is None
    path.write_text('{"sink": {"size"')
    assert committed_size(path) is None
    commit(path, None, complete=True)
    assert committed_size(path) is None
    commit(path, 123)
    assert committed_size(path) == 123


def test_gathered_into_standard_output_as_committed(
    tmp_path: Path, capfdbinary: pytest.CaptureFixture[bytes]
) -> None:
    parts = [tmp_path / "part-0000.jsonl"]
    checkpoints = [tmp_path / "part-0000.ckpt"]
    gatherer = PartGatherer(parts, checkpoints, None)
    parts[0].write_bytes(b'{"a":1}\n{"a":2}\n')
    commit(checkpoints[0], 8)
    assert gatherer.gather() == 8
    assert capfdbinary.readouterr().out == b'{"a":1}\n'
    gatherer.finish(None)
    assert capfdbinary.readouterr().out == b'{"a":2}\n'
    gatherer.close()  # nothing to remove
    assert parts[0].exists()
