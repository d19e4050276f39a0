"""`fsseg-bench bench`: the runner's speed and memory at PANet's real scale, in one process.

On a VOC-sized stand-in (images 375-500 px, a fold pool of a few hundred images, written in VOC's
formats by the synthetic generator) under PANet's convention (417x417, class-uniform episodes,
1 and 5 shots, 5 seeds x 1000 episodes: one fold's whole matrix), it measures on the same
episodes, in one run so that ratios compare like with like:

- the literal reference loop, written here from the paper's definition (encode every image of
  every episode, upsample the support features to the image, masked-average-pool, cosine x 20,
  upsample the scores), on a sample of episodes per shot, extrapolated to the full matrix;
- the floor: each distinct image of the matrix loaded and encoded once;
- the full matrix through the runner (defaults: memory LRU, disk feature store, statistics LRU),
  its CPU time, encoder passes, and resident memory after a quarter of the episodes and at the end;
- the runner without any cache on the same sample (records must equal the full run's bitwise),
  and the largest per-episode count difference between the runner and the reference.

`--quick` measures the same on the 64x64 synthetic stand-in with few episodes.
"""

from __future__ import annotations

import resource
import shutil
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..data.source import episode_list_for, resolve_tree
from ..data.synthetic import SyntheticConfig, write_synthetic_tree
from ..metrics import COUNT_COLUMNS, episode_counts
from ..preprocess import ImageLoader, build_episode
from ..protocol import load_protocol
from ..registry import create_method
from ..scoring import predicted_mask
from .execute import _FEATURE_CACHES, _IMAGE_LOADERS, _METHODS, run_one
from .plan import plan_runs
from .store import read_run_json, scan_records


@dataclass(frozen=True)
class BenchSettings:
    name: str
    min_side: int
    max_side: int
    n_val: int
    image_size: int
    episodes: int
    seeds: tuple[int, ...]
    sample: int  # episodes per shot for the reference loop and the uncached runner


REAL = BenchSettings("voc-sized", 375, 500, 600, 417, 1000, (1234, 1235, 1236, 1237, 1238), 4)
QUICK = BenchSettings("quick", 80, 112, 240, 64, 200, (1234, 1235, 1236, 1237, 1238), 20)


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
    settings: BenchSettings
    method: str
    backbone: str
    device: str
    threads: int
    runs: int
    episodes_per_shot: int
    distinct_images: int
    reference_seconds_per_episode: dict   # shot -> CPU s
    floor_seconds: float
    full_seconds: float                   # CPU s
    full_wall_seconds: float
    encoder_passes: int
    uncached_identical: bool
    max_count_difference: int
    rss_quarter_mib: float
    rss_full_mib: float
    peak_rss_mib: float
    verify_wall_seconds: float            # rerun of the complete matrix: every run verified, none recomputed
    warm_seconds: float                   # --force from a cold process cache: every feature read from the store
    warm_encoder_passes: int

    def reference_matrix_seconds(self, shot: int) -> float:
        return self.reference_seconds_per_episode[shot] * self.episodes_per_shot

    def table(self) -> str:
        s = self.settings
        rows = [("stand-in / input", f"{s.name}: images {s.min_side}-{s.max_side} px, input {s.image_size}x{s.image_size}"),
                ("method / backbone / device / torch threads", f"{self.method} / {self.backbone} / {self.device} / {self.threads}"),
                ("matrix (one fold)", f"{self.runs} runs, {self.episodes_per_shot} episodes per shot"),
                ("distinct images (the pool)", f"{self.distinct_images}")]
        for shot, seconds in sorted(self.reference_seconds_per_episode.items()):
            rows.append((f"reference loop, {shot}-shot (sampled)", f"{seconds:.3f} CPU s/episode -> "
                         f"{self.reference_matrix_seconds(shot):.0f} s for the {shot}-shot matrix"))
        rows += [("floor: each distinct image loaded + encoded once", f"{self.floor_seconds:.1f} s"),
                 ("full matrix (both shots), runner", f"{self.full_seconds:.1f} CPU s ({self.full_wall_seconds:.1f} s wall)"),
                 ("encoder passes (full matrix)", f"{self.encoder_passes} for {self.distinct_images} distinct images")]
        for shot in sorted(self.reference_seconds_per_episode):
            rows.append((f"{shot}-shot reference matrix / full matrix (both shots)",
                         f"{self.reference_matrix_seconds(shot) / self.full_seconds:.1f}x less CPU time"))
        rows += [("full matrix / floor", f"{self.full_seconds / self.floor_seconds:.2f}x"),
                 ("rerun, all complete (records + code closure verified)", f"{self.verify_wall_seconds:.2f} s wall for "
                                                                           f"{self.runs} runs"),
                 ("rerun --force, features from the disk store (each verified)",
                  f"{self.warm_seconds:.1f} CPU s, {self.warm_encoder_passes} encoder passes "
                  f"({self.warm_seconds / self.full_seconds:.2f}x the cold run)"),
                 ("uncached runner = full run (records, bitwise)", "yes" if self.uncached_identical else "NO"),
                 ("largest count difference to the reference", f"{self.max_count_difference} pixels"),
                 ("RSS after 1/4 of the episodes / all", f"{self.rss_quarter_mib:.0f} MiB / {self.rss_full_mib:.0f} MiB"),
                 ("peak RSS (floor and full matrix, before the reference loop)", f"{self.peak_rss_mib:.0f} MiB")]
        width = max(len(r[0]) for r in rows)
        lines = [f"| {'measure':{width}s} | value |", f"|{'-' * (width + 2)}|-------|"]
        return "\n".join(lines + [f"| {name:{width}s} | {value} |" for name, value in rows])


