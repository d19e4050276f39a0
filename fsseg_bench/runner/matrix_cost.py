"""`fsseg-bench cost`: what the encode-once cache saves on a protocol's whole matrix, for any
frozen-encoder method (GF-SAM's protocols were the reason: two large encoders per image).

In one process, on the same episodes (every fold and shot selected, `--limit` episodes each):
- the runner as it runs by default (memory LRU + disk feature store): encoder passes and CPU time;
- the runner with `--no-cache`, which encodes every image of every episode again, as the originals'
  test loops do (GF-SAM's `predict` encodes the supports and the query with DINOv2 and the query
  with SAM each episode);
- the distinct images of the matrix (the floor: one pass each; for a query-only encoder such as
  GF-SAM's SAM, one per distinct query image), and what GF-SAM's own loop would run on these
  episodes (per episode: one SAM pass, shots + 1 DINOv2 passes).
The two runs' records must be equal bit for bit; the command says so, or fails.

CPU time is this process's plus its finished workers' (user + system), so it counts what the runs'
worker processes spent.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError
from .store import RECORDS, read_records


@dataclass(frozen=True)
class PassCost:
    label: str
    encoder_passes: int
    cpu_seconds: float
    wall_seconds: float
    query_encoder_passes: int = 0  # a method's query-only encoder (GF-SAM's SAM)


@dataclass(frozen=True)
class CostReport:
    protocol: str
    method: str
    runs: int
    episodes: int
    distinct_images: int
    distinct_queries: int
    gfsam_loop_sam_passes: int
    gfsam_loop_dino_passes: int
    cached: PassCost
    uncached: PassCost
    records_identical: bool

    def table(self) -> str:
        rows = [
            f"{self.method} on {self.protocol}: {self.runs} runs (fold x shot x seed), {self.episodes} episodes, "
            f"{self.distinct_images} distinct images",
            "| path | encoder passes | query-only encoder passes | CPU s | wall s |",
            "|---|---|---|---|---|",
        ]
        for cost in (self.uncached, self.cached):
            rows.append(f"| {cost.label} | {cost.encoder_passes} | {cost.query_encoder_passes} | "
                        f"{cost.cpu_seconds:.1f} | {cost.wall_seconds:.1f} |")
        rows.append(f"| floor: one pass per distinct image (query image) | {self.distinct_images} | "
                    f"{self.distinct_queries} | | |")
        ratio_passes = self.uncached.encoder_passes / max(self.cached.encoder_passes, 1)
        ratio_cpu = self.uncached.cpu_seconds / max(self.cached.cpu_seconds, 1e-9)
        rows += [
            "",
            f"Per-episode loop / encode-once runner: {ratio_passes:.2f}x the encoder passes, {ratio_cpu:.2f}x the CPU time.",
            f"GF-SAM's own loop on these episodes: {self.gfsam_loop_sam_passes} SAM passes (the queries) and "
            f"{self.gfsam_loop_dino_passes} DINOv2 passes (supports and queries); the runner (gf-sam): "
            f"{self.cached.query_encoder_passes} and {self.cached.encoder_passes}.",
            "Records of the two runner paths identical bit for bit: " + ("yes" if self.records_identical else "NO"),
        ]
        return "\n".join(rows)


def _cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


def _records(results: Path) -> dict[str, list[dict]]:
    """Every run's records without the per-episode timing, keyed by the run's folder."""
    return {str(p.parent.relative_to(results)): [{k: v for k, v in row.items() if k != "seconds"}
                                                 for row in read_records(p.parent)]
            for p in sorted((results / "runs").rglob(RECORDS))}


def measure_cost(protocol: str | Path, method: str, data_root: str | Path | None = None, *, options: dict | None = None,
                 folds=None, shots=None, limit: int | None = None, plugins=(), keep: Path | None = None) -> CostReport:
    from .. import api
    from ..protocol import load_protocol
    from ..console import collected
    from ..registry import create_method, get_entry, load_methods

    load_methods([str(Path(p).resolve()) for p in plugins])
    frozen = getattr(get_entry(method).factory, "frozen_encoder", None)
    if frozen is None:  # a factory function: build it to ask (its warnings are the runs' to say)
        with collected():
            frozen = getattr(create_method(method, **dict(options or {})), "frozen_encoder", False)
    if not frozen:
        raise InputError(f"cost: method {method!r} has no frozen encoder (nothing for a cache to save)")
    loaded = load_protocol(protocol)
    scratch = Path(keep) if keep else Path(tempfile.mkdtemp(prefix="fsseg-cost-"))
    try:
        costs = {}
        for label, use_cache in (("per-episode loop (runner --no-cache)", False), ("runner, encode once", True)):
            results = scratch / ("cached" if use_cache else "uncached")
            cpu, wall = _cpu_seconds(), time.perf_counter()
            outcomes = api.run(protocol, [method], folds=folds, shots=shots, results=results, data_root=data_root,
                               limit=limit, options={method: dict(options or {})}, plugins=plugins,
                               use_cache=use_cache)
            failed = [o for o in outcomes if o.status != "complete"]
            if failed:
                raise InputError(f"cost: {failed[0].label} {failed[0].status}: {failed[0].message}")
            infos = [json.loads(p.read_text()) for p in sorted((results / "runs").rglob("run.json"))]
            costs[use_cache] = (PassCost(label, sum(i.get("encoder_passes", 0) for i in infos),
                                         _cpu_seconds() - cpu, time.perf_counter() - wall,
                                         sum(i.get("query_encoder_passes", 0) for i in infos)), results, infos)
        cached, cached_dir, infos = costs[True]
        uncached, uncached_dir, _ = costs[False]
        images, queries, episodes, sam_passes, dino_passes = set(), set(), 0, 0, 0
        for info in infos:
            lines = Path(info["episode_list_path"]).read_text().splitlines()
            listed = [json.loads(line) for line in lines if line.strip()][:info.get("limit") or None]
            for episode in listed:
                images.update(episode["support"] + episode["query"])
                queries.update(episode["query"])
                sam_passes += len(episode["query"])
                dino_passes += len(episode["support"]) + len(episode["query"])
            episodes += len(listed)
        return CostReport(loaded.name, method, len(infos), episodes, len(images), len(queries), sam_passes, dino_passes, cached,
                          uncached, _records(cached_dir) == _records(uncached_dir))
    finally:
        if keep is None:
            shutil.rmtree(scratch, ignore_errors=True)
