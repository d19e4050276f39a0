"""Aggregates across folds (and protocols), as rliable recommends (Agarwal et al., NeurIPS 2021;
re-implemented here, rliable is archived):

- interquartile mean (IQM) of the per-run values (one per (fold, seed) run): the mean of the
  middle 50% (25% trimmed from each end), robust to one odd fold, less noisy than the median;
- its 95% interval by a stratified bootstrap: runs resampled within each stratum (the fold, or
  (protocol, fold)), so every fold keeps its number of runs;
- performance profiles: per method, the fraction of episodes whose IoU exceeds tau, for tau in [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats

from .stats import DEFAULT_BOOTSTRAP_SEED, DEFAULT_RESAMPLES, percentile_interval


def iqm(values) -> float:
    """Interquartile mean: scipy's trim_mean with 25% cut from each end."""
    return float(scipy_stats.trim_mean(np.asarray(values, float), 0.25))


@dataclass(frozen=True)
class Aggregate:
    value: float
    low: float
    high: float
    runs: int


def stratified_iqm(values, strata, resamples: int = DEFAULT_RESAMPLES,
                   rng: np.random.Generator | None = None) -> Aggregate:
    """IQM of per-run values with a stratified bootstrap 95% interval."""
    values, strata = np.asarray(values, float), np.asarray(strata)
    rng = rng or np.random.default_rng(DEFAULT_BOOTSTRAP_SEED)
    groups = [np.flatnonzero(strata == s) for s in pd.unique(strata)]
    picks = np.concatenate([g[rng.integers(0, len(g), size=(resamples, len(g)))] for g in groups], axis=1)
    replicates = scipy_stats.trim_mean(values[picks], 0.25, axis=1)
    low, high = percentile_interval(replicates)
    return Aggregate(iqm(values), low, high, len(values))


def iqm_table(run_values: pd.DataFrame, resamples: int = DEFAULT_RESAMPLES) -> pd.DataFrame:
    """Per (method, shot): the IQM over (fold, seed, training seed) runs (values in %), stratified by fold (and
    protocol when the frame has one)."""
    rows = []
    for (method, shot), group in run_values.groupby(["method", "shot"], sort=True):
        strata = (group["protocol"].astype(str) + "/" + group["fold"].astype(str)) if "protocol" in group else group["fold"]
        result = stratified_iqm(100 * group["value"].to_numpy(), strata.to_numpy(), resamples)
        rows.append({"method": method, "shot": int(shot), "iqm": result.value, "ci_low": result.low,
                     "ci_high": result.high, "runs": result.runs})
    return pd.DataFrame(rows, columns=["method", "shot", "iqm", "ci_low", "ci_high", "runs"])


def performance_profile(episode_iou, thresholds=None) -> tuple[np.ndarray, np.ndarray]:
    """(tau, fraction of episodes with IoU > tau) for tau on a grid over [0, 1]."""
    thresholds = np.linspace(0, 1, 101) if thresholds is None else np.asarray(thresholds, float)
    iou = np.sort(np.asarray(episode_iou, float))
    above = 1.0 - np.searchsorted(iou, thresholds, side="right") / max(len(iou), 1)
    return thresholds, above
