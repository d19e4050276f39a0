"""Confidence intervals and paired comparisons for few-shot segmentation metrics.

All functions take per-episode records (a DataFrame with `seed`, `class_id`, optionally
`train_seed`, and the count columns of `metrics.COUNT_COLUMNS`) and recompute the pooled metrics
from count sums, so every interval is an interval for the very number the table prints.

A fold's value is the mean over training seeds (one per trained model; -1 or absent for a method
that is not trained) of the mean over episode seeds of each run's metric. The intervals, each
named in `ci_method`:

- `seeds-t95`: Student t over the per-episode-seed values.
- `train-seeds-t95`: Student t over the per-training-seed values, each averaged over its episode
  seeds and episodes. This is the two-level interval: in a nested design (models, then episodes)
  the spread of the models' values holds both the training lottery and each model's episode
  noise, so it estimates the variance of their mean without a model for either level. With
  several folds the variances add (training seeds are not paired across folds; Welch's df).
  Measured coverage (300 repeats): 96.0% with 3 models, 93.0% with 5, where the episode-only
  interval covered 53-56% and a naive two-level percentile bootstrap (resample models, then
  episodes) 82-87%, too short with few models.
- `episodes-bootstrap-t95`: studentised bootstrap over episodes, resampled within (training
  seed, seed, class) so every class keeps its episode count. Each replicate is divided by its own
  delta-method standard error (the linearised class-pooled ratio). Chosen over the percentile
  interval because the pooled IoU of a weak method is a skewed ratio whose replicates sit off the
  observed value (the 32.50 vs 33.08 seen on a small method). Measured coverage of nominal 95%
  (400 repeats each, tests/test_stats.py's populations): a weak method with 10/20/40 episodes per
  class, studentised 86.8/88.7/90.0% vs percentile 78.0/81.2/87.0% (BCa, tried too, was below
  the percentile interval); a benign population, 95.0/93.2% vs 92.7/92.7%.
- `episodes-bootstrap95`: the percentile interval, kept where a replicate has no spread to
  studentise by (every episode alike).
- Paired: two methods on the same episodes; the bootstrap resamples the same episodes for both
  (percentile interval of the difference) and a sign-flip permutation test swaps the two methods'
  counts per episode (two-sided p-value). A method without training seeds is paired with each of
  the other's models; two trained methods are paired on the training seeds both have.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats

METRICS = ("miou", "fbiou", "episode_miou", "miou_panet_metric", "fbiou_panet_metric")
_SUM_COLUMNS = ("fg_intersection", "fg_union", "bg_intersection", "bg_union", "episode_iou", "episode_scored",
                "panet_fg_intersection", "panet_fg_union", "panet_bg_intersection", "panet_bg_union")
# The sums each metric reads: resampling only those keeps every replicate identical and cheaper.
_METRIC_COLUMNS = {"miou": ("fg_intersection", "fg_union"),
                   "fbiou": ("fg_intersection", "fg_union", "bg_intersection", "bg_union"),
                   "episode_miou": ("episode_iou", "episode_scored"),
                   "miou_panet_metric": ("panet_fg_intersection", "panet_fg_union"),
                   "fbiou_panet_metric": ("panet_fg_intersection", "panet_fg_union", "panet_bg_intersection",
                                          "panet_bg_union")}
_FBIOU_PREFIX = {"fbiou": "", "fbiou_panet_metric": "panet_"}
DEFAULT_RESAMPLES = 1000
DEFAULT_BOOTSTRAP_SEED = 20191027  # fixed: the same records always give the same interval
NO_TRAIN_SEED = -1  # the `train_seed` of a run whose method is not trained (or whose checkpoint says none)


@dataclass(frozen=True)
class Interval:
    value: float
    low: float
    high: float
    method: str  # "seeds-t95" | "train-seeds-t95" | "episodes-bootstrap-t95" | "episodes-bootstrap95" | "none"

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2


def with_train_seed(records: pd.DataFrame) -> pd.DataFrame:
    return records if "train_seed" in records else records.assign(train_seed=NO_TRAIN_SEED)


def _episode_columns(records: pd.DataFrame) -> dict[str, np.ndarray]:
    union = records["fg_union"].to_numpy(float)
    scored = union > 0
    iou = np.divide(records["fg_intersection"].to_numpy(float), union, out=np.zeros_like(union), where=scored)
    # PANet's Metric counts an episode for a label (foreground, background) only when the query's
    # label holds pixels of it; true background = TN + FP = bg_intersection + pred_fg - fg_intersection.
    intersection = records["fg_intersection"].to_numpy(float)
    bg_intersection, bg_union = records["bg_intersection"].to_numpy(float), records["bg_union"].to_numpy(float)
    has_class = records["true_fg"].to_numpy(float) > 0
    has_background = (bg_intersection + records["pred_fg"].to_numpy(float) - intersection) > 0
    return {"fg_intersection": intersection, "fg_union": union, "bg_intersection": bg_intersection,
            "bg_union": bg_union, "episode_iou": iou, "episode_scored": scored.astype(float),
            "panet_fg_intersection": np.where(has_class, intersection, 0.0),
            "panet_fg_union": np.where(has_class, union, 0.0),
            "panet_bg_intersection": np.where(has_background, bg_intersection, 0.0),
            "panet_bg_union": np.where(has_background, bg_union, 0.0)}


@dataclass(frozen=True)
class Strata:
    """Row indices of each (training seed, seed, class) stratum, and each stratum's keys."""

    rows: list
    train_seeds: np.ndarray
    seeds: np.ndarray
    classes: np.ndarray


