"""Reading finished runs back: one records table for aggregation, with the checks that keep
numbers honest (one run per cell, identical episode lists across methods)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .errors import InputError


@dataclass(frozen=True)
class RunInfo:
    path: Path
    protocol: str
    method: str
    fold: int
    shot: int
    seed: int
    episode_list_sha256: str
    limit: int | None
    pretrained: bool | None
    n_episodes: int
    finished: str

    @property
    def cell(self) -> tuple:
        return (self.protocol, self.fold, self.shot, self.seed)


def find_runs(results_dir: str | Path, protocol: str | None = None) -> list[RunInfo]:
    """Every complete run under results/runs (optionally of one protocol)."""
    root = Path(results_dir) / "runs"
    pattern = f"{protocol}/*/*/run.json" if protocol else "*/*/*/run.json"
    runs = []
    for path in sorted(root.glob(pattern)):
        try:
            info = json.loads(path.read_text())
        except json.JSONDecodeError:
            continue
        if info.get("status") != "complete":
            continue
        runs.append(RunInfo(path.parent, info["protocol"], info["method"], info["fold"], info["shot"], info["seed"],
                            info["episode_list_sha256"], info["limit"], info.get("pretrained"), info["n_episodes"],
                            info.get("finished", "")))
    return runs


def select_runs(runs: list[RunInfo], methods: list[str] | None = None) -> list[RunInfo]:
    """One run per (protocol, method, fold, shot, seed): full runs over --limit ones, then the newest.

    Runs of the same cell (protocol, fold, shot, seed) must share their episode list: results
    computed on different episodes are never averaged or compared.
    """
    chosen: dict[tuple, RunInfo] = {}
    for run in runs:
        if methods and run.method not in methods:
            continue
        key = (run.method, *run.cell)
        rank = (run.limit is None, run.n_episodes, run.finished)
        current = chosen.get(key)
        if current is None or rank > (current.limit is None, current.n_episodes, current.finished):
            chosen[key] = run
    by_cell: dict[tuple, RunInfo] = {}
    for run in chosen.values():
        first = by_cell.setdefault(run.cell, run)
        if first.episode_list_sha256 != run.episode_list_sha256:
            raise InputError(f"runs {first.path} and {run.path} were computed on different episode lists "
                             f"({first.episode_list_sha256[:12]}... vs {run.episode_list_sha256[:12]}...) for "
                             f"protocol {run.protocol} fold {run.fold} shot {run.shot} seed {run.seed}; "
                             f"they cannot be aggregated together")
    return sorted(chosen.values(), key=lambda r: (r.method, r.shot, r.fold, r.seed))


def load_records(runs: list[RunInfo]) -> pd.DataFrame:
    """All records of the given runs, with the run's identity as columns."""
    frames = []
    for run in runs:
        frame = pd.read_json(run.path / "records.jsonl", lines=True)
        frame = frame.assign(protocol=run.protocol, method=run.method, fold=run.fold, shot=run.shot,
                             seed=run.seed, limit=run.limit, pretrained=run.pretrained, run_dir=str(run.path))
        frames.append(frame)
    if not frames:
        raise InputError("no complete runs found (run `fsseg-bench run` first)")
    return pd.concat(frames, ignore_index=True)
