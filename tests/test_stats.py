"""Intervals and paired comparisons: hand-computed cases, coverage on a simulated population."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from fsseg_bench.metrics import class_pooled_miou, fb_iou
from fsseg_bench.stats import (Bootstrap, FoldIntervals, bootstrap, bootstrap_replicates, fold_intervals,
                               fold_mean_intervals, observed, paired_comparison, per_seed_values,
                               per_train_seed_values, percentile_interval, seed_interval, standard_error,
                               welch_interval)


def simulate(rng, class_means, n_per_class=40, seeds=(0,)):
    """Episodes whose per-episode IoU r ~ Beta around a class mean, independent of the union size,
    so the population's pooled IoU of a class is its mean."""
    rows = []
    for seed in seeds:
        index = 0
        for class_id, mean in class_means.items():
            union = rng.integers(50, 500, size=n_per_class)
            ratio = rng.beta(mean * 8, (1 - mean) * 8, size=n_per_class)
            inter = np.round(union * ratio).astype(int)
            for u, i in zip(union, inter):
                rows.append({"seed": seed, "index": index, "class_id": class_id, "fg_intersection": i, "fg_union": u,
                             "bg_intersection": 3000 - (u - i), "bg_union": 3000, "pred_fg": u, "true_fg": u})
                index += 1
    return pd.DataFrame(rows)


def test_seed_interval_by_hand():
    low, high = seed_interval(np.array([40.0, 42.0, 44.0]))
    half = 4.302652729911275 * 2 / np.sqrt(3)  # t(0.975, 2) * sd / sqrt(n)
    assert (low, high) == pytest.approx((42 - half, 42 + half), abs=1e-9)
    assert np.isnan(seed_interval(np.array([40.0]))[0])


def test_observed_matches_the_metric_functions():
    frame = simulate(np.random.default_rng(1), {1: 0.3, 2: 0.6, 3: 0.5}, seeds=(7, 8))
    expected = np.mean([class_pooled_miou(g.class_id, g.fg_intersection, g.fg_union) for _, g in frame.groupby("seed")])
    assert observed(frame, "miou") == pytest.approx(expected, abs=1e-12)
    fb = np.mean([fb_iou(g.fg_intersection, g.fg_union, g.bg_intersection, g.bg_union) for _, g in frame.groupby("seed")])
    assert observed(frame, "fbiou") == pytest.approx(fb, abs=1e-12)
    assert per_seed_values(frame, "miou").shape == (2,)


def test_bootstrap_interval_covers_the_true_value_about_95_percent_of_the_time():
    rng = np.random.default_rng(2024)
    class_means = {1: 0.35, 2: 0.5, 3: 0.62, 4: 0.45, 5: 0.7}
    truth = np.mean(list(class_means.values()))
    repeats, covered = 200, 0
    for _ in range(repeats):
        frame = simulate(rng, class_means)
        low, high = percentile_interval(bootstrap_replicates(frame, "miou", 1000, rng))
        covered += low <= truth <= high
    assert 0.90 <= covered / repeats <= 0.99, covered / repeats


def test_bootstrap_is_reproducible_from_its_fixed_seed():
    frame = simulate(np.random.default_rng(3), {1: 0.4, 2: 0.6})
    first, second = fold_intervals(frame, "miou"), fold_intervals(frame, "miou")
    assert (first.episodes.low, first.episodes.high) == (second.episodes.low, second.episodes.high)
    assert first.episodes.low < first.episodes.value < first.episodes.high
    assert first.episodes.method == "episodes-bootstrap-t95"
    assert first.seeds.method == "none" and first.train_seeds.method == "none"


def _fold(value, se, replicates, replicate_se, seed_values, train_seed_values=(0.0,)):
    boot = Bootstrap(value, se, np.asarray(replicates), np.asarray(replicate_se))
    return FoldIntervals(None, None, boot.interval(), boot, np.asarray(seed_values), np.asarray(train_seed_values))


def test_fold_mean_interval_averages_folds():
    rng = np.random.default_rng(4)
    folds = [_fold(0.45, 0.01, rng.normal(0.45, 0.01, 4000), np.full(4000, 0.01), [0.4, 0.5]),
             _fold(0.65, 0.01, rng.normal(0.65, 0.01, 4000), np.full(4000, 0.01), [0.6, 0.7])]
    seed_ci, train_ci, boot_ci = fold_mean_intervals(folds)
    assert seed_ci.value == pytest.approx(0.55)
    assert (seed_ci.low, seed_ci.high) == pytest.approx(seed_interval(np.array([0.5, 0.6])))
    assert train_ci.method == "none"  # one model per fold: no training-seed interval
    # Independent folds: the mean's sd is 0.01 / sqrt(2); the 95% interval about +-0.0139.
    assert boot_ci.half_width == pytest.approx(1.96 * 0.01 / np.sqrt(2), rel=0.1)
    assert boot_ci.method == "episodes-bootstrap-t95"


