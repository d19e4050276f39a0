"""Files identified by the sha256 of their bytes, and the files a method reads while it is built.

A file's hash is memoised in this process under its *stat key* (device, inode, size, mtime_ns,
ctime_ns). A rewrite with other bytes of the same size and a forged mtime still changes ctime
(which no user call can set back) and usually the inode, so it is hashed again; a plain `touch`
changes ctime too and costs one re-hash, never a wrong answer.

`recording_reads()` collects, while a method is built, every weights file it loads through the
harness's readers (`note_read`): backbone weights from `--weights`, the torch / timm / Hugging Face
caches, the package's own stand-in weights. Their sha256 (not their paths) enter the run's
identity and the feature store's keys.
"""

from __future__ import annotations

import hashlib
import os
from contextlib import contextmanager
from pathlib import Path

from .errors import InputError

_SHA256: dict[tuple, str] = {}
_RECORDERS: list[list[dict]] = []


def stat_key(path: str | Path) -> tuple:
    """(device, inode, size, mtime_ns, ctime_ns) of a file; raises OSError when it is missing."""
    stat = os.stat(path)
    return (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)


def file_sha256(path: str | Path) -> str:
    """sha256 of the file's bytes, memoised by its stat key (see the module docstring)."""
    path = Path(path)
    try:
        key = (os.path.abspath(path), *stat_key(path))
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from None
    cached = _SHA256.get(key)
    if cached is None:
        digest = hashlib.sha256()
        try:
            with open(path, "rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
        except OSError as exc:
            raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from None
        cached = _SHA256[key] = digest.hexdigest()
    return cached


@contextmanager
def recording_reads():
    """Collect the files read through `note_read` inside the block: [{role, path, sha256}]."""
    reads: list[dict] = []
    _RECORDERS.append(reads)
    try:
        yield reads
    finally:
        _RECORDERS.remove(reads)


def note_read(role: str, path: str | Path) -> str:
    """Hash a file a method loads and tell every active recorder; returns its sha256."""
    sha256 = file_sha256(path)
    for reads in _RECORDERS:
        if not any(r["sha256"] == sha256 and r["role"] == role for r in reads):
            reads.append({"role": role, "path": os.path.abspath(path), "sha256": sha256})
    return sha256


def reads_identity(reads: list[dict]) -> list[list[str]]:
    """What of the files read enters an identity: (role, sha256) pairs, sorted; never the paths."""
    return sorted([r["role"], r["sha256"]] for r in reads)


def reads_unchanged(reads: list[dict]) -> bool:
    """True when every recorded file still has the bytes it had (a stat per file when unchanged)."""
    for read in reads:
        try:
            if file_sha256(read["path"]) != read["sha256"]:
                return False
        except InputError:
            return False
    return True