def _protocol_text(settings: BenchSettings, backbone: str) -> str:
    return (f'name = "bench-{settings.name}"\ndataset = "pascal-voc"\nsplit = "val"\ntrain_split = "train"\n'
            f"folds = [0]\nshots = [1, 5]\nepisodes = {settings.episodes}\nseeds = {list(settings.seeds)}\n"
            f'query_sampling = "class-uniform"\nimage_size = [{settings.image_size}, {settings.image_size}]\n'
            f'score_at = "resized"\nbackbone = "{backbone}"\n'
            'description = "PANet\'s convention at one fold, for fsseg-bench bench"\n')


def _fresh_caches() -> None:
    _IMAGE_LOADERS.clear()
    _FEATURE_CACHES.clear()
    _METHODS.clear()


def reference_episode(method, episode, scale: float = 20.0) -> torch.Tensor:
    """PANet's test-time forward, literally: encode each image, upsample support features to the
    image size, masked average pooling, mean over shots, cosine x 20, upsample the scores."""
    size = episode.image_size
    query = torch.cat([method.encode(x[None]) for x in episode.query_images])            # [Q,C,h,w]
    fg_pooled, bg_pooled = [], []
    for image, mask in zip(episode.support_images, episode.support_masks):  # one shot at a time: 356 MB each
        upsampled = F.interpolate(method.encode(image[None]), size=size, mode="bilinear")  # [1,C,H,W]
        for pooled, value in ((fg_pooled, 1), (bg_pooled, 0)):
            weight = (mask == value).float()[None, None]
            pooled.append((upsampled * weight).sum(dim=(2, 3))[0] / (weight.sum() + 1e-5))
    fg_prototype, bg_prototype = torch.stack(fg_pooled).mean(dim=0), torch.stack(bg_pooled).mean(dim=0)
    scores = torch.stack([F.cosine_similarity(query, p[None, :, None, None], dim=1) * scale
                          for p in (bg_prototype, fg_prototype)], dim=1)                 # [Q,2,h,w]
    return F.interpolate(scores, size=size, mode="bilinear")


def bench(method: str = "panet-init", backbone: str = "vgg16", quick: bool = False, threads: int | None = None,
          device: str = "cpu", settings: BenchSettings | None = None, keep: Path | None = None,
          encode_batch: int = 1) -> BenchReport:
    """Measure; `keep` keeps the scratch folder (tree, runs, store) there instead of a temporary one."""
    settings = settings or (QUICK if quick else REAL)
    threads = threads or 1  # the runner's default per worker
    torch.set_num_threads(threads)
    scratch = Path(keep) if keep else Path(tempfile.mkdtemp(prefix="fsseg-bench-"))
    try:
        return _measure(settings, method, backbone, threads, device, scratch, encode_batch)
    finally:
        if keep is None:
            shutil.rmtree(scratch, ignore_errors=True)


