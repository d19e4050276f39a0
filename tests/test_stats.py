"""Intervals and paired comparisons: hand-computed cases, coverage on a simulated population."""

import numpy as np
import pandas as pd
import pytest

from fsseg_bench.metrics import class_pooled_miou, fb_iou
from fsseg_bench.stats import (bootstrap_replicates, fold_intervals, fold_mean_intervals, observed,
                               paired_comparison, per_seed_values, percentile_interval, seed_interval)


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
    seeds_a, boot_a, _ = fold_intervals(frame, "miou")
    seeds_b, boot_b, _ = fold_intervals(frame, "miou")
    assert (boot_a.low, boot_a.high) == (boot_b.low, boot_b.high)
    assert boot_a.low < boot_a.value < boot_a.high and seeds_a.method == "none"


def test_fold_mean_interval_averages_folds():
    rng = np.random.default_rng(4)
    seed_values = [np.array([0.4, 0.5]), np.array([0.6, 0.7])]
    replicates = [rng.normal(0.45, 0.01, 1000), rng.normal(0.65, 0.01, 1000)]
    seed_ci, boot_ci = fold_mean_intervals(seed_values, replicates)
    assert seed_ci.value == pytest.approx(0.55)
    assert (seed_ci.low, seed_ci.high) == pytest.approx(seed_interval(np.array([0.5, 0.6])))
    # Independent folds: the mean's sd is 0.01 / sqrt(2); the 95% interval about +-0.0139.
    assert boot_ci.half_width == pytest.approx(1.96 * 0.01 / np.sqrt(2), rel=0.15)


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