def test_welch_interval_by_hand():
    a, b = np.array([0.40, 0.44, 0.42]), np.array([0.60, 0.70])
    var_a, var_b = a.var(ddof=1) / 3 / 4, b.var(ddof=1) / 2 / 4  # each mean's variance, halved for the mean of two
    df = (var_a + var_b) ** 2 / (var_a ** 2 / 2 + var_b ** 2 / 1)
    half = scipy_stats.t.ppf(0.975, df) * np.sqrt(var_a + var_b)
    centre = (a.mean() + b.mean()) / 2
    assert welch_interval([a, b]) == pytest.approx((centre - half, centre + half), abs=1e-12)
    assert np.isnan(welch_interval([a, np.array([0.5])])[0])


def test_delta_method_standard_error_equals_a_slow_loop():
    """Independent slow implementation: per (seed, class) pooled ratio q = sum I / sum U; the
    linearised value of an episode is (I - q U) / (C sum U); mIoU averages classes then seeds."""
    frame = simulate(np.random.default_rng(9), {1: 0.3, 2: 0.6, 3: 0.5}, n_per_class=7, seeds=(0, 1))
    variance = 0.0
    for _, by_seed in frame.groupby("seed"):
        classes = list(by_seed.groupby("class_id"))
        for _, episodes in classes:
            inter, union = episodes.fg_intersection.to_numpy(float), episodes.fg_union.to_numpy(float)
            q = inter.sum() / union.sum()
            for i, u in zip(inter, union):
                variance += ((i - q * u) / (len(classes) * union.sum()) / 2) ** 2  # / 2: two seeds averaged
    assert standard_error(frame, "miou") == pytest.approx(np.sqrt(variance), rel=1e-12)
    # FB-IoU and the episode mean against finite differences of the observed value (the delta
    # method's gradient), with the within-stratum variance of each episode's counts.
    for metric in ("fbiou", "episode_miou", "miou"):
        columns = {"fbiou": ["fg_intersection", "fg_union", "bg_intersection", "bg_union"],
                   "episode_miou": ["fg_intersection"], "miou": ["fg_intersection", "fg_union"]}[metric]
        one = frame[frame.seed == 0].reset_index(drop=True).astype({c: float for c in columns})
        base = observed(one, metric)
        variance = 0.0
        for _, rows in one.groupby("class_id"):
            influence = []
            for row in rows.index:
                bumped = one.copy()
                bumped.loc[row, columns] = bumped.loc[row, columns] * (1 + 1e-6)
                influence.append((observed(bumped, metric) - base) / 1e-6)
            influence = np.array(influence)
            variance += ((influence - influence.mean()) ** 2).sum()
        if metric == "episode_miou":  # the episode mean is linear: its influence is exact
            assert standard_error(one, metric) == pytest.approx(np.sqrt(variance), rel=1e-4)
        else:
            assert standard_error(one, metric) == pytest.approx(np.sqrt(variance), rel=1e-3)


def weak_method(rng, n_per_class=20, classes=(1, 2, 3, 4, 5)):
    """A weak method on objects whose sizes span three orders of magnitude: it misses small objects
    more often than large ones, so the pooled IoU is a skewed ratio (the case of an off-centre
    percentile interval). Returns records and, per class, the population's pooled IoU."""
    def draw(n, class_id):
        union = np.round(np.exp(rng.normal(6 + 0.3 * class_id, 1.3, n))) + 20
        mean = 1 / (1 + np.exp(1.6 - 0.5 * (np.log(union) - 6)))
        ratio = rng.beta(mean * 3 + 1e-3, (1 - mean) * 3 + 1e-3) * (rng.random(n) < 0.55)
        return np.round(union * ratio), union
    rows = []
    for class_id in classes:
        inter, union = draw(n_per_class, class_id)
        rows += [{"seed": 0, "index": len(rows), "class_id": class_id, "fg_intersection": i, "fg_union": u,
                  "bg_intersection": 3000, "bg_union": 3000 + u, "pred_fg": u, "true_fg": u} for i, u in zip(inter, union)]
    return pd.DataFrame(rows), draw


def test_studentised_interval_covers_a_weak_method_better_than_the_percentile_one():
    rng = np.random.default_rng(77)
    _, draw = weak_method(rng)
    truth = np.mean([np.divide(*[x.sum() for x in draw(400_000, c)]) for c in (1, 2, 3, 4, 5)])
    repeats, student, percentile = 200, 0, 0
    for _ in range(repeats):
        frame, _ = weak_method(rng)
        boot = bootstrap(frame, "miou", 1000, rng)
        interval = boot.interval()
        low, high = percentile_interval(boot.replicates)
        student += interval.low <= truth <= interval.high
        percentile += low <= truth <= high
    assert student / repeats >= 0.86 and student > percentile + 0.03 * repeats, (student, percentile)


