"""One run: episodes -> method -> per-episode records, resumable and checked at every step."""

from __future__ import annotations

import ctypes
import json
import math
import time
from functools import lru_cache
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from ..checkpoints import check_checkpoint, checkpoint_provenance
from ..console import collected, silenced
from ..data.png import write_mask_png
from ..data.source import class_index, episode_list_for, resolve_tree
from ..data.voc import ClassIndex
from ..episodes import EpisodeSpec
from ..errors import InputError
from ..fingerprints import code_fingerprint, data_fingerprint
from ..metrics import COUNT_COLUMNS, episode_counts
from ..preprocess import ImageLoader, PreparedLabel, build_episode, build_feature_episode
from ..prototypes import upsample_scores
from ..protocol import Protocol, load_protocol
from ..registry import MethodEntry, accepted_options, create_method, get_entry, load_methods
from ..training import final_checkpoint
from .feature_store import FeatureStore
from .features import FeatureCache
from .plan import RunRequest, run_dir, run_id, run_identity
from .provenance import software
from .store import (RunLocked, RecordWriter, acquire_lock, read_run_json, scan_records, truncate_records,
                    write_run_json)

Progress = Callable[[str, str, int], None]  # (event, run label, number)
# Episodes predicted together: batched ops amortise per-call overhead; a crash loses at most this many.
PREDICT_CHUNK = 16


@dataclass(frozen=True)
class RunOutcome:
    label: str
    status: str  # "complete" | "skipped" | "locked" | "failed"
    message: str = ""
    run_dir: str | None = None
    episodes: int = 0
    cause: str = ""  # for failures: "input" (bad data or configuration) | "method" | "worker" | "timeout"
    seconds: float = 0.0  # wall time of the episodes computed in this invocation
    warnings: tuple = ()  # said once by the process that reports outcomes (see console.py)


class RunFailure(Exception):
    pass


# Set by the executor's SIGINT handler: a KeyboardInterrupt then means Ctrl-C of the whole command,
# not a method that raised one (which fails only its run).
INTERRUPT_REQUESTED = False


# Per-process state, kept across the runs a worker performs: decoded images and encoder features.
_IMAGE_LOADERS: dict[tuple, ImageLoader] = {}
_FEATURE_CACHES: dict[tuple, FeatureCache] = {}
_METHODS: dict[tuple, object] = {}
_PROVENANCE: dict[tuple, dict] = {}


def _method_instance(request: RunRequest, options: dict, checkpoint: str | None, checkpoint_sha256: str | None):
    """A ready (checkpoint loaded, eval mode) method, reused across this worker's runs of the same
    configuration: building and initialising a VGG16 per run would cost more than its episodes."""
    key = (request.method, json.dumps(options, sort_keys=True, default=str), checkpoint_sha256, request.device)
    if key not in _METHODS:
        if len(_METHODS) >= 4:
            _METHODS.pop(next(iter(_METHODS)))
        if checkpoint:
            with silenced():  # the encoder's init is replaced by the checkpoint: no "randomly initialised" warning
                method = create_method(request.method, **options)
            method.load_checkpoint(checkpoint)
        else:
            method = create_method(request.method, **options)
        _METHODS[key] = method.eval().to(request.device)
    return _METHODS[key]


def _image_loader(tree, protocol) -> ImageLoader:
    key = (str(tree.root), protocol.file_sha256)
    if key not in _IMAGE_LOADERS:
        _IMAGE_LOADERS.clear()
        _IMAGE_LOADERS[key] = ImageLoader(tree, protocol)
    return _IMAGE_LOADERS[key]


def feature_store_dir(request: RunRequest) -> Path:
    return Path(request.feature_store) if request.feature_store else Path(request.results_dir) / "cache" / "features"


