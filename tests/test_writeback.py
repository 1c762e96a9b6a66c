"""Early writeback and blocks given back (asyncpager._writeback), and the
files that use them: a durable sink starts its writeback as it writes and
fsyncs at commits; a scratch sink and checkpoint never wait for the disk;
a gatherer of scratch parts frees what it copied.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from asyncpager import _writeback
from asyncpager.checkpoint import Checkpoint, CheckpointState
from asyncpager.sinks import JsonlSink
from asyncpager.sinks import _base as sink_base
from asyncpager.sinks.join import PartGatherer

BLOCK = 4096


def punches(folder: Path) -> bool:
    """Whether the file system under ``folder`` frees a block on request."""
    probe = folder / "probe"
    probe.write_bytes(b"x" * 4 * BLOCK)
    with probe.open("r+b") as handle:
        os.fsync(handle.fileno())
        freed = _writeback.give_back(handle.fileno(), 0, 4 * BLOCK)
    probe.unlink()
    return freed == 4 * BLOCK


def allocated(path: Path) -> int:
    return path.stat().st_blocks * 512


@pytest.fixture
def punching(tmp_path: Path) -> Path:
    if not punches(tmp_path):
        pytest.skip("this file system does not free blocks on request")
    return tmp_path


def test_only_whole_blocks_inside_the_range_are_given_back(punching: Path) -> None:
    path = punching / "f"
    body = bytes(range(256)) * (5 * BLOCK // 256)
    path.write_bytes(body)
    with path.open("r+b") as handle:
        os.fsync(handle.fileno())
        before = allocated(path)
        # From byte 100 over three blocks: blocks 1 and 2 lie wholly inside.
        assert _writeback.give_back(handle.fileno(), 100, 3 * BLOCK) == 2 * BLOCK
        # Less than a block, or a block cut at both ends: nothing.
        assert _writeback.give_back(handle.fileno(), 3 * BLOCK + 1, BLOCK) == 0
        assert _writeback.give_back(handle.fileno(), 0, BLOCK - 1) == 0
    data = path.read_bytes()
    assert len(data) == len(body)  # the size stays
    assert data[:BLOCK] == body[:BLOCK]
    assert data[BLOCK : 3 * BLOCK] == bytes(2 * BLOCK)
    assert data[3 * BLOCK :] == body[3 * BLOCK :]
    assert before - allocated(path) == 2 * BLOCK


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux only")
def test_writeback_starts_and_the_bytes_stay(tmp_path: Path) -> None:
    path = tmp_path / "f"
    with path.open("wb") as handle:
        handle.write(b"a" * (3 * BLOCK))
        handle.flush()
        assert _writeback.start_writeback(handle.fileno(), 0, 3 * BLOCK)
        assert not _writeback.start_writeback(handle.fileno(), 0, 0)
    assert path.read_bytes() == b"a" * (3 * BLOCK)


Calls = list[tuple[int, int]]


@pytest.fixture
def writebacks(monkeypatch: pytest.MonkeyPatch) -> Calls:
    """The ranges a sink starts writing back (each still started)."""
    calls: Calls = []
    real = _writeback.start_writeback

    def record(fd: int, offset: int, count: int) -> bool:
        calls.append((offset, count))
        return real(fd, offset, count)

    monkeypatch.setattr(sink_base, "start_writeback", record)
    return calls


@pytest.fixture
def fsyncs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Every fsync of the process (each still made)."""
    calls: list[int] = []
    real: Callable[[int], None] = os.fsync

    def record(fd: int) -> None:
        calls.append(fd)
        real(fd)

    monkeypatch.setattr(os, "fsync", record)
    return calls


def lines(n: int, width: int = 1000) -> list[dict[str, str]]:
    return [{"k": f"{i:08d}" + "x" * width} for i in range(n)]


