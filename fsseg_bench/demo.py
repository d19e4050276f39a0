"""The main job on the embedded default: train, run every built-in method, report.

`fsseg-bench demo` writes the synthetic tree (once), trains `panet` (three training seeds, so the
report shows the training lottery), `panet-noalign` and `hsnet` on each fold (1-shot models, used
at 1 and 5 shots), runs every built-in method at 1 and 5 shots, and writes the paper table
(markdown, LaTeX, CSV), the PAR ablation, HSNet against PANet in the same layout, every figure
and the report page. `--quick` is a smoke test: fewer training episodes, seeds and episodes; its
numbers are marked as limited.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from .data.source import resolve_tree
from .protocol import load_protocol
from .registry import list_methods

TRAINED = ("panet", "panet-noalign", "hsnet")
# Training seeds per trained method (the schedule's seed, 1234, when not listed).
TRAIN_SEEDS = {"panet": (1234, 1, 2)}
QUICK_TRAIN_SEEDS: dict = {}  # the smoke test trains one model per (method, fold): the schedule's seed
QUICK_TRAIN_EPISODES = {"panet": 150, "panet-noalign": 150, "hsnet": 300}
TRAINING_FREE = ("panet-init", "linear-probe", "knn", "support-copy", "all-foreground")


@dataclass(frozen=True)
class DemoSettings:
    quick: bool
    train_iterations: dict | None  # method -> training episodes (None: the protocol's schedule)
    seeds: tuple[int, ...] | None
    limit: int | None
    train_seeds: dict       # method -> training seeds (absent: the schedule's seed)
    resamples: int          # bootstrap resamples of the tables and the report


DEMO_METHODS = ("panet", "panet-noalign", "panet-init", "linear-probe", "knn", "support-copy", "all-foreground",
                "hsnet")


def settings(quick: bool) -> DemoSettings:
    if quick:
        # HSNet's learner needs more episodes than PANet's prototypes before it predicts anything.
        return DemoSettings(True, QUICK_TRAIN_EPISODES, (1234, 1235), 20, QUICK_TRAIN_SEEDS, 100)
    return DemoSettings(False, None, None, None, TRAIN_SEEDS, 1000)


def _train_job(args) -> tuple[str, list[str]]:
    import torch

    from .console import collected, rate_text
    from .training import train

    protocol_path, method, fold, train_seed, data_root, out, iterations = args
    torch.set_num_threads(1)
    with collected() as warnings:  # said once by the parent, not once per worker
        result = train(load_protocol(protocol_path), method, fold, 1, data_root=data_root, results_dir=Path(out),
                       iterations=iterations, progress=False, train_seed=train_seed)
    return (f"{method} fold {fold} seed {train_seed}: {result.iterations} episodes at "
            f"{rate_text(result.episodes_per_second)}/s"), warnings


class TrainingInterrupted(Exception):
    """Ctrl-C while the demo trained: pending models cancelled, workers stopped, nothing half-made left."""

    def __init__(self, finished: int, total: int):
        super().__init__(f"interrupted after {finished} of {total} models")
        self.finished, self.total = finished, total


def _remove_empty_folders(root: Path) -> None:
    """Checkpoint folders a cancelled model created and never wrote to (a resumable last.pt stays)."""
    if not root.is_dir():
        return
    for folder in sorted((p for p in root.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
        try:
            folder.rmdir()  # only if empty
        except OSError:
            pass


def train_all(protocol, data_root: Path, out: Path, iterations: dict | None, workers: int, quiet: bool,
              train_seeds: dict | None = None) -> None:
    """Train every (method, training seed, fold) model the demo uses, `workers` at a time. Each
    finished model is said as it finishes (`[k/N] ...`, with the elapsed time and an estimate of
    what is left), on a terminal above a bar. Ctrl-C cancels the pending models, stops the workers,
    removes empty checkpoint folders and raises TrainingInterrupted; a rerun resumes."""
    from concurrent.futures import as_completed

    from tqdm import tqdm

    from .console import interactive, say, warn

    # HSNet first: its models take longest, so the pool ends with the short PANet ones.
    jobs = [(protocol.path, method, fold, seed, str(data_root), str(out), (iterations or {}).get(method))
            for method in sorted(TRAINED, key=lambda m: m != "hsnet")
            for seed in (TRAIN_SEEDS if train_seeds is None else train_seeds).get(method, (protocol.training.seed,))
            for fold in protocol.folds]
    context = multiprocessing.get_context("spawn")
    bars = not quiet and interactive()
    began, finished = time.perf_counter(), 0
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_leave_interrupts_to_the_parent)
    bar = tqdm(total=len(jobs), desc="train", unit="model", disable=not bars, dynamic_ncols=True)
    try:
        futures = [pool.submit(_train_job, job) for job in jobs]
        for future in as_completed(futures):
            message, warnings = future.result()
            finished += 1
            bar.update(1)
            for warning in warnings:
                warn(warning)
            if not quiet:
                elapsed = time.perf_counter() - began
                left = elapsed / finished * (len(jobs) - finished)
                say(f"[{finished}/{len(jobs)}] trained {message}; {elapsed:.0f} s so far, about {left:.0f} s left",
                    bars)
    except KeyboardInterrupt:
        # The running models stop too (ProcessPoolExecutor.terminate_workers from Python 3.14; before
        # it, the pool's own process table).
        processes = list((getattr(pool, "_processes", None) or {}).values())
        pool.shutdown(wait=False, cancel_futures=True)
        for process in processes:
            process.terminate()
        for process in processes:
            process.join(timeout=10)
        _remove_empty_folders(Path(out) / "checkpoints")
        raise TrainingInterrupted(finished, len(jobs)) from None
    finally:
        bar.close()
        pool.shutdown(wait=True, cancel_futures=True)


def _leave_interrupts_to_the_parent() -> None:
    """Training workers ignore Ctrl-C (the terminal sends it to the whole process group): the parent
    cancels and terminates them in order. A worker killed by the same SIGINT first would break the
    pool, and the interrupt would read as a crash, depending on which process the signal reached first."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)


