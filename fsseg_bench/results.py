"""Reading finished runs back: one records table for aggregation, with the checks that keep
numbers honest.

- Rows are configurations, not method names: runs are grouped by method, full config, code
  fingerprint, checkpoint recipe (how it was trained, not its bytes, which differ per fold) and
  the user's `--label`. Two configurations of one method are two rows with readable labels
  (`knn (k=1)`, `mean-colour (code 3fa2c1d)`), never one row.
- One run per cell (fold, shot, seed, training seed) of a row: full runs over `--limit` ones, then more episodes,
  then the newest; runs of one row and cell that differ in data, episode list or checkpoint are
  an error naming both.
- Runs of one cell must share their episode list across rows: results on different episodes are
  never averaged or compared.
- Records are verified (exactly the indexes 0..n-1, n the run's episode count) before use; a
  damaged run is reported in one line naming its file and left out.
"""

from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from .errors import InputError
from .stats import NO_TRAIN_SEED
from .runner.store import RECORDS, scan_records


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
    config: dict = field(default_factory=dict)
    code_sha256: str | None = None
    data_sha256: str | None = None
    checkpoint_sha256: str | None = None
    checkpoint_recipe: tuple = ()
    other_shot: bool = False
    row_label: str | None = None
    custom_episodes: bool = False  # run on a list given with --episode-list, not the protocol's own
    train_seed: int | None = None  # the trained model's training seed (None: not trained, or an external checkpoint)
    protocol_sha256: str = ""      # the protocol file's bytes: two versions of one name never share a table
    protocol_path: str = ""
    records_sha256: str | None = None
    code_closure: tuple = ()       # the modules the run loaded (name, path, sha256), re-hashed to warn of stale rows
    fold_classes: tuple = ()       # the fold's test classes (empty for runs written before it was recorded)
    card: str = ""                 # the method card (`cards.card_of`) as sorted JSON; "" before cards
    dataset: str = ""
    label: str = ""  # the table row this run belongs to (set by select_runs)

    @property
    def cell(self) -> tuple:
        return (self.protocol, self.fold, self.shot, self.seed, self.train_seed)

    @property
    def episode_cell(self) -> tuple:
        """Runs of one episode cell read one episode list, whatever their row or trained model."""
        return (self.protocol, self.fold, self.shot, self.seed)

    @property
    def variant(self) -> tuple:
        """What makes a table row: method, config, code, checkpoint recipe, user label."""
        return (self.method, json.dumps(self.config, sort_keys=True, default=str), self.code_sha256,
                self.checkpoint_recipe, self.row_label, self.custom_episodes)


def _checkpoint_recipe(provenance: dict | None) -> tuple:
    if not provenance:
        return ()
    if provenance.get("kind") != "fsseg-bench":
        return ("external",)
    return ("fsseg-bench", provenance.get("protocol"), provenance.get("shot"), provenance.get("total_iterations"),
            json.dumps(provenance.get("config"), sort_keys=True, default=str))


def run_info_from_json(path: Path, info: dict) -> RunInfo:
    return RunInfo(path.parent, info["protocol"], info["method"], info["fold"], info["shot"], info["seed"],
                   info["episode_list_sha256"], info["limit"], info.get("pretrained"), info["n_episodes"],
                   info.get("finished", ""), info.get("method_config") or {}, info.get("code_sha256"),
                   info.get("data_sha256"), info.get("checkpoint_sha256"),
                   _checkpoint_recipe(info.get("checkpoint_provenance")), bool(info.get("checkpoint_other_shot")),
                   info.get("row_label"), bool(info.get("episode_list_custom")), info.get("train_seed"),
                   info.get("protocol_sha256") or "", info.get("protocol_path") or "", info.get("records_sha256"),
                   tuple(json.dumps(entry, sort_keys=True) for entry in info.get("code_closure") or []),
                   tuple(int(c) for c in info.get("fold_classes") or ()),
                   json.dumps(info["card"], sort_keys=True) if info.get("card") else "", info.get("dataset") or "")


def find_runs(results_dir: str | Path, protocol: str | None = None) -> list[RunInfo]:
    """Every run that says it is complete under results/runs (optionally of one protocol)."""
    root = Path(results_dir) / "runs"
    base = root / protocol if protocol else root
    pattern = "*/*/run.json" if protocol else "*/*/*/run.json"
    runs = []
    for path in sorted(base.glob(pattern)):
        try:
            info = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError, OSError):
            continue
        if not isinstance(info, dict) or info.get("status") != "complete":
            continue
        if protocol and info.get("protocol") != protocol:
            continue
        runs.append(run_info_from_json(path, info))
    return runs


