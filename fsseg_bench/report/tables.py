"""Paper-layout tables: one row per method; 1-shot and 5-shot blocks of Fold-0..3, Mean, FB-IoU.

Cells read `48.1 ± 0.6` (value ± half-width of the 95% interval: across seeds when there are
several, else across episodes). Bold marks the best value of each column and every value a paired
test cannot tell from it at the 5% level (`bold` from `report.compare.indistinguishable_from_best`;
without records, the best value only). Rows computed with `--limit` (†), without pretrained
weights (‡) or with a checkpoint of another shot (§) are marked; every format carries a legend.
"""

from __future__ import annotations

import io
import math

import pandas as pd

from ..stats import PairedComparison
from .order import row_order
from .summary import partial_classes, primary

FOLD_COLUMNS = ["0", "1", "2", "3", "mean"]
LIMIT_MARK, NOT_PRETRAINED_MARK, OTHER_SHOT_MARK = "†", "‡", "§"
FLAG_COLUMNS = ["limited", "pretrained", "other_shot_checkpoint"]

MIOU_NOTES = {
    "miou": "mIoU is class-pooled",
    "miou_panet_metric": "mIoU is PANet's Metric (class-pooled, but a query whose label lacks the class is "
                         "not counted, so its false positives are not either)",
}
FBIOU_NOTES = {
    "fbiou": "FB-IoU pools every episode, then takes the mean over folds",
    "fbiou_panet_metric": "FB-IoU is PANet's get_mIoU_binary (foreground pooled over the episodes whose query "
                          "holds the class, background over those whose query holds background), mean over folds",
}


def _cell(row) -> str:
    half = (row["ci_high"] - row["ci_low"]) / 2
    text = f"{row['value']:.1f}" if math.isnan(half) else f"{row['value']:.1f} ± {half:.1f}"
    if str(row["metric"]).startswith("miou") and partial_classes(row):
        text += f" [{int(row['n_classes'])}/{int(row['fold_classes'])}]"
    return text


def has_partial_cells(summary: pd.DataFrame) -> bool:
    """Some mIoU cell averages over fewer classes than its folds have."""
    if "fold_classes" not in summary:
        return False
    rows = summary[summary["metric"].astype(str).str.startswith("miou")]
    return bool((rows["fold_classes"].notna() & (rows["n_classes"] < rows["fold_classes"])).any())


PARTIAL_NOTE = ("[n/N]: the mIoU averages the n classes that have episodes, of the folds' N (a run with --limit or a "
                "list that misses classes); HSNet's and PFENet's scripts would count each missing class as 0")


def table_columns(summary: pd.DataFrame) -> list[tuple]:
    shots = sorted(primary(summary)["shot"].unique())
    return [c for shot in shots for c in [(int(shot), f) for f in FOLD_COLUMNS] + [(int(shot), "fbiou")]]


def column_metric(column: tuple, miou_metric: str = "miou", fbiou_metric: str = "fbiou") -> tuple[str, str]:
    """(metric, fold key of the summary) shown in a table column."""
    return (fbiou_metric, "mean") if column[1] == "fbiou" else (miou_metric, column[1])


def paper_grid(summary: pd.DataFrame, methods: list[str] | None = None,
               miou_metric: str = "miou", fbiou_metric: str = "fbiou") -> tuple[list[str], list[tuple], dict]:
    """(row labels with marks, column keys (shot, fold|'fbiou'), {(method, column): (text, value)})."""
    chosen = primary(summary)
    methods = methods or row_order(chosen["method"].unique())
    columns = table_columns(summary)
    cells = {}
    for method in methods:
        for column in columns:
            metric, key_fold = column_metric(column, miou_metric, fbiou_metric)
            shot = column[0]
            match = chosen[(chosen.method == method) & (chosen.shot == shot) & (chosen.fold == key_fold) & (chosen.metric == metric)]
            if len(match):
                cells[(method, column)] = (_cell(match.iloc[0]), match.iloc[0]["value"])
    labels = []
    for method in methods:
        rows = chosen[chosen.method == method]
        mark = (LIMIT_MARK if rows["limited"].any() else "") + (NOT_PRETRAINED_MARK if (rows["pretrained"] == False).any() else "")  # noqa: E712
        if "other_shot_checkpoint" in rows and rows["other_shot_checkpoint"].any():
            mark += OTHER_SHOT_MARK
        labels.append(method + mark)
    return labels, columns, cells