def feature_cache(request: RunRequest) -> FeatureCache:
    """This worker's feature cache (memory tier, disk store, statistics), kept across its runs."""
    key = (request.cache_mib, request.statistics_mib, str(feature_store_dir(request)), request.feature_store_gib)
    if key not in _FEATURE_CACHES:
        _FEATURE_CACHES.clear()
        store = (FeatureStore(feature_store_dir(request), int(request.feature_store_gib * 2**30))
                 if request.feature_store_gib > 0 else None)
        _FEATURE_CACHES[key] = FeatureCache(request.cache_mib, store, request.statistics_mib)
    return _FEATURE_CACHES[key]


@lru_cache(maxsize=1)
def _libc():
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None


def release_free_memory() -> None:
    """Give the heap's free pages back to the system (glibc's malloc_trim). Multi-MB feature maps
    that an LRU keeps replacing fragment the heap, and resident memory would otherwise creep up
    with the number of episodes. Cheap (a walk of the free lists); a no-op without glibc."""
    libc = _libc()
    if libc is not None and hasattr(libc, "malloc_trim"):
        libc.malloc_trim(0)


def _provenance(path: Path) -> dict:
    """Checkpoint provenance (and its sha256), read once per file version in this process."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _PROVENANCE:
        _PROVENANCE[key] = checkpoint_provenance(path)
    return _PROVENANCE[key]


# --- preparing a run: everything checked before a model is built --------------------------------

@dataclass(frozen=True)
class PreparedRun:
    """A request resolved against its protocol, data, episode list and checkpoint, all checked."""

    protocol: Protocol
    tree: object  # the dataset layout's tree (data/voc.py, coco.py, fss.py)
    index: ClassIndex
    episodes: list[EpisodeSpec]
    list_sha256: str
    list_path: Path
    entry: MethodEntry
    options: dict
    checkpoint: dict | None  # provenance of the checkpoint, with its path and sha256
    warning: str | None
    episode_source: dict = None      # committed | generated (sampler, original lists read) | custom
    episode_note: str | None = None  # e.g. "original lists not found: not the original episodes"


def validate_request(request: RunRequest, protocol: Protocol) -> None:
    """The CLI's values against the protocol: one line naming the value and what was expected."""
    if request.fold not in protocol.folds:
        raise InputError(f"--fold {request.fold}: protocol {protocol.name!r} has folds "
                         f"{', '.join(map(str, protocol.folds))}")
    checks = [("--shot", request.shot, 1), ("--seed", request.seed, 0), ("--threads", request.threads, 1),
              ("--save-predictions", request.save_predictions, 0)]
    if request.limit is not None:
        checks.append(("--limit", request.limit, 1))
    for flag, value, minimum in checks:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise InputError(f"{flag} {value}: expected an integer >= {minimum}")
    for flag, value in (("--cache-mib", request.cache_mib), ("--statistics-mib", request.statistics_mib)):
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
            raise InputError(f"{flag} {value}: expected a positive number of MiB")
    if not (isinstance(request.feature_store_gib, (int, float)) and math.isfinite(request.feature_store_gib)
            and request.feature_store_gib >= 0):
        raise InputError(f"--feature-store-gib {request.feature_store_gib}: expected a number of GiB >= 0 (0: no store)")
    from ..sampling import check_original_lists

    check_original_lists(protocol.query_sampling, request.original_lists, protocol.name)
    if request.train_seed is not None and request.checkpoint:
        raise InputError(f"--train-seed {request.train_seed} and --checkpoint {request.checkpoint}: a given "
                         f"checkpoint is one trained model; give one or the other")
    if request.train_seed is not None and (isinstance(request.train_seed, bool) or not isinstance(request.train_seed, int)
                                           or request.train_seed < 0):
        raise InputError(f"--train-seed {request.train_seed}: expected an integer >= 0")
    if request.original_lists and request.episode_list:
        raise InputError("--original-lists and --episode-list: give one (a custom list replaces the sampler)")
    if isinstance(request.encode_batch, bool) or not isinstance(request.encode_batch, int) or request.encode_batch < 1:
        raise InputError(f"--encode-batch {request.encode_batch}: expected an integer >= 1")


