"""Executors: where runs execute. Work is split by run; records do not depend on the executor.

- local, 1 worker: in this process.
- local, N workers: N spawned processes, each with its own image and feature caches.
- dask: an existing dask.distributed cluster (`--scheduler ADDRESS`) or a LocalCluster on
  loopback (`--scheduler local`). Workers must see the same data and results folders.

Runs are grouped by (method, checkpoint), and a group runs in one worker, so its frozen-encoder
features are computed once and reused across the group's shots and seeds (and folds, for
methods whose encoder does not depend on the fold).
"""

from __future__ import annotations

import os
import sys
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from typing import Callable

from tqdm import tqdm

from .execute import RunOutcome, run_one
from .plan import RunRequest


def group_runs(requests: list[RunRequest]) -> list[list[RunRequest]]:
    groups: dict[tuple, list[RunRequest]] = defaultdict(list)
    for request in requests:
        groups[(request.method, request.options, request.checkpoint, request.fold)].append(request)
    return list(groups.values())


def run_group(requests: list[RunRequest], queue=None) -> list[RunOutcome]:
    """Worker entry point: perform a group of runs in order, reporting progress on `queue`."""
    report = (lambda event, label, n: queue.put((event, label, n))) if queue is not None else None
    return [run_one(request, report) for request in requests]


class ProgressBars:
    """An overall bar plus one bar per active run (episodes/s and ETA)."""

    def __init__(self, total_runs: int, quiet: bool):
        self.quiet = quiet
        self.overall = tqdm(total=total_runs, desc="runs", unit="run", disable=quiet, position=0, dynamic_ncols=True)
        self.bars: dict[str, tqdm] = {}

    def __call__(self, event: str, label: str, number: int) -> None:
        if self.quiet:
            return
        if event == "start":
            self.bars[label] = tqdm(total=number, desc=label, unit="ep", leave=False,
                                    position=1 + len(self.bars), dynamic_ncols=True)
        elif event == "advance" and label in self.bars:
            self.bars[label].update(number)
        elif event == "end" and label in self.bars:
            self.bars.pop(label).close()

    def finished(self, outcome: RunOutcome) -> None:
        self.overall.update(1)
        if outcome.status in ("failed", "locked"):
            tqdm.write(("FAILED: " if outcome.status == "failed" else "") + outcome.message, file=sys.stderr)

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()
        self.overall.close()


def execute(requests: list[RunRequest], executor: str = "local", workers: int | None = None,
            scheduler: str | None = None, quiet: bool = False) -> list[RunOutcome]:
    workers = workers or os.cpu_count() or 1
    bars = ProgressBars(len(requests), quiet)
    try:
        if executor == "dask":
            outcomes = _execute_dask(requests, scheduler or "local", workers, bars)
        elif workers <= 1 or len(requests) <= 1:
            outcomes = []
            for request in requests:
                outcomes.append(run_one(request, bars))
                bars.finished(outcomes[-1])
        else:
            outcomes = _execute_processes(requests, workers, bars)
    finally:
        bars.close()
    order = {request.label: i for i, request in enumerate(requests)}
    return sorted(outcomes, key=lambda o: order.get(o.label, 0))


def _drain(queue, bars: Callable) -> None:
    while not queue.empty():
        bars(*queue.get_nowait())


def _execute_processes(requests, workers, bars: ProgressBars) -> list[RunOutcome]:
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, wait

    context = multiprocessing.get_context("spawn")  # torch and fork do not mix safely
    outcomes: list[RunOutcome] = []
    with context.Manager() as manager, ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        queue = manager.Queue()
        pending = {pool.submit(run_group, group, queue) for group in group_runs(requests)}
        while pending:
            done, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
            _drain(queue, bars)
            for future in done:
                for outcome in future.result():
                    outcomes.append(outcome)
                    bars.finished(outcome)
        _drain(queue, bars)
    return outcomes


def _execute_dask(requests, scheduler: str, workers: int, bars: ProgressBars) -> list[RunOutcome]:
    try:
        from dask.distributed import Client, LocalCluster, as_completed
    except ImportError:
        from ..errors import InputError
        raise InputError("--executor dask needs dask.distributed: pip install -e '.[dask]'") from None
    cluster = None
    if scheduler == "local":
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                               dashboard_address=None)
        client = Client(cluster)
    else:
        client = Client(scheduler)
    outcomes: list[RunOutcome] = []
    try:
        futures = [client.submit(run_group, group, pure=False) for group in group_runs(requests)]
        for future in as_completed(futures):
            for outcome in future.result():
                outcomes.append(outcome)
                bars.finished(outcome)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    return outcomes
