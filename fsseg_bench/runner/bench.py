"""`fsseg-bench bench`: the runner's speed and memory on the synthetic protocol, in one process.

Measures, in one run so that ratios compare like with like:
- the floor: the time to load and encode each distinct image of the protocol once;
- the full protocol (every fold, shot, seed and episode) with the feature cache;
- episodes/s without the cache, on a sample of episodes (the full uncached run is extrapolated);
- the per-episode scoring cost (argmax + bincount counts) alone;
- resident memory after a quarter of the episodes and after all of them, and the peak.
"""

from __future__ import annotations

import resource
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..data.source import episode_list_for, resolve_tree
from ..metrics import episode_counts
from ..preprocess import ImageLoader
from ..protocol import load_protocol
from ..registry import create_method
from .execute import _FEATURE_CACHES, _IMAGE_LOADERS, _METHODS, predicted_mask, run_one
from .plan import plan_runs


def current_rss_mib() -> float:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@dataclass(frozen=True)
class BenchReport:
    method: str
    backbone: str
    threads: int
    episodes: int
    runs: int
    distinct_images: int
    floor_seconds: float
    cached_seconds: float
    uncached_sample_episodes: int
    uncached_sample_seconds: float
    scoring_microseconds: float
    rss_quarter_mib: float
    rss_full_mib: float
    peak_rss_mib: float

    @property
    def cached_eps(self) -> float:
        return self.episodes / self.cached_seconds

    @property
    def uncached_eps(self) -> float:
        return self.uncached_sample_episodes / self.uncached_sample_seconds

    def table(self) -> str:
        rows = [
            ("method / backbone / torch threads", f"{self.method} / {self.backbone} / {self.threads}"),
            ("episodes in the protocol (runs)", f"{self.episodes} ({self.runs})"),
            ("distinct images", f"{self.distinct_images}"),
            ("floor: encode each image once", f"{self.floor_seconds:.2f} s"),
            ("full run with feature cache", f"{self.cached_seconds:.2f} s ({self.cached_eps:.0f} episodes/s)"),
            ("without cache (sampled)", f"{self.uncached_eps:.1f} episodes/s over {self.uncached_sample_episodes} episodes"),
            ("full run without cache (extrapolated)", f"{self.episodes / self.uncached_eps:.1f} s"),
            ("speed-up from the cache", f"{self.cached_eps / self.uncached_eps:.1f}x"),
            ("full cached run / floor", f"{self.cached_seconds / self.floor_seconds:.2f}x"),
            ("scoring cost per episode", f"{self.scoring_microseconds:.0f} us"),
            ("RSS after 1/4 of the episodes / all", f"{self.rss_quarter_mib:.0f} MiB / {self.rss_full_mib:.0f} MiB"),
            ("peak RSS", f"{self.peak_rss_mib:.0f} MiB"),
        ]
        width = max(len(r[0]) for r in rows)
        lines = [f"| {'measure':{width}s} | value |", f"|{'-' * (width + 2)}|-------|"]
        return "\n".join(lines + [f"| {name:{width}s} | {value} |" for name, value in rows])


def _fresh_caches() -> None:
    _IMAGE_LOADERS.clear()
    _FEATURE_CACHES.clear()
    _METHODS.clear()


def _run_all(requests) -> float:
    began = time.perf_counter()
    for request in requests:
        outcome = run_one(request)
        if outcome.status != "complete":
            raise RuntimeError(outcome.message)
    return time.perf_counter() - began


def bench(method: str = "panet-init", backbone: str = "vgg16", uncached_episodes: int = 40,
          threads: int | None = None, data_root=None, results_dir: Path | None = None) -> BenchReport:
    threads = threads or 1  # the runner's default per worker
    torch.set_num_threads(threads)
    protocol = load_protocol("synthetic5i")
    scratch = Path(results_dir or tempfile.mkdtemp(prefix="fsseg-bench-"))
    tree = resolve_tree(protocol, data_root, scratch)
    lists = [episode_list_for(protocol, tree, f, k, s, scratch)[0]
             for f in protocol.folds for k in protocol.shots for s in protocol.seeds]
    image_ids = sorted({i for episodes in lists for e in episodes for i in e.support + e.query})
    common = dict(results_dir=scratch, options=(("backbone", backbone),), data_root=str(tree.root),
                  save_predictions=0, threads=threads)

    # Floor: prepare and encode every distinct image once.
    instance = create_method(method, backbone=backbone).eval()
    loader = ImageLoader(tree, protocol)
    began = time.perf_counter()
    with torch.no_grad():
        for image_id in image_ids:
            instance.encode(loader(image_id).image[None])
    floor = time.perf_counter() - began
    del instance, loader

    # A quarter of every run, then every episode, each with fresh caches.
    _fresh_caches()
    _run_all(plan_runs(protocol, [method], limit=protocol.episodes // 4, **common))
    rss_quarter = current_rss_mib()
    _fresh_caches()
    cached = _run_all(plan_runs(protocol, [method], **common))
    rss_full = current_rss_mib()

    # Without the cache: a sample from each shot (5-shot episodes encode 6 images, 1-shot 2).
    _fresh_caches()
    per_shot = max(1, uncached_episodes // len(protocol.shots))
    uncached = _run_all(plan_runs(protocol, [method], folds=[protocol.folds[0]], seeds=[protocol.seeds[0]],
                                  limit=per_shot, use_cache=False, **{**common, "results_dir": scratch / "nocache"}))
    # The sample mixes shots equally, as the full protocol does.
    sample = per_shot * len(protocol.shots)

    # Scoring alone: argmax + counts on a 64x64 query.
    generator = torch.Generator().manual_seed(0)
    scores = torch.randn(500, 2, *protocol.image_size, generator=generator)
    labels = torch.randint(0, 2, (500, *protocol.image_size), generator=generator)
    began = time.perf_counter()
    for i in range(500):
        episode_counts(predicted_mask(scores[i])[None], labels[i][None])
    scoring = (time.perf_counter() - began) / 500 * 1e6

    return BenchReport(method, backbone, threads, sum(len(e) for e in lists), len(lists), len(image_ids), floor,
                       cached, sample, uncached, scoring, rss_quarter, rss_full, peak_rss_mib())