def resolve_checkpoint(request: RunRequest, protocol, trainable: bool) -> Path | None:
    if request.checkpoint:
        return Path(request.checkpoint)
    if not trainable:
        return None
    exact = final_checkpoint(Path(request.results_dir), protocol, request.method, request.fold, request.shot,
                             request.train_seed)
    if exact.is_file():
        return exact
    others = [final_checkpoint(Path(request.results_dir), protocol, request.method, request.fold, shot,
                               request.train_seed)
              for shot in sorted(protocol.shots) if shot != request.shot]
    others = [path for path in others if path.is_file()]
    if others and request.allow_other_shot:
        return others[0]
    hint = (f" (a checkpoint of another shot exists: {others[0]}; --allow-other-shot uses it)" if others else "")
    seed = f" --seed {request.train_seed}" if request.train_seed is not None else ""
    raise InputError(f"no checkpoint for {request.label}: run `fsseg-bench train --method {request.method} "
                     f"--fold {request.fold} --shot {request.shot}{seed}` first or pass --checkpoint "
                     f"{request.method}=PATH{hint}")


def prepare_run(request: RunRequest) -> PreparedRun:
    """Resolve and check a request; raises InputError (one line) for anything wrong with it."""
    load_methods(list(request.plugins))
    protocol = load_protocol(request.protocol_path)
    validate_request(request, protocol)
    results_dir = Path(request.results_dir)
    tree = resolve_tree(protocol, request.data_root, results_dir)
    index = class_index(tree, protocol.split, results_dir)
    resolved = episode_list_for(protocol, tree, request.fold, request.shot, request.seed, results_dir,
                                original_lists=request.original_lists, episode_list=request.episode_list)
    episodes = resolved.episodes
    if request.limit is not None:
        episodes = episodes[:request.limit]
    entry = get_entry(request.method)
    options = dict(request.options)
    if "backbone" in accepted_options(request.method) and "backbone" not in options:
        options["backbone"] = protocol.backbone
    path = resolve_checkpoint(request, protocol, entry.trainable)
    provenance, warning = None, None
    if path is not None:
        provenance = _provenance(path)
        warning = check_checkpoint(provenance, request.method, protocol, request.fold, request.shot,
                                   request.allow_other_shot)
    return PreparedRun(protocol, tree, index, episodes, resolved.sha256, resolved.path, entry, options, provenance,
                       warning, resolved.source, resolved.note)


def sample_indices(n_episodes: int, count: int) -> set[int]:
    """Evenly spaced episodes whose predictions are saved for qualitative plots."""
    if count <= 0 or n_episodes == 0:
        return set()
    return {int(i) for i in np.linspace(0, n_episodes - 1, min(count, n_episodes)).round()}


def scoring_label(prepared: PreparedLabel, label_value: int, protocol) -> np.ndarray:
    """The query's binary label {0, 1, ignore} at the protocol's scoring resolution: the resized
    label, the original one, or (PFENet) the original padded with ignore to a square of its longer side."""
    if protocol.score_at == "resized":
        label = prepared.label.numpy()
    elif protocol.score_at == "original":
        label = prepared.original_label
    else:  # original-square
        side = max(prepared.original_label.shape)
        label = np.full((side, side), protocol.ignore_index, dtype=np.uint8)
        label[:prepared.original_label.shape[0], :prepared.original_label.shape[1]] = prepared.original_label
    binary = (label == label_value).astype(np.uint8)
    binary[label == protocol.ignore_index] = protocol.ignore_index
    return binary