def _strata(records: pd.DataFrame) -> Strata:
    groups = with_train_seed(records).groupby(["train_seed", "seed", "class_id"], sort=True).indices
    keys = list(groups)
    index = records["index"].to_numpy() if "index" in records else np.arange(len(records))
    # In episode order, so row k of a stratum is the same episode for every training seed.
    rows = [groups[k][np.argsort(index[groups[k]], kind="stable")] for k in keys]
    return Strata(rows, np.array([k[0] for k in keys]), np.array([k[1] for k in keys]), np.array([k[2] for k in keys]))


def _shared_picks(strata: Strata, resamples: int, rng: np.random.Generator):
    """picks_of(j, stratum) -> resampled rows [R, n]. The episodes are one sample shared by every
    trained model, so strata of one (seed, class) take the same positions for each training seed."""
    drawn: dict[tuple, np.ndarray] = {}

    def picks_of(j: int, stratum: np.ndarray) -> np.ndarray:
        key = (strata.seeds[j], strata.classes[j], len(stratum))
        if key not in drawn:
            drawn[key] = rng.integers(0, len(stratum), size=(resamples, len(stratum)))
        return stratum[drawn[key]]
    return picks_of


def _run_value(sums: dict[str, np.ndarray], cols: np.ndarray, metric: str) -> np.ndarray:
    """One run's (training seed, seed) metric per replicate, from its strata's sums [R, n_strata]."""
    with np.errstate(invalid="ignore", divide="ignore"):
        if metric in ("miou", "miou_panet_metric"):
            prefix = "panet_" if metric == "miou_panet_metric" else ""
            per_class = sums[f"{prefix}fg_intersection"][:, cols] / sums[f"{prefix}fg_union"][:, cols]
            return np.nanmean(per_class, axis=1)
        if metric in _FBIOU_PREFIX:
            p = _FBIOU_PREFIX[metric]
            fg = sums[f"{p}fg_intersection"][:, cols].sum(1) / sums[f"{p}fg_union"][:, cols].sum(1)
            bg = sums[f"{p}bg_intersection"][:, cols].sum(1) / sums[f"{p}bg_union"][:, cols].sum(1)
            return (fg + bg) / 2
        if metric == "episode_miou":
            return sums["episode_iou"][:, cols].sum(1) / sums["episode_scored"][:, cols].sum(1)
    raise ValueError(f"metric {metric!r}: expected one of {METRICS}")


def _runs(strata: Strata) -> list[tuple[np.ndarray, float]]:
    """Each run's strata mask and its weight in the fold value (mean over training seeds of the
    mean over episode seeds)."""
    out = []
    train_seeds = np.unique(strata.train_seeds)
    for train_seed in train_seeds:
        seeds = np.unique(strata.seeds[strata.train_seeds == train_seed])
        for seed in seeds:
            out.append(((strata.train_seeds == train_seed) & (strata.seeds == seed), 1 / (len(train_seeds) * len(seeds))))
    return out


