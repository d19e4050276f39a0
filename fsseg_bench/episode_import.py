"""Turning an episode list dumped from another codebase into a pinned fsseg-bench JSONL list.

Formats (`fsseg-bench episodes --import FORMAT PATH`):

- `jsonl`: one JSON object per line (fsseg-bench's own layout; `index` may be absent).
- `json`: a JSON array of objects, or an object whose `episodes` key holds that array.
- `tsv`: one episode per line, tab-separated: `class_id  query  support_1 ... support_k`; blank
  lines, lines starting with `#` and a first line starting with `class_id` are skipped.

An object names the class as `class_id` (or `class`, `class_sample`), the query as `query` (or
`query_name`; a string or a one-element list) and the supports as `support` (or `supports`,
`support_names`; a list, or a string for one support). Image names may carry a folder and an
extension (`JPEGImages/2007_000033.jpg`); the id is the file stem. `class_base=0` reads class ids
numbered from 0 (HSNet's `class_id` tensors) and adds 1. Supports may repeat (HSNet's 5-shot
episodes do); a query among its own supports is refused.
"""

from __future__ import annotations

import json
from pathlib import Path, PurePosixPath

from .classes import NUM_CLASSES
from .episodes import EpisodeSpec, check_episode_list
from .errors import InputError
from .textfiles import read_utf8

FORMATS = ("jsonl", "json", "tsv")
_CLASS_KEYS = ("class_id", "class", "class_sample")
_QUERY_KEYS = ("query", "query_name")
_SUPPORT_KEYS = ("support", "supports", "support_names")
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def image_id(name: str) -> str:
    """`JPEGImages/2007_000033.jpg` -> `2007_000033`; a bare id is kept as it is."""
    path = PurePosixPath(str(name).replace("\\", "/"))
    return path.stem if path.suffix.lower() in _IMAGE_SUFFIXES else path.name


def import_episodes(fmt: str, path: str | Path, class_base: int = 1, num_classes: int = NUM_CLASSES) -> list[EpisodeSpec]:
    path = Path(path)
    if fmt not in FORMATS:
        raise InputError(f"--import {fmt!r}: expected a format among {' | '.join(FORMATS)}")
    if class_base not in (0, 1):
        raise InputError(f"--class-base {class_base}: expected 0 or 1")
    text = read_utf8(path, "episode dump")
    rows = {"jsonl": _jsonl_rows, "json": _json_rows, "tsv": _tsv_rows}[fmt](text, path)
    episodes = [_episode(position, row, where, class_base, num_classes) for position, (where, row) in enumerate(rows)]
    check_episode_list(episodes, str(path))
    return episodes


def _jsonl_rows(text: str, path: Path):
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append((f"{path}:{number}", json.loads(line)))
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}:{number}: not valid JSON ({exc.msg})") from None
    return rows


def _json_rows(text: str, path: Path):
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if isinstance(data, dict) and "episodes" in data:
        data = data["episodes"]
    if not isinstance(data, list):
        raise InputError(f"{path}: expected a JSON array of episodes (or an object with an 'episodes' array)")
    return [(f"{path}: episode {i}", row) for i, row in enumerate(data)]


def _tsv_rows(text: str, path: Path):
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.startswith("#") or (not rows and line.startswith("class_id")):
            continue
        fields = line.rstrip("\r").split("\t")
        if len(fields) < 3:
            raise InputError(f"{path}:{number}: expected 'class_id<TAB>query<TAB>support...' (at least 3 fields)")
        rows.append((f"{path}:{number}", {"class_id": fields[0].strip(), "query": fields[1].strip(),
                                           "support": [f.strip() for f in fields[2:]]}))
    return rows


def _pick(row: dict, keys: tuple[str, ...], where: str, what: str):
    for key in keys:
        if key in row:
            return row[key]
    raise InputError(f"{where}: no {what} (expected one of the keys {', '.join(keys)})")


def _names(value, where: str, what: str) -> tuple[str, ...]:
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list) or not values or not all(isinstance(v, str) and v.strip() for v in values):
        raise InputError(f"{where}: {what} must be an image name or a non-empty list of them")
    return tuple(image_id(v.strip()) for v in values)


def _episode(position: int, row, where: str, class_base: int, num_classes: int = NUM_CLASSES) -> EpisodeSpec:
    if not isinstance(row, dict):
        raise InputError(f"{where}: expected a JSON object")
    raw_class = _pick(row, _CLASS_KEYS, where, "class")
    try:
        class_id = int(str(raw_class).strip()) + (1 - class_base)
    except ValueError:
        raise InputError(f"{where}: class {raw_class!r} is not an integer") from None
    if not 1 <= class_id <= num_classes:
        raise InputError(f"{where}: class {raw_class!r} (with --class-base {class_base}) is not a class 1..{num_classes}")
    query = _names(_pick(row, _QUERY_KEYS, where, "query"), where, "query")
    if len(query) != 1:
        raise InputError(f"{where}: {len(query)} queries; expected one per episode")
    support = _names(_pick(row, _SUPPORT_KEYS, where, "supports"), where, "supports")
    return EpisodeSpec(position, class_id, query, support)
