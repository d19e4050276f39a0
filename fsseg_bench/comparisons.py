"""Comparing several methods: probability of improvement and Holm-adjusted pairwise tests.

- P(A > B) (Bouthillier et al., MLSys 2021): over paired runs (the same fold, shot and seed, hence
  the same episodes, and for trained methods the same training seed; a method that is not trained
  is paired with each of the other's models), the fraction where A's value beats B's, ties counting
  one half; its 95% interval is a percentile bootstrap over the pairs, resampled within each fold.
  With several training seeds the pairs span the training lottery, as Bouthillier et al. ask.
- Holm's step-down adjustment controls the family-wise error of many pairwise tests: with m
  p-values sorted ascending, the i-th (from 1) becomes max over j <= i of min(1, (m - j + 1) p_j).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

import numpy as np
import pandas as pd

from .stats import (DEFAULT_BOOTSTRAP_SEED, DEFAULT_RESAMPLES, NO_TRAIN_SEED, observed, percentile_interval,
                    with_train_seed)


@dataclass(frozen=True)
class Improvement:
    probability: float  # P(b > a)
    low: float
    high: float
    pairs: int


def probability_of_improvement(a_values, b_values, strata=None, resamples: int = DEFAULT_RESAMPLES,
                               rng: np.random.Generator | None = None) -> Improvement:
    """P(b > a) over paired values (ties count 1/2) with a percentile bootstrap interval; pairs are
    resampled within `strata` (e.g. the fold) when given."""
    a, b = np.asarray(a_values, float), np.asarray(b_values, float)
    if a.shape != b.shape or a.size == 0:
        raise ValueError("probability_of_improvement: expected two non-empty arrays of paired values")
    wins = (b > a) + 0.5 * (b == a)
    strata = np.zeros(len(a), int) if strata is None else np.asarray(strata)
    rng = rng or np.random.default_rng(DEFAULT_BOOTSTRAP_SEED)
    replicates = np.zeros(resamples)
    for stratum in np.unique(strata):
        members = np.flatnonzero(strata == stratum)
        picks = members[rng.integers(0, len(members), size=(resamples, len(members)))]
        replicates += wins[picks].sum(axis=1)
    replicates /= len(a)
    low, high = percentile_interval(replicates)
    return Improvement(float(wins.mean()), low, high, len(a))


def holm(p_values) -> np.ndarray:
    """Holm-adjusted p-values, in the input order."""
    p = np.asarray(p_values, float)
    order = np.argsort(p, kind="stable")
    m = len(p)
    adjusted = np.empty(m)
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[index]))
        adjusted[index] = running
    return adjusted


def run_values(records: pd.DataFrame, metric: str = "miou") -> pd.DataFrame:
    """One value per (method, fold, shot, seed, train_seed) run: the metric of that run's episodes."""
    keys = ["method", "fold", "shot", "seed", "train_seed"]
    rows = [{"method": method, "fold": int(fold), "shot": int(shot), "seed": int(seed), "train_seed": int(train_seed),
             "value": observed(group, metric)}
            for (method, fold, shot, seed, train_seed), group in with_train_seed(records).groupby(keys, sort=True)]
    return pd.DataFrame(rows, columns=keys + ["value"])


def paired_run_values(a: pd.DataFrame, b: pd.DataFrame) -> pd.DataFrame:
    """Run values of two methods side by side (`value_a`, `value_b`), one row per pair of runs on
    the same episodes: matched on the training seed too when both are trained."""
    trained = [(frame["train_seed"] != NO_TRAIN_SEED).any() for frame in (a, b)]
    keys = ["fold", "seed", "train_seed"] if all(trained) else ["fold", "seed"]
    left = a.drop(columns=[] if trained[0] or not trained[1] else ["train_seed"])
    right = b.drop(columns=[] if trained[1] or not trained[0] else ["train_seed"])
    merged = left.merge(right, on=keys, suffixes=("_a", "_b"))
    return merged.sort_values(["fold", "seed"] + [c for c in merged.columns if c.startswith("train_seed")])


def pairwise(records: pd.DataFrame, methods: list[str], metric: str = "miou",
             resamples: int = DEFAULT_RESAMPLES, cache: dict | None = None) -> pd.DataFrame:
    """Every pair (a, b) of `methods` per shot, on the mean of folds (or the one fold there is):
    the paired difference b - a with its interval and permutation p-value (`p_tail`, `p_resolved`:
    see `stats.PairedComparison`), the Holm-adjusted p (of `p_resolved`) over the family (all pairs of the given methods at that shot), and P(b > a) over (fold, seed) runs."""
    from .report.compare import compare_cached, shared_episodes

    compared = {(a, b): compare_cached(records, a, b, metric, resamples, cache) for a, b in combinations(methods, 2)}
    rows = []
    for (a, b), by_shot in compared.items():
        for shot, comparison in by_shot.items():
            summary = comparison.get("mean") or comparison[min(k for k in comparison if k != "mean")]
            # Run values on the episodes both hold (a --limit run against a full one: its prefix).
            pair_a, pair_b, _ = shared_episodes(records[(records.method == a) & (records.shot == shot)],
                                                records[(records.method == b) & (records.shot == shot)])
            pairs = paired_run_values(run_values(pair_a, metric).drop(columns=["method", "shot"]),
                                      run_values(pair_b, metric).drop(columns=["method", "shot"]))
            improvement = probability_of_improvement(pairs["value_a"].to_numpy(), pairs["value_b"].to_numpy(),
                                                     strata=pairs["fold"].to_numpy(), resamples=resamples)
            rows.append({"shot": int(shot), "a": a, "b": b, "metric": metric, "difference": 100 * summary.difference,
                         "ci_low": 100 * summary.low, "ci_high": 100 * summary.high, "p_value": summary.p_value,
                         "p_tail": summary.p_tail, "p_resolved": summary.p_resolved, "p_holm": np.nan, "p_b_better": improvement.probability, "p_b_better_low": improvement.low,
                         "p_b_better_high": improvement.high, "pairs": improvement.pairs,
                         "resamples": summary.resamples,
                         "family": f"{len(methods) * (len(methods) - 1) // 2} pairs at {int(shot)} shot"})
    frame = pd.DataFrame(rows).sort_values(["shot"], kind="stable").reset_index(drop=True)
    for shot, group in frame.groupby("shot"):
        # Holm over the resolved p: with m pairs, permutation p at the floor 1/(R+1) would all adjust to
        # m/(R+1) and say nothing; the normal tail of the same null tells them apart.
        frame.loc[group.index, "p_holm"] = holm(group["p_resolved"].to_numpy())
    return frame