def best_in_column(cells: dict, methods: list[str], column) -> set[str]:
    values = {m: cells[(m, column)][1] for m in methods if (m, column) in cells}
    if not values:
        return set()
    top = max(values.values())
    return {m for m, v in values.items() if v == top}


def _bold_set(cells, methods, column, bold: dict | None) -> set[str]:
    return bold[column] if bold is not None and column in bold else best_in_column(cells, methods, column)


def _header_name(fold: str) -> str:
    return {"mean": "Mean", "fbiou": "FB-IoU"}.get(fold, f"Fold-{fold}")


def legend(summary: pd.DataFrame, miou_metric: str = "miou", tested: bool = False, fbiou_metric: str = "fbiou") -> str:
    """What the cells, the bold and the marks mean (plain text; each format renders it)."""
    kinds = set(primary(summary)["ci_method"])
    names = {"train-seeds-t95": "across training seeds (Student t over the trained models' values; holds the "
                                "episode noise too)",
             "seeds-t95": "across episode seeds (Student t)",
             "episodes-bootstrap-t95": "across episodes (studentised bootstrap, resampled within class)",
             "episodes-bootstrap95": "across episodes (percentile bootstrap, resampled within class)"}
    interval = (names[next(iter(kinds))] if len(kinds) == 1 and next(iter(kinds)) in names else
                "; ".join(names[k] for k in names if k in kinds) + ", whichever comes first for the cell")
    bold = ("Bold: the best value of each column and every value a paired test (sign-flip permutation on the same "
            "episodes) cannot tell from it at the 5% level." if tested else "Bold: the best value of each column.")
    return (f"± is the half-width of the 95% interval {interval}. {MIOU_NOTES[miou_metric]}; {FBIOU_NOTES[fbiou_metric]}. "
            f"{bold} {LIMIT_MARK}: run with --limit (not the full protocol); {NOT_PRETRAINED_MARK}: encoder "
            f"without pretrained weights; {OTHER_SHOT_MARK}: some runs used a checkpoint trained at another shot "
            f"(--allow-other-shot)." + (f" {PARTIAL_NOTE}." if has_partial_cells(summary) else ""))


def markdown_table(summary: pd.DataFrame, methods: list[str] | None = None, miou_metric: str = "miou",
                   bold: dict | None = None, fbiou_metric: str = "fbiou") -> str:
    methods = methods or row_order(summary["method"].unique())
    labels, columns, cells = paper_grid(summary, methods, miou_metric, fbiou_metric)
    header = "| Method | " + " | ".join(f"{shot}-shot {_header_name(f)}" for shot, f in columns) + " |"
    lines = [header, "|" + "---|" * (len(columns) + 1)]
    for method, label in zip(methods, labels):
        texts = []
        for column in columns:
            text = cells.get((method, column), ("–", None))[0]
            texts.append(f"**{text}**" if method in _bold_set(cells, methods, column, bold) else text)
        lines.append(f"| {markdown_escape(label)} | " + " | ".join(texts) + " |")
    protocol = ", ".join(markdown_escape(p) for p in sorted(summary["protocol"].unique()))
    cards = "".join(f"\n- {markdown_escape(line)}" for line in card_notes(summary, methods))
    return ("\n".join(lines) + f"\n\nProtocol: {protocol}. {legend(summary, miou_metric, bold is not None, fbiou_metric)}\n"
            + (f"\nMethod cards:{cards}\n" if cards else ""))


def card_notes(summary: pd.DataFrame, methods: list[str]) -> list[str]:
    """One line per row with a card: what it was pretrained and trained on, then ⚠ lines where its
    pretraining is known to hold the benchmark's classes or images (`cards.KNOWN_OVERLAPS`)."""
    import json

    from ..cards import card_text, card_warnings

    if "card" not in summary:
        return []
    lines = []
    for method in methods:
        rows = summary[summary.method == method]
        if rows.empty or not rows["card"].iloc[0]:
            continue
        card, dataset = json.loads(rows["card"].iloc[0]), rows["dataset"].iloc[0]
        lines.append(f"{method}: {card_text(card)}")
        lines += [f"⚠ {method}: {warning}" for warning in card_warnings(card, dataset)]
    return lines


