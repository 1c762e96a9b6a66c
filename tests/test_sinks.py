"""asyncpager.sinks: every record exactly once, in order, after a crash anywhere.

The crash tests run the writer in a child process that kills itself with
SIGKILL, the way ``kill -9`` would: after some commits, with uncommitted
bytes (or a half-written Parquet part) already on disk, or in the middle of
the Parquet merge. The parent then does what the export command does on the
next run: reopen the sink with the last saved state, write the records
after it, close, and read the output back with gzip, zstandard or pyarrow.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import signal
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from asyncpager.errors import ConfigurationError
from asyncpager.sinks import (
    CsvSink,
    JsonlSink,
    ParquetSink,
    Sink,
    detect_format,
    open_sink,
)

REPO = Path(__file__).resolve().parent.parent

# (format, compression, file name)
BYTE_CASES = [
    ("jsonl", "none", "out.jsonl"),
    ("jsonl", "gzip", "out.jsonl.gz"),
    ("jsonl", "zstd", "out.ndjson.zst"),
    ("csv", "none", "out.csv"),
    ("csv", "gzip", "out.csv.gz"),
    ("csv", "zstd", "out.csv.zst"),
]
ALL_CASES = [*BYTE_CASES, ("parquet", "snappy", "out.parquet")]


def needs(fmt: str, compression: str) -> None:
    if compression == "zstd":
        pytest.importorskip("zstandard")
    if fmt == "parquet":
        pytest.importorskip("pyarrow")


def record(i: int) -> dict[str, Any]:
    return {"id": i, "name": f'item {i}, "quoted"\nnext line', "size": i * 10}


def records(start: int, stop: int) -> list[dict[str, Any]]:
    return [record(i) for i in range(start, stop)]


def small_buffers(fmt: str) -> dict[str, Any]:
    """Options that push bytes to disk at every write, so a crash leaves some."""
    return {"row_group_size": 3} if fmt == "parquet" else {"buffer_size": 1}


def decompressed(path: Path, compression: str) -> bytes:
    if compression == "gzip":
        with gzip.open(path) as f:
            return f.read()
    if compression == "zstd":
        import zstandard

        with (
            open(path, "rb") as raw,
            zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True) as reader,
        ):
            return reader.read()
    return path.read_bytes()


def read_back(path: Path, fmt: str, compression: str) -> list[dict[str, Any]]:
    if fmt == "parquet":
        import pyarrow.parquet as pq

        rows: list[dict[str, Any]] = pq.read_table(path).to_pylist()
        return rows
    text = decompressed(path, compression).decode("utf-8")
    if fmt == "jsonl":
        return [json.loads(line) for line in text.splitlines()]
    return list(csv.DictReader(io.StringIO(text, newline="")))


def ids(rows: list[dict[str, Any]]) -> list[int]:
    return [int(row["id"]) for row in rows]


def assert_exactly_once(path: Path, fmt: str, compression: str, total: int) -> None:
    rows = read_back(path, fmt, compression)
    assert ids(rows) == list(range(total))
    assert rows[-1]["name"] == record(total - 1)["name"]


# ---------------------------------------------------------------------------
# kill -9, for real

CHILD = r"""
import json, os, signal, sys
from asyncpager.sinks import open_sink

path, state_file, scenario, options = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])

def record(i):
    return {"id": i, "name": f"item {i}, \"quoted\"\nnext line", "size": i * 10}

def kill():
    os.kill(os.getpid(), signal.SIGKILL)

