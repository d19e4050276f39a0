"""The long summary table: every (method, shot, fold|mean, metric) with every kind of interval.

Values are percentages. A fold's value is the mean over training seeds (trained methods) of the
mean over episode seeds of each run's value (as PANet reports); `mean` is the mean of the folds.
Each interval is a row named by `ci_method` (see `stats`): the spread over training seeds
(`train-seeds-t95`) is kept apart from the spread over episode seeds (`seeds-t95`) and over
episodes (`episodes-bootstrap-t95`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .. import stats

SUMMARY_COLUMNS = ["protocol", "method", "shot", "fold", "metric", "value", "ci_low", "ci_high", "ci_method",
                   "n_seeds", "n_train_seeds", "n_episodes", "n_classes", "fold_classes", "limited", "pretrained",
                   "other_shot_checkpoint", "card", "dataset"]
# The interval a table cell shows, most complete first: across training seeds (both levels of
# noise), across episode seeds, across episodes.
PRIMARY_ORDER = ("train-seeds-t95", "seeds-t95", "episodes-bootstrap-t95", "episodes-bootstrap95")


def summarise(records: pd.DataFrame, metrics=stats.METRICS, resamples: int = stats.DEFAULT_RESAMPLES) -> pd.DataFrame:
    records = stats.with_train_seed(records)
    rows = []
    for (protocol, method, shot), group in records.groupby(["protocol", "method", "shot"], sort=True):
        limited = bool(group["limit"].notna().any())
        pretrained = group["pretrained"].iloc[0]
        pretrained = None if pretrained is None or (isinstance(pretrained, float) and np.isnan(pretrained)) else bool(pretrained)
        other_shot = bool(group["other_shot"].any()) if "other_shot" in group else False
        base = {"protocol": protocol, "method": method, "shot": int(shot), "limited": limited, "pretrained": pretrained,
                "other_shot_checkpoint": other_shot,
                # The method card (JSON, `cards.card_of`) and the dataset its warnings are read against.
                "card": str(group["card"].iloc[0]) if "card" in group else "",
                "dataset": str(group["dataset"].iloc[0]) if "dataset" in group else ""}
        for metric in metrics:
            per_fold = []
            folds = sorted(group["fold"].unique())
            for fold in folds:
                fold_records = group[group["fold"] == fold]
                rng = np.random.default_rng([stats.DEFAULT_BOOTSTRAP_SEED, int(fold), int(shot)])
                intervals = stats.fold_intervals(fold_records, metric, resamples, rng)
                per_fold.append(intervals)
                counts = {"n_seeds": fold_records["seed"].nunique(), "n_train_seeds": _train_seeds(fold_records),
                          "n_episodes": len(fold_records), **_class_counts([fold_records])}
                for interval in (intervals.seeds, intervals.train_seeds, intervals.episodes):
                    if interval.method != "none" or interval is intervals.seeds:
                        rows.append({**base, "fold": str(fold), "metric": metric, **_percent(interval), **counts})
            if len(folds) == 4:
                seed_ci, train_ci, episode_ci = stats.fold_mean_intervals(per_fold)
                counts = {"n_seeds": min(len(f.seed_values) for f in per_fold),
                          "n_train_seeds": min(_train_seeds(group[group.fold == f]) for f in folds),
                          "n_episodes": len(group), **_class_counts([group[group.fold == f] for f in folds])}
                for interval in (seed_ci, train_ci, episode_ci):
                    if interval.method != "none" or interval is seed_ci:
                        rows.append({**base, "fold": "mean", "metric": metric, **_percent(interval), **counts})
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


def _class_counts(per_fold: list[pd.DataFrame]) -> dict:
    """Classes the cell averages over, and the folds' own class count (NaN when the runs did not
    record it): a cell with fewer is not the protocol's full number."""
    n_classes = sum(int(records["class_id"].nunique()) for records in per_fold)
    known = all("fold_classes" in r and r["fold_classes"].notna().any() for r in per_fold)
    fold_classes = sum(int(r["fold_classes"].max()) for r in per_fold) if known else np.nan
    return {"n_classes": n_classes, "fold_classes": fold_classes}


def partial_classes(row) -> bool:
    """True when a summary row averages over fewer classes than its folds have."""
    fold_classes = row.get("fold_classes") if hasattr(row, "get") else row["fold_classes"]
    return fold_classes is not None and not pd.isna(fold_classes) and row["n_classes"] < fold_classes


def _train_seeds(records: pd.DataFrame) -> int:
    """Trained models behind these records (0 for a method that is not trained)."""
    return int((records["train_seed"].unique() != stats.NO_TRAIN_SEED).sum())


def _percent(interval: stats.Interval) -> dict:
    """In points; the interval truncated to [0, 100], the range of every IoU (a studentised or t
    interval of few episodes can reach past it, which no reader should see)."""
    low, high = (float(np.clip(100 * v, 0.0, 100.0)) if not np.isnan(v) else v for v in (interval.low, interval.high))
    return {"value": 100 * interval.value, "ci_low": low, "ci_high": high, "ci_method": interval.method}


def primary(summary: pd.DataFrame) -> pd.DataFrame:
    """One interval per cell: the first of PRIMARY_ORDER the cell has."""
    keys = ["protocol", "method", "shot", "fold", "metric"]
    ranked = summary[summary["ci_method"].isin(PRIMARY_ORDER)].assign(
        _rank=lambda f: f["ci_method"].map(PRIMARY_ORDER.index))
    chosen = ranked.sort_values(keys + ["_rank"]).drop_duplicates(keys).drop(columns="_rank")
    return chosen.sort_values(keys).reset_index(drop=True)