def check_beats_baselines(summary, method: str = "panet") -> tuple[bool, list[str]]:
    """At 1 shot, a trained method must beat every training-free baseline by more than the larger
    of the two intervals' half-widths; otherwise the stand-in or the training measures nothing."""
    from .report.summary import primary

    rows = primary(summary)
    rows = rows[(rows.shot == 1) & (rows.fold == "mean") & (rows.metric == "miou")].set_index("method")
    trained = rows.loc[method]
    lines, ok = [], True
    for baseline in TRAINING_FREE:
        other = rows.loc[baseline]
        margin = trained["value"] - other["value"]
        needed = max(trained["ci_high"] - trained["ci_low"], other["ci_high"] - other["ci_low"]) / 2
        passed = margin > needed
        ok &= bool(passed)
        lines.append(f"{method} {trained['value']:.1f} vs {baseline} {other['value']:.1f}: margin {margin:.1f} "
                     f"{'>' if passed else '<='} half-width {needed:.1f} {'ok' if passed else 'FAIL'}")
    return ok, lines


def demo(out: Path | None = None, quick: bool = False, workers: int | None = None, quiet: bool = False,
         results_dir: Path = Path("results")) -> dict:
    from .report import plots
    from .report.compare import compare_methods, indistinguishable_from_best
    from .report.order import row_order
    from .report.summary import summarise
    from .report.tables import ablation_table, csv_table, latex_table, markdown_table
    from .results import find_runs, load_records, select_runs
    from .runner import execute, plan_runs

    began = time.perf_counter()
    choice = settings(quick)
    out = Path(out or results_dir / ("demo-quick" if quick else "demo"))
    out.mkdir(parents=True, exist_ok=True)
    workers = workers or os.cpu_count() or 1
    protocol = load_protocol("synthetic5i")
    tree = resolve_tree(protocol, None, results_dir)  # writes the default synthetic tree once

    # Runs and checkpoints live in the results folder, where `run`, `table` and `compare` look (the
    # tour's commands then put a new method's rows next to these); the report goes to `out`.
    train_all(protocol, tree.root, results_dir, choice.train_iterations, workers, quiet, choice.train_seeds)
    trained_at = time.perf_counter()

    # The built-in methods that run on the stand-in's own encoders; foundation-model methods need
    # DINOv2 and SAM weights, which no stand-in pretraining provides.
    methods = [e.name for e in list_methods() if e.origin.startswith("built-in") and e.name in DEMO_METHODS]
    # The demo trains 1-shot models only and uses them at 5 shots too: asked for, recorded, marked §.
    requests = [request for method in methods
                for request in plan_runs(protocol, [method], results_dir=results_dir, seeds=choice.seeds,
                                         train_seeds=choice.train_seeds.get(method), data_root=str(tree.root),
                                         limit=choice.limit, allow_other_shot=True)]
    outcomes = execute(requests, workers=workers, quiet=quiet)
    failed = [o.message for o in outcomes if o.status == "failed"]
    if failed:
        raise RuntimeError("demo runs failed:\n" + "\n".join(failed))
    ran_at = time.perf_counter()

    # The report covers exactly this invocation's runs, whatever else the results folder holds.
    mine = {str(Path(o.run_dir).resolve()) for o in outcomes if o.run_dir}
    runs = [run for run in find_runs(results_dir, protocol.name) if str(Path(run.path).resolve()) in mine]
    records = load_records(select_runs(runs, methods))
    resamples = choice.resamples
    summary = summarise(records, resamples=resamples)
    order = row_order(summary["method"].unique())
    bold = indistinguishable_from_best(records, summary, order, resamples=resamples)
    table = markdown_table(summary, order, bold=bold)
    files = {"table.md": table, "table.tex": latex_table(summary, order, bold=bold), "table.csv": csv_table(summary),
             "ablation.md": ablation_table(summary, "panet-noalign", "panet",
                                           compare_methods(records, "panet-noalign", "panet", resamples=resamples), bold=bold),
             "hsnet-vs-panet.md": ablation_table(summary, "panet", "hsnet",
                                                 compare_methods(records, "panet", "hsnet", resamples=resamples), bold=bold)}
    for name, text in files.items():
        (out / name).write_text(text)
    figures = []
    from .classes import class_names

    names = class_names(protocol.dataset)
    for shot in protocol.shots:
        figures += plots.plot_per_class(records, out / f"per-class-{shot}shot", shot, order, names)
    figures += plots.plot_shots(summary, out / "shots", order)
    figures += plots.plot_episodes(records, out / "episodes-1shot", 1, order)
    figures += plots.plot_qualitative(records, out / "qualitative-1shot", tree, 1, 3, order, names)
    figures += plots.plot_qualitative(records, out / "qualitative-5shot", tree, 5, 3, order, names)
    from .report.html import write_report

    report_page = write_report(results_dir, out / "report", resamples)  # the whole results folder: after a fresh demo, its runs
    checks = {method: check_beats_baselines(summary, method) for method in ("panet", "hsnet")}
    check_lines = [line for _, lines in checks.values() for line in lines]
    report = {"quick": quick, "wall_seconds": round(time.perf_counter() - began, 1),
              "train_seconds": round(trained_at - began, 1), "run_seconds": round(ran_at - trained_at, 1),
              "report_seconds": round(time.perf_counter() - ran_at, 1),
              "panet_beats_training_free": checks["panet"][0], "hsnet_beats_training_free": checks["hsnet"][0],
              "check": check_lines, "files": sorted(files) + [str(Path(f).relative_to(out)) for f in figures] + [str(report_page.relative_to(out))]}
    (out / "demo.json").write_text(json.dumps(report, indent=1))
    return {**report, "out": str(out), "table": table, "ablation": files["ablation.md"]}
