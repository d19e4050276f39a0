"""Paper-layout tables: one row per method; 1-shot and 5-shot blocks of Fold-0..3, Mean, FB-IoU.

Cells read `48.1 ± 0.6` (value ± half-width of the 95% interval: across seeds when there are
several, else across episodes); the best value of each column is bold; rows computed with
`--limit` (†) or without pretrained weights (‡) are marked.
"""

from __future__ import annotations

import math

import pandas as pd

from ..stats import PairedComparison
from .summary import primary

FOLD_COLUMNS = ["0", "1", "2", "3", "mean"]
LIMIT_MARK, NOT_PRETRAINED_MARK, OTHER_SHOT_MARK = "†", "‡", "§"


def _cell(row) -> str:
    half = (row["ci_high"] - row["ci_low"]) / 2
    return f"{row['value']:.1f}" if math.isnan(half) else f"{row['value']:.1f} ± {half:.1f}"


MIOU_NOTES = {
    "miou": "mIoU is class-pooled",
    "miou_panet_metric": "mIoU is PANet's Metric (class-pooled, but a query whose label lacks the class is "
                         "not counted, so its false positives are not either)",
}


def paper_grid(summary: pd.DataFrame, methods: list[str] | None = None,
               miou_metric: str = "miou") -> tuple[list[str], list[tuple], dict]:
    """(row labels, column keys (shot, fold|'fbiou'), {(method, column): (text, value)}); the fold
    columns show `miou_metric` (the protocol's choice)."""
    chosen = primary(summary)
    methods = methods or sorted(chosen["method"].unique())
    shots = sorted(chosen["shot"].unique())
    columns = [c for shot in shots for c in [(shot, f) for f in FOLD_COLUMNS] + [(shot, "fbiou")]]
    cells = {}
    for method in methods:
        for shot, fold in columns:
            metric, key_fold = ("fbiou", "mean") if fold == "fbiou" else (miou_metric, fold)
            match = chosen[(chosen.method == method) & (chosen.shot == shot) & (chosen.fold == key_fold) & (chosen.metric == metric)]
            if len(match):
                cells[(method, (shot, fold))] = (_cell(match.iloc[0]), match.iloc[0]["value"])
    labels = []
    for method in methods:
        rows = chosen[chosen.method == method]
        mark = (LIMIT_MARK if rows["limited"].any() else "") + (NOT_PRETRAINED_MARK if (rows["pretrained"] == False).any() else "")  # noqa: E712
        if "other_shot_checkpoint" in rows and rows["other_shot_checkpoint"].any():
            mark += OTHER_SHOT_MARK
        labels.append(method + mark)
    return labels, columns, cells


def _best(cells: dict, methods: list[str], column) -> set[str]:
    values = {m: cells[(m, column)][1] for m in methods if (m, column) in cells}
    if not values:
        return set()
    top = max(values.values())
    return {m for m, v in values.items() if v == top}


def _header_name(fold: str) -> str:
    return {"mean": "Mean", "fbiou": "FB-IoU"}.get(fold, f"Fold-{fold}")


def _interval_note(summary: pd.DataFrame, miou_metric: str = "miou") -> str:
    kinds = set(primary(summary)["ci_method"])
    return ("± is the half-width of the 95% interval " +
            ("across seeds (Student t)" if kinds == {"seeds-t95"} else
             "across episodes (percentile bootstrap, resampled within class)" if kinds == {"episodes-bootstrap95"} else
             "across seeds (Student t) where there are several seeds, else across episodes (bootstrap)") +
            f". {MIOU_NOTES[miou_metric]}; FB-IoU is the mean over folds. {LIMIT_MARK}: run with --limit (not the full "
            f"protocol); {NOT_PRETRAINED_MARK}: encoder without pretrained weights; {OTHER_SHOT_MARK}: some runs "
            f"used a checkpoint trained at another shot (--allow-other-shot).")


def markdown_table(summary: pd.DataFrame, methods: list[str] | None = None, miou_metric: str = "miou") -> str:
    methods = methods or sorted(summary["method"].unique())
    labels, columns, cells = paper_grid(summary, methods, miou_metric)
    header = "| Method | " + " | ".join(f"{shot}-shot {_header_name(f)}" for shot, f in columns) + " |"
    lines = [header, "|" + "---|" * (len(columns) + 1)]
    for method, label in zip(methods, labels):
        texts = []
        for column in columns:
            text = cells.get((method, column), ("–", None))[0]
            texts.append(f"**{text}**" if method in _best(cells, methods, column) else text)
        lines.append(f"| {label} | " + " | ".join(texts) + " |")
    protocol = ", ".join(sorted(summary["protocol"].unique()))
    return "\n".join(lines) + f"\n\nProtocol: {protocol}. {_interval_note(summary, miou_metric)}\n"


def latex_table(summary: pd.DataFrame, methods: list[str] | None = None, miou_metric: str = "miou") -> str:
    methods = methods or sorted(summary["method"].unique())
    labels, columns, cells = paper_grid(summary, methods, miou_metric)
    shots = sorted({shot for shot, _ in columns})
    per_shot = len(columns) // len(shots)
    lines = [r"\begin{tabular}{l" + "c" * len(columns) + "}", r"\toprule",
             "Method & " + " & ".join(rf"\multicolumn{{{per_shot}}}{{c}}{{{shot}-shot}}" for shot in shots) + r" \\",
             " ".join(rf"\cmidrule(lr){{{2 + i * per_shot}-{1 + (i + 1) * per_shot}}}" for i in range(len(shots))),
             " & " + " & ".join(_header_name(f) for _, f in columns) + r" \\", r"\midrule"]
    for method, label in zip(methods, labels):
        texts = []
        for column in columns:
            text = cells.get((method, column), ("--", None))[0].replace("±", r"$\pm$")
            texts.append(rf"\textbf{{{text}}}" if method in _best(cells, methods, column) else text)
        lines.append(label.replace("†", r"$^\dagger$").replace("‡", r"$^\ddagger$").replace("§", r"$^\S$").replace("_", r"\_") + " & "
                     + " & ".join(texts) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


def csv_table(summary: pd.DataFrame) -> str:
    columns = ["protocol", "method", "shot", "fold", "metric", "value", "ci_low", "ci_high", "ci_method",
               "n_seeds", "n_episodes"]
    return summary[columns].to_csv(index=False, float_format="%.17g")


def ablation_table(summary: pd.DataFrame, base: str, variant: str, comparisons: dict[int, dict],
                   miou_metric: str = "miou") -> str:
    """The two rows of an ablation and, per shot, the paired difference (variant - base) per fold."""
    table = markdown_table(summary, [base, variant], miou_metric).split("\n\nProtocol:")[0]
    lines = [table, "", f"Paired difference {variant} − {base} ({'mIoU' if miou_metric == 'miou' else miou_metric} "
             f"points, 95% paired-bootstrap interval; "
             f"p from a sign-flip permutation test):", "",
             "| shot | " + " | ".join(_header_name(f) for f in FOLD_COLUMNS) + " |", "|---|" + "---|" * len(FOLD_COLUMNS)]
    for shot, per_fold in sorted(comparisons.items()):
        cells = []
        for fold in FOLD_COLUMNS:
            key = "mean" if fold == "mean" else int(fold)
            result: PairedComparison | None = per_fold.get(key)
            cells.append("–" if result is None else format_difference(result))
        lines.append(f"| {shot}-shot | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def format_difference(result: PairedComparison) -> str:
    return (f"{100 * result.difference:+.1f} [{100 * result.low:+.1f}, {100 * result.high:+.1f}] "
            f"p={result.p_value:.3f}")
