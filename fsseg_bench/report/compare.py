"""Paired comparison of two methods run on the same episode lists."""

from __future__ import annotations

import pandas as pd

from ..errors import InputError
from ..stats import DEFAULT_RESAMPLES, PairedComparison, paired_comparison_folds


def shared_episodes(a: pd.DataFrame, b: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, str | None]:
    """The episodes both record sets hold, by (fold, shot, seed, index) with the same class, and a
    note saying what was left out (None when nothing was). Lists of one protocol cell are checked to
    have the same sha256 by `results.select_runs`, so a `--limit` run is a prefix of a full one."""
    keys = ["fold", "shot", "seed", "index"]
    # Episodes, not rows: a trained method has one row per episode and training seed.
    episodes_a = a[keys + ["class_id"]].drop_duplicates()
    episodes_b = b[keys + ["class_id"]].drop_duplicates()
    merged = episodes_a.merge(episodes_b, on=keys + ["class_id"])
    if len(merged) == len(episodes_a) == len(episodes_b):
        return a, b, None
    key_set = set(map(tuple, merged[keys].to_numpy()))
    keep_a = a[[tuple(k) in key_set for k in a[keys].to_numpy()]]
    keep_b = b[[tuple(k) in key_set for k in b[keys].to_numpy()]]
    cells = merged.groupby(["fold", "shot", "seed"]).size()
    note = (f"compared on the {len(merged)} episodes both were run on ({len(cells)} (fold, shot, seed) runs, "
            f"{cells.min()}-{cells.max()} episodes each; {len(episodes_a) - len(merged)} of the first's and "
            f"{len(episodes_b) - len(merged)} of the second's episodes have no counterpart)") if len(merged) else None
    return keep_a, keep_b, note


def rows_of(records: pd.DataFrame, name: str) -> list[str]:
    """The table rows a name stands for: the row of that label, else every row (configuration) of
    the method registered under that name, in label order; [] when it has none."""
    if (records["method"] == name).any():
        return [name]
    if "method_name" not in records:
        return []
    return sorted(records.loc[records["method_name"] == name, "method"].unique())


def expand_rows(records: pd.DataFrame, names: list[str]) -> tuple[list[str], list[str]]:
    """(rows, notes): each name replaced by its rows (`rows_of`), repeats dropped, and one line per
    name that stands for several rows. A name with no complete run is an error listing the rows
    there are."""
    rows, notes = [], []
    for name in names:
        found = rows_of(records, name)
        if not found:
            present = ", ".join(sorted(records["method"].unique()))
            raise InputError(f"method {name!r}: no complete runs to compare (rows here: {present})")
        if len(found) > 1:
            notes.append(f"{name} has {len(found)} rows ({'; '.join(found)}): each is compared")
        rows += [row for row in found if row not in rows]
    return rows, notes


def comparison_frame(records: pd.DataFrame, a: str, b: str, metric: str = "miou",
                     resamples: int = DEFAULT_RESAMPLES) -> pd.DataFrame:
    """b - a as a DataFrame in points, one row per (row of a, row of b, shot, fold | "mean"):
    difference with its 95% paired-bootstrap interval, the sign-flip permutation p-value and its
    floor 1/(resamples + 1) (`p_at_floor`: the true p may be anything below it; `p_tail`: the two-sided
    tail of a normal fitted to the same null, which says how far below). A name with several
    rows (configurations) is expanded on each side."""
    from .tables import at_floor

    rows_a, _ = expand_rows(records, [a])
    rows_b, _ = expand_rows(records, [b])
    out = []
    for row_a in rows_a:
        for row_b in rows_b:
            if row_a == row_b and a != b:
                continue
            for shot, per_fold in compare_methods(records, row_a, row_b, metric, resamples).items():
                for fold, result in per_fold.items():
                    out.append({"a": row_a, "b": row_b, "shot": int(shot), "fold": str(fold), "metric": metric,
                                "difference": 100 * result.difference, "ci_low": 100 * result.low,
                                "ci_high": 100 * result.high, "p_value": result.p_value,
                                "p_at_floor": at_floor(result.p_value, result.resamples), "p_tail": result.p_tail,
                                "resamples": result.resamples})
    return pd.DataFrame(out, columns=["a", "b", "shot", "fold", "metric", "difference", "ci_low", "ci_high",
                                      "p_value", "p_at_floor", "p_tail", "resamples"])


