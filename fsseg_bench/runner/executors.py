"""Executors: where runs execute. Work is split by run; records do not depend on the executor.

- local, 1 worker (the default from Python): in this process.
- local, N workers (the CLI's default: one per core): N spawned worker processes, each with its
  own image and feature caches, each talking to this process over its own pipe. A worker that
  dies (os._exit, OOM kill, a segfault) fails only the run it held; the rest of its runs go on in
  a fresh worker. With `timeout_per_episode`, a run whose method stops making progress is failed
  and its worker replaced (a single worker then runs in a subprocess too, so it can be stopped).
- dask: an existing dask.distributed cluster (`--scheduler ADDRESS`) or a LocalCluster on
  loopback (`--scheduler local`). Workers must see the same data and results folders.

Runs are grouped by (method, options, checkpoint, fold), and a group runs in one worker, so its
frozen-encoder features are computed once and reused across the group's shots and seeds.

Everything is checked before any worker starts (`preflight`): a bad protocol, value, data tree,
episode list or checkpoint is one InputError, not one failure per run.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from collections import defaultdict, deque
from tqdm import tqdm

from ..data.source import one_look_at_the_data
from . import execute as execute_module
from ..console import interactive, rate_text, say, warn
from .execute import PREDICT_CHUNK, RunOutcome, prepare_run, run_one
from .plan import RunRequest

# Time a worker may take to set a run up (load data, build and load the model) before its first
# chunk of episodes starts, when a per-episode timeout is set.
SETUP_SECONDS = 300.0


class Interrupted(Exception):
    """Ctrl-C: the runs that finished, and those interrupted or never started."""

    def __init__(self, outcomes: list[RunOutcome]):
        super().__init__("interrupted")
        self.outcomes = outcomes


def preflight(requests: list[RunRequest]) -> list[str]:
    """Check every request before any work starts; raise InputError for the first bad one. Nothing
    is written while checking (bad input leaves the results folder as it was): the protocol, values,
    data tree, episode lists, and each checkpoint (its recorded state_sha256, finite tensors, and that
    it covers the method's tensors with their shapes), then that the results folder is writable.

    Returns the distinct warnings (e.g. a checkpoint without provenance), to print once.
    """
    warnings: list[str] = []
    checked: set = set()
    with one_look_at_the_data(write=False):
        for request in requests:
            prepared = prepare_run(request)
            check_method_builds(request, prepared, checked)
            for warning in (prepared.warning, prepared.episode_note):
                if warning and warning not in warnings:
                    warnings.append(warning)
    for results in sorted({request.results_dir for request in requests}):
        check_writable(results)
    return warnings


def check_method_builds(request: RunRequest, prepared, checked: set) -> None:
    """Build each distinct method configuration once, up front, with its checkpoint loaded (the
    worker reuses the instance when it runs in this process). Bad input found there (a weights file
    missing or of another architecture, a gated checkpoint not in place, a checkpoint that does not
    fit) is one line now, before any run; any other fault of a method fails its runs later."""
    checkpoint = prepared.checkpoint
    key = (request.method, json.dumps(prepared.options, sort_keys=True, default=str),
           checkpoint["sha256"] if checkpoint else None)
    if key in checked:
        return
    checked.add(key)
    from ..errors import InputError
    from ..fingerprints import code_fingerprint

    try:
        execute_module._method_instance(request, prepared.options, checkpoint["path"] if checkpoint else None,
                                        checkpoint["sha256"] if checkpoint else None,
                                        code_fingerprint(prepared.entry.factory)[0])
    except InputError:
        raise
    except Exception:  # noqa: BLE001 (reported by the run itself, once, as the method's fault)
        return


def check_writable(results_dir: str) -> None:
    """The results folder (created if needed) must take a file: found before any work, one line."""
    import os
    from pathlib import Path

    from ..errors import InputError

    folder = Path(results_dir)
    probe = folder / f".fsseg-bench-write-test-{os.getpid()}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        try:
            probe.unlink(missing_ok=True)
        except OSError:
            pass
        raise InputError(f"{folder}: the results folder is not writable ({exc.strerror or exc}); "
                         f"pass --results DIR") from None


def group_runs(requests: list[RunRequest]) -> list[list[RunRequest]]:
    groups: dict[tuple, list[RunRequest]] = defaultdict(list)
    for request in requests:
        groups[(request.method, request.options, request.checkpoint, request.fold)].append(request)
    return list(groups.values())


def run_group(requests: list[RunRequest]) -> list[RunOutcome]:
    """Perform a group of runs in order (dask's unit of work)."""
    return [run_one(request) for request in requests]


class ProgressBars:
    """On a terminal: an overall bar counting episodes (its total estimated from the runs started
    so far, so the ETA keeps moving) plus one bar per active run, each on its own line. Elsewhere
    (a pipe, a log file): one plain line per finished run and a progress line at most every
    `line_seconds`. Failures and warnings are said once each; `quiet` keeps only those."""

    def __init__(self, total_runs: int, quiet: bool, line_seconds: float = 30.0):
        self.quiet, self.total, self.done = quiet, total_runs, 0
        self.bars_on = not quiet and interactive()
        self.overall = tqdm(total=0, desc=f"0/{total_runs} runs", unit="ep", disable=not self.bars_on, position=0,
                            dynamic_ncols=True)
        self.bars: dict[str, tqdm] = {}
        self.positions: dict[str, int] = {}
        self.started_episodes: dict[str, int] = {}  # label -> episodes of each run started
        self.episodes_done, self.runs_settled = 0, 0
        self.began = time.perf_counter()
        self.line_seconds, self.last_line = line_seconds, time.perf_counter()

    def estimated_total(self) -> int:
        """Episodes of the runs started, plus the runs not yet started at their mean size."""
        known = sum(self.started_episodes.values())
        unstarted = max(self.total - len(self.started_episodes) - self.runs_settled, 0)
        mean = known / len(self.started_episodes) if self.started_episodes else 0
        return int(round(known + unstarted * mean))

    def __call__(self, event: str, label: str, number: int) -> None:
        if event == "start":
            self.started_episodes[label] = number
        elif event == "advance":
            self.episodes_done += number
        if self.bars_on:
            if event == "start":
                # The lowest free line: a finished run's line is reused, never two bars on one.
                position = min(set(range(1, len(self.positions) + 2)) - set(self.positions.values()))
                self.positions[label] = position
                self.bars[label] = tqdm(total=number, desc=label, unit="ep", leave=False, position=position,
                                        dynamic_ncols=True)
            elif event == "advance" and label in self.bars:
                self.bars[label].update(number)
            elif event == "end" and label in self.bars:
                self.bars.pop(label).close()
                self.positions.pop(label, None)
            self.overall.total = max(self.estimated_total(), self.episodes_done)
            self.overall.n = self.episodes_done
            self.overall.refresh()
        elif event == "advance" and not self.quiet and time.perf_counter() - self.last_line >= self.line_seconds:
            self.last_line = time.perf_counter()
            say(self.progress_line(), False)

    def progress_line(self) -> str:
        elapsed = time.perf_counter() - self.began
        rate = self.episodes_done / max(elapsed, 1e-9)
        total = max(self.estimated_total(), self.episodes_done)
        left = (total - self.episodes_done) / rate if rate > 0 else float("nan")
        return (f"progress: {self.done}/{self.total} runs, {self.episodes_done}/{total} episodes "
                f"({rate_text(rate)}/s), about {left:.0f} s left")

    def finished(self, outcome: RunOutcome) -> None:
        self.done += 1
        if outcome.label not in self.started_episodes:
            self.runs_settled += 1  # skipped, locked or failed before it started: no episodes to wait for
        if self.bars_on:
            self.overall.set_description(f"{self.done}/{self.total} runs")
            self.overall.total = max(self.estimated_total(), self.episodes_done)
            self.overall.refresh()
        for warning in outcome.warnings:
            if self.bars_on:
                with tqdm.external_write_mode(file=sys.stderr):
                    warn(warning)
            else:
                warn(warning)
        if outcome.status in ("failed", "locked"):
            say(("FAILED: " if outcome.status == "failed" else "") + outcome.message, self.bars_on)
        elif not self.quiet and not self.bars_on:
            rate = outcome.episodes / max(outcome.seconds, 1e-9)
            figures = (f": {outcome.episodes} episodes in {outcome.seconds:.1f} s ({rate_text(rate)}/s)"
                       if outcome.status == "complete" else f": {outcome.message}" if outcome.message else "")
            say(f"[{self.done}/{self.total}] {outcome.label} {outcome.status}{figures}", self.bars_on)

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()
        self.overall.close()


def execute(requests: list[RunRequest], executor: str = "local", workers: int | None = None,
            scheduler: str | None = None, quiet: bool = False,
            timeout_per_episode: float | None = None) -> list[RunOutcome]:
    """Perform the runs; returns one outcome per request, in request order.

    Raises InputError before any work when a request is bad, and `Interrupted` on Ctrl-C.
    """
    for warning in preflight(requests):
        warn(warning)
    workers = workers or 1
    bars = ProgressBars(len(requests), quiet)
    try:
        if executor == "dask":
            outcomes = _execute_dask(requests, scheduler or "local", workers, bars)
        elif (workers <= 1 or len(requests) <= 1) and timeout_per_episode is None:
            outcomes = _execute_in_process(requests, bars)
        else:
            outcomes = _execute_processes(requests, workers, bars, timeout_per_episode)
    finally:
        bars.close()
    repairs = sum(outcome.store_repairs for outcome in outcomes)
    if repairs:
        warn(f"{repairs} feature-store entr{'y was' if repairs == 1 else 'ies were'} damaged and recomputed")
    return _in_request_order(requests, outcomes)


def _in_request_order(requests, outcomes):
    order = {request.label: i for i, request in enumerate(requests)}
    return sorted(outcomes, key=lambda o: order.get(o.label, 0))


def _not_started(requests, outcomes) -> list[RunOutcome]:
    seen = {o.label for o in outcomes}
    return [RunOutcome(r.label, "interrupted", f"{r.label}: not started") for r in requests if r.label not in seen]


# --- in this process ------------------------------------------------------------------------------

def _execute_in_process(requests, bars: ProgressBars) -> list[RunOutcome]:
    outcomes: list[RunOutcome] = []
    previous = None
    if threading.current_thread() is threading.main_thread():
        def on_sigint(signum, frame):
            execute_module.INTERRUPT_REQUESTED = True
            raise KeyboardInterrupt
        previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        for request in requests:
            outcomes.append(run_one(request, bars))
            bars.finished(outcomes[-1])
    except KeyboardInterrupt:
        raise Interrupted(_in_request_order(requests, outcomes + _not_started(requests, outcomes))) from None
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
        execute_module.INTERRUPT_REQUESTED = False
    return outcomes


# --- worker processes -----------------------------------------------------------------------------

def _worker_main(connection) -> None:
    """A worker: perform the runs sent over the pipe, one at a time, reporting progress back.

    SIGINT is ignored here: Ctrl-C is the parent's to handle, so a KeyboardInterrupt in a worker
    can only come from a method, and fails only its run.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    send = lambda *message: connection.send(message)
    while True:
        try:
            request = connection.recv()
        except EOFError:
            return
        if request is None:
            return
        send("outcome", run_one(request, lambda event, label, n: send("progress", event, label, n)))


class _Worker:
    def __init__(self, context, runs: deque | None = None):
        self.connection, child = context.Pipe()
        self.process = context.Process(target=_worker_main, args=(child,), daemon=True)
        self.process.start()
        child.close()
        self.runs: deque = runs if runs is not None else deque()
        self.current: RunRequest | None = None
        self.deadline: float | None = None

    def dispatch(self, request: RunRequest, timeout: float | None) -> None:
        self.current = request
        self.deadline = time.monotonic() + SETUP_SECONDS + timeout * PREDICT_CHUNK if timeout else None
        self.connection.send(request)

    def stop(self) -> None:
        try:
            self.connection.send(None)
        except (OSError, ValueError):
            pass
        self.process.join(timeout=5)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        self.connection.close()


def _death_message(process) -> str:
    code = process.exitcode
    if code is not None and code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def _execute_processes(requests, workers: int, bars: ProgressBars, timeout: float | None) -> list[RunOutcome]:
    import multiprocessing
    from multiprocessing.connection import wait

    context = multiprocessing.get_context("spawn")  # torch and fork do not mix safely
    groups = deque(group_runs(requests))
    pool = [_Worker(context) for _ in range(max(1, min(workers, len(groups))))]
    outcomes: list[RunOutcome] = []

    def finish(outcome: RunOutcome) -> None:
        outcomes.append(outcome)
        bars.finished(outcome)

    def replace(worker: _Worker, message: str, cause: str) -> None:
        request = worker.current
        finish(RunOutcome(request.label, "failed", f"{request.label}: {message}", cause=cause))
        if worker.process.is_alive():
            worker.process.kill()
        worker.process.join()
        worker.connection.close()
        pool[pool.index(worker)] = _Worker(context, worker.runs)  # the rest of its runs go on

    def receive(worker: _Worker) -> bool:
        """Handle what the worker sent; False when its pipe closed (the worker died)."""
        try:
            while worker.connection.poll():
                kind, *payload = worker.connection.recv()
                if kind == "progress":
                    event, label, number = payload
                    bars(event, label, number)
                    if timeout and event == "busy":
                        worker.deadline = time.monotonic() + timeout * number
                    elif timeout and event in ("advance", "end"):
                        worker.deadline = time.monotonic() + SETUP_SECONDS
                else:
                    finish(payload[0])
                    worker.current, worker.deadline = None, None
        except (EOFError, OSError):
            return False
        return True

    try:
        while True:
            for worker in pool:
                if worker.current is None:
                    if not worker.runs and groups:
                        worker.runs = deque(groups.popleft())
                    if worker.runs:
                        worker.dispatch(worker.runs.popleft(), timeout)
            busy = [worker for worker in pool if worker.current is not None]
            if not busy:
                break
            wait([w.connection for w in busy] + [w.process.sentinel for w in busy], timeout=0.5)
            for worker in busy:
                alive = receive(worker) and worker.process.is_alive()
                if worker.current is None:
                    continue
                if not alive:
                    receive(worker)  # an outcome sent just before exiting still counts
                    worker.process.join(timeout=10)  # for its exit code
                    if worker.current is not None:
                        replace(worker, f"the worker process died ({_death_message(worker.process)}) during this run; "
                                        f"records written so far are kept and a rerun resumes", "worker")
                elif worker.deadline is not None and time.monotonic() > worker.deadline:
                    replace(worker, f"timed out: no episode finished within --timeout-per-episode {timeout:g} s "
                                    f"(the method hangs?); its worker was stopped", "timeout")
    except KeyboardInterrupt:
        for worker in pool:
            worker.process.kill()
        for worker in pool:
            if worker.current is not None:
                outcomes.append(RunOutcome(worker.current.label, "interrupted", f"{worker.current.label}: interrupted"))
        raise Interrupted(_in_request_order(requests, outcomes + _not_started(requests, outcomes))) from None
    finally:
        for worker in pool:
            worker.stop()
    return outcomes


# --- dask -----------------------------------------------------------------------------------------

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
        futures = {client.submit(run_group, group, pure=False): group for group in group_runs(requests)}
        for future in as_completed(futures):
            try:
                results = future.result()
            except Exception as exc:  # a worker that died (KilledWorker) or a lost connection
                results = [RunOutcome(r.label, "failed", f"{r.label}: the dask task of its group failed "
                                      f"({type(exc).__name__}: {exc}); a rerun resumes it", cause="worker")
                           for r in futures[future]]
            for outcome in results:
                outcomes.append(outcome)
                bars.finished(outcome)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    return outcomes


def summary_line(outcomes: list[RunOutcome], where: str) -> str:
    counts = {status: sum(o.status == status for o in outcomes)
              for status in ("complete", "skipped", "locked", "failed", "interrupted")}
    line = (f"{len(outcomes)} runs: {counts['complete']} completed, {counts['skipped']} already complete, "
            f"{counts['locked']} skipped (being written by another process), {counts['failed']} failed")
    if counts["interrupted"]:
        line += f", {counts['interrupted']} interrupted or not started"
    return line + f"; records under {where}"

