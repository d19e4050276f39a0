"""Coverage of the episode and training-seed intervals on the simulated populations of
test_stats.py, with more repeats than the tests afford (README and stats.py quote its output).

    python tests/interval_coverage.py        # about 5 minutes on 2 cores
"""

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
import test_stats as populations  # noqa: E402

from fsseg_bench import stats  # noqa: E402


def covers(interval: tuple[float, float], truth: float) -> bool:
    return interval[0] <= truth <= interval[1]


def episode_intervals(rng, make, truth, repeats=400) -> tuple[float, float, float]:
    """(studentised coverage, percentile coverage, mean offset of the replicates from the value)."""
    studentised = percentile = 0
    offsets = []
    for _ in range(repeats):
        boot = stats.bootstrap(make(), "miou", 1000, rng)
        interval = boot.interval()
        studentised += covers((interval.low, interval.high), truth)
        percentile += covers(stats.percentile_interval(boot.replicates), truth)
        offsets.append(boot.replicates.mean() - boot.value)
    return studentised / repeats, percentile / repeats, 100 * float(np.mean(offsets))


def two_level(rng, models, sigma_train, repeats=300) -> tuple[float, float, float]:
    """(train-seeds-t95, episode-only, naive two-level percentile bootstrap) coverage."""
    class_means = {1: 0.35, 2: 0.5, 3: 0.62, 4: 0.45}
    truth = np.mean(list(class_means.values()))
    counts = np.zeros(3)
    for _ in range(repeats):
        frame = populations.trained_models(rng, class_means, tuple(range(models)), sigma_train)
        intervals = stats.fold_intervals(frame, "miou", 200, rng)
        per_model = np.array([stats.bootstrap(frame[frame.train_seed == t], "miou", 200, rng).replicates
                              for t in range(models)])
        drawn_models = rng.integers(0, models, (1000, models))
        drawn_replicates = rng.integers(0, 200, (1000, models))
        naive = per_model[drawn_models, drawn_replicates].mean(axis=1)
        counts += [covers((intervals.train_seeds.low, intervals.train_seeds.high), truth),
                   covers((intervals.episodes.low, intervals.episodes.high), truth),
                   covers(stats.percentile_interval(naive), truth)]
    return tuple(counts / repeats)


def main() -> None:
    rng = np.random.default_rng(77)
    _, draw = populations.weak_method(rng)
    truth = np.mean([np.divide(*[x.sum() for x in draw(400_000, c)]) for c in (1, 2, 3, 4, 5)])
    for n in (10, 20, 40):
        result = episode_intervals(rng, lambda: populations.weak_method(rng, n)[0], truth)
        print(f"weak method, {n} episodes/class: studentised {result[0]:.3f}, percentile {result[1]:.3f}, "
              f"replicates - observed {result[2]:+.2f} points")
    benign = {1: 0.35, 2: 0.5, 3: 0.62, 4: 0.45, 5: 0.7}
    for n in (10, 40):
        result = episode_intervals(rng, lambda: populations.simulate(rng, benign, n), np.mean(list(benign.values())))
        print(f"benign, {n} episodes/class: studentised {result[0]:.3f}, percentile {result[1]:.3f}")
    for models, sigma in ((3, 0.03), (5, 0.03), (5, 0.0), (10, 0.01)):
        result = two_level(rng, models, sigma)
        print(f"{models} models, training sd {sigma}: train-seeds-t95 {result[0]:.3f}, episodes only {result[1]:.3f}, "
              f"naive two-level bootstrap {result[2]:.3f}")


if __name__ == "__main__":
    main()
