"""The long summary table: every (method, shot, fold|mean, metric) with both kinds of interval.

Values are percentages. A fold's value is the mean over seeds of each seed's value (as PANet
reports); `mean` is the mean of the folds.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .. import stats

SUMMARY_COLUMNS = ["protocol", "method", "shot", "fold", "metric", "value", "ci_low", "ci_high", "ci_method",
                   "n_seeds", "n_episodes", "limited", "pretrained", "other_shot_checkpoint"]


def summarise(records: pd.DataFrame, metrics=stats.METRICS, resamples: int = stats.DEFAULT_RESAMPLES) -> pd.DataFrame:
    rows = []
    for (protocol, method, shot), group in records.groupby(["protocol", "method", "shot"], sort=True):
        limited = bool(group["limit"].notna().any())
        pretrained = group["pretrained"].iloc[0]
        pretrained = None if pretrained is None or (isinstance(pretrained, float) and np.isnan(pretrained)) else bool(pretrained)
        other_shot = bool(group["other_shot"].any()) if "other_shot" in group else False
        base = {"protocol": protocol, "method": method, "shot": int(shot), "limited": limited, "pretrained": pretrained,
                "other_shot_checkpoint": other_shot}
        for metric in metrics:
            seed_values, replicates = [], []
            folds = sorted(group["fold"].unique())
            for fold in folds:
                fold_records = group[group["fold"] == fold]
                rng = np.random.default_rng([stats.DEFAULT_BOOTSTRAP_SEED, int(fold), int(shot)])
                seed_ci, boot_ci, boot = stats.fold_intervals(fold_records, metric, resamples, rng)
                seed_values.append(stats.per_seed_values(fold_records, metric))
                replicates.append(boot)
                counts = {"n_seeds": fold_records["seed"].nunique(), "n_episodes": len(fold_records)}
                for interval in (seed_ci, boot_ci):
                    rows.append({**base, "fold": str(fold), "metric": metric, **_percent(interval), **counts})
            if len(folds) == 4:
                for interval in stats.fold_mean_intervals(seed_values, replicates):
                    rows.append({**base, "fold": "mean", "metric": metric, **_percent(interval),
                                 "n_seeds": min(len(v) for v in seed_values), "n_episodes": len(group)})
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


def _percent(interval: stats.Interval) -> dict:
    return {"value": 100 * interval.value, "ci_low": 100 * interval.low, "ci_high": 100 * interval.high,
            "ci_method": interval.method}


def primary(summary: pd.DataFrame) -> pd.DataFrame:
    """One interval per cell: across seeds when there are several, else across episodes."""
    seeds = summary[summary["ci_method"] == "seeds-t95"]
    boot = summary[summary["ci_method"] == "episodes-bootstrap95"]
    keys = ["protocol", "method", "shot", "fold", "metric"]
    chosen = pd.concat([seeds, boot[~boot.set_index(keys).index.isin(seeds.set_index(keys).index)]])
    return chosen.sort_values(keys).reset_index(drop=True)
