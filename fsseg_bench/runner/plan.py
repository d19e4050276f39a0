"""The run matrix: one `RunRequest` per (method, fold, shot, seed), and the identity of a run.

A run's directory name is derived from a hash of what determines its records: protocol bytes,
episode list, the data it reads (content hashes of those images and masks), method name, full
config and code fingerprint, checkpoint bytes and limit. Identical runs land in the same place;
anything that changes the records lands elsewhere, so a stale run is never reused.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from ..protocol import Protocol

RECORD_FORMAT = "fsseg-bench-records/2"  # 2: identity by content (weights, closure, AST code hashes)


@dataclass(frozen=True)
class RunRequest:
    """Everything a worker needs to perform one run; plain values, so it pickles to any process."""

    protocol_path: str
    method: str
    fold: int
    shot: int
    seed: int
    results_dir: str
    options: tuple[tuple[str, object], ...] = ()
    checkpoint: str | None = None
    data_root: str | None = None
    limit: int | None = None
    device: str = "cpu"
    plugins: tuple[str, ...] = ()
    use_cache: bool = True
    cache_mib: float = 256.0
    feature_store: str | None = None   # folder of the disk feature store (default: <results>/cache/features)
    feature_store_gib: float = 50.0    # its cap; 0 disables the store
    statistics_mib: float = 64.0       # the support-statistics LRU, apart from the features'
    encode_batch: int = 1              # images encoded together on an accelerator (1 on the CPU: bitwise determinism)
    save_predictions: int = 8
    threads: int = 1
    force: bool = False             # recompute even a complete run
    allow_other_shot: bool = False  # accept a checkpoint trained at another shot (recorded, marked)
    row_label: str | None = None    # the row label tables use for this configuration (run --label)
    original_lists: str | None = None  # where an *-original sampler finds the original lists (--original-lists)
    episode_list: str | None = None    # run this JSONL episode list instead of the protocol's (--episode-list)
    train_seed: int | None = None      # which trained model (train --seed) of a trainable method; None: the schedule's

    @property
    def label(self) -> str:
        trained = f" train seed {self.train_seed}" if self.train_seed is not None else ""
        return f"{self.method} fold {self.fold} shot {self.shot} seed {self.seed}{trained}"


def plan_runs(protocol: Protocol, methods: list[str], *, results_dir: str | Path, folds=None, shots=None,
              seeds=None, train_seeds=None, **common) -> list[RunRequest]:
    """The cross product, methods outermost (so one method's runs share a worker's cache).
    `train_seeds` multiplies the runs of trainable methods (one per trained model); methods that
    are not trained run once."""
    from ..registry import get_entry

    folds = list(folds) if folds else list(protocol.folds)
    shots = list(shots) if shots else list(protocol.shots)
    seeds = list(seeds) if seeds else list(protocol.seeds)
    trained = list(train_seeds) if train_seeds else [None]
    return [RunRequest(protocol_path=protocol.path, method=m, fold=f, shot=k, seed=s, results_dir=str(results_dir),
                       train_seed=t, **common)
            for m in methods for t in (trained if get_entry(m).trainable else [None])
            for f in folds for k in shots for s in seeds]


def run_identity(protocol: Protocol, episode_list_sha256: str, method: str, config: dict,
                 checkpoint_sha256: str | None, fold: int, shot: int, seed: int, limit: int | None,
                 data_sha256: str, code_sha256: str, train_seed: int | None = None,
                 weights: list | None = None, environment: dict | None = None) -> dict:
    """`train_seed` (the checkpoint's training seed) is present only for runs of a trained model;
    `weights` are the (role, sha256) of every weights file the method loaded (never their paths);
    `environment` the values of the variables the method declares it reads (only when it declares any)."""
    identity = {"record_format": RECORD_FORMAT, "protocol": protocol.name, "protocol_sha256": protocol.file_sha256,
                "episode_list_sha256": episode_list_sha256, "data_sha256": data_sha256, "method": method,
                "method_config": config, "code_sha256": code_sha256, "checkpoint_sha256": checkpoint_sha256,
                "weights_sha256": weights or [], "fold": fold, "shot": shot, "seed": seed, "limit": limit}
    if environment:
        identity["environment"] = environment
    return identity if train_seed is None else {**identity, "train_seed": train_seed}


def run_id(identity: dict) -> str:
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:16]


def run_dir(results_dir: str | Path, identity: dict) -> Path:
    trained = f"-train{identity['train_seed']}" if identity.get("train_seed") is not None else ""
    name = f"fold{identity['fold']}-shot{identity['shot']}-seed{identity['seed']}{trained}-{run_id(identity)}"
    runs = Path(results_dir) / "runs"
    directory = runs / identity["protocol"] / identity["method"] / name
    # Protocol and method names are validated slugs; this guards the invariant all the same.
    if ".." in directory.relative_to(runs).parts or len(directory.relative_to(runs).parts) != 3:
        raise ValueError(f"run folder {directory} would lie outside {runs}")
    return directory