def _metric_from_sums(sums: dict[str, np.ndarray], strata: Strata, metric: str) -> np.ndarray:
    """sums: column -> [R, n_strata] -> the fold value per replicate [R]."""
    return sum(weight * _run_value(sums, cols, metric) for cols, weight in _runs(strata))


def _coefficients(sums: dict[str, np.ndarray], cols: np.ndarray, metric: str) -> dict[str, np.ndarray]:
    """d(run value)/d(stratum sum) for each column the metric reads, [R, n_strata in the run]:
    an episode's linearised contribution is sum_c coefficient_c * x_c (the delta method)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        if metric in ("miou", "miou_panet_metric"):
            prefix = "panet_" if metric == "miou_panet_metric" else ""
            inter, union = sums[f"{prefix}fg_intersection"][:, cols], sums[f"{prefix}fg_union"][:, cols]
            counted = union > 0
            n_classes = counted.sum(1, keepdims=True)
            a_inter = np.where(counted, 1 / (n_classes * union), 0.0)
            return {f"{prefix}fg_intersection": a_inter, f"{prefix}fg_union": np.where(counted, -a_inter * inter / union, 0.0)}
        if metric in _FBIOU_PREFIX:
            out, p = {}, _FBIOU_PREFIX[metric]
            for inter_name, union_name in ((f"{p}fg_intersection", f"{p}fg_union"), (f"{p}bg_intersection", f"{p}bg_union")):
                inter = sums[inter_name][:, cols].sum(1, keepdims=True)
                union = sums[union_name][:, cols].sum(1, keepdims=True)
                shape = sums[inter_name][:, cols].shape
                out[inter_name] = np.broadcast_to(1 / (2 * union), shape)
                out[union_name] = np.broadcast_to(-inter / (2 * union ** 2), shape)
            return out
        if metric == "episode_miou":
            iou = sums["episode_iou"][:, cols].sum(1, keepdims=True)
            scored = sums["episode_scored"][:, cols].sum(1, keepdims=True)
            shape = sums["episode_iou"][:, cols].shape
            return {"episode_iou": np.broadcast_to(1 / scored, shape),
                    "episode_scored": np.broadcast_to(-iou / scored ** 2, shape)}
    raise ValueError(f"metric {metric!r}: expected one of {METRICS}")


def _standard_error(sums: dict, products: dict, counts: np.ndarray, strata: Strata, metric: str) -> np.ndarray:
    """Delta-method standard error of the fold value per replicate [R], for resampling within
    strata: var = sum over strata of n * var_within(sum_c a_c x_c), weighted by each run's weight."""
    names = _METRIC_COLUMNS[metric]
    variance = 0.0
    for cols, weight in _runs(strata):
        a = _coefficients(sums, cols, metric)
        n = counts[cols]
        for i, c in enumerate(names):
            for d in names[i:]:
                centred = products[(c, d)][:, cols] - sums[c][:, cols] * sums[d][:, cols] / n
                term = a[c] * a[d] * centred
                variance = variance + weight ** 2 * (1 if c == d else 2) * np.nansum(term, axis=1)
    return np.sqrt(np.maximum(variance, 0.0))


def _sums(columns: dict, strata: Strata, names, picks_of=None, products: bool = True) -> tuple[dict, dict]:
    """Per stratum sums of `names` and (with `products`) of their pairwise products, [R, n_strata];
    `picks_of(j, stratum)` gives the resampled rows [R, n] (none: the observed episodes, R = 1)."""
    pairs = [(c, d) for i, c in enumerate(names) for d in names[i:]] if products else []
    rows = [picks_of(j, s) if picks_of else s[None, :] for j, s in enumerate(strata.rows)]
    replicates = rows[0].shape[0] if rows else 1
    sums = {c: np.empty((replicates, len(rows))) for c in names}
    products = {p: np.empty((replicates, len(rows))) for p in pairs}
    for j, picks in enumerate(rows):
        for c in names:
            sums[c][:, j] = columns[c][picks].sum(axis=1)
        for c, d in pairs:
            products[(c, d)][:, j] = (columns[c][picks] * columns[d][picks]).sum(axis=1)
    return sums, products