def test_a_durable_sink_starts_writing_back_as_it_goes(
    tmp_path: Path, writebacks: Calls, fsyncs: list[int]
) -> None:
    every = _writeback.WRITEBACK_EVERY
    sink = JsonlSink(str(tmp_path / "out.jsonl"), buffer_size=1 << 16)
    sink.open(None)
    records = lines(100)  # about 100 kB
    for _ in range(4 * every // 100_000):
        if len(writebacks) == 2:
            break
        sink.write(records)
    # Each range begins where the last one ended, none shorter than the step.
    assert len(writebacks) == 2
    assert writebacks[0][0] == 0
    assert writebacks[1][0] == sum(writebacks[0])
    assert all(every <= count < every + 200_000 for _, count in writebacks)
    assert fsyncs == []
    state = sink.commit()
    assert fsyncs  # the commit waits for the disk
    for _ in range(4 * every // 100_000):
        if len(writebacks) == 3:
            break
        sink.write(records)
    # After a commit, from where it left off: its fsync wrote the rest.
    assert writebacks[2][0] == state["size"]
    sink.close()
    assert (tmp_path / "out.jsonl").read_bytes().count(b"\n") == sink.state["records"]  # type: ignore[index]


def test_a_scratch_sink_and_its_checkpoint_never_wait_for_the_disk(
    tmp_path: Path, writebacks: Calls, fsyncs: list[int]
) -> None:
    path = tmp_path / "part.jsonl"
    sink = JsonlSink(str(path), buffer_size=1 << 16, durable=False)
    sink.open(None)
    for _ in range(100):
        sink.write(lines(100))
    state = sink.commit()
    checkpoint = Checkpoint(tmp_path / "part.ckpt", durable=False)
    checkpoint.save(CheckpointState("fp", [], sink=state))
    assert fsyncs == []
    assert writebacks == []
    # What a commit says is what any reader of the file finds.
    assert path.stat().st_size == state["size"]
    assert path.read_bytes().count(b"\n") == state["records"] == 10_000
    assert checkpoint.peek() == CheckpointState("fp", [], sink=state)
    # More, then given up: cut back to the commit, as a durable one is.
    sink.write(lines(3))
    sink.abort()
    assert path.stat().st_size == state["size"]
    assert fsyncs == []


def test_a_durable_checkpoint_waits_for_the_disk(tmp_path: Path, fsyncs: list[int]) -> None:
    Checkpoint(tmp_path / "cp.json").save(CheckpointState("fp", []))
    assert fsyncs


def _commit(checkpoint: Path, size: int) -> None:
    sink = {"size": size, "records": 0}
    Checkpoint(checkpoint).save(CheckpointState("fp", [], sink=sink))


def test_scratch_parts_give_back_what_was_gathered(punching: Path) -> None:
    parts = [punching / "part-0000.jsonl", punching / "part-0001.jsonl"]
    checkpoints = [punching / "part-0000.ckpt", punching / "part-0001.ckpt"]
    bodies = [b'{"a":"' + b"a" * 98 + b'"}\n', b'{"b":"' + b"b" * 98 + b'"}\n']
    line = len(bodies[0])  # 107 bytes
    for part, body in zip(parts, bodies, strict=True):
        part.write_bytes(body * 200)  # 21,400 bytes: five whole blocks and some
        with part.open("rb") as handle:
            os.fsync(handle.fileno())
    gatherer = PartGatherer(parts, checkpoints, punching / "gathering.tmp", scratch=True)
    _commit(checkpoints[0], line * 100)
    _commit(checkpoints[1], line * 50)
    assert gatherer.gather() == line * 150
    # Whole blocks of what was copied; the part keeps its size.
    assert gatherer.freed == [2 * BLOCK, 1 * BLOCK]
    assert parts[0].stat().st_size == line * 200
    _commit(checkpoints[0], line * 200)
    assert gatherer.gather() == line * 100
    assert gatherer.freed[0] == 5 * BLOCK
    output = punching / "out.jsonl"
    gatherer.finish(str(output))
    data = output.read_bytes()
    assert data == bodies[0] * 100 + bodies[1] * 50 + bodies[0] * 100 + bodies[1] * 150
    assert gatherer.freed[1] == 5 * BLOCK


def test_parts_that_a_checkpoint_may_resume_are_left_whole(tmp_path: Path) -> None:
    part, checkpoint = tmp_path / "part-0000.jsonl", tmp_path / "part-0000.ckpt"
    body = b'{"a":"' + b"a" * 98 + b'"}\n'
    part.write_bytes(body * 200)
    gatherer = PartGatherer([part], [checkpoint], tmp_path / "gathering.tmp")
    _commit(checkpoint, len(body) * 200)
    assert gatherer.gather() == len(body) * 200
    assert gatherer.freed == [0]
    assert part.read_bytes() == body * 200
    gatherer.close()