def scoring_prediction(scores: torch.Tensor, prepared: PreparedLabel, protocol) -> torch.Tensor:
    """The binary prediction at the scoring resolution: `original` crops the padding and resizes
    back; `original-square` (PFENet) upsamples the whole padded input, align_corners=True, to a
    square of the original's longer side."""
    if protocol.score_at == "original":
        h, w = prepared.content_size
        scores = upsample_scores(scores[None, :, :h, :w], prepared.original_label.shape)[0]
    elif protocol.score_at == "original-square":
        side = max(prepared.original_label.shape)
        scores = F.interpolate(scores[None], size=(side, side), mode="bilinear", align_corners=True)[0]
    return predicted_mask(scores)


def score_batch(predictions: list[torch.Tensor], labels: list[np.ndarray], ignore_index: int) -> np.ndarray:
    """Counts [N, 6] for a batch of queries: one bincount when they share a size."""
    if len({label.shape for label in labels}) == 1:
        return episode_counts(torch.stack(predictions), np.stack(labels), ignore_index)
    return np.concatenate([episode_counts(p[None], l[None], ignore_index) for p, l in zip(predictions, labels)])


def predicted_mask(scores: torch.Tensor) -> torch.Tensor:
    """argmax over (background, foreground) for [2,H,W] scores; ties go to background, as argmax's
    first-index rule does. A comparison is ~50x cheaper than argmax over a size-2 dimension."""
    return (scores[1] > scores[0]).long()


def check_scores(scores, expected_shape, label: str, index: int) -> None:
    if not isinstance(scores, torch.Tensor):
        raise RunFailure(f"{label} episode {index}: predict returned {type(scores).__name__}, expected a Tensor")
    if tuple(scores.shape) != expected_shape:
        raise RunFailure(f"{label} episode {index}: predict returned shape {tuple(scores.shape)}, expected {expected_shape}")
    if not math.isfinite(scores.sum(dtype=torch.float64).item()):  # NaN and inf propagate into the sum
        raise RunFailure(f"{label} episode {index}: predict returned NaN or infinite scores")


def run_one(request: RunRequest, progress: Progress | None = None) -> RunOutcome:
    """Perform (or resume, or skip) one run. Never raises for a failing method: returns a failed outcome."""
    def failed(message: str, cause: str) -> RunOutcome:
        text = message if message.startswith(request.label) else f"{request.label}: {message}"
        return RunOutcome(request.label, "failed", text, cause=cause)

    from dataclasses import replace

    with collected() as warnings:
        outcome = _run_one_guarded(request, progress, failed)
    return replace(outcome, warnings=tuple(warnings)) if warnings else outcome


def _run_one_guarded(request: RunRequest, progress: Progress | None, failed) -> RunOutcome:
    try:
        return _run_one(request, progress or (lambda *a: None))
    except RunLocked as exc:
        return RunOutcome(request.label, "locked", f"{request.label}: being written by {exc}; skipped")
    except InputError as exc:
        return failed(str(exc), "input")
    except RunFailure as exc:
        return failed(str(exc), "method")
    except Exception as exc:  # a method that raises fails its run, not the whole invocation
        return failed(f"{type(exc).__name__}: {exc}", "method")
    except (SystemExit, KeyboardInterrupt) as exc:
        if isinstance(exc, KeyboardInterrupt) and INTERRUPT_REQUESTED:
            raise  # Ctrl-C of the whole command
        return failed(f"the method raised {type(exc).__name__}({exc})", "method")