def trained_models(rng, class_means, train_seeds, sigma_train, n_per_class=30, seeds=(0,)):
    """Records of several trained models on the same episodes: model t shifts every episode's IoU
    ratio by its own training effect ~ N(0, sigma_train); the ratio is independent of the union,
    so the population value (over models and episodes) is the mean of `class_means`."""
    episodes = simulate(rng, {c: 0.5 for c in class_means}, n_per_class, seeds)
    frames = []
    for train_seed in train_seeds:
        effect = rng.normal(0, sigma_train)
        ratio = np.clip(rng.beta(8, 8, len(episodes)) - 0.5 + episodes.class_id.map(class_means) + effect, 0, 1)
        frames.append(episodes.assign(train_seed=train_seed,
                                      fg_intersection=np.round(episodes.fg_union * ratio).astype(int)))
    return pd.concat(frames, ignore_index=True)


def test_two_level_interval_covers_the_truth_and_the_episode_interval_does_not():
    rng = np.random.default_rng(31)
    class_means = {1: 0.35, 2: 0.5, 3: 0.62, 4: 0.45}
    truth = np.mean(list(class_means.values()))
    repeats, two_level, episodes_only = 300, 0, 0
    for _ in range(repeats):
        frame = trained_models(rng, class_means, train_seeds=(0, 1, 2, 3, 4), sigma_train=0.03)
        intervals = fold_intervals(frame, "miou", 200, rng)
        assert intervals.train_seeds.method == "train-seeds-t95" and len(intervals.train_seed_values) == 5
        two_level += intervals.train_seeds.low <= truth <= intervals.train_seeds.high
        episodes_only += intervals.episodes.low <= truth <= intervals.episodes.high
    assert 0.91 <= two_level / repeats <= 0.99, two_level / repeats
    assert episodes_only / repeats < 0.8, episodes_only / repeats  # the training lottery is not in it


def test_fold_value_averages_training_seeds_then_episode_seeds():
    frame = trained_models(np.random.default_rng(8), {1: 0.4, 2: 0.6}, train_seeds=(3, 5), sigma_train=0.05,
                           seeds=(0, 1))
    by_hand = np.mean([np.mean([observed(g, "miou") for _, g in model.groupby("seed")])
                       for _, model in frame.groupby("train_seed")])
    assert observed(frame, "miou") == pytest.approx(by_hand, abs=1e-12)
    assert per_train_seed_values(frame, "miou") == pytest.approx(
        [observed(frame[frame.train_seed == t], "miou") for t in (3, 5)], abs=1e-12)


def test_a_method_against_itself_shows_no_difference():
    frame = simulate(np.random.default_rng(5), {1: 0.4, 2: 0.6, 3: 0.5})
    result = paired_comparison(frame, frame.copy())
    assert result.difference == 0 and result.low == 0 and result.high == 0 and result.p_value == 1.0


def test_a_planted_difference_is_found():
    rng = np.random.default_rng(6)
    a = simulate(rng, {1: 0.4, 2: 0.6, 3: 0.5}, seeds=(0, 1))
    b = a.copy()
    # B recovers 8% of what A missed in every episode: a small but real improvement.
    b["fg_intersection"] = a.fg_intersection + np.round(0.08 * (a.fg_union - a.fg_intersection)).astype(int)
    result = paired_comparison(a, b)
    assert result.difference > 0.02 and result.low > 0 and result.p_value < 0.01
    # Zero-mean noise alone (each episode's intersection moved up or down by up to 10 px) is not.
    noisy = a.copy()
    noise = rng.integers(-10, 11, size=len(a))
    noisy["fg_intersection"] = np.clip(a.fg_intersection + noise, 0, a.fg_union)
    noisy_result = paired_comparison(a, noisy)
    assert noisy_result.difference != 0 and noisy_result.low < 0 < noisy_result.high and noisy_result.p_value > 0.05


def test_the_normal_tail_agrees_with_the_permutation_p_and_resolves_below_its_floor():
    """Where 20000 sign flips resolve p, the normal fitted to the same null gives the same p (within
    15%); where the observed difference is beyond every flip, the permutation p sits at its floor and
    the tail says how far below it is (what Holm over many pairs needs)."""
    a = simulate(np.random.default_rng(11), {1: 0.4, 2: 0.5, 3: 0.6})
    for shift, floor_expected in ((0.0, False), (0.02, False), (0.03, False), (0.1, True)):
        b = simulate(np.random.default_rng(11), {1: 0.4 + shift, 2: 0.5 + shift, 3: 0.6 + shift})
        noise = np.random.default_rng(5).integers(-40, 40, len(b))
        b["fg_intersection"] = np.clip(b["fg_intersection"] + noise, 0, b["fg_union"])
        result = paired_comparison(a, b, resamples=20000)
        at_floor = result.p_value <= 1 / 20001 + 1e-12
        assert at_floor == floor_expected, (shift, result)
        if not at_floor:
            assert result.p_tail == pytest.approx(result.p_value, rel=0.15), (shift, result)
            assert result.p_resolved == result.p_value
        else:
            assert result.p_tail < 1e-8 and result.p_resolved == result.p_tail
    same = simulate(np.random.default_rng(5), {1: 0.4, 2: 0.6})
    assert np.isnan(paired_comparison(same, same.copy()).p_tail)  # no spread: no tail, p stays 1
