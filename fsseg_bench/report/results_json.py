"""Machine-readable results: one versioned JSON document per protocol version (every metric and
interval per row and cell, with what determined them), and the long per-episode export.

Schema `fsseg-bench-results/1` (documented in README, "Machine-readable results"):

    {"schema": "fsseg-bench-results/1", "harness_version", "generated",
     "protocol": {"name", "sha256"}, "settings": {"resamples", "miou_metric", "fbiou_metric"},
     "rows": [{"row", "method", "config", "code_sha256", "weights_sha256", "pretrained", "card",
               "checkpoint_sha256", "wall_seconds", "encoder_passes", "software",
               "runs": [{"fold", "shot", "seed", "train_seed", "n_episodes", "limit",
                         "episode_list_sha256", "data_sha256", "records_sha256", "run_id"}],
               "cells": [{"shot", "fold", "metric", "value", "ci_low", "ci_high", "ci_method",
                          "n_seeds", "n_train_seeds", "n_episodes", "n_classes", "fold_classes",
                          "limited", "primary"}]}]}

Values are in points; `fold` is a string ("0".."3" or "mean"); `primary` marks the interval the
paper tables print. Keys are only ever added within one schema version.
"""

from __future__ import annotations

import json
import math
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

SCHEMA = "fsseg-bench-results/1"
EPISODE_COLUMNS = ("protocol", "protocol_sha256", "method", "method_name", "fold", "shot", "seed", "train_seed",
                   "index", "class_id", "query", "support", "fg_intersection", "fg_union", "bg_intersection", "bg_union",
                   "pred_fg", "true_fg", "iou")


def _finite(value):
    """JSON has no NaN: None instead (a cell without an interval)."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if hasattr(value, "item"):  # numpy scalars
        return _finite(value.item())
    return value


def _run_json(run_dir: str) -> dict:
    try:
        return json.loads((Path(run_dir) / "run.json").read_text())
    except (OSError, ValueError):
        return {}


def results_document(records: pd.DataFrame, summary: pd.DataFrame, miou_metric: str = "miou",
                     fbiou_metric: str = "fbiou", resamples: int = 1000) -> dict:
    """The document for one protocol version's records and their summary (`report.summary.summarise`)."""
    from .. import __version__
    from .summary import primary

    protocols = sorted(set(zip(records["protocol"], records["protocol_sha256"])))
    chosen = {tuple(r) for r in primary(summary)[["method", "shot", "fold", "metric", "ci_method"]].to_numpy()}
    rows = []
    for label, group in records.groupby("method", sort=True):
        infos = {run_dir: _run_json(run_dir) for run_dir in group["run_dir"].unique()}
        first = next(iter(infos.values()), {})
        runs = []
        for run_dir, info in infos.items():
            runs.append({"fold": info.get("fold"), "shot": info.get("shot"), "seed": info.get("seed"),
                         "train_seed": info.get("train_seed"), "n_episodes": info.get("n_episodes"),
                         "limit": info.get("limit"), "episode_list_sha256": info.get("episode_list_sha256"),
                         "data_sha256": info.get("data_sha256"), "records_sha256": info.get("records_sha256"),
                         "run_id": info.get("run_id"), "run_dir": str(run_dir)})
        runs.sort(key=lambda r: (r["shot"] or 0, r["fold"] or 0, r["seed"] or 0, r["train_seed"] or -1))
        cells = []
        for cell in summary[summary.method == label].itertuples():
            cells.append({"shot": int(cell.shot), "fold": str(cell.fold), "metric": cell.metric,
                          "value": _finite(cell.value), "ci_low": _finite(cell.ci_low), "ci_high": _finite(cell.ci_high),
                          "ci_method": cell.ci_method, "n_seeds": _finite(cell.n_seeds),
                          "n_train_seeds": _finite(cell.n_train_seeds), "n_episodes": _finite(cell.n_episodes),
                          "n_classes": _finite(cell.n_classes), "fold_classes": _finite(cell.fold_classes),
                          "limited": bool(cell.limited),
                          "primary": (label, cell.shot, cell.fold, cell.metric, cell.ci_method) in chosen})
        rows.append({
            "row": label, "method": first.get("method"), "config": first.get("method_config"),
            "code_sha256": sorted({i.get("code_sha256") for i in infos.values() if i.get("code_sha256")}),
            "weights_sha256": first.get("weights_sha256"), "pretrained": first.get("pretrained"),
            "card": first.get("card"),
            "checkpoint_sha256": sorted({i.get("checkpoint_sha256") for i in infos.values() if i.get("checkpoint_sha256")}),
            "wall_seconds": round(sum(float(i.get("wall_seconds") or 0) for i in infos.values()), 3),
            "encoder_passes": sum(int(i.get("encoder_passes") or 0) for i in infos.values()),
            "software": first.get("software"), "runs": runs, "cells": cells})
    return {"schema": SCHEMA, "harness_version": __version__,
            "generated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "protocol": [{"name": name, "sha256": sha} for name, sha in protocols][0] if len(protocols) == 1
            else [{"name": name, "sha256": sha} for name, sha in protocols],
            "settings": {"resamples": resamples, "miou_metric": miou_metric, "fbiou_metric": fbiou_metric},
            "rows": rows}


def results_json(records: pd.DataFrame, summary: pd.DataFrame, miou_metric: str = "miou",
                 fbiou_metric: str = "fbiou", resamples: int = 1000) -> str:
    return json.dumps(results_document(records, summary, miou_metric, fbiou_metric, resamples), indent=1,
                      allow_nan=False) + "\n"


def episodes_frame(records: pd.DataFrame) -> pd.DataFrame:
    """One row per (row, fold, shot, seed, training seed, episode): its class, query and supports,
    the six counts and its foreground IoU in points (empty where nothing was to be scored);
    `train_seed` is empty for a method that is not trained."""
    from ..stats import NO_TRAIN_SEED

    frame = records.copy()
    for column in ("query", "support"):  # image ids, space-separated
        frame[column] = (frame[column].map(lambda ids: " ".join(ids) if isinstance(ids, (list, tuple)) else ids)
                         if column in frame else None)
    frame["train_seed"] = frame["train_seed"].where(frame["train_seed"] != NO_TRAIN_SEED).astype("Int64")
    union = frame["fg_union"].astype(float)
    frame["iou"] = (frame["fg_intersection"] / union.where(union > 0)) * 100
    return frame[[c for c in EPISODE_COLUMNS if c in frame]].sort_values(
        ["method", "shot", "fold", "seed", "train_seed", "index"], kind="stable").reset_index(drop=True)