def _run_one(request: RunRequest, progress: Progress) -> RunOutcome:
    torch.set_num_threads(max(1, request.threads))
    prepared = prepare_run(request)
    checkpoint = prepared.checkpoint
    method = _method_instance(request, prepared.options, checkpoint and checkpoint["path"],
                              checkpoint and checkpoint["sha256"])
    code_sha256, _, _ = code_fingerprint(prepared.entry.factory)
    read_ids = [image_id for spec in prepared.episodes for image_id in (*spec.query, *spec.support)]
    identity = run_identity(prepared.protocol, prepared.list_sha256, request.method, method.config,
                            checkpoint and checkpoint["sha256"], request.fold, request.shot, request.seed,
                            request.limit, data_fingerprint(read_ids, prepared.index.file_sha256), code_sha256,
                            train_seed=checkpoint.get("train_seed") if checkpoint else None)
    directory = run_dir(request.results_dir, identity)
    n_episodes = len(prepared.episodes)
    if not request.force:
        finished = read_run_json(directory)
        if (finished and finished.get("status") == "complete" and finished.get("n_episodes") == n_episodes
                and scan_records(directory).verify(n_episodes) is None):
            return RunOutcome(request.label, "skipped", "already complete", str(directory), n_episodes)

    directory.mkdir(parents=True, exist_ok=True)
    lock = acquire_lock(directory)
    try:
        return _perform(request, prepared, identity, directory, method, progress)
    finally:
        lock.release()


def encode_in_batches(method, cache: FeatureCache, encoder_key: tuple, load: ImageLoader,
                      episodes: list[EpisodeSpec], image_sha256: dict, request: RunRequest) -> None:
    """Encode the run's images that no tier holds yet, `encode_batch` at a time (for accelerators,
    where one image at a time leaves the device idle). Batched convolutions may round differently
    from one-at-a-time ones, so on a GPU records are reproducible per (device, batch size)."""
    needed = list(dict.fromkeys(i for spec in episodes for i in (*spec.query, *spec.support)))
    missing = [i for i in needed if not cache.contains(encoder_key, image_sha256[i])]
    for start in range(0, len(missing), request.encode_batch):
        ids = missing[start:start + request.encode_batch]
        features = method.encode(torch.stack([load.image(i) for i in ids]).to(request.device))
        for image_id, value in zip(ids, features):
            cache.put(encoder_key, image_sha256[image_id], value[None])


# Episodes predicted in one call hold at most this many bytes of query features: batching saves
# per-call overhead on small maps, while large ones (VGG16 at 417x417: 5.75 MB) go one at a time
# as views, with no copy into a batch.
PREDICT_GROUP_BYTES = 8 * 2**20