def protocols_present(results_dir: str | Path) -> list[str]:
    root = Path(results_dir) / "runs"
    return sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []


CUSTOM_EPISODES_SUFFIX = " [custom episodes]"  # rows run on lists given with --episode-list


def _short(value) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:7]


def row_labels(runs: list[RunInfo]) -> dict[tuple, str]:
    """{variant: label}: the method name when it has one configuration, else the name and what
    tells its configurations apart (config values, then code, then checkpoint recipe)."""
    by_method: dict[str, list[RunInfo]] = {}
    for run in runs:
        variants = by_method.setdefault(run.method, [])
        if all(v.variant != run.variant for v in variants):
            variants.append(run)
    labels = {}
    for method, variants in by_method.items():
        keys = sorted({k for v in variants for k in v.config})
        differing = [k for k in keys if len({json.dumps(v.config.get(k), default=str) for v in variants}) > 1]
        for run in variants:
            if run.row_label:
                labels[run.variant] = run.row_label
                continue
            if len(variants) == 1:
                labels[run.variant] = method
                continue
            parts = [f"{k}={json.dumps(run.config.get(k), default=str).strip(chr(34))}" for k in differing]
            if len({v.code_sha256 for v in variants}) > 1:
                parts.append(f"code {(run.code_sha256 or 'unknown')[:7]}")
            if len({v.checkpoint_recipe for v in variants}) > 1:
                parts.append(f"checkpoint {_short(run.checkpoint_recipe)}")
            labels[run.variant] = f"{method} ({', '.join(parts)})" if parts else method
    for run in runs:
        if run.custom_episodes and not labels[run.variant].endswith(CUSTOM_EPISODES_SUFFIX):
            labels[run.variant] += CUSTOM_EPISODES_SUFFIX
    taken: dict[str, int] = {}
    for variant, label in sorted(labels.items(), key=lambda item: str(item[0])):
        taken[label] = taken.get(label, 0) + 1
        if taken[label] > 1:  # two user labels alike, say: keep the rows apart all the same
            labels[variant] = f"{label} [{_short(variant)}]"
    return labels


def _rank(run: RunInfo) -> tuple:
    return (run.limit is None, run.n_episodes, run.finished)


def select_runs(runs: list[RunInfo], methods: list[str] | None = None) -> list[RunInfo]:
    """One run per (row, fold, shot, seed, training seed), with `label` set to its row's label.

    `methods` keeps rows whose method name or label is listed. Raises InputError when two runs of
    one row and cell differ in what should be identical, or when runs of one cell were computed on
    different episode lists.
    """
    labels = row_labels(runs)
    runs = [_with_label(run, labels[run.variant]) for run in runs]
    if methods:
        runs = [run for run in runs if run.method in methods or run.label in methods]
    candidates: dict[tuple, list[RunInfo]] = {}
    for run in runs:
        candidates.setdefault((run.variant, *run.cell), []).append(run)
    chosen = []
    for group in candidates.values():
        group.sort(key=_rank, reverse=True)
        best = group[0]
        for other in group[1:]:
            if other.limit != best.limit:
                continue
            what = [name for name, a, b in (("data", best.data_sha256, other.data_sha256),
                                            ("episode list", best.episode_list_sha256, other.episode_list_sha256),
                                            ("checkpoint", best.checkpoint_sha256, other.checkpoint_sha256)) if a != b]
            if what:
                trained = f" train seed {best.train_seed}" if best.train_seed is not None else ""
                raise InputError(f"runs {best.path} and {other.path} of {best.label} (fold {best.fold} shot {best.shot} "
                                 f"seed {best.seed}{trained}) differ in {' and '.join(what)}; remove the stale one "
                                 f"(`fsseg-bench runs` shows which is stale)")
        chosen.append(best)
    by_cell: dict[tuple, RunInfo] = {}
    for run in chosen:
        if run.custom_episodes:  # its own row, marked; its list is the point
            continue
        first = by_cell.setdefault(run.episode_cell, run)
        if first.episode_list_sha256 != run.episode_list_sha256:
            raise InputError(f"runs {first.path} and {run.path} were computed on different episode lists "
                             f"({first.episode_list_sha256[:12]}... vs {run.episode_list_sha256[:12]}...) for "
                             f"protocol {run.protocol} fold {run.fold} shot {run.shot} seed {run.seed}; "
                             f"they cannot be aggregated together")
    return sorted(chosen, key=lambda r: (r.label, r.shot, r.fold, r.seed, -1 if r.train_seed is None else r.train_seed))