def save(state):
    # What the checkpoint store does: tmp + fsync + rename.
    with open(state_file + ".tmp", "w") as f:
        json.dump(state, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(state_file + ".tmp", state_file)

sink = open_sink(path, **options)
sink.open(None)
for start in range(0, 30, 10):
    sink.write([record(i) for i in range(start, start + 10)])
    save(sink.commit())

if scenario == "writing":
    # Enough that zstd, which holds back up to a 128 KiB block, writes some too.
    for i in range(30, 45 if path.endswith(".parquet") else 5030):
        sink.write([record(i)])
    kill()

if scenario == "committed-not-saved":
    sink.write([record(i) for i in range(30, 40)])
    sink.commit()  # durable, but the checkpoint never hears of it
    sink.write([record(i) for i in range(40, 45)])
    kill()

# The merge of close(), killed at one of its steps.
import shutil
from asyncpager.sinks import parquet as pq_sink
if scenario == "merge-mid-write":
    original = pq_sink.ParquetSink._conform
    calls = []
    def conform(self, *args):
        calls.append(1)
        if len(calls) == 2:
            kill()
        return original(self, *args)
    pq_sink.ParquetSink._conform = conform
real_replace = os.replace
def replace(src, dst):
    real_replace(src, dst)
    if scenario == "merge-after-rename" and str(dst) == path:
        kill()
os.replace = replace
real_rmtree = shutil.rmtree
def rmtree(target, *args, **kwargs):
    if scenario == "merge-cleanup" and str(target).endswith(".parts.done"):
        os.unlink(os.path.join(target, "part-000001.parquet"))
        kill()
    real_rmtree(target, *args, **kwargs)
shutil.rmtree = rmtree
sink.close()
sys.exit(3)  # every scenario above ends in SIGKILL
"""


def run_child(path: Path, state_file: Path, scenario: str, options: dict[str, Any]) -> None:
    child = subprocess.run(
        [sys.executable, "-c", CHILD, str(path), str(state_file), scenario, json.dumps(options)],
        cwd=REPO,
        capture_output=True,
        timeout=60,
    )
    assert child.returncode == -signal.SIGKILL, child.stderr.decode()


def resume_and_finish(
    path: Path, state_file: Path, options: dict[str, Any], total: int
) -> dict[str, Any]:
    state: dict[str, Any] = json.loads(state_file.read_text())
    sink = open_sink(str(path), **options)
    sink.open(state)
    sink.write(records(state["records"], total))
    sink.commit()
    sink.close()
    return state


@pytest.mark.parametrize(("fmt", "compression", "name"), ALL_CASES)
@pytest.mark.parametrize("scenario", ["writing", "committed-not-saved"])
def test_kill_9_then_resume_gives_every_record_once(
    tmp_path: Path, fmt: str, compression: str, name: str, scenario: str
) -> None:
    needs(fmt, compression)
    path, state_file = tmp_path / name, tmp_path / "checkpoint.json"
    options = small_buffers(fmt)
    run_child(path, state_file, scenario, options)

    state = json.loads(state_file.read_text())
    assert state["records"] == 30
    if fmt == "parquet":
        leftovers = set(os.listdir(f"{path}.parts")) - set(state["parts"])
        assert leftovers, "the crash should leave an uncommitted part behind"
    else:
        assert path.stat().st_size > state["size"], "the crash should leave bytes past the commit"

    resume_and_finish(path, state_file, options, total=50)
    assert_exactly_once(path, fmt, compression, 50)
    if fmt == "parquet":
        assert sorted(os.listdir(tmp_path)) == ["checkpoint.json", name]


@pytest.mark.parametrize("scenario", ["merge-mid-write", "merge-after-rename", "merge-cleanup"])
def test_kill_9_during_parquet_merge_then_close_again(tmp_path: Path, scenario: str) -> None:
    needs("parquet", "snappy")
    path, state_file = tmp_path / "out.parquet", tmp_path / "checkpoint.json"
    options: dict[str, Any] = {"row_group_size": 4}
    run_child(path, state_file, scenario, options)

    state = json.loads(state_file.read_text())
    assert state["records"] == 30
    assert len(state["parts"]) == 3
    sink = open_sink(str(path), **options)
    sink.open(state)
    sink.close()
    assert_exactly_once(path, "parquet", "snappy", 30)
    assert sorted(os.listdir(tmp_path)) == ["checkpoint.json", "out.parquet"]


# ---------------------------------------------------------------------------
# Crashes simulated in-process


@pytest.mark.parametrize(("fmt", "compression", "name"), ALL_CASES)
def test_garbage_after_the_commit_is_cut_off(
    tmp_path: Path, fmt: str, compression: str, name: str
) -> None:
    needs(fmt, compression)
    path = tmp_path / name
    sink = open_sink(str(path))
    sink.open(None)
    sink.write(records(0, 7))
    sink.commit()
    sink.write(records(7, 12))
    state = sink.commit()
    sink.write(records(12, 20))  # never committed
    sink.abort()
    if fmt == "parquet":
        assert sorted(os.listdir(f"{path}.parts")) == state["parts"]
    else:
        assert_exactly_once(path, fmt, compression, 12)  # abort leaves a readable file

    # What a process killed half-way through a write leaves behind.
    if fmt == "parquet":
        parts = Path(f"{path}.parts")
        (parts / ".part-000009.parquet.tmp").write_bytes(b"PAR1 half a part")
        (parts / "part-000007.parquet").write_bytes(b"committed after the checkpoint")
    else:
        with open(path, "ab") as f:
            f.write(b'\x1f\x8b\x08{"id": 12, "na')

    again = open_sink(str(path))
    again.open(state)
    again.write(records(12, 25))
    again.close()
    again.close()  # idempotent
    assert_exactly_once(path, fmt, compression, 25)


@pytest.mark.parametrize(("fmt", "compression", "name"), BYTE_CASES)
def test_each_commit_is_a_complete_stream(
    tmp_path: Path, fmt: str, compression: str, name: str
) -> None:
    """At every commit the file as it stands is readable to the last record:
    gzip members and zstd frames are closed, lines are whole."""
    needs(fmt, compression)
    path = tmp_path / name
    sink = open_sink(str(path))
    sink.open(None)
    for batch in range(4):
        sink.write(records(batch * 5, batch * 5 + 5))
        state = sink.commit()
        assert state["size"] == path.stat().st_size
        assert state["records"] == batch * 5 + 5
        assert_exactly_once(path, fmt, compression, batch * 5 + 5)
    assert sink.commit() == state  # nothing new: same state, no empty member
    sink.close()
    json.dumps(state)  # JSON-safe, for the checkpoint file


def test_resume_refuses_a_state_for_another_output(tmp_path: Path) -> None:
    first = open_sink(str(tmp_path / "a.jsonl"))
    first.open(None)
    first.write(records(0, 3))
    state = first.commit()
    first.close()

    with pytest.raises(ConfigurationError, match="written for jsonl output, not csv"):
        open_sink(str(tmp_path / "a.csv")).open({**state, "path": str(tmp_path / "a.csv")})
    with pytest.raises(ConfigurationError, match="belongs to output"):
        open_sink(str(tmp_path / "b.jsonl")).open(state)
    with pytest.raises(ConfigurationError, match="gzip"):
        open_sink(str(tmp_path / "a.jsonl"), compression="gzip").open(state)

    (tmp_path / "a.jsonl").write_bytes(b"{}\n")  # replaced by something shorter
    with pytest.raises(ConfigurationError, match="fewer than the"):
        open_sink(str(tmp_path / "a.jsonl")).open(state)


# ---------------------------------------------------------------------------
# CSV


def csv_rows(path: Path) -> list[list[str]]:
    return list(csv.reader(io.StringIO(path.read_bytes().decode("utf-8"), newline="")))


def test_csv_neutralises_formulas_and_quotes(tmp_path: Path) -> None:
    path = tmp_path / "out.csv"
    sink = open_sink(str(path))
    sink.open(None)
    dangerous = ["=1+2", "+1", "-1", "@SUM(A1)", "\tx", "\rx", '=HYPERLINK("http://x")']
    sink.write(
        [
            {"=key": "ok", "a,b": v, 'say "hi"': "line\nbreak", "n": -5, "d": Decimal("-1.5")}
            for v in dangerous
        ]
    )
    sink.close()
    rows = csv_rows(path)
    assert rows[0] == ["'=key", "a,b", 'say "hi"', "n", "d", "_extra"]
    assert [row[1] for row in rows[1:]] == ["'" + v for v in dangerous]
    assert all(row[2] == "line\nbreak" for row in rows[1:])
    assert all(row[3] == "-5" and row[4] == "-1.5" for row in rows[1:])  # numbers stay numbers
    assert b"\r\n" in path.read_bytes()

    raw = tmp_path / "raw.csv"
    sink = open_sink(str(raw), raw_formulas=True)
    sink.open(None)
    sink.write([{"=key": v} for v in dangerous])
    sink.close()
    rows = csv_rows(raw)
    assert rows[0] == ["=key", "_extra"]
    assert [row[0] for row in rows[1:]] == dangerous


def test_csv_columns_are_fixed_and_extra_keys_kept(tmp_path: Path) -> None:
    import datetime as dt

    path = tmp_path / "out.csv"
    sink = open_sink(str(path))
    sink.open(None)
    when = dt.datetime(2024, 5, 1, 12, tzinfo=dt.UTC)
    sink.write([{"a": 1, "b": {"x": [1, 2]}}, {"a": 2, "c": when}])
    state = sink.commit()
    sink.abort()
    assert state["columns"] == ["a", "b", "c"]

    sink = open_sink(str(path))
    sink.open(state)
    sink.write([{"b": None, "new": b"\xfb\xff", "a": True, "also": "=x"}, {"c": 1.5}])
    sink.close()
    rows = csv_rows(path)
    assert rows == [
        ["a", "b", "c", "_extra"],
        ["1", '{"x":[1,2]}', "", ""],
        ["2", "", "2024-05-01T12:00:00+00:00", ""],
        ["true", "", "", '{"new":"+/8=","also":"=x"}'],
        ["", "", "1.5", ""],
    ]

    fixed = tmp_path / "fixed.csv"
    sink = open_sink(str(fixed), columns=["b", "_extra"], extra_column=None)
    sink.open(None)
    sink.write([{"a": 1, "b": "+2", "_extra": "kept"}])
    sink.close()
    assert csv_rows(fixed) == [["b", "_extra"], ["'+2", "kept"]]

    clash = tmp_path / "clash.csv"
    sink = open_sink(str(clash))
    sink.open(None)
    sink.write([{"_extra": 1}])
    sink.write([{"other": 2}])
    sink.close()
    assert csv_rows(clash) == [["_extra", "_extra_"], ["1", ""], ["", '{"other":2}']]


# ---------------------------------------------------------------------------
# Parquet


def test_parquet_types_and_schema_that_grows(tmp_path: Path) -> None:
    needs("parquet", "snappy")
    import datetime as dt

    import pyarrow as pa
    import pyarrow.parquet as pq

    when = dt.datetime(2024, 5, 1, 12, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    path = tmp_path / "out.parquet"
    sink = open_sink(str(path), row_group_size=2)
    sink.open(None)
    sink.write(
        [
            {"id": 1, "price": Decimal("12.50"), "at": when, "blob": b"\x00", "tags": ["a"]},
            {"id": 2, "later": None},
        ]
    )
    state = sink.commit()
    sink.write([{"id": "three", "later": 1.5, "new": True}, {"id": 4, "price": Decimal("1E+2")}])
    sink.close()

    table = pq.read_table(path)
    assert table.schema.field("id").type == pa.int64()
    assert table.schema.field("price").type == pa.string()
    assert table.schema.field("price").metadata == {b"asyncpager.kind": b"decimal"}
    assert table.schema.field("at").type == pa.timestamp("us", tz="UTC")
    assert table.schema.field("later").type == pa.float64()
    assert table.schema.field("tags").metadata == {b"asyncpager.kind": b"json"}
    assert table.column_names == ["id", "price", "at", "blob", "tags", "later", "new", "_extra"]
    rows = table.to_pylist()
    assert [r["id"] for r in rows] == [1, 2, None, 4]
    assert rows[0]["price"] == "12.50"
    assert rows[3]["price"] == "100"
    assert rows[0]["at"] == when
    assert rows[0]["blob"] == b"\x00"
    assert rows[0]["tags"] == '["a"]'
    assert rows[2]["later"] == 1.5
    assert rows[2]["new"] is True
    assert json.loads(rows[2]["_extra"]) == {"id": "three"}  # did not fit int64
    assert state["columns"][-1] == ["later", "null"]


def test_parquet_empty_export_and_fixed_columns(tmp_path: Path) -> None:
    needs("parquet", "snappy")
    import pyarrow.parquet as pq

    empty = tmp_path / "empty.parquet"
    sink = open_sink(str(empty))
    sink.open(None)
    sink.close()
    assert pq.read_table(empty).num_rows == 0

    fixed = tmp_path / "fixed.parquet"
    sink = open_sink(str(fixed), columns=["id"], compression="zstd")
    sink.open(None)
    sink.write([{"id": 1, "x": 2}, {"id": 2}])
    sink.close()
    assert pq.read_table(fixed).to_pylist() == [
        {"id": 1, "_extra": '{"x":2}'},
        {"id": 2, "_extra": None},
    ]
    assert pq.ParquetFile(fixed).metadata.row_group(0).column(0).compression == "ZSTD"


# ---------------------------------------------------------------------------
# open_sink, stdout, errors


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("a.jsonl", ("jsonl", "none")),
        ("a.JSON", ("jsonl", "none")),
        ("dir.v2/a.ndjson.gz", ("jsonl", "gzip")),
        ("a.csv.zst", ("csv", "zstd")),
        ("a.parquet", ("parquet", "none")),
        ("a.txt", (None, "none")),
        ("a.gz", (None, "gzip")),
    ],
)
def test_detect_format(name: str, expected: tuple[str | None, str]) -> None:
    assert detect_format(name) == expected


def test_open_sink_picks_the_class(tmp_path: Path) -> None:
    assert isinstance(open_sink(str(tmp_path / "a.csv.gz")), CsvSink)
    sink = open_sink(str(tmp_path / "a.data"), "ndjson", compression="gzip")
    assert isinstance(sink, JsonlSink)
    assert sink.compression == "gzip"
    assert isinstance(sink, Sink)


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        (("a.txt", None), {}, "cannot tell the output format of .*a.txt"),
        (("a.jsonl", "xml"), {}, "unknown output format 'xml'"),
        (("a.jsonl.gz", None), {"compression": "zstd"}, "zstd compression needs a name ending"),
        (("a.jsonl", None), {"compression": "lzma"}, "unknown compression 'lzma'"),
        (("a.parquet.gz", None), {}, "Parquet compresses inside the file"),
        ((None, "parquet"), {}, "parquet output needs a file path"),
        (("a.csv", None), {"row_group_size": 5}, "unknown option for csv output: row_group_size"),
    ],
)
def test_open_sink_refuses_bad_requests(
    tmp_path: Path, args: tuple[Any, ...], kwargs: dict[str, Any], message: str
) -> None:
    path = args[0] if args[0] is None else str(tmp_path / args[0])
    with pytest.raises(ConfigurationError, match=message):
        open_sink(path, args[1], **kwargs)


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_unwritable_paths_fail_early_with_one_line(tmp_path: Path, fmt: str) -> None:
    needs(fmt, "none")
    ext = ".parquet" if fmt == "parquet" else ".jsonl"
    a_file = tmp_path / "file"
    a_file.write_text("")
    a_dir = tmp_path / f"dir{ext}"
    a_dir.mkdir()
    cases = [tmp_path / "missing" / f"out{ext}", a_file / f"out{ext}", a_dir]
    if os.geteuid() != 0:  # root may write anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        cases.append(locked / f"out{ext}")
    for path in cases:
        with pytest.raises(ConfigurationError) as caught:
            open_sink(str(path))
        text = str(caught.value)
        assert str(path) in text
        assert "\n" not in text


def test_stdout_sink_writes_and_refuses_to_resume() -> None:
    stream = io.BytesIO()
    sink = open_sink(None, stream=stream, compression="gzip")
    sink.open(None)
    sink.write(records(0, 3))
    state = sink.commit()
    sink.write(records(3, 5))
    sink.close()
    assert [json.loads(line)["id"] for line in gzip.decompress(stream.getvalue()).splitlines()] == [
        0,
        1,
        2,
        3,
        4,
    ]
    with pytest.raises(ConfigurationError, match="a checkpoint needs a file output"):
        open_sink("-", "csv", stream=io.BytesIO()).open(state)


def test_new_files_get_mode_0644(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        for name in ("a.jsonl", "a.parquet" if _has("pyarrow") else "b.csv"):
            sink = open_sink(str(tmp_path / name))
            sink.open(None)
            sink.write(records(0, 2))
            sink.close()
            assert (tmp_path / name).stat().st_mode & 0o777 == 0o644
    finally:
        os.umask(old)


def _has(module: str) -> bool:
    try:
        __import__(module)
    except ImportError:
        return False
    return True


@pytest.fixture
def hidden_modules(monkeypatch: pytest.MonkeyPatch) -> set[str]:
    """Make the named optional modules look uninstalled."""
    import importlib

    hidden: set[str] = set()
    real = importlib.import_module

    def fake(name: str, package: str | None = None) -> Any:
        if name.split(".")[0] in hidden:
            raise ImportError(name)
        return real(name, package)

    monkeypatch.setattr(importlib, "import_module", fake)
    return hidden


def test_missing_optional_packages_are_named(tmp_path: Path, hidden_modules: set[str]) -> None:
    hidden_modules.update({"pyarrow", "zstandard"})
    with pytest.raises(ConfigurationError) as caught:
        open_sink(str(tmp_path / "a.parquet"))
    assert str(caught.value) == "parquet output needs pyarrow: pip install 'asyncpager[parquet]'"
    with pytest.raises(
        ConfigurationError, match=r"needs zstandard: pip install 'asyncpager\[zstd\]'"
    ):
        open_sink(str(tmp_path / "a.jsonl.zst"))


def test_methods_in_the_wrong_order(tmp_path: Path) -> None:
    sink = open_sink(str(tmp_path / "a.jsonl"))
    with pytest.raises(ConfigurationError, match="open"):
        sink.write(records(0, 1))
    sink.open(None)
    with pytest.raises(ConfigurationError, match="only once"):
        sink.open(None)
    sink.close()
    with pytest.raises(ConfigurationError, match="closed"):
        sink.write(records(0, 1))
    sink.abort()  # after close: nothing to do
    assert (tmp_path / "a.jsonl").read_bytes() == b""


def test_a_batch_that_cannot_be_written_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    sink = open_sink(str(path))
    sink.open(None)
    with pytest.raises(TypeError, match="cannot write a object"):
        sink.write([{"a": 1, "b": object()}])
    sink.write([{"c": 1}])  # the header comes with the first batch that works
    sink.close()
    assert csv_rows(path) == [["c", "_extra"], ["1", ""]]


def test_a_sink_that_failed_half_way_must_be_aborted(tmp_path: Path) -> None:
    needs("parquet", "snappy")
    path = tmp_path / "a.parquet"
    sink = open_sink(str(path), row_group_size=2)
    sink.open(None)
    sink.write(records(0, 2))
    state = sink.commit()
    with pytest.raises(TypeError):
        sink.write([{"id": 2, "x": {"bad": object()}}, {"id": 3}])
    with pytest.raises(ConfigurationError, match="abort"):
        sink.commit()
    sink.abort()
    again = open_sink(str(path))
    again.open(state)
    again.write(records(2, 4))
    again.close()
    assert_exactly_once(path, "parquet", "snappy", 4)


def test_parquet_resume_after_finished_merge_is_a_no_op(tmp_path: Path) -> None:
    needs("parquet", "snappy")
    path = tmp_path / "out.parquet"
    sink = ParquetSink(str(path))
    sink.open(None)
    sink.write(records(0, 5))
    state = sink.commit()
    sink.close()
    again = ParquetSink(str(path))
    again.open(state)  # the run was killed after close() but before the checkpoint went
    assert again.commit() == state
    again.close()
    assert_exactly_once(path, "parquet", "snappy", 5)
