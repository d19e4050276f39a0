"""The Python API: the CLI's main verbs as functions, for notebooks and scripts.

    import fsseg_bench as fb
    fb.run("synthetic5i", ["knn", "all-foreground"], folds=[0], shots=[1], limit=20)
    records = fb.load_results("results", "synthetic5i")
    print(fb.table(records))

Runs execute in this process by default (no worker pool, so no `__main__` guard is needed and
methods registered in a notebook are visible); `workers=N` uses worker processes, as the CLI does.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from .paths import DEFAULT_RESULTS_DIR


def run(protocol: str | Path = "synthetic5i", methods: str | list[str] = ("all-foreground",), *,
        folds=None, shots=None, seeds=None, train_seeds=None, results: str | Path = DEFAULT_RESULTS_DIR,
        data_root: str | Path | None = None, limit: int | None = None, options: dict | None = None,
        checkpoints: dict | None = None, plugins=(), workers: int = 1, quiet: bool = True,
        **request_fields) -> list:
    """Run `methods` on the protocol's matrix (or the selected folds, shots and seeds; `train_seeds`:
    the trained models of trainable methods, as `train(..., seeds=...)` made them); returns one
    `RunOutcome` per run (status complete | skipped | failed | locked). Existing complete runs are
    skipped. `options` maps a method to its {option: value}; `checkpoints` a method to a file;
    `request_fields` are further `RunRequest` fields (force, allow_other_shot, row_label, ...).
    Raises `InputError` (one line) for bad input before any work."""
    from .console import new_invocation
    from .protocol import load_protocol
    from .registry import get_entry, load_methods
    from .runner import execute, plan_runs

    new_invocation()
    methods = [methods] if isinstance(methods, str) else list(methods)
    plugins = tuple(str(Path(p).resolve()) for p in plugins)
    load_methods(list(plugins))
    loaded = load_protocol(protocol)
    requests = []
    for method in methods:
        get_entry(method)
        option_items = tuple(sorted((options or {}).get(method, {}).items()))
        checkpoint = (checkpoints or {}).get(method)
        requests += plan_runs(loaded, [method], results_dir=results, folds=folds, shots=shots, seeds=seeds,
                              train_seeds=train_seeds,
                              options=option_items, checkpoint=str(Path(checkpoint).resolve()) if checkpoint else None,
                              data_root=str(Path(data_root).resolve()) if data_root else None, limit=limit,
                              plugins=plugins, **request_fields)
    return execute(requests, workers=workers, quiet=quiet)


def train(protocol: str | Path = "synthetic5i", method: str = "panet", *, folds=None, shots=None, seeds=None,
          results: str | Path = DEFAULT_RESULTS_DIR, data_root: str | Path | None = None,
          options: dict | None = None, iterations: int | None = None, device: str = "cpu",
          quiet: bool = True) -> list:
    """Train `method` per (training seed, fold, shot) (default: the protocol's folds and shots and the
    schedule's seed); finished checkpoints are reused. Returns one `TrainResult` each."""
    from .protocol import load_protocol, training_protocol
    from .registry import load_methods
    from .training import train as train_one

    load_methods([])
    loaded = training_protocol(load_protocol(protocol))  # a cross-domain protocol trains under its source
    return [train_one(loaded, method, fold, shot, data_root=data_root, results_dir=Path(results),
                      method_options=options, iterations=iterations, device=device, progress=not quiet,
                      train_seed=seed)
            for seed in (seeds or [loaded.training.seed]) for fold in (folds or loaded.folds)
            for shot in (shots or loaded.shots)]


def load_results(results: str | Path = DEFAULT_RESULTS_DIR, protocol: str | Path = "synthetic5i",
                 methods: list[str] | None = None) -> pd.DataFrame:
    """Per-episode records of the complete runs (one row per episode; `method` is the row label)."""
    from .errors import InputError
    from .protocol import load_protocol
    from .results import load_results as load

    try:
        loaded = load_protocol(protocol)
    except InputError:
        if Path(str(protocol)).suffix == ".toml":
            raise
        loaded = str(protocol)  # a name the folder's runs carry (a protocol file that is not at hand)
    return load(results, loaded, methods)


def summarise(records: pd.DataFrame, resamples: int = 1000) -> pd.DataFrame:
    """The long summary: every (method, shot, fold|mean, metric) with both kinds of interval."""
    from .report.summary import summarise as summary

    return summary(records, resamples=resamples)


def table(records: pd.DataFrame, format: str = "markdown", methods: list[str] | None = None,
          miou_metric: str | None = None, resamples: int = 1000, fbiou_metric: str | None = None) -> str:
    """The paper table of these records (markdown | latex | csv); `miou_metric` and `fbiou_metric`
    default to the records' protocol's choice."""
    from .report.tables import csv_table, latex_table, markdown_table

    from .report.compare import indistinguishable_from_best
    from .report.order import row_order

    summary = summarise(records, resamples)
    if format == "csv":
        return csv_table(summary)
    protocol = protocol_of(records)
    if miou_metric is None:
        miou_metric = protocol.miou_metric if protocol else "miou"
    if fbiou_metric is None:
        fbiou_metric = protocol.fbiou_metric if protocol else "fbiou"
    writers = {"markdown": markdown_table, "latex": latex_table}
    if format not in writers:
        from .errors import InputError
        raise InputError(f"format {format!r}: expected markdown | latex | csv")
    rows = row_order(summary["method"].unique(), methods)
    bold = indistinguishable_from_best(records, summary, rows, miou_metric, resamples, fbiou_metric=fbiou_metric)
    return writers[format](summary, rows, miou_metric, bold, fbiou_metric)


CROSS_DOMAIN = ("deepglobe-patnet", "isic-patnet", "chestxray-patnet", "fss1000-patnet")


def cross_domain(results: str | Path = DEFAULT_RESULTS_DIR, protocols: list[str] | tuple = CROSS_DOMAIN,
                 format: str = "markdown", resamples: int = 1000) -> str:
    """The cross-domain table: one row per method, per shot a column per target protocol (PATNet's
    four by default) and their mean, with intervals (markdown | latex | csv)."""
    from .report.cross_domain import cross_domain_cells, cross_domain_table

    return cross_domain_table(cross_domain_cells(results, list(protocols), resamples), list(protocols), format)


def protocol_of(records: pd.DataFrame):
    """The records' protocol when they hold exactly one version of one protocol: read from the
    results folder's copy of its bytes (or the built-in or original file, if its bytes still match);
    None otherwise."""
    from .results import recorded_protocol

    versions = sorted(set(zip(records["protocol"], records["protocol_sha256"]))) if "protocol_sha256" in records else []
    if len(versions) != 1 or "run_dir" not in records:
        return None
    (name, sha256), = versions
    results_dir = Path(records["run_dir"].iloc[0]).parents[3]  # RESULTS/runs/<protocol>/<method>/<run>
    return recorded_protocol(results_dir, name, sha256)


def compare(records: pd.DataFrame, a: str, b: str, metric: str = "miou", resamples: int = 1000) -> pd.DataFrame:
    """Paired comparison of b - a on the same episodes, in points: one row per (a row, b row, shot,
    fold | "mean") with `difference`, `ci_low`, `ci_high` (95% paired bootstrap), `p_value`
    (sign-flip permutation), `p_at_floor` and `resamples`. A method with several configurations
    (rows) is compared row by row; `fsseg_bench.report.compare.compare_methods` gives the dataclasses."""
    from .report.compare import comparison_frame

    return comparison_frame(records, a, b, metric, resamples)


def plot(kind: str, records: pd.DataFrame, out: str | Path, shot: int = 1, data_root: str | Path | None = None,
         resamples: int = 1000) -> list[Path]:
    """A figure (per-class | shots | episodes | qualitative) written as PNG and PDF; returns the paths.
    `qualitative` reads the images from `data_root` (default: the runs' own data root)."""
    from .errors import InputError
    from .report import plots

    out = Path(out)
    if kind != "shots" and not (records["shot"] == shot).any():
        present = ", ".join(map(str, sorted(records["shot"].unique())))
        raise InputError(f"--shot {shot}: no complete runs at {shot} shot(s) among these records (shots: {present})")
    names = class_names_of(records)
    if kind == "per-class":
        return plots.plot_per_class(records, out / f"per-class-{shot}shot", shot, names=names)
    if kind == "shots":
        paths = plots.plot_shots(summarise_metrics(records, ("miou",), resamples), out / "shots")
        if not paths:
            raise InputError("plot shots: needs the mean of all 4 folds, or every row run on the same single fold "
                             "(pass --method to choose rows)")
        return paths
    if kind == "episodes":
        return plots.plot_episodes(records, out / f"episodes-{shot}shot", shot)
    if kind == "qualitative":
        return plots.plot_qualitative(records, out / f"qualitative-{shot}shot", tree_of(records, data_root), shot,
                                      names=names)
    raise InputError(f"plot kind {kind!r}: expected per-class | shots | episodes | qualitative")


def tree_of(records: pd.DataFrame, data_root: str | Path | None = None):
    """The data tree the records' runs read (or `data_root`), in their dataset's layout."""
    import json

    from .data.source import locate_tree

    if data_root is None:
        data_root = json.loads((Path(records["run_dir"].iloc[0]) / "run.json").read_text())["data_root"]
    protocol = protocol_of(records)
    return locate_tree(protocol.dataset if protocol else "pascal-voc", data_root)


def class_names_of(records: pd.DataFrame) -> dict[int, str]:
    """The class names of the records' dataset (VOC names unless the protocol says otherwise;
    FSS-1000's come from the data the runs read)."""
    from .classes import class_names
    from .data.source import dataset_for
    from .errors import InputError

    protocol = protocol_of(records)
    if protocol is None:
        return class_names("pascal-voc")
    try:
        tree = tree_of(records) if protocol.dataset == "fss1000" else None
        return class_names(dataset_for(protocol, tree))
    except (InputError, OSError, KeyError):  # the data moved: ids, not names
        return {}


def summarise_metrics(records: pd.DataFrame, metrics: tuple[str, ...], resamples: int = 1000) -> pd.DataFrame:
    from .report.summary import summarise as summary

    return summary(records, metrics=metrics, resamples=resamples)