def observed(records: pd.DataFrame, metric: str) -> float:
    strata = _strata(records)
    sums, _ = _sums(_episode_columns(records), strata, _METRIC_COLUMNS.get(metric, _SUM_COLUMNS), products=False)
    return float(_metric_from_sums(sums, strata, metric)[0])


def standard_error(records: pd.DataFrame, metric: str) -> float:
    """Delta-method standard error of `observed(records, metric)` over episodes."""
    strata = _strata(records)
    sums, products = _sums(_episode_columns(records), strata, _METRIC_COLUMNS[metric])
    counts = np.array([len(r) for r in strata.rows], float)
    return float(_standard_error(sums, products, counts, strata, metric)[0])


def per_seed_values(records: pd.DataFrame, metric: str) -> np.ndarray:
    """Per episode seed: the value averaged over training seeds."""
    return np.array([observed(group, metric) for _, group in records.groupby("seed", sort=True)])


def per_train_seed_values(records: pd.DataFrame, metric: str) -> np.ndarray:
    """Per training seed: the value averaged over episode seeds (one value for an untrained method)."""
    return np.array([observed(group, metric) for _, group in with_train_seed(records).groupby("train_seed", sort=True)])


def seed_interval(values: np.ndarray, confidence: float = 0.95) -> tuple[float, float]:
    """Student-t interval of the mean over seeds; (nan, nan) with fewer than two seeds."""
    values = np.asarray(values, float)
    if len(values) < 2:
        return float("nan"), float("nan")
    half = scipy_stats.t.ppf(0.5 + confidence / 2, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values))
    return float(values.mean() - half), float(values.mean() + half)


def welch_interval(groups: list[np.ndarray], confidence: float = 0.95) -> tuple[float, float]:
    """Student-t interval of the mean of group means (groups independent, e.g. each fold's training
    seeds), with Welch-Satterthwaite degrees of freedom; (nan, nan) if a group has one value."""
    groups = [np.asarray(g, float) for g in groups]
    if not groups or min(len(g) for g in groups) < 2:
        return float("nan"), float("nan")
    k = len(groups)
    parts = np.array([g.var(ddof=1) / len(g) / k ** 2 for g in groups])
    variance = parts.sum()
    centre = float(np.mean([g.mean() for g in groups]))
    if variance == 0:
        return centre, centre
    df = variance ** 2 / np.sum(parts ** 2 / np.array([len(g) - 1 for g in groups]))
    half = scipy_stats.t.ppf(0.5 + confidence / 2, df) * np.sqrt(variance)
    return centre - half, centre + half


@dataclass(frozen=True)
class Bootstrap:
    """Bootstrap replicates of a value with their own standard errors (for studentising)."""

    value: float
    se: float
    replicates: np.ndarray
    replicate_se: np.ndarray

    def interval(self, confidence: float = 0.95) -> Interval:
        """Studentised (bootstrap-t) interval; percentile when replicates have no spread to divide by."""
        tail = (1 - confidence) / 2
        with np.errstate(invalid="ignore", divide="ignore"):
            t = (self.replicates - self.value) / self.replicate_se
        t = t[~((self.replicates == self.value) & (self.replicate_se == 0))]
        if self.se > 0 and np.all(np.isfinite(t)) and len(t):
            t_low, t_high = np.quantile(t, [tail, 1 - tail])
            return Interval(self.value, self.value - t_high * self.se, self.value - t_low * self.se,
                            "episodes-bootstrap-t95")
        low, high = percentile_interval(self.replicates, confidence)
        return Interval(self.value, low, high, "episodes-bootstrap95")


def bootstrap(records: pd.DataFrame, metric: str, resamples: int = DEFAULT_RESAMPLES,
              rng: np.random.Generator | None = None) -> Bootstrap:
    """The fold value on `resamples` resamples of episodes within (training seed, seed, class)
    strata, each with its delta-method standard error."""
    rng = rng or np.random.default_rng(DEFAULT_BOOTSTRAP_SEED)
    columns = _episode_columns(records)
    strata = _strata(records)
    names = _METRIC_COLUMNS[metric]
    counts = np.array([len(r) for r in strata.rows], float)
    sums, products = _sums(columns, strata, names)
    value = float(_metric_from_sums(sums, strata, metric)[0])
    se = float(_standard_error(sums, products, counts, strata, metric)[0])
    boot_sums, boot_products = _sums(columns, strata, names, _shared_picks(strata, resamples, rng))
    return Bootstrap(value, se, _metric_from_sums(boot_sums, strata, metric),
                     _standard_error(boot_sums, boot_products, counts, strata, metric))