def compare_methods(records: pd.DataFrame, base: str, variant: str, metric: str = "miou",
                    resamples: int = DEFAULT_RESAMPLES) -> dict[int, dict[object, PairedComparison]]:
    """{shot: {fold: comparison, "mean": comparison}} of variant - base, on the episodes both were run
    on (a `--limit` run against a full one: the shared prefix; other seeds or folds: left out, and
    said once). Refuses (one line) when they share no episode."""
    from ..console import warn

    a, b = records[records.method == base], records[records.method == variant]
    for name, frame in ((base, a), (variant, b)):
        if frame.empty:
            raise InputError(f"method {name!r}: no complete runs to compare")
    a, b, note = shared_episodes(a, b)
    if a.empty:
        raise InputError(f"{base} and {variant} were not run on the same episodes (no (fold, shot, seed, episode) in "
                         f"common); rerun both with the same protocol, seeds and --limit")
    if note:
        warn(f"{variant} vs {base}: {note}")
    results = {}
    for shot in sorted(a["shot"].unique()):
        a_folds = {f: g for f, g in a[a.shot == shot].groupby("fold")}
        b_folds = {f: g for f, g in b[b.shot == shot].groupby("fold")}
        try:
            per_fold = paired_comparison_folds(a_folds, b_folds, metric, resamples)
        except ValueError as exc:  # e.g. two trained methods with no training seed in common
            raise InputError(f"{variant} vs {base}: {exc}") from None
        if len(a_folds) != 4:
            per_fold.pop("mean")
        results[int(shot)] = per_fold
    return results


def compare_cached(records: pd.DataFrame, base: str, variant: str, metric: str, resamples: int,
                   cache: dict | None) -> dict[int, dict[object, PairedComparison]]:
    """`compare_methods`, memoised in `cache` (one table's or report's worth): (b, a) is (a, b) mirrored
    (the difference and its interval negated; the permutation p-value is symmetric)."""
    if cache is None:
        return compare_methods(records, base, variant, metric, resamples)
    if (variant, base, metric, resamples) in cache:
        mirrored = cache[(variant, base, metric, resamples)]
        return {shot: {fold: PairedComparison(-r.difference, -r.high, -r.low, r.p_value, r.resamples, r.p_tail)
                       for fold, r in per_fold.items()} for shot, per_fold in mirrored.items()}
    key = (base, variant, metric, resamples)
    if key not in cache:
        cache[key] = compare_methods(records, base, variant, metric, resamples)
    return cache[key]


def indistinguishable_from_best(records: pd.DataFrame, summary: pd.DataFrame, methods: list[str],
                                miou_metric: str = "miou", resamples: int = DEFAULT_RESAMPLES,
                                level: float = 0.05, cache: dict | None = None,
                                fbiou_metric: str = "fbiou") -> dict[tuple, set[str]]:
    """{table column: rows to print bold}: the best value and every row whose paired test against it
    (same episodes; sign-flip permutation p-value) is not significant at `level`. Rows that were not
    run on the same episodes as the best cannot be tested and are not bold."""
    from .tables import best_in_column, column_metric, paper_grid

    _, columns, cells = paper_grid(summary, methods, miou_metric, fbiou_metric)
    comparisons: dict[tuple, dict | None] = {}
    bold = {}
    for column in columns:
        chosen = best_in_column(cells, methods, column)
        if len(chosen) == 1:
            top = next(iter(chosen))
            metric, fold = column_metric(column, miou_metric, fbiou_metric)
            for method in methods:
                if method in chosen or (method, column) not in cells:
                    continue
                key = (top, method, metric)
                if key not in comparisons:
                    try:
                        comparisons[key] = compare_cached(records, top, method, metric, resamples, cache)
                    except InputError:
                        comparisons[key] = None
                per_fold = (comparisons[key] or {}).get(column[0], {})
                result = per_fold.get("mean" if fold == "mean" else int(fold))
                if result is not None and result.p_value >= level:
                    chosen = chosen | {method}
        bold[column] = chosen
    return bold
