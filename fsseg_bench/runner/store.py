"""The record store of one run: append-only JSONL records, a lock, and run.json.

Crash safety: records are appended and flushed in small batches, so a killed process loses at
most the batch in flight; on reopening, a torn last line (no newline, or not JSON) is cut off and
the run continues from the last complete episode. Episodes are written in index order, so
"records so far" is always a prefix of the episode list: nothing is lost or duplicated.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

from ..errors import InputError

RECORDS = "records.jsonl"
RUN_JSON = "run.json"
LOCK = "run.lock"


class RunLocked(Exception):
    """Another live process is writing this run."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def acquire_lock(directory: Path) -> Path:
    """Create run.lock exclusively; take over a lock whose process died on this host."""
    path = directory / LOCK
    me = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()})
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                holder = json.loads(path.read_text() or "{}")
            except (OSError, json.JSONDecodeError):
                holder = {}
            stale = holder.get("host") == socket.gethostname() and not _pid_alive(int(holder.get("pid", -1)))
            if not stale:
                raise RunLocked(f"pid {holder.get('pid')} on {holder.get('host')}") from None
            path.unlink(missing_ok=True)
            continue
        with os.fdopen(fd, "w") as handle:
            handle.write(me)
        return path
    raise RunLocked("lock contended")


def release_lock(path: Path) -> None:
    path.unlink(missing_ok=True)


def read_records(directory: Path, repair: bool = False) -> list[dict]:
    """Complete records, in order. With `repair`, a torn tail is cut off the file."""
    path = directory / RECORDS
    if not path.is_file():
        return []
    data = path.read_bytes()
    records, good_bytes, offset = [], 0, 0
    for line in data.split(b"\n")[:-1]:  # the piece after the last newline is torn or empty
        offset += len(line) + 1
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            break
        if record.get("index") != len(records):
            raise InputError(f"{path}: record {len(records)} has index {record.get('index')}; the file is not a "
                             f"prefix of the episode list (remove the run folder to redo it)")
        records.append(record)
        good_bytes = offset
    if repair and good_bytes != len(data):
        with open(path, "r+b") as handle:
            handle.truncate(good_bytes)
    return records


class RecordWriter:
    """Appends records, flushing every `batch` records or `seconds`, whichever comes first."""

    def __init__(self, directory: Path, batch: int = 16, seconds: float = 2.0):
        self.handle = open(directory / RECORDS, "a", encoding="utf-8")
        self.batch, self.seconds = batch, seconds
        self.pending: list[str] = []
        self.last_flush = time.monotonic()

    def append(self, record: dict) -> None:
        self.pending.append(json.dumps(record, separators=(",", ":")) + "\n")
        if len(self.pending) >= self.batch or time.monotonic() - self.last_flush > self.seconds:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            self.handle.write("".join(self.pending))
            self.handle.flush()
            self.pending.clear()
        self.last_flush = time.monotonic()

    def close(self) -> None:
        self.flush()
        self.handle.close()


def write_run_json(directory: Path, payload: dict) -> None:
    tmp = directory / f".{RUN_JSON}.tmp{os.getpid()}"
    tmp.write_text(json.dumps(payload, indent=1, sort_keys=True, default=str))
    os.replace(tmp, directory / RUN_JSON)


def read_run_json(directory: Path) -> dict | None:
    path = directory / RUN_JSON
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        return None
