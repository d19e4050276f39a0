"""The record store of one run: append-only JSONL records, a lock, and run.json.

Crash safety: records are appended and flushed in small batches, so a killed process loses at
most the batch in flight. Records are verified, never trusted: `scan_records` returns the longest
valid prefix (each line a JSON object with index == its position and non-negative integer
counts) and names the first problem after it, so a torn tail (a crash) and a damaged middle line
are both found; a run resumes (or repairs) from the valid prefix, and a run counts as complete
only when its records hold exactly the indexes 0..n-1 of its episode list.

Locks: `run.lock` is held with `fcntl.flock` on an open descriptor. The kernel releases it when
the holder dies (SIGKILL, OOM kill, pid 1 in a container), so there is nothing to take over and
no race between two processes taking over; the file is never deleted (deleting a locked path
lets a third process lock a new inode beside the old one) and its text (host, pid, start time)
is only for messages.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError
from ..metrics import COUNT_COLUMNS

RECORDS = "records.jsonl"
RUN_JSON = "run.json"
LOCK = "run.lock"


class RunLocked(Exception):
    """Another live process holds this run's lock."""


@dataclass
class RunLock:
    """A held lock: the open descriptor that carries the flock."""

    path: Path
    fd: int

    def release(self) -> None:
        if self.fd >= 0:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = -1


def acquire_lock(directory: Path) -> RunLock:
    """Take the run's lock without waiting, or raise RunLocked naming the holder."""
    path = Path(directory) / LOCK
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 4096).decode("utf-8", "replace")
        os.close(fd)
        raise RunLocked(describe_holder(holder)) from None
    except BaseException:
        os.close(fd)
        raise
    owner = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()})
    os.ftruncate(fd, 0)
    os.pwrite(fd, owner.encode(), 0)
    return RunLock(path, fd)


def describe_holder(text: str) -> str:
    try:
        holder = json.loads(text)
        return f"pid {holder['pid']} on {holder['host']}"
    except (json.JSONDecodeError, KeyError, TypeError):
        return "another process"


