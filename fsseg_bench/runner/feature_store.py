"""The disk-backed feature store: a frozen encoder's output per image, shared by the workers of
one command and by later commands.

Entries are `.npy` files (the features' own dtype, fp32 for the built-in encoders: lossless, so
records are bitwise identical with or without the store), under one folder per encoder, named by
the sha256 of the image file's content. The encoder folder's name hashes what determines the
features besides the image: the method, its full config and code fingerprint, the checkpoint, the
preprocessing (input size, resize mode, the preprocessing code) and the device. A changed image is
a new name; a changed encoder a new folder. Writes are atomic (a temporary file, then rename), so
concurrent workers and crashes never leave a torn entry.

The store is capped (`--feature-store-gib`, default 50 GiB): past the cap, the least recently
used entries (by file time; reads touch it) are deleted; a later need re-encodes them.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import torch

from .. import preprocess, resample

# Preprocessing code is part of what determines features (normalisation, resizing kernels).
PREPROCESS_SHA256 = hashlib.sha256(b"".join(Path(module.__file__).read_bytes()
                                            for module in (preprocess, resample))).hexdigest()


def encoder_folder_name(encoder_key: tuple) -> str:
    payload = json.dumps([list(encoder_key), PREPROCESS_SHA256], default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:24]


class FeatureStore:
    def __init__(self, root: str | Path, cap_bytes: int):
        self.root = Path(root)
        self.cap_bytes = cap_bytes
        self.bytes = sum(entry.stat().st_size for entry in self._entries())

    def _entries(self):
        if not self.root.is_dir():
            return []
        return [path for folder in self.root.iterdir() if folder.is_dir() for path in folder.glob("*.npy")]

    def path(self, encoder_key: tuple, image_sha256: str) -> Path:
        return self.root / encoder_folder_name(encoder_key) / f"{image_sha256}.npy"

    def get(self, encoder_key: tuple, image_sha256: str) -> torch.Tensor | None:
        path = self.path(encoder_key, image_sha256)
        try:
            array = np.load(path, allow_pickle=False)
            os.utime(path)  # recently used
        except (FileNotFoundError, ValueError, OSError):
            return None  # absent, or evicted / damaged: encode again
        return torch.from_numpy(array)

    def put(self, encoder_key: tuple, image_sha256: str, features: torch.Tensor) -> None:
        if self.cap_bytes <= 0:
            return
        path = self.path(encoder_key, image_sha256)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}.npy")
        array = features.detach().cpu().contiguous().numpy()
        np.save(tmp, array, allow_pickle=False)
        os.replace(tmp, path)
        self.bytes += path.stat().st_size
        if self.bytes > self.cap_bytes:
            self._evict()

    def _evict(self) -> None:
        """Delete the least recently used entries until the store is at 90% of its cap."""
        entries = []
        for path in self._entries():
            try:
                stat = path.stat()
            except FileNotFoundError:
                continue
            entries.append((stat.st_mtime_ns, stat.st_size, path))
        entries.sort()
        total = sum(size for _, size, _ in entries)
        for _, size, path in entries:
            if total <= 0.9 * self.cap_bytes:
                break
            path.unlink(missing_ok=True)
            total -= size
        self.bytes = total
