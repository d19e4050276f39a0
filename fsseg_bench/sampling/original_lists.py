"""Finding and reading the list files an original codebase samples from.

`--original-lists PATH` (or a protocol's `original_lists`) names a folder, or a single file, that
holds them; each sampler says which relative paths it looks for, in order. Every file read is
recorded with its sha256, so a run says exactly which lists made its episodes.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from ..errors import InputError
from ..textfiles import read_utf8


def find_list(root: Path | None, candidates: list[str]) -> Path | None:
    """The first of `candidates` under `root` (or `root` itself when it is a file); None if no root."""
    if root is None:
        return None
    root = Path(root)
    if root.is_file():
        return root
    if not root.is_dir():
        raise InputError(f"{root}: original lists not found (expected a folder or a file)")
    for candidate in candidates:
        if (root / candidate).is_file():
            return root / candidate
    raise InputError(f"{root}: none of {', '.join(candidates)} in it")


def read_lines(path: Path) -> list[str]:
    """Text lines (UTF-8), with a one-line error naming the file when it cannot be read."""
    return read_utf8(path, "original list").splitlines()


def file_record(path: Path) -> dict:
    return {"path": str(Path(path).resolve()), "sha256": hashlib.sha256(Path(path).read_bytes()).hexdigest()}


def check_ids_in_split(ids: list[str], index, path: Path) -> None:
    for number, image_id in enumerate(ids, start=1):
        if image_id not in index.pixels:
            raise InputError(f"{path}: entry {number} names image id {image_id!r}, which is not in split "
                             f"{index.split!r} of the data tree")
