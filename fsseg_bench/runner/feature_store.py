"""The disk-backed feature store: a frozen encoder's output per image, shared by the workers of
one command and by later commands. It verifies everything it serves.

Layout: one folder per encoder, named by a hash of what determines the features besides the
image (method, full config, code fingerprint, the weights and checkpoint by content, the
preprocessing settings, the device); one entry per image, named by the sha256 of the image file.

An entry (`<image sha256>.fsf`) is a small header and the raw array: the header carries the
entry's own key (encoder folder / image sha256), dtype, shape, byte count and a CRC-32 of the
bytes. A read checks all of them and that the values are finite, so a torn, zero-byte, bit-rotten
or swapped entry (another image's, another encoder's), a directory in its place or a NaN is never
served: it is deleted, the caller encodes the image again, and `damaged` counts it for one report.
Writes are atomic (a temporary file, then rename), so concurrent workers and crashes never leave a
torn entry behind.

Code that an encoder imports lazily (inside `encode`) is not known when the folder's name is
computed, so each folder keeps `deps.json`, the project modules that were loaded when its entries
were written (name, path, syntax-tree sha256, see `fingerprints.py`). The first use of a folder in
a process re-hashes that list; any difference empties the folder.

The store is capped (`--feature-store-gib`, default 50 GiB): past the cap, the least recently
used entries (by file time; reads touch it) are deleted; a later need re-encodes them.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import sys
import zlib
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..fingerprints import closure_changes

STORE_FORMAT = "fsseg-bench-features/2"
MAGIC = b"FSFEAT2\n"
ENTRY_SUFFIX = ".fsf"
DEPS = "deps.json"


def encoder_folder_name(encoder_key: tuple) -> str:
    payload = json.dumps([STORE_FORMAT, list(encoder_key)], default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:24]


def encode_entry(entry_key: str, array: np.ndarray) -> bytes:
    data = np.ascontiguousarray(array).tobytes()
    header = json.dumps({"key": entry_key, "dtype": array.dtype.str, "shape": list(array.shape), "bytes": len(data),
                         "crc32": zlib.crc32(data)}, separators=(",", ":")).encode()
    return MAGIC + struct.pack("<I", len(header)) + header + data


def decode_entry(blob: bytes | bytearray, entry_key: str) -> np.ndarray | None:
    """The array an entry holds, or None when anything about it is wrong."""
    start = len(MAGIC) + 4
    if len(blob) < start or bytes(blob[:len(MAGIC)]) != MAGIC:
        return None
    (length,) = struct.unpack("<I", bytes(blob[len(MAGIC):start]))
    try:
        header = json.loads(bytes(blob[start:start + length]))
        dtype, shape = np.dtype(header["dtype"]), tuple(int(n) for n in header["shape"])
    except (ValueError, KeyError, TypeError):
        return None
    data = memoryview(blob)[start + length:]
    if (header.get("key") != entry_key or header.get("bytes") != len(data)
            or len(data) != dtype.itemsize * int(np.prod(shape)) or zlib.crc32(data) != header.get("crc32")):
        return None
    array = np.frombuffer(data, dtype=dtype).reshape(shape)
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        return None
    return array


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        try:
            path.unlink()
        except (FileNotFoundError, IsADirectoryError, PermissionError):
            pass


class FeatureStore:
    def __init__(self, root: str | Path, cap_bytes: int):
        self.root = Path(root)
        self.cap_bytes = cap_bytes
        self.bytes = sum(size for _, size, _ in self._sized_entries())
        self.damaged = 0                 # entries found damaged (and deleted) by this process
        self.invalidated: list[str] = []  # folders emptied because code they depended on changed
        self._checked: set[str] = set()   # folders whose deps.json this process has verified
        self._deps: dict[str, tuple[int, set[str]]] = {}

    def _entries(self):
        if not self.root.is_dir():
            return []
        return [path for folder in self.root.iterdir() if folder.is_dir()
                for path in folder.iterdir() if path.suffix in (ENTRY_SUFFIX, ".npy")]

    def _sized_entries(self):
        entries = []
        for path in self._entries():
            try:
                stat = path.stat()
            except (FileNotFoundError, NotADirectoryError):
                continue
            entries.append((stat.st_mtime_ns, stat.st_size, path))
        return entries

    def folder(self, encoder_key: tuple) -> Path:
        return self.root / encoder_folder_name(encoder_key)

    def path(self, encoder_key: tuple, image_sha256: str) -> Path:
        return self.folder(encoder_key) / f"{image_sha256}{ENTRY_SUFFIX}"

    def _entry_key(self, encoder_key: tuple, image_sha256: str) -> str:
        return f"{encoder_folder_name(encoder_key)}/{image_sha256}"

    def check_folder(self, encoder_key: tuple) -> None:
        """Once per process and folder: empty it when code its entries were computed with changed."""
        name = encoder_folder_name(encoder_key)
        if name in self._checked:
            return
        self._checked.add(name)
        folder = self.root / name
        deps_path = folder / DEPS
        if not deps_path.exists():
            return
        try:
            closure = json.loads(deps_path.read_text())["closure"]
            changed = closure_changes(closure)
        except (OSError, ValueError, KeyError, TypeError):
            changed = [f"{DEPS} unreadable"]
        if changed:
            for path in list(folder.iterdir()):
                _remove(path)
            self.invalidated.append(f"{folder} ({', '.join(changed[:3])}{' ...' if len(changed) > 3 else ''} changed)")

    def _record_deps(self, encoder_key: tuple, deps: Callable[[], list[dict]]) -> None:
        """Keep the folder's deps.json a superset of the project modules loaded now (recomputed only
        when the process has imported something since the last look)."""
        name = encoder_folder_name(encoder_key)
        loaded = len(sys.modules)
        known = self._deps.get(name)
        if known is not None and known[0] == loaded:
            return
        deps_path = self.root / name / DEPS
        current = {entry["name"]: entry for entry in deps()}
        try:
            recorded = {entry["name"]: entry for entry in json.loads(deps_path.read_text())["closure"]}
        except (OSError, ValueError, KeyError, TypeError):
            recorded = {}
        if not set(current) <= set(recorded):
            merged = {**recorded, **current}
            tmp = deps_path.with_name(f".{DEPS}.tmp{os.getpid()}")
            tmp.write_text(json.dumps({"closure": [merged[k] for k in sorted(merged)]}, indent=1))
            os.replace(tmp, deps_path)
            recorded = merged
        self._deps[name] = (loaded, set(recorded))

    def get(self, encoder_key: tuple, image_sha256: str) -> torch.Tensor | None:
        self.check_folder(encoder_key)
        path = self.path(encoder_key, image_sha256)
        try:
            with open(path, "rb") as handle:
                blob = bytearray(handle.read())
        except FileNotFoundError:
            return None
        except (IsADirectoryError, PermissionError, OSError):
            blob = None
        array = decode_entry(blob, self._entry_key(encoder_key, image_sha256)) if blob is not None else None
        if array is None:
            self.damaged += 1
            _remove(path)
            return None
        try:
            os.utime(path)  # recently used
        except OSError:
            pass
        return torch.from_numpy(array)

    def put(self, encoder_key: tuple, image_sha256: str, features: torch.Tensor,
            deps: Callable[[], list[dict]] | None = None) -> None:
        if self.cap_bytes <= 0:
            return
        self.check_folder(encoder_key)
        path = self.path(encoder_key, image_sha256)
        path.parent.mkdir(parents=True, exist_ok=True)
        if deps is not None:
            self._record_deps(encoder_key, deps)
        blob = encode_entry(self._entry_key(encoder_key, image_sha256), features.detach().cpu().contiguous().numpy())
        tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}")
        try:
            tmp.write_bytes(blob)
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            os.replace(tmp, path)
        except OSError:
            tmp.unlink(missing_ok=True)  # a full disk: the store is a cache, the run goes on without it
            return
        self.bytes += len(blob)
        if self.bytes > self.cap_bytes:
            self._evict()

    def _evict(self) -> None:
        """Delete the least recently used entries until the store is at 90% of its cap."""
        entries = sorted(self._sized_entries())
        total = sum(size for _, size, _ in entries)
        for _, size, path in entries:
            if total <= 0.9 * self.cap_bytes:
                break
            path.unlink(missing_ok=True)
            total -= size
        self.bytes = total