_MARKDOWN_ESCAPES = {"\\": "\\\\", "|": "\\|", "*": "\\*", "_": "\\_", "`": "\\`", "[": "\\[", "]": "\\]",
                     "<": "&lt;", ">": "&gt;", "&": "&amp;"}


def markdown_escape(text: str) -> str:
    """A label as literal text in a markdown table cell: `|` never splits a cell, HTML never renders."""
    return "".join(_MARKDOWN_ESCAPES.get(character, character) for character in str(text))


_LATEX_ESCAPES = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
                  "†": r"$^\dagger$", "‡": r"$^\ddagger$", "§": r"$^\S$", "±": r"$\pm$", "−": r"$-$",
                  "<": r"\textless{}", ">": r"\textgreater{}", "|": r"\textbar{}", '"': r"\textquotedbl{}"}


def latex_escape(text: str) -> str:
    """Literal text in LaTeX: specials escaped, and `--`/`---` kept as hyphens, not dashes."""
    escaped = "".join(_LATEX_ESCAPES.get(character, character) for character in str(text))
    while "--" in escaped:
        escaped = escaped.replace("--", "-{}-")
    return escaped


def latex_table(summary: pd.DataFrame, methods: list[str] | None = None, miou_metric: str = "miou",
                bold: dict | None = None, fbiou_metric: str = "fbiou") -> str:
    methods = methods or row_order(summary["method"].unique())
    labels, columns, cells = paper_grid(summary, methods, miou_metric, fbiou_metric)
    shots = sorted({shot for shot, _ in columns})
    per_shot = len(columns) // len(shots)
    lines = [r"\begin{tabular}{l" + "c" * len(columns) + "}", r"\toprule",
             "Method & " + " & ".join(rf"\multicolumn{{{per_shot}}}{{c}}{{{shot}-shot}}" for shot in shots) + r" \\",
             " ".join(rf"\cmidrule(lr){{{2 + i * per_shot}-{1 + (i + 1) * per_shot}}}" for i in range(len(shots))),
             " & " + " & ".join(_header_name(f) for _, f in columns) + r" \\", r"\midrule"]
    for method, label in zip(methods, labels):
        texts = []
        for column in columns:
            cell = cells.get((method, column))
            text = latex_escape(cell[0]) if cell is not None else "--"  # an en dash for a missing cell
            texts.append(rf"\textbf{{{text}}}" if method in _bold_set(cells, methods, column, bold) else text)
        lines.append(latex_escape(label) + " & " + " & ".join(texts) + r" \\")
    notes = card_notes(summary, methods)
    lines += [r"\bottomrule", r"\end{tabular}",
              r"\par\smallskip{\footnotesize " + latex_escape(legend(summary, miou_metric, bold is not None, fbiou_metric))
              + (" Method cards: " + latex_escape("; ".join(n.replace("⚠ ", "(!) ") for n in notes)) if notes else "") + "}"]
    return "\n".join(lines) + "\n"


def csv_table(summary: pd.DataFrame) -> str:
    import json

    columns = ["protocol", "method", "shot", "fold", "metric", "value", "ci_low", "ci_high", "ci_method",
               "n_seeds", "n_train_seeds", "n_episodes", *FLAG_COLUMNS, "n_classes", "fold_classes"]
    frame = summary[columns].copy()
    # The method card in two plain columns (results.json has it whole).
    cards = summary["card"].map(lambda text: json.loads(text) if text else {}) if "card" in summary else None
    frame["pretraining"] = "" if cards is None else cards.map(lambda c: " + ".join(c.get("pretraining", [])))
    frame["training"] = "" if cards is None else cards.map(lambda c: c.get("training", ""))
    return frame.to_csv(index=False, float_format="%.17g")


def _difference_rows(comparisons: dict[int, dict]) -> list[tuple[int, str, PairedComparison | None]]:
    rows = []
    for shot, per_fold in sorted(comparisons.items()):
        for fold in FOLD_COLUMNS:
            rows.append((shot, fold, per_fold.get("mean" if fold == "mean" else int(fold))))
    return rows