def lock_holder(directory: Path) -> str | None:
    """Who holds the run's lock now (None when nobody does). Probes with a shared lock."""
    path = Path(directory) / LOCK
    if not path.is_file():
        return None
    fd = os.open(path, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return describe_holder(os.read(fd, 4096).decode("utf-8", "replace"))
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


# --- records ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class RecordScan:
    """The longest valid prefix of a records file, and what (if anything) follows it."""

    records: list[dict]
    ends: list[int]      # byte offset just past each record's line
    total_bytes: int
    problem: str | None  # None: the whole file is valid

    @property
    def valid_bytes(self) -> int:
        return self.ends[-1] if self.ends else 0

    def verify(self, expected: int) -> str | None:
        """None when the file holds exactly the indexes 0..expected-1, else what is wrong."""
        if self.problem:
            return self.problem
        if len(self.records) != expected:
            return f"{len(self.records)} records, expected {expected}"
        return None


def _record_problem(record, position: int) -> str | None:
    if not isinstance(record, dict):
        return "not a JSON object"
    index = record.get("index")
    if index != position or isinstance(index, bool):
        return f"index {index!r} where {position} was expected (duplicate, missing or out of order)"
    for name in ("class_id", *COUNT_COLUMNS):
        value = record.get(name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            return f"field {name!r} = {value!r}, expected a non-negative integer"
    if not (record["fg_intersection"] <= record["fg_union"] and record["bg_intersection"] <= record["bg_union"]):
        return "an intersection larger than its union"
    return None


def scan_records(directory: Path) -> RecordScan:
    path = Path(directory) / RECORDS
    if not path.is_file():
        return RecordScan([], [], 0, None)
    data = path.read_bytes()
    lines = data.split(b"\n")
    records, ends = [], []
    for number, line in enumerate(lines[:-1], start=1):  # the piece after the last newline is torn or empty
        try:
            record = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            return RecordScan(records, ends, len(data), f"line {number} is not valid JSON")
        problem = _record_problem(record, len(records))
        if problem:
            return RecordScan(records, ends, len(data), f"line {number}: {problem}")
        records.append(record)
        ends.append((ends[-1] if ends else 0) + len(line) + 1)
    if lines[-1]:
        return RecordScan(records, ends, len(data), f"line {len(lines)} is torn (no newline at its end)")
    return RecordScan(records, ends, len(data), None)


def truncate_records(directory: Path, valid_bytes: int) -> None:
    """Cut the records file back to its valid prefix (under the run's lock)."""
    path = Path(directory) / RECORDS
    if path.is_file() and path.stat().st_size != valid_bytes:
        with open(path, "r+b") as handle:
            handle.truncate(valid_bytes)


def read_records(directory: Path, repair: bool = False) -> list[dict]:
    """The valid prefix of a run's records. With `repair`, whatever follows it is cut off."""
    scan = scan_records(directory)
    if repair:
        truncate_records(directory, scan.valid_bytes)
    return scan.records


class RecordWriter:
    """Appends records, flushing every `batch` records or `seconds`, whichever comes first."""

    def __init__(self, directory: Path, batch: int = 16, seconds: float = 2.0):
        self.handle = open(Path(directory) / RECORDS, "a", encoding="utf-8")
        self.batch, self.seconds = batch, seconds
        self.pending: list[str] = []
        self.last_flush = time.monotonic()

    def append(self, record: dict) -> None:
        self.pending.append(json.dumps(record, separators=(",", ":")) + "\n")
        if len(self.pending) >= self.batch or time.monotonic() - self.last_flush > self.seconds:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            try:
                self.handle.write("".join(self.pending))
                self.handle.flush()
            except OSError as exc:  # a full disk: one line naming the file; the valid prefix stays resumable
                self.pending.clear()
                raise InputError(f"{self.handle.name}: cannot write records ({exc.strerror or exc})") from None
            self.pending.clear()
        self.last_flush = time.monotonic()

    def close(self) -> None:
        try:
            self.flush()
        finally:
            try:
                self.handle.close()
            except OSError:
                pass


def write_run_json(directory: Path, payload: dict) -> None:
    """Atomic; a full disk is one line naming the file and leaves no temporary file behind."""
    write_atomic(Path(directory) / RUN_JSON, json.dumps(payload, indent=1, sort_keys=True, default=str).encode())


def write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except OSError as exc:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        raise InputError(f"{path}: cannot write ({exc.strerror or exc})") from None


PROTOCOL_COPIES = "protocols"  # RESULTS/protocols/<sha256>.toml


def keep_protocol_copy(results_dir: Path, protocol) -> str:
    """The protocol's exact bytes at RESULTS/protocols/<sha256>.toml (kept once, verified when it
    exists), so the folder can be tabled, compared and reported without the original file. A
    protocol that extends others keeps each file so, plus <identity>.chain.json listing them.
    Returns the copy's path relative to the results folder."""
    import hashlib

    from ..protocol import protocol_chain_sha256

    files = [Path(f) for f in (protocol.chain or (protocol.path,))]
    blobs = [f.read_bytes() for f in files]
    sha256s = [hashlib.sha256(blob).hexdigest() for blob in blobs]
    if protocol_chain_sha256(sha256s) != protocol.file_sha256:
        raise InputError(f"{protocol.path}: changed while the run was starting (sha256 "
                         f"{protocol_chain_sha256(sha256s)[:12]}..., loaded as {protocol.file_sha256[:12]}...); rerun")
    folder = Path(results_dir) / PROTOCOL_COPIES
    for blob, sha256 in zip(blobs, sha256s):
        target = folder / f"{sha256}.toml"
        if not (target.is_file() and hashlib.sha256(target.read_bytes()).hexdigest() == sha256):
            folder.mkdir(parents=True, exist_ok=True)
            write_atomic(target, blob)
    if len(blobs) == 1:
        return f"{PROTOCOL_COPIES}/{sha256s[0]}.toml"
    manifest = folder / f"{protocol.file_sha256}.chain.json"
    listing = json.dumps({"files": sha256s}, indent=1).encode()
    if not (manifest.is_file() and manifest.read_bytes() == listing):
        write_atomic(manifest, listing)
    return f"{PROTOCOL_COPIES}/{manifest.name}"


def read_run_json(directory: Path) -> dict | None:
    path = Path(directory) / RUN_JSON
    if not path.is_file():
        return None
    try:
        payload = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    return payload if isinstance(payload, dict) else None
