"""Where a cluster export's files live, and how an attempt is committed.

::

    ROOT/
      _staging/group-00003.<attempt>/     one folder per attempt of a shard group
          part-00003.jsonl.gz             written only by that attempt
          manifest.json                   its last file: the attempt is whole
      group-00003/                        the committed attempt (a rename)
      _manifest.json                      when every group is committed

Exactly once rests on one atomic step: the driver renames an attempt's
folder to ``group-NNNNN``. ``rename(2)`` onto a folder that exists and is
not empty fails, so the first attempt of a group to be committed wins and
every later one (a task run again after its worker was lost, a duplicate)
is thrown away with its staging folder. An attempt killed half way leaves a
staging folder that nothing ever renames. A driver restarted on the same
plan reads the committed folders and runs only the other groups.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
from pathlib import Path
from typing import Any

from asyncpager.errors import AsyncPagerError
from asyncpager.sinks._base import fsync_dir

STAGING = "_staging"
MANIFEST = "manifest.json"
FINAL_MANIFEST = "_manifest.json"


def group_dir_name(index: int) -> str:
    return f"group-{index:05d}"


def part_name(index: int, suffix: str) -> str:
    return f"part-{index:05d}{suffix}"


def attempt_dir(root: Path, index: int, attempt: str) -> Path:
    return root / STAGING / f"{group_dir_name(index)}.{attempt}"


def write_json_durably(path: Path, body: Any) -> None:
    """Write ``body`` to ``path`` through a temporary file, fsynced, renamed."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(body, handle, indent=1, sort_keys=True)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    fsync_dir(str(path.parent))


def commit_attempt(root: Path, manifest: dict[str, Any]) -> bool:
    """Commit one attempt's folder as its group's output; ``False`` when the
    group was committed already (this attempt is then removed)."""
    index = int(manifest["group"])
    source = attempt_dir(root, index, str(manifest["attempt"]))
    target = root / group_dir_name(index)
    if not (source / MANIFEST).is_file():
        raise AsyncPagerError(f"attempt {source} returned a manifest but its folder has none")
    try:
        os.rename(source, target)
    except OSError as exc:
        if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
            raise
        shutil.rmtree(source, ignore_errors=True)
        return False
    fsync_dir(str(root))
    return True


def committed_manifests(root: Path) -> dict[int, dict[str, Any]]:
    """The manifest of every committed group under ``root``, by group."""
    found: dict[int, dict[str, Any]] = {}
    if not root.is_dir():
        return found
    for entry in root.iterdir():
        if not entry.name.startswith("group-") or not entry.is_dir():
            continue
        try:
            body = json.loads((entry / MANIFEST).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            # Renamed means whole: a committed folder always has its manifest.
            raise AsyncPagerError(f"committed group {entry} has no readable manifest") from None
        found[int(body["group"])] = body
    return found


def clear_staging(root: Path) -> None:
    """Attempts that were never committed: nothing will ever read them."""
    with contextlib.suppress(FileNotFoundError):
        shutil.rmtree(root / STAGING)


def committed_parts(root: Path, manifests: dict[int, dict[str, Any]]) -> list[Path]:
    """Every committed part, in group order."""
    return [
        root / group_dir_name(index) / part["path"]
        for index in sorted(manifests)
        for part in manifests[index]["parts"]
    ]


def write_final_manifest(root: Path, manifests: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """``_manifest.json``: every committed part, its items and bytes."""
    parts = [
        {
            "path": f"{group_dir_name(index)}/{part['path']}",
            "items": part["items"],
            "bytes": part["bytes"],
            "group": index,
        }
        for index in sorted(manifests)
        for part in manifests[index]["parts"]
    ]
    body = {
        "asyncpager_manifest": 1,
        "groups": len(manifests),
        "items": sum(int(m["items"]) for m in manifests.values()),
        "parts": parts,
    }
    write_json_durably(root / FINAL_MANIFEST, body)
    return body
