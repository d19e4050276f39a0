"""Confidence intervals and paired comparisons for few-shot segmentation metrics.

All functions take per-episode records (a DataFrame with `seed`, `class_id` and the count columns
of `metrics.COUNT_COLUMNS`) and recompute the pooled metrics from count sums, so every interval is
an interval for the very number the table prints.

- Across seeds: Student-t 95% interval over the per-seed values (and PANet's std over runs).
- Across episodes: 95% percentile bootstrap; episodes are resampled within (seed, class), so
  every class keeps its episode count, and the pooled IoU is recomputed for each resample.
- Paired: two methods on the same episodes; the bootstrap resamples the same episodes for both
  (interval of the difference) and a sign-flip permutation test swaps the two methods' counts per
  episode (two-sided p-value).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats

METRICS = ("miou", "fbiou", "episode_miou", "miou_panet_metric")
_SUM_COLUMNS = ("fg_intersection", "fg_union", "bg_intersection", "bg_union", "episode_iou", "episode_scored",
                "panet_fg_intersection", "panet_fg_union")
# The sums each metric reads: resampling only those keeps every replicate identical and cheaper.
_METRIC_COLUMNS = {"miou": ("fg_intersection", "fg_union"),
                   "fbiou": ("fg_intersection", "fg_union", "bg_intersection", "bg_union"),
                   "episode_miou": ("episode_iou", "episode_scored"),
                   "miou_panet_metric": ("panet_fg_intersection", "panet_fg_union")}
DEFAULT_RESAMPLES = 1000
DEFAULT_BOOTSTRAP_SEED = 20191027  # fixed: the same records always give the same interval


@dataclass(frozen=True)
class Interval:
    value: float
    low: float
    high: float
    method: str  # "seeds-t95" | "episodes-bootstrap95" | "none"

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2


def _episode_columns(records: pd.DataFrame) -> dict[str, np.ndarray]:
    union = records["fg_union"].to_numpy(float)
    scored = union > 0
    iou = np.divide(records["fg_intersection"].to_numpy(float), union, out=np.zeros_like(union), where=scored)
    # PANet's Metric counts an episode for its class only when the query's label holds the class.
    has_class = records["true_fg"].to_numpy(float) > 0
    intersection = records["fg_intersection"].to_numpy(float)
    return {"fg_intersection": intersection, "fg_union": union,
            "bg_intersection": records["bg_intersection"].to_numpy(float),
            "bg_union": records["bg_union"].to_numpy(float), "episode_iou": iou, "episode_scored": scored.astype(float),
            "panet_fg_intersection": np.where(has_class, intersection, 0.0),
            "panet_fg_union": np.where(has_class, union, 0.0)}


def _strata(records: pd.DataFrame) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """Row indices of each (seed, class) stratum, and each stratum's seed and class."""
    groups = records.groupby(["seed", "class_id"], sort=True).indices
    keys = list(groups)
    return [groups[k] for k in keys], np.array([k[0] for k in keys]), np.array([k[1] for k in keys])


def _metric_from_sums(sums: dict[str, np.ndarray], seeds: np.ndarray, metric: str) -> np.ndarray:
    """sums: column -> [R, n_strata] -> metric per replicate [R] (mean over seeds of per-seed values)."""
    per_seed = []
    for seed in np.unique(seeds):
        cols = seeds == seed
        if metric == "miou":
            with np.errstate(invalid="ignore", divide="ignore"):
                per_class = sums["fg_intersection"][:, cols] / sums["fg_union"][:, cols]
            per_seed.append(np.nanmean(per_class, axis=1))
        elif metric == "miou_panet_metric":
            with np.errstate(invalid="ignore", divide="ignore"):
                per_class = sums["panet_fg_intersection"][:, cols] / sums["panet_fg_union"][:, cols]
            per_seed.append(np.nanmean(per_class, axis=1))
        elif metric == "fbiou":
            fg = sums["fg_intersection"][:, cols].sum(1) / sums["fg_union"][:, cols].sum(1)
            bg = sums["bg_intersection"][:, cols].sum(1) / sums["bg_union"][:, cols].sum(1)
            per_seed.append((fg + bg) / 2)
        elif metric == "episode_miou":
            per_seed.append(sums["episode_iou"][:, cols].sum(1) / sums["episode_scored"][:, cols].sum(1))
        else:
            raise ValueError(f"metric {metric!r}: expected one of {METRICS}")
    return np.mean(per_seed, axis=0)


