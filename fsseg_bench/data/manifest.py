"""A stand-in tree's manifest: written last, atomically, so its presence means the tree is whole.

A manifest that is missing, unreadable, truncated or for another configuration means the tree is
written again (never a traceback, never a half-trusted tree).
"""

from __future__ import annotations

import json
import os
from pathlib import Path


def manifest_matches(path: Path, manifest: dict) -> bool:
    try:
        return json.loads(Path(path).read_text()) == manifest
    except (OSError, ValueError):
        return False


def write_manifest(path: Path, manifest: dict) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(manifest, indent=1))
    os.replace(tmp, path)
