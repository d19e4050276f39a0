"""`fsseg-bench runs`: every run folder of a results folder, its state, and whether it is stale.

State: `complete` (run.json says so and the records verify), `damaged` (says complete, records
do not verify), `running` (its lock is held now), `incomplete` (a crashed or interrupted run; a
rerun resumes it). Stale: a module the run loaded hashes otherwise today (`code`, the recorded closure re-hashed),
or the data it read changed (`data`: the content hashes of its images and masks, or its episode
list file).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..data.source import class_index
from ..data.source import locate_tree
from ..episodes import read_episode_list
from ..errors import InputError
from ..fingerprints import closure_changes, code_fingerprint, data_fingerprint
from ..registry import get_entry, load_methods
from .store import lock_holder, read_run_json, scan_records


@dataclass(frozen=True)
class RunStatus:
    path: Path
    protocol: str
    method: str
    fold: int | None
    shot: int | None
    seed: int | None
    state: str
    records: int
    n_episodes: int | None
    stale: tuple[str, ...]
    config: dict
    note: str = ""


def _code_stale(info: dict) -> str | None:
    """Re-hash the modules the run recorded loading (no plugin needs to be given for that)."""
    if "code_closure" in info:
        changed = closure_changes(info["code_closure"])
        return f"code ({', '.join(changed[:3])}{' ...' if len(changed) > 3 else ''})" if changed else None
    try:
        load_methods([p for p in info.get("plugins", []) if Path(p).is_file()])
        factory = get_entry(info["method"]).factory
    except InputError:
        return "code (method no longer registered)"
    return None if code_fingerprint(factory)[0] == info.get("code_sha256") else "code"


def _data_stale(info: dict, results_dir: Path) -> str | None:
    try:
        episodes, sha256 = read_episode_list(info["episode_list_path"])
        if sha256 != info.get("episode_list_sha256"):
            return "data (episode list changed)"
        episodes = episodes[:info["n_episodes"]]
        tree = locate_tree(info.get("dataset") or "pascal-voc", info["data_root"])
        index = class_index(tree, info.get("data_split") or "", results_dir)
        ids = [i for spec in episodes for i in (*spec.query, *spec.support)]
        if any(i not in index.file_sha256 for i in ids):
            return "data (images gone from the split)"
        return None if data_fingerprint(ids, index.file_sha256) == info.get("data_sha256") else "data"
    except (InputError, KeyError, OSError) as exc:
        return f"data (cannot check: {str(exc).splitlines()[0][:80]})"


def run_status(directory: Path, results_dir: Path, check_stale: bool = True) -> RunStatus:
    parts = directory.relative_to(Path(results_dir) / "runs").parts
    info = read_run_json(directory) or {}
    scan = scan_records(directory)
    n = info.get("n_episodes")
    holder = lock_holder(directory)
    if holder:
        state, note = "running", f"locked by {holder}"
    elif info.get("status") == "complete":
        problem = scan.verify(n) if isinstance(n, int) else "run.json has no episode count"
        state, note = ("damaged", problem) if problem else ("complete", "")
    else:
        state, note = "incomplete", "" if info else "no run.json"
    stale = ()
    if check_stale and info.get("code_sha256"):
        stale = tuple(s for s in (_code_stale(info), _data_stale(info, Path(results_dir))) if s)
    elif check_stale and info:
        stale = ("code and data (run made before fingerprints were recorded)",)
    return RunStatus(directory, parts[0], parts[1], info.get("fold"), info.get("shot"), info.get("seed"), state,
                     len(scan.records), n, stale, info.get("method_config") or {}, note)


def list_runs(results_dir: str | Path, protocol: str | None = None, methods: list[str] | None = None,
              check_stale: bool = True) -> list[RunStatus]:
    root = Path(results_dir) / "runs"
    folders = sorted(p for p in root.glob(f"{protocol or '*'}/*/*") if p.is_dir()) if root.is_dir() else []
    return [run_status(folder, Path(results_dir), check_stale) for folder in folders
            if not methods or folder.parent.name in methods]


def format_runs(statuses: list[RunStatus]) -> str:
    header = ("protocol", "method", "fold", "shot", "seed", "state", "episodes", "stale", "config", "folder")
    rows = [header]
    for s in statuses:
        config = ", ".join(f"{k}={json.dumps(v, default=str)}" for k, v in sorted(s.config.items()))
        episodes = f"{s.records}/{s.n_episodes if s.n_episodes is not None else '?'}"
        state = f"{s.state} ({s.note})" if s.note else s.state
        rows.append((s.protocol, s.method, str(s.fold), str(s.shot), str(s.seed), state, episodes,
                     "; ".join(s.stale) or "-", config, s.path.name))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header) - 1)]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[-1] for row in rows) + "\n"