def _with_label(run: RunInfo, label: str) -> RunInfo:
    from dataclasses import replace

    return replace(run, label=label)


def _stderr(message: str) -> None:
    print(f"WARNING: {message}", file=sys.stderr)


def load_records(runs: list[RunInfo], warn: Callable[[str], None] = _stderr) -> pd.DataFrame:
    """All records of the given runs, verified, with the run's identity as columns.

    `method` is the row label (the method name unless the folder holds several configurations of
    it); `method_name` the registered name. A damaged run is reported through `warn` and left out.
    """
    frames = []
    stale = stale_runs(runs)
    if stale:
        names = sorted({name for _, changed in stale for name in changed})
        warn(f"{len(stale)} run(s) were computed with code that has changed since ({', '.join(names[:4])}"
             f"{' ...' if len(names) > 4 else ''}); rerun the same `fsseg-bench run` command to recompute them "
             f"(`fsseg-bench runs` lists them)")
    for run in runs:
        scan = scan_records(run.path)
        problem = scan.verify(run.n_episodes)
        if problem is None and run.records_sha256 is not None and records_file_sha256(run.path) != run.records_sha256:
            problem = "its records differ from the checksum run.json recorded"
        if problem:
            warn(f"{run.path / RECORDS}: damaged ({problem}); run left out (rerun the same `fsseg-bench run` "
                 f"command to recompute it)")
            continue
        frame = pd.DataFrame(scan.records)
        frame = frame.assign(protocol=run.protocol, protocol_sha256=run.protocol_sha256, method=run.label or run.method, method_name=run.method,
                             fold=run.fold, shot=run.shot, seed=run.seed,
                             train_seed=NO_TRAIN_SEED if run.train_seed is None else run.train_seed, limit=run.limit, pretrained=run.pretrained,
                             other_shot=run.other_shot, run_dir=str(run.path),
                             fold_classes=len(run.fold_classes) if run.fold_classes else np.nan,
                             card=run.card, dataset=run.dataset)
        frames.append(frame)
    if not frames:
        raise InputError("no complete runs found (run `fsseg-bench run` first)")
    return pd.concat(frames, ignore_index=True)


def records_file_sha256(run_path: Path) -> str | None:
    path = Path(run_path) / RECORDS
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


def stale_runs(runs: list[RunInfo]) -> list[tuple[RunInfo, list[str]]]:
    """Runs whose recorded code closure no longer matches the files (each file hashed once)."""
    from .fingerprints import closure_changes

    verdicts: dict[str, bool] = {}
    stale = []
    for run in runs:
        changed = []
        for text in run.code_closure:
            if text not in verdicts:
                verdicts[text] = not closure_changes([json.loads(text)])
            if not verdicts[text]:
                changed.append(json.loads(text).get("name", "?"))
        if changed:
            stale.append((run, changed))
    return stale


def protocol_versions(runs: list[RunInfo]) -> dict[str, list[RunInfo]]:
    """{protocol sha256: runs}: the versions of one protocol name among these runs."""
    versions: dict[str, list[RunInfo]] = {}
    for run in runs:
        versions.setdefault(run.protocol_sha256, []).append(run)
    return versions


def one_protocol_version(runs: list[RunInfo], protocol: str, protocol_sha256: str | None,
                         warn: Callable[[str], None] = _stderr) -> list[RunInfo]:
    """The runs of one version of the protocol: of `protocol_sha256` when given (runs of other
    versions are left out, with one warning), else of the only version present; several versions
    and none chosen is an error naming their files, never one table of mixed versions."""
    versions = protocol_versions(runs)
    if protocol_sha256 is not None:
        others = sum(len(v) for sha, v in versions.items() if sha != protocol_sha256)
        if others:
            warn(f"{others} run(s) of another version of protocol {protocol!r} (other file bytes) left out")
        return versions.get(protocol_sha256, [])
    if len(versions) > 1:
        files = "; ".join(f"{v[0].protocol_path or '?'} (sha256 {sha[:12]}..., {len(v)} runs)"
                          for sha, v in sorted(versions.items()))
        raise InputError(f"runs of {len(versions)} versions of protocol {protocol!r} share this results folder: "
                         f"{files}; pass --protocol FILE to choose one")
    return runs


