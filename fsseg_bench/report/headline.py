"""The report's headline: per shot, the best row with its interval and whether the paired test can
tell it from the runner-up (Holm-adjusted over the same family as the pairwise view)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from .summary import primary


@dataclass(frozen=True)
class Headline:
    shot: int
    column: str             # "mean" (of 4 folds) or the one fold every row shares
    best: str
    value: float            # points
    ci_low: float
    ci_high: float
    runner_up: str | None   # None: a single row
    runner_up_value: float
    difference: float       # best - runner-up, paired, in points (nan: no shared episodes)
    p_value: float          # permutation p of the pair
    p_resolved: float       # below the floor: the normal tail (`stats.PairedComparison.p_resolved`)
    p_holm: float           # Holm-adjusted over all pairs at this shot
    resamples: int
    distinguishable: bool | None  # p_holm < level; None when the pair could not be tested

    @property
    def where(self) -> str:
        return "mean of folds" if self.column == "mean" else f"fold {self.column}"


def headline_column(summary: pd.DataFrame, shot: int, metric: str) -> str | None:
    """The column the pairwise view compares on: the mean of folds where rows have it, else the
    lowest fold (as `comparisons.pairwise`)."""
    rows = summary[(summary.shot == shot) & (summary.metric == metric)]
    if rows.empty:
        return None
    if (rows.fold == "mean").any():
        return "mean"
    return str(min(int(f) for f in rows.fold.unique()))


def headlines(summary: pd.DataFrame, pairs: pd.DataFrame | None, metric: str = "miou",
              level: float = 0.05) -> list[Headline]:
    """One headline per shot. `pairs` is `comparisons.pairwise` of the rows (None or empty: one row,
    or no pair was testable)."""
    chosen = primary(summary)
    out = []
    for shot in sorted(chosen["shot"].unique()):
        column = headline_column(summary, int(shot), metric)
        cells = chosen[(chosen.shot == shot) & (chosen.metric == metric) & (chosen.fold == column)]
        cells = cells.sort_values(["value", "method"], ascending=[False, True])
        if cells.empty:
            continue
        best = cells.iloc[0]
        runner = cells.iloc[1] if len(cells) > 1 else None
        difference = p_value = p_resolved = p_holm = math.nan
        resamples, verdict = 0, None
        if runner is not None and pairs is not None and len(pairs):
            match = pairs[(pairs.shot == shot) & (((pairs.a == best.method) & (pairs.b == runner.method))
                                                  | ((pairs.a == runner.method) & (pairs.b == best.method)))]
            if len(match):
                pair = match.iloc[0]
                sign = 1 if pair.b == best.method else -1
                difference, p_value, p_holm = sign * pair.difference, pair.p_value, pair.p_holm
                p_resolved = pair.p_resolved
                resamples, verdict = int(pair.resamples), bool(pair.p_holm < level)
        out.append(Headline(int(shot), column, best.method, float(best.value), float(best.ci_low), float(best.ci_high),
                            None if runner is None else runner.method,
                            math.nan if runner is None else float(runner.value),
                            difference, p_value, p_resolved, p_holm, resamples, verdict))
    return out


def headline_text(line: Headline, p_text: str = "") -> str:
    """One sentence, plain text (`p_text`: the Holm p as the page formats it)."""
    interval = ("" if math.isnan(line.ci_low) else f" [{line.ci_low:.1f}, {line.ci_high:.1f}]")
    lead = f"{line.shot}-shot: {line.best} leads with {line.value:.1f}{interval} mIoU ({line.where})"
    if line.runner_up is None:
        return lead + "; it is the only row."
    second = f"runner-up {line.runner_up} {line.runner_up_value:.1f}"
    if line.distinguishable is None:
        return f"{lead}; {second}, not run on the same episodes, so the two cannot be tested against each other."
    verdict = ("distinguishable" if line.distinguishable else "not distinguishable")
    return (f"{lead}; {second}; paired difference {line.difference:+.1f} points on the episodes and trained models "
            f"both were run with, {p_text or f'p_holm={line.p_holm:.3f}'} — {verdict} at the 5% level after Holm's "
            f"adjustment over every pair at this shot.")