def observed(records: pd.DataFrame, metric: str) -> float:
    columns = _episode_columns(records)
    rows, seeds, _ = _strata(records)
    sums = {c: np.array([[columns[c][r].sum() for r in rows]]) for c in _SUM_COLUMNS}
    return float(_metric_from_sums(sums, seeds, metric)[0])


def per_seed_values(records: pd.DataFrame, metric: str) -> np.ndarray:
    return np.array([observed(group, metric) for _, group in records.groupby("seed", sort=True)])


def seed_interval(values: np.ndarray, confidence: float = 0.95) -> tuple[float, float]:
    """Student-t interval of the mean over seeds; (nan, nan) with fewer than two seeds."""
    values = np.asarray(values, float)
    if len(values) < 2:
        return float("nan"), float("nan")
    half = scipy_stats.t.ppf(0.5 + confidence / 2, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values))
    return float(values.mean() - half), float(values.mean() + half)


def bootstrap_replicates(records: pd.DataFrame, metric: str, resamples: int = DEFAULT_RESAMPLES,
                         rng: np.random.Generator | None = None, paired_with: pd.DataFrame | None = None) -> np.ndarray:
    """Metric on `resamples` bootstrap resamples of episodes within (seed, class) strata.

    With `paired_with` (the same episodes, same order, for another method) it returns the
    replicates of (paired_with - records), both resampled with the same indices.
    """
    rng = rng or np.random.default_rng(DEFAULT_BOOTSTRAP_SEED)
    columns = _episode_columns(records)
    other = _episode_columns(paired_with) if paired_with is not None else None
    rows, seeds, _ = _strata(records)
    needed = _METRIC_COLUMNS.get(metric, _SUM_COLUMNS)
    sums = {c: np.empty((resamples, len(rows))) for c in needed}
    other_sums = {c: np.empty((resamples, len(rows))) for c in needed} if other else None
    for j, stratum in enumerate(rows):
        picks = stratum[rng.integers(0, len(stratum), size=(resamples, len(stratum)))]
        for c in needed:
            sums[c][:, j] = columns[c][picks].sum(axis=1)
            if other:
                other_sums[c][:, j] = other[c][picks].sum(axis=1)
    values = _metric_from_sums(sums, seeds, metric)
    return _metric_from_sums(other_sums, seeds, metric) - values if other else values


def percentile_interval(replicates: np.ndarray, confidence: float = 0.95) -> tuple[float, float]:
    tail = (1 - confidence) / 2 * 100
    return float(np.percentile(replicates, tail)), float(np.percentile(replicates, 100 - tail))


def fold_intervals(records: pd.DataFrame, metric: str, resamples: int = DEFAULT_RESAMPLES,
                   rng: np.random.Generator | None = None) -> tuple[Interval, Interval, np.ndarray]:
    """(seed interval, episode-bootstrap interval, bootstrap replicates) of one fold's value."""
    seeds = per_seed_values(records, metric)
    value = float(seeds.mean())
    low, high = seed_interval(seeds)
    replicates = bootstrap_replicates(records, metric, resamples, rng)
    b_low, b_high = percentile_interval(replicates)
    seed_ci = Interval(value, low, high, "seeds-t95" if len(seeds) > 1 else "none")
    return seed_ci, Interval(value, b_low, b_high, "episodes-bootstrap95"), replicates


def fold_mean_intervals(per_fold_seed_values: list[np.ndarray], per_fold_replicates: list[np.ndarray]) -> tuple[Interval, Interval]:
    """The 4-fold mean: seeds paired across folds for the t-interval; folds' bootstrap replicates
    drawn independently, averaged replicate by replicate."""
    value = float(np.mean([v.mean() for v in per_fold_seed_values]))
    lengths = {len(v) for v in per_fold_seed_values}
    if len(lengths) == 1 and lengths.pop() > 1:
        low, high = seed_interval(np.mean(per_fold_seed_values, axis=0))
        seed_ci = Interval(value, low, high, "seeds-t95")
    else:
        seed_ci = Interval(value, float("nan"), float("nan"), "none")
    low, high = percentile_interval(np.mean(per_fold_replicates, axis=0))
    return seed_ci, Interval(value, low, high, "episodes-bootstrap95")