def bootstrap_replicates(records: pd.DataFrame, metric: str, resamples: int = DEFAULT_RESAMPLES,
                         rng: np.random.Generator | None = None, paired_with: pd.DataFrame | None = None) -> np.ndarray:
    """Metric on `resamples` bootstrap resamples of episodes within strata.

    With `paired_with` (the same episodes, same order, for another method) it returns the
    replicates of (paired_with - records), both resampled with the same indices.
    """
    rng = rng or np.random.default_rng(DEFAULT_BOOTSTRAP_SEED)
    strata = _strata(records)
    needed = _METRIC_COLUMNS.get(metric, _SUM_COLUMNS)
    picks_of = _shared_picks(strata, resamples, rng)  # memoised draws: both methods get the same picks
    sums, _ = _sums(_episode_columns(records), strata, needed, picks_of, products=False)
    values = _metric_from_sums(sums, strata, metric)
    if paired_with is None:
        return values
    other_sums, _ = _sums(_episode_columns(paired_with), strata, needed, picks_of, products=False)
    return _metric_from_sums(other_sums, strata, metric) - values


def percentile_interval(replicates: np.ndarray, confidence: float = 0.95) -> tuple[float, float]:
    tail = (1 - confidence) / 2 * 100
    return float(np.percentile(replicates, tail)), float(np.percentile(replicates, 100 - tail))


@dataclass(frozen=True)
class FoldIntervals:
    seeds: Interval        # across episode seeds
    train_seeds: Interval  # across training seeds (the two-level interval)
    episodes: Interval     # studentised bootstrap over episodes
    boot: Bootstrap
    seed_values: np.ndarray
    train_seed_values: np.ndarray


def fold_intervals(records: pd.DataFrame, metric: str, resamples: int = DEFAULT_RESAMPLES,
                   rng: np.random.Generator | None = None) -> FoldIntervals:
    """Every interval of one fold's value."""
    seeds = per_seed_values(records, metric)
    trained = per_train_seed_values(records, metric)
    boot = bootstrap(records, metric, resamples, rng)
    low, high = seed_interval(seeds)
    t_low, t_high = seed_interval(trained)
    return FoldIntervals(Interval(boot.value, low, high, "seeds-t95" if len(seeds) > 1 else "none"),
                         Interval(boot.value, t_low, t_high, "train-seeds-t95" if len(trained) > 1 else "none"),
                         boot.interval(), boot, seeds, trained)


def fold_mean_intervals(folds: list[FoldIntervals]) -> tuple[Interval, Interval, Interval]:
    """(seeds, training seeds, episodes) intervals of the mean over folds. Episode seeds are paired
    across folds (seed s is one draw of every fold's list) for the t-interval; training seeds are
    not (each fold's models are trained apart): Welch; folds' bootstrap replicates are drawn
    independently and averaged replicate by replicate, their standard errors added in quadrature."""
    value = float(np.mean([f.boot.value for f in folds]))
    lengths = {len(f.seed_values) for f in folds}
    if len(lengths) == 1 and lengths.pop() > 1:
        low, high = seed_interval(np.mean([f.seed_values for f in folds], axis=0))
        seed_ci = Interval(value, low, high, "seeds-t95")
    else:
        seed_ci = Interval(value, float("nan"), float("nan"), "none")
    t_low, t_high = welch_interval([f.train_seed_values for f in folds])
    train_ci = Interval(value, t_low, t_high, "train-seeds-t95" if not np.isnan(t_low) else "none")
    k = len(folds)
    combined = Bootstrap(value, float(np.sqrt(sum(f.boot.se ** 2 for f in folds))) / k,
                         np.mean([f.boot.replicates for f in folds], axis=0),
                         np.sqrt(np.sum([f.boot.replicate_se ** 2 for f in folds], axis=0)) / k)
    return seed_ci, train_ci, combined.interval()