def predict_groups(chunk: list[EpisodeSpec], encoded) -> list[list[int]]:
    """Positions of the chunk's episodes, grouped for prediction calls by PREDICT_GROUP_BYTES."""
    first = encoded(chunk[0].query[0])
    per_episode = first.element_size() * first.nelement() * len(chunk[0].query)
    size = max(1, min(len(chunk), PREDICT_GROUP_BYTES // max(1, per_episode)))
    return [list(range(start, min(start + size, len(chunk)))) for start in range(0, len(chunk), size)]


def batch_of(tensors: list[torch.Tensor]) -> torch.Tensor:
    """[B, ...] from B tensors: a view when there is one (no copy of a large feature map)."""
    return tensors[0][None] if len(tensors) == 1 else torch.stack(tensors)


def matching_prefix(records: list[dict], episodes: list[EpisodeSpec]) -> int:
    """How many leading records belong to these episodes (same index, class, query and supports)."""
    for position, (record, spec) in enumerate(zip(records, episodes)):
        if (record.get("class_id") != spec.class_id or record.get("query") != list(spec.query)
                or record.get("support") != list(spec.support)):
            return position
    return min(len(records), len(episodes))


def _perform(request: RunRequest, prepared: PreparedRun, identity: dict, directory: Path, method, progress: Progress):
    protocol, episodes = prepared.protocol, prepared.episodes
    previous = {} if request.force else (read_run_json(directory) or {})
    scan = scan_records(directory)
    keep = 0 if request.force else matching_prefix(scan.records, episodes)
    repaired = list(previous.get("repaired", []))
    if previous.get("status") == "complete" and (keep < len(scan.records) or scan.verify(len(episodes))):
        # A run once complete whose records were damaged since: recompute from the last good record.
        repaired.append({"at": keep, "problem": scan.verify(len(episodes)) or "records differ from the episode list",
                         "when": datetime.now(timezone.utc).isoformat()})
    truncate_records(directory, scan.ends[keep - 1] if keep else 0)
    if request.force:
        for old in (directory / "predictions").glob("*.png"):
            old.unlink()
    started = datetime.now(timezone.utc).isoformat()
    checkpoint = prepared.checkpoint
    code_sha256, code_files, code_how = code_fingerprint(prepared.entry.factory)
    run_info = {
        "run_id": run_id(identity), **identity, "status": "running", "software": software(),
        "device": request.device, "threads": request.threads, "protocol_path": str(Path(protocol.path).resolve()),
        "episode_list_path": str(Path(prepared.list_path).resolve()), "episode_source": prepared.episode_source,
        "episode_list_custom": prepared.episode_source.get("kind") == "custom",
        "data_root": str(prepared.tree.root.resolve()), "dataset": protocol.dataset,
        "data_split": protocol.split, "code_files": list(code_files), "code_fingerprint_from": code_how,
        "method_origin": prepared.entry.origin, "plugins": list(request.plugins), "row_label": request.row_label,
        "checkpoint": checkpoint["path"] if checkpoint else None, "checkpoint_provenance": checkpoint,
        "checkpoint_other_shot": bool(checkpoint and checkpoint["kind"] == "fsseg-bench"
                                      and checkpoint.get("shot") != request.shot),
        "pretrained": method.pretrained, "n_episodes": len(episodes),
        "feature_cache": request.use_cache and method.frozen_encoder,
        "started": previous.get("started", started), "resumed_at": [*previous.get("resumed_at", []), keep] if keep else [],
        "repaired": repaired, "forced": request.force, "save_predictions": request.save_predictions,
        "feature_store": (str(feature_store_dir(request).resolve())
                          if request.use_cache and method.frozen_encoder and request.feature_store_gib > 0 else None),
        "encode_batch": request.encode_batch,
    }
    write_run_json(directory, run_info)
    done = keep

    load = _image_loader(prepared.tree, protocol)
    cache = feature_cache(request) if request.use_cache and method.frozen_encoder else None
    passes_before = cache.encoder_passes if cache is not None else 0
    uncached_passes = 0
    image_sha256 = {image_id: files[0] for image_id, files in prepared.index.file_sha256.items()}
    # The encoder is determined by the method, its full config (seeded init, weights path), its code
    # and its checkpoint; the input by the preprocessing.
    encoder_key = (identity["method"], json.dumps(identity["method_config"], sort_keys=True, default=str),
                   identity["code_sha256"], identity["checkpoint_sha256"], tuple(protocol.image_size),
                   protocol.resize, protocol.image_resize, protocol.image_padding, request.device)
    to_save = sample_indices(len(episodes), request.save_predictions)
    (directory / "predictions").mkdir(exist_ok=True)
    writer = RecordWriter(directory)
    progress("start", request.label, len(episodes))
    progress("advance", request.label, done)
    began = time.perf_counter()

    def encoded(image_id: str) -> torch.Tensor:
        # The image is decoded only when it must be encoded (once, with the store), so it is not
        # kept in memory afterwards.
        compute = lambda: method.encode(load.image(image_id, keep=cache is None)[None].to(request.device))
        if cache is not None:
            return cache.features(encoder_key, image_sha256[image_id], compute).to(request.device)
        nonlocal uncached_passes
        uncached_passes += 1
        return compute()

    statistic_key = (*encoder_key, "support-statistic", protocol.support_ignore, protocol.label_resize)

    def statistic(image_id: str, class_id: int, mask: torch.Tensor) -> torch.Tensor:
        compute = lambda: method.support_statistic(encoded(image_id), mask)
        if cache is not None:
            return cache.statistic((*statistic_key, class_id, image_sha256[image_id]), compute)
        return compute()

    remaining = episodes[done:]
    if cache is not None and request.encode_batch > 1:
        with torch.no_grad():
            encode_in_batches(method, cache, encoder_key, load, remaining, image_sha256, request)
    try:
        for start in range(0, len(remaining), PREDICT_CHUNK):
            tick = time.perf_counter()
            chunk = remaining[start:start + PREDICT_CHUNK]
            progress("busy", request.label, len(chunk))
            with torch.no_grad():
                if method.frozen_encoder:
                    # Episodes carry masks and sizes; images enter only through the encoder. Every
                    # image is encoded alone (cached or not), then the chunk is predicted at once:
                    # the cached and uncached paths compute bitwise-identical scores.
                    built = [build_feature_episode(spec, load, protocol) for spec in chunk]
                    visible = [episode if request.device == "cpu" else episode.to(request.device) for episode, _ in built]
                    all_scores = []
                    for group in predict_groups(chunk, encoded):
                        members = [visible[j] for j in group]
                        query = batch_of([torch.cat([encoded(i) for i in chunk[j].query]) for j in group])
                        if method.support_statistics:
                            # Supports enter as their cached per-(image, class) statistics.
                            stats = torch.stack([torch.stack([statistic(i, chunk[j].class_id, m) for i, m in
                                                              zip(chunk[j].support, visible[j].support_masks)])
                                                 for j in group])
                            all_scores += list(method.predict_from_statistics(members, stats, query))
                        else:
                            support = batch_of([torch.cat([encoded(i) for i in chunk[j].support]) for j in group])
                            all_scores += list(method.predict_batch_from_features(members, support, query))
                else:
                    built = [build_episode(spec, load, protocol, with_query_masks=False) for spec in chunk]
                    visible = [episode if request.device == "cpu" else episode.to(request.device) for episode, _ in built]
                    all_scores = [method.predict(e) for e in visible]
            if len(all_scores) != len(chunk):  # zip would silently drop the episodes without a result
                raise RunFailure(f"{request.label} episodes {chunk[0].index}..{chunk[-1].index}: the method returned "
                                 f"{len(all_scores)} results for {len(chunk)} episodes")
            seconds = round((time.perf_counter() - tick) / len(chunk), 6)
            predictions, labels = [], []
            for spec, (_, queries), scores in zip(chunk, built, all_scores):
                check_scores(scores, (len(spec.query), 2, *protocol.image_size), request.label, spec.index)
                prediction = scoring_prediction(scores[0].cpu(), queries[0], protocol)
                if spec.index in to_save:
                    height, width = queries[0].original_label.shape
                    saved = prediction[:height, :width] if protocol.score_at == "original-square" else prediction
                    write_mask_png(directory / "predictions" / f"{spec.index:05d}.png", saved.numpy().astype(np.uint8))
                predictions.append(prediction)
                labels.append(scoring_label(queries[0], prepared.tree.label_value(spec.class_id), protocol))
            for spec, row in zip(chunk, score_batch(predictions, labels, protocol.ignore_index)):
                record = {"index": spec.index, "class_id": spec.class_id, "query": list(spec.query),
                          "support": list(spec.support), **dict(zip(COUNT_COLUMNS, row.tolist())), "seconds": seconds}
                writer.append(record)
            progress("advance", request.label, len(chunk))
            release_free_memory()
    finally:
        writer.close()
        progress("end", request.label, 0)
    problem = scan_records(directory).verify(len(episodes))
    if problem:  # never mark complete what is not
        raise RunFailure(f"{request.label}: records failed verification after the run ({problem})")
    wall = time.perf_counter() - began
    passes = (cache.encoder_passes - passes_before) if cache is not None else uncached_passes
    run_info.update(status="complete", finished=datetime.now(timezone.utc).isoformat(),
                    wall_seconds=round(wall + previous.get("wall_seconds", 0.0), 3),
                    encoder_passes=passes + previous.get("encoder_passes", 0))
    write_run_json(directory, run_info)
    return RunOutcome(request.label, "complete", "", str(directory), len(episodes), seconds=round(wall, 3))