def ablation_table(summary: pd.DataFrame, base: str, variant: str, comparisons: dict[int, dict],
                   miou_metric: str = "miou", format: str = "markdown", bold: dict | None = None,
                   fbiou_metric: str = "fbiou") -> str:
    """The two rows of an ablation and, per shot, the paired difference (variant - base) per fold,
    as markdown, LaTeX or CSV (the CSV: the two rows' summary, then one line per difference)."""
    metric_name = "mIoU" if miou_metric == "miou" else miou_metric
    caption = (f"Paired difference {variant} − {base} ({metric_name} points, 95% paired-bootstrap interval; "
               f"p from a sign-flip permutation test)")
    if format == "csv":
        rows = [{"base": base, "variant": variant, "shot": shot, "fold": fold, "metric": miou_metric,
                 "difference": 100 * r.difference, "ci_low": 100 * r.low, "ci_high": 100 * r.high,
                 "p_value": r.p_value, "resamples": r.resamples}
                for shot, fold, r in _difference_rows(comparisons) if r is not None]
        pairs = summary[summary["method"].isin([base, variant])]
        buffer = io.StringIO()
        buffer.write(csv_table(pairs))
        buffer.write("\n")
        pd.DataFrame(rows).to_csv(buffer, index=False, float_format="%.17g")
        return buffer.getvalue()
    if format == "latex":
        table = latex_table(summary, [base, variant], miou_metric, bold, fbiou_metric)
        lines = [table, rf"\begin{{tabular}}{{l{'c' * len(FOLD_COLUMNS)}}}", r"\toprule",
                 "shot & " + " & ".join(_header_name(f) for f in FOLD_COLUMNS) + r" \\", r"\midrule"]
        for shot, per_fold in sorted(comparisons.items()):
            cells = ["--" if (r := per_fold.get("mean" if f == "mean" else int(f))) is None
                     else latex_escape(format_difference(r)) for f in FOLD_COLUMNS]
            lines.append(f"{shot}-shot & " + " & ".join(cells) + r" \\")
        lines += [r"\bottomrule", r"\end{tabular}", r"\par\smallskip{\footnotesize " + latex_escape(caption) + ".}"]
        return "\n".join(lines) + "\n"
    table = markdown_table(summary, [base, variant], miou_metric, bold, fbiou_metric)
    lines = [table.rstrip("\n"), "", caption + ":", "",
             "| shot | " + " | ".join(_header_name(f) for f in FOLD_COLUMNS) + " |", "|---|" + "---|" * len(FOLD_COLUMNS)]
    for shot, per_fold in sorted(comparisons.items()):
        cells = []
        for fold in FOLD_COLUMNS:
            result = per_fold.get("mean" if fold == "mean" else int(fold))
            cells.append("–" if result is None else format_difference(result))
        lines.append(f"| {shot}-shot | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def at_floor(p_value: float, resamples: int) -> bool:
    """A permutation p-value at its floor 1/(R+1): the test cannot tell it from anything smaller."""
    return p_value <= 1 / (resamples + 1) + 1e-12


def format_p(p_value: float, resamples: int, name: str = "p", p_tail: float = float("nan")) -> str:
    """`p=0.042`, or `p<1/1001` at the permutation test's floor 1/(R+1): the true p is anywhere below;
    with the normal tail of the same null, `p<1/1001 (tail ≈3e-14)` says how far below."""
    if at_floor(p_value, resamples):
        tail = f" (tail ≈{p_number(p_tail)})" if p_tail < 1 / (resamples + 1) else ""
        return f"{name}<1/{resamples + 1}{tail}"
    return f"{name}={p_value:.3f}"


def p_number(p: float) -> str:
    """0.042 with 3 decimals; below 0.001 one significant digit in e-notation (3e-14)."""
    return f"{p:.3f}" if p >= 0.001 else f"{p:.0e}".replace("e-0", "e-")


def format_holm(p_holm: float, p_value: float, p_resolved: float, resamples: int, name: str = "p_holm") -> str:
    """The Holm-adjusted p: `=` where the adjusted p rests on resolved values, `≈` where it rests on a
    normal tail (below the permutation floor), `<` where it rests on the floor itself."""
    if p_resolved < p_value:
        return f"{name}≈{p_number(p_holm)}"
    relation = "<" if at_floor(p_value, resamples) else "="
    return f"{name}{relation}{p_number(p_holm)}"


def format_difference(result: PairedComparison) -> str:
    return (f"{100 * result.difference:+.1f} [{100 * result.low:+.1f}, {100 * result.high:+.1f}] "
            f"{format_p(result.p_value, result.resamples, p_tail=result.p_tail)}")