@dataclass(frozen=True)
class PairedComparison:
    difference: float  # b - a
    low: float
    high: float
    p_value: float
    resamples: int


def paired_replicates(a: pd.DataFrame, b: pd.DataFrame, metric: str, resamples: int,
                      rng: np.random.Generator) -> tuple[float, np.ndarray, np.ndarray]:
    """(observed b - a, paired bootstrap replicates of it, its permutation null distribution).

    Permutation: under "no difference" the labels A/B of each episode's counts are exchangeable,
    so each replicate swaps them in a random half of the episodes.
    """
    a, b = align_pair(a, b)
    difference = observed(b, metric) - observed(a, metric)
    boot = bootstrap_replicates(a, metric, resamples, rng, paired_with=b)
    columns_a, columns_b = _episode_columns(a), _episode_columns(b)
    rows, seeds, _ = _strata(a)
    flips = rng.random((resamples, len(a))) < 0.5
    needed = _METRIC_COLUMNS.get(metric, _SUM_COLUMNS)
    sums_a = {c: np.empty((resamples, len(rows))) for c in needed}
    sums_b = {c: np.empty((resamples, len(rows))) for c in needed}
    for c in needed:
        swapped_a = np.where(flips, columns_b[c], columns_a[c])
        swapped_b = np.where(flips, columns_a[c], columns_b[c])
        for j, stratum in enumerate(rows):
            sums_a[c][:, j] = swapped_a[:, stratum].sum(axis=1)
            sums_b[c][:, j] = swapped_b[:, stratum].sum(axis=1)
    null = _metric_from_sums(sums_b, seeds, metric) - _metric_from_sums(sums_a, seeds, metric)
    return difference, boot, null


def summarise_paired(difference: float, boot: np.ndarray, null: np.ndarray) -> PairedComparison:
    low, high = percentile_interval(boot)
    extreme = np.sum(np.abs(null) >= abs(difference) - 1e-12)
    return PairedComparison(difference, low, high, float((1 + extreme) / (1 + len(null))), len(null))


def paired_comparison(a: pd.DataFrame, b: pd.DataFrame, metric: str = "miou", resamples: int = DEFAULT_RESAMPLES,
                      seed: int = DEFAULT_BOOTSTRAP_SEED) -> PairedComparison:
    """B minus A on the same episodes: paired bootstrap 95% interval and sign-flip permutation p-value."""
    return summarise_paired(*paired_replicates(a, b, metric, resamples, np.random.default_rng(seed)))


def paired_comparison_folds(a_by_fold: dict, b_by_fold: dict, metric: str = "miou",
                            resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_BOOTSTRAP_SEED
                            ) -> dict[object, PairedComparison]:
    """Per fold, and for the mean over folds ("mean": folds' replicates averaged replicate by replicate)."""
    rng = np.random.default_rng(seed)
    parts = {fold: paired_replicates(a_by_fold[fold], b_by_fold[fold], metric, resamples, rng) for fold in sorted(a_by_fold)}
    results = {fold: summarise_paired(*part) for fold, part in parts.items()}
    results["mean"] = summarise_paired(float(np.mean([p[0] for p in parts.values()])),
                                       np.mean([p[1] for p in parts.values()], axis=0),
                                       np.mean([p[2] for p in parts.values()], axis=0))
    return results


def align_pair(a: pd.DataFrame, b: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Order both by (seed, index) and check they hold the same episodes."""
    a = a.sort_values(["seed", "index"]).reset_index(drop=True)
    b = b.sort_values(["seed", "index"]).reset_index(drop=True)
    same = len(a) == len(b) and (a[["seed", "index", "class_id"]].to_numpy() == b[["seed", "index", "class_id"]].to_numpy()).all()
    if not same:
        raise ValueError("the two record sets do not hold the same episodes")
    return a, b