@dataclass(frozen=True)
class PairedComparison:
    difference: float  # b - a
    low: float
    high: float
    p_value: float  # sign-flip permutation p, never below its floor 1/(resamples + 1)
    resamples: int
    # Two-sided tail of a normal fitted to the same permutation null (its RMS about 0, the null
    # being symmetric): resolves p below the floor, where a Holm adjustment over many pairs needs it.
    p_tail: float = float("nan")

    @property
    def p_resolved(self) -> float:
        """The permutation p; at its floor, the normal tail when that is lower (the true p is below
        the floor, and the tail says by how much). What Holm adjusts."""
        floor = 1.0 / (self.resamples + 1)
        if self.p_value <= floor * (1 + 1e-9) and self.p_tail < floor:
            return self.p_tail
        return self.p_value


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
    strata = _strata(a)
    # One coin per episode, shared by every training seed's pair of models.
    episode = pd.factorize(pd.MultiIndex.from_frame(a[["seed", "index"]]))[0]
    flips = (rng.random((resamples, episode.max() + 1)) < 0.5)[:, episode]
    needed = _METRIC_COLUMNS.get(metric, _SUM_COLUMNS)
    sums_a = {c: np.empty((resamples, len(strata.rows))) for c in needed}
    sums_b = {c: np.empty((resamples, len(strata.rows))) for c in needed}
    for c in needed:
        swapped_a = np.where(flips, columns_b[c], columns_a[c])
        swapped_b = np.where(flips, columns_a[c], columns_b[c])
        for j, stratum in enumerate(strata.rows):
            sums_a[c][:, j] = swapped_a[:, stratum].sum(axis=1)
            sums_b[c][:, j] = swapped_b[:, stratum].sum(axis=1)
    null = _metric_from_sums(sums_b, strata, metric) - _metric_from_sums(sums_a, strata, metric)
    return difference, boot, null


def summarise_paired(difference: float, boot: np.ndarray, null: np.ndarray) -> PairedComparison:
    low, high = percentile_interval(boot)
    extreme = np.sum(np.abs(null) >= abs(difference) - 1e-12)
    return PairedComparison(difference, low, high, float((1 + extreme) / (1 + len(null))), len(null),
                            normal_tail_p(difference, null))


def normal_tail_p(difference: float, null: np.ndarray) -> float:
    """2 P(Z > |difference| / s), s the RMS of the permutation null about 0 (nan when it has no spread)."""
    spread = float(np.sqrt(np.mean(np.square(null)))) if len(null) else 0.0
    if not spread > 0:
        return float("nan")
    return float(2 * scipy_stats.norm.sf(abs(difference) / spread))


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
    """Order both by (training seed, seed, index) and check they hold the same episodes.

    A method without training seeds is paired with each of the other's models (its predictions
    are the same whichever model it faces); two trained methods are paired on the training seeds
    both have (ValueError when they share none).
    """
    a, b = with_train_seed(a), with_train_seed(b)
    seeds_a, seeds_b = set(a["train_seed"]), set(b["train_seed"])
    if seeds_a == {NO_TRAIN_SEED} and seeds_b != {NO_TRAIN_SEED}:
        a = pd.concat([a.assign(train_seed=t) for t in sorted(seeds_b)], ignore_index=True)
    elif seeds_b == {NO_TRAIN_SEED} and seeds_a != {NO_TRAIN_SEED}:
        b = pd.concat([b.assign(train_seed=t) for t in sorted(seeds_a)], ignore_index=True)
    elif seeds_a != seeds_b:
        shared = seeds_a & seeds_b
        if not shared:
            raise ValueError(f"the two methods share no training seed ({sorted(seeds_a)} vs {sorted(seeds_b)})")
        a, b = a[a["train_seed"].isin(shared)], b[b["train_seed"].isin(shared)]
    keys = ["train_seed", "seed", "index"]
    a = a.sort_values(keys).reset_index(drop=True)
    b = b.sort_values(keys).reset_index(drop=True)
    same = len(a) == len(b) and (a[keys + ["class_id"]].to_numpy() == b[keys + ["class_id"]].to_numpy()).all()
    if not same:
        raise ValueError("the two record sets do not hold the same episodes")
    return a, b