def _measure(settings, method_name, backbone, threads, device, scratch: Path, encode_batch: int) -> BenchReport:
    data = scratch / "data"
    write_synthetic_tree(data, SyntheticConfig(n_train=10, n_val=settings.n_val, min_side=settings.min_side,
                                               max_side=settings.max_side))
    protocol_path = scratch / f"bench-{settings.name}.toml"
    protocol_path.write_text(_protocol_text(settings, backbone))
    protocol = load_protocol(protocol_path)
    results = scratch / "results"
    tree = resolve_tree(protocol, data, results)
    lists = {(k, s): episode_list_for(protocol, tree, 0, k, s, results).episodes for k in protocol.shots for s in protocol.seeds}
    image_ids = sorted({i for episodes in lists.values() for e in episodes for i in e.support + e.query})
    common = dict(results_dir=str(results), options=(("backbone", backbone),), data_root=str(tree.root),
                  save_predictions=0, threads=threads, device=device, encode_batch=encode_batch)
    requests = plan_runs(protocol, [method_name], **common)
    total_episodes = sum(len(e) for e in lists.values())

    # Floor: load and encode each distinct image once.
    instance = create_method(method_name, backbone=backbone).eval().to(device)
    loader = ImageLoader(tree, protocol, cache_mib=0)
    began = time.process_time()
    with torch.no_grad():
        for image_id in image_ids:
            instance.encode(loader.image(image_id)[None].to(device))
    floor = time.process_time() - began

    # The full matrix through the runner, from cold caches and an empty feature store.
    _fresh_caches()
    done, rss_quarter = [0], [float("nan")]

    def progress(event, label, number):
        if event == "advance":
            done[0] += number
            if done[0] >= total_episodes // 4 and np.isnan(rss_quarter[0]):
                rss_quarter[0] = current_rss_mib()

    began, wall = time.process_time(), time.perf_counter()
    outcomes = [run_one(request, progress) for request in requests]
    full, full_wall = time.process_time() - began, time.perf_counter() - wall
    failed = [o.message for o in outcomes if o.status != "complete"]
    if failed:
        raise RuntimeError("; ".join(failed))
    rss_full, runner_peak = current_rss_mib(), peak_rss_mib()  # before the reference loop's own memory
    passes = sum(read_run_json(Path(o.run_dir))["encoder_passes"] for o in outcomes)
    full_records = {(r.shot, r.seed): scan_records(Path(o.run_dir)).records for r, o in zip(requests, outcomes)}

    # What trust costs: a rerun verifies each complete run (records sha256, code closure) instead of
    # recomputing it; a forced rerun from cold process caches reads and verifies every stored feature.
    began = time.perf_counter()
    reruns = [run_one(request) for request in requests]
    verify_wall = time.perf_counter() - began
    if any(o.status != "skipped" for o in reruns):
        raise RuntimeError("a complete run was not reused: " + "; ".join(o.message for o in reruns if o.status != "skipped"))
    _fresh_caches()
    began = time.process_time()
    forced = [run_one(replace(request, force=True)) for request in requests]
    warm = time.process_time() - began
    warm_passes = sum(read_run_json(Path(o.run_dir))["encoder_passes"] for o in forced)

    # The runner without any cache on a sample of each shot: records must be bitwise equal.
    _fresh_caches()
    first_seed = protocol.seeds[0]
    uncached = plan_runs(protocol, [method_name], seeds=[first_seed], limit=settings.sample, use_cache=False,
                         **{**common, "results_dir": str(scratch / "uncached"), "encode_batch": 1})
    strip = lambda rows: [{k: v for k, v in row.items() if k != "seconds"} for row in rows]
    identical = True
    for request in uncached:
        outcome = run_one(request)
        sample = scan_records(Path(outcome.run_dir)).records
        identical &= strip(sample) == strip(full_records[(request.shot, first_seed)][:settings.sample])

    # The literal reference loop on the same sample.
    loader = ImageLoader(tree, protocol, cache_mib=0)
    seconds, difference = {}, 0
    with torch.no_grad():
        for shot in protocol.shots:
            specs = lists[(shot, first_seed)][:settings.sample]
            began = time.process_time()
            for spec in specs:
                episode, queries = build_episode(spec, loader, protocol, with_query_masks=False)
                scores = reference_episode(instance, episode.to(device))
                label = queries[0].label.numpy()
                binary = (label == spec.class_id).astype(np.uint8)
                binary[label == protocol.ignore_index] = protocol.ignore_index
                counts = episode_counts(predicted_mask(scores[0].cpu())[None], binary[None], protocol.ignore_index)[0]
                record = full_records[(shot, first_seed)][spec.index]
                difference = max(difference, max(abs(int(c) - record[name]) for c, name in zip(counts, COUNT_COLUMNS)))
            seconds[shot] = (time.process_time() - began) / len(specs)

    return BenchReport(settings, method_name, backbone, device, threads, len(requests),
                       settings.episodes * len(settings.seeds), len(image_ids), seconds, floor, full, full_wall, passes,
                       identical, difference, rss_quarter[0], rss_full, runner_peak, verify_wall, warm, warm_passes)