def _check_names(methods: list[str], runs: list[RunInfo], protocol: str, results_dir) -> None:
    """Every name asked for is a method or a row label of these runs; else one line naming the rows
    there are, with a close match (case-insensitive) when there is one."""
    import difflib

    labels = sorted(set(row_labels(runs).values()))
    known = sorted({run.method for run in runs} | set(labels))
    missing = [name for name in methods if name not in known]
    if not missing:
        return
    by_lower = {name.lower(): name for name in known}
    hints = []
    for name in missing:
        close = difflib.get_close_matches(name.lower(), list(by_lower), n=1, cutoff=0.6)
        if close:
            hints.append(f"{name!r}: did you mean {by_lower[close[0]]!r}?")
    raise InputError(f"no complete runs of {', '.join(map(repr, missing))} for protocol {protocol!r} under "
                     f"{Path(results_dir) / 'runs'} (rows there: {', '.join(labels)})"
                     + (f"; {' '.join(hints)}" if hints else ""))


def _chain_copy(copies: Path, sha256: str):
    """The protocol of a kept chain (`<sha256>.chain.json` and each file's copy), every file's
    bytes verified; None when there is no such copy or it does not verify."""
    from .errors import InputError
    from .protocol import protocol_from_chain

    manifest = copies / f"{sha256}.chain.json"
    try:
        names = json.loads(manifest.read_text())["files"]
        blobs = [(copies / f"{name}.toml").read_bytes() for name in names]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if [hashlib.sha256(blob).hexdigest() for blob in blobs] != names:
        return None
    try:
        protocol = protocol_from_chain(blobs, str(manifest))
    except InputError:
        return None
    return protocol if protocol.file_sha256 == sha256 else None


def recorded_protocol(results_dir: str | Path, name: str, sha256: str):
    """The Protocol of these exact bytes, for reading results: the results folder's own copy
    (RESULTS/protocols/<sha256>.toml), else the built-in of that name or the file the runs were
    read from, each only if its bytes still hash to `sha256`; None when none does (a table then
    uses the pooled metrics and class ids, and says nothing it cannot know)."""
    from .errors import InputError
    from .protocol import load_protocol, resolve_protocol_path

    copies = Path(results_dir) / "protocols"
    chained = _chain_copy(copies, sha256)
    if chained is not None:
        return chained
    candidates = [copies / f"{sha256}.toml"]
    try:
        candidates.append(resolve_protocol_path(name))
    except InputError:
        pass
    for run_json in sorted((Path(results_dir) / "runs" / name).glob("*/*/run.json"))[:1]:
        try:
            recorded = json.loads(run_json.read_text()).get("protocol_path")
        except (OSError, ValueError):
            recorded = None
        if recorded:
            candidates.append(Path(recorded))
    for path in candidates:
        try:
            if path.is_file():
                loaded = load_protocol(path)  # with what it extends: its identity covers the chain
                if loaded.file_sha256 == sha256:
                    return loaded
        except (OSError, InputError):
            continue
    return None


def load_results(results_dir: str | Path, protocol, methods: list[str] | None = None,
                 warn: Callable[[str], None] = _stderr, protocol_sha256: str | None = None) -> pd.DataFrame:
    """The verified records of one protocol's selected runs (what tables, comparisons and plots read).
    `protocol`: a `Protocol` (only runs of its exact bytes) or a name (an error when the folder
    holds runs of several versions of it)."""
    name = protocol if isinstance(protocol, str) else protocol.name
    sha256 = protocol_sha256 if isinstance(protocol, str) else protocol.file_sha256
    protocol = name
    runs = one_protocol_version(find_runs(results_dir, protocol), protocol, sha256, warn)
    if not runs:
        present = protocols_present(results_dir)
        raise InputError(f"no complete runs of protocol {protocol!r} under {Path(results_dir) / 'runs'}"
                         + (f" (protocols there: {', '.join(present)})" if present else ""))
    if methods:
        _check_names(methods, runs, protocol, results_dir)
    selected = select_runs(runs, methods)
    if not selected:
        raise InputError(f"no complete runs of {', '.join(methods or [])} for protocol {protocol!r} under "
                         f"{Path(results_dir) / 'runs'}")
    return load_records(selected, warn)
