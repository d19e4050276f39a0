"""The cross-domain table (PATNet's layout): one row per method, per shot one column per target
dataset and their mean, each with its 95% interval.

A dataset's cell is the protocol's table value for that row (the mean of folds, or its one fold)
with the interval the paper table prints. The mean over datasets is shown only where a row has
every dataset; its half-width combines the datasets' as independent samples,
sqrt(sum of squared half-widths) / n (each dataset's episodes are its own).
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from ..errors import InputError

COLUMNS = ["method", "shot", "protocol", "value", "ci_low", "ci_high", "ci_method"]


def cross_domain_cells(results_dir: str | Path, protocols: list[str], resamples: int = 1000) -> pd.DataFrame:
    """One row per (method, shot, protocol): the protocol's headline mIoU cell."""
    from ..results import load_results, recorded_protocol
    from .summary import primary, summarise

    rows = []
    for name in protocols:
        records = load_results(results_dir, name)
        versions = sorted(set(zip(records["protocol"], records["protocol_sha256"])))
        loaded = recorded_protocol(results_dir, *versions[0]) if len(versions) == 1 else None
        metric = loaded.miou_metric if loaded is not None else "miou"
        cells = primary(summarise(records, metrics=(metric,), resamples=resamples))
        for (method, shot), cell in cells.groupby(["method", "shot"]):
            chosen = cell[cell.fold == "mean"] if (cell.fold == "mean").any() else cell
            if len(chosen) != 1:
                continue  # several folds without their mean: no one number for this dataset
            row = chosen.iloc[0]
            rows.append({"method": method, "shot": int(shot), "protocol": records["protocol"].iloc[0],
                         "value": row.value, "ci_low": row.ci_low, "ci_high": row.ci_high,
                         "ci_method": row.ci_method})
    return pd.DataFrame(rows, columns=COLUMNS)


def mean_over_datasets(cells: pd.DataFrame) -> tuple[float, float]:
    """(mean, half-width): the datasets' values averaged; half-widths combined as independent."""
    halves = (cells.ci_high - cells.ci_low) / 2
    n = len(cells)
    half = math.sqrt(float((halves ** 2).sum())) / n if halves.notna().all() else float("nan")
    return float(cells.value.mean()), half


def cross_domain_table(cells: pd.DataFrame, protocols: list[str], fmt: str = "markdown") -> str:
    if cells.empty:
        raise InputError(f"no complete runs of {', '.join(protocols)} to tabulate")
    if fmt == "csv":
        return cells.to_csv(index=False, float_format="%.17g")
    from .order import row_order
    from .tables import latex_escape, markdown_escape

    shots = sorted(cells["shot"].unique())
    methods = row_order(cells["method"].unique())
    names = [p for p in protocols if p in set(cells["protocol"])]
    header = ["Method"] + [f"{shot}-shot {name}" for shot in shots for name in [*names, "Mean"]]
    lines = []
    for method in methods:
        texts = []
        for shot in shots:
            mine = cells[(cells.method == method) & (cells.shot == shot)]
            for name in names:
                cell = mine[mine.protocol == name]
                texts.append("–" if cell.empty else _cell(cell.iloc[0].value, (cell.iloc[0].ci_high - cell.iloc[0].ci_low) / 2))
            complete = mine[mine.protocol.isin(names)]
            texts.append(_cell(*mean_over_datasets(complete)) if len(complete) == len(names) else "–")
        lines.append([method] + texts)
    legend = ("mIoU (%) per target dataset (each protocol's own definition and interval) and their mean; the mean's ± "
              "combines the datasets' half-widths as independent, sqrt(sum of squares)/n, and is shown only for a "
              "row with every dataset.")
    if fmt == "latex":
        body = [r"\begin{tabular}{l" + "c" * (len(header) - 1) + "}", r"\toprule",
                " & ".join(latex_escape(h) for h in header) + r" \\", r"\midrule"]
        body += [" & ".join(latex_escape(t) for t in line) + r" \\" for line in lines]
        body += [r"\bottomrule", r"\end{tabular}", r"\par\smallskip{\footnotesize " + latex_escape(legend) + "}"]
        return "\n".join(body) + "\n"
    if fmt != "markdown":
        raise InputError(f"format {fmt!r}: expected markdown | latex | csv")
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join([markdown_escape(line[0])] + line[1:]) + " |" for line in lines]
    return "\n".join(out) + f"\n\n{legend}\n"


def _cell(value: float, half: float) -> str:
    return f"{value:.1f}" if math.isnan(half) else f"{value:.1f} ± {half:.1f}"
