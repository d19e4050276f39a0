"""One run: episodes -> method -> per-episode records, resumable and checked at every step."""

from __future__ import annotations

import ctypes
import hashlib
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

from ..cards import card_of
from ..checkpoints import check_checkpoint, checkpoint_provenance
from ..console import collected, silenced
from ..data.png import write_mask_png
from ..data.source import class_index, dataset_for, episode_list_for, resolve_tree
from ..data.voc import ClassIndex
from ..episodes import EpisodeSpec
from ..errors import InputError
from ..contenthash import reads_identity, reads_unchanged, recording_reads
from ..fingerprints import closure_changes, code_fingerprint, data_fingerprint, loaded_closure
from ..method import method_environment
from ..metrics import COUNT_COLUMNS
from ..preprocess import ImageLoader, build_episode, build_feature_episode
from ..scoring import score_batch, scoring_label, scoring_prediction
from ..protocol import Protocol, load_protocol, training_protocol
from ..registry import MethodEntry, accepted_options, create_method, get_entry, load_methods
from ..training import final_checkpoint
from .feature_store import FeatureStore
from .features import FeatureCache
from .plan import RunRequest, run_dir, run_id, run_identity
from .provenance import software
from .store import (RECORDS, RunLocked, RecordWriter, acquire_lock, keep_protocol_copy, read_run_json, scan_records,
                    truncate_records, write_run_json)

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
    store_repairs: int = 0  # feature-store entries found damaged, deleted and recomputed by this run


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


def _method_instance(request: RunRequest, options: dict, checkpoint: str | None, checkpoint_sha256: str | None,
                     code_sha256: str):
    """A ready (checkpoint loaded, eval mode) method, reused across this worker's runs of the same
    configuration: building and initialising a VGG16 per run would cost more than its episodes.
    Keyed by content: the code fingerprint, the checkpoint's sha256 and the environment it reads;
    the weights files it loaded are re-checked (a stat each) before it is reused."""
    key = (request.method, json.dumps(options, sort_keys=True, default=str), checkpoint_sha256, request.device,
           code_sha256)
    cached = _METHODS.get(key)
    if (cached is not None and reads_unchanged(cached.read_files)
            and cached.environment_values == method_environment(cached)):
        return cached
    if len(_METHODS) >= 4:
        _METHODS.pop(next(iter(_METHODS)))
    with recording_reads() as reads:
        if checkpoint:
            with silenced():  # the encoder's init is replaced by the checkpoint: no "randomly initialised" warning
                method = create_method(request.method, **options)
        else:
            method = create_method(request.method, **options)
    if checkpoint:
        method.load_checkpoint(checkpoint)
    method.read_files = list(reads)
    method.environment_values = method_environment(method)  # a built method may have read them
    _METHODS[key] = method.eval().to(request.device)
    return _METHODS[key]


def _image_loader(tree, protocol, index: ClassIndex) -> ImageLoader:
    """This worker's loader for a tree and protocol; entries are keyed by the files' content hashes
    (from the class index), so an image or mask edited between two calls in one process is read anew."""
    key = (str(tree.root), protocol.file_sha256)
    if key not in _IMAGE_LOADERS:
        _IMAGE_LOADERS.clear()
        _IMAGE_LOADERS[key] = ImageLoader(tree, protocol)
    loader = _IMAGE_LOADERS[key]
    loader.file_sha256 = index.file_sha256
    return loader


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


def run_card(method, protocol: Protocol) -> dict:
    """The method's card, its training said where it happened: a cross-domain protocol's models were
    trained on its source protocol's data (PATNet: every PASCAL class), not on the test set's."""
    card = card_of(method)
    source = training_protocol(protocol)
    if card["training"] != "none" and (source is not protocol or source.training.classes == "all"):
        which = "every class" if source.training.classes == "all" else "the fold's base classes"
        card["training"] = f"episodic, on {which} of {source.dataset} (protocol {source.name})"
    return card


def resolve_checkpoint(request: RunRequest, protocol, trainable: bool) -> Path | None:
    if request.checkpoint:
        return Path(request.checkpoint)
    if not trainable:
        return None
    protocol = training_protocol(protocol)  # a cross-domain protocol's models are trained under its source
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
    raise InputError(f"no checkpoint for {request.label}: run `fsseg-bench train --method {request.method} --fold "
                     f"{request.fold} --shot {request.shot}{seed} --protocol {protocol.name}` first or pass --checkpoint "
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
    return replace(outcome, warnings=tuple(warnings) + outcome.warnings) if warnings else outcome


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
    code_sha256, _, _ = code_fingerprint(prepared.entry.factory)
    method = _method_instance(request, prepared.options, checkpoint and checkpoint["path"],
                              checkpoint and checkpoint["sha256"], code_sha256)
    identity = identity_of(request, prepared, method, code_sha256)
    directory = run_dir(request.results_dir, identity)
    n_episodes = len(prepared.episodes)
    recompute = None
    if not request.force:
        finished = read_run_json(directory)
        if finished and finished.get("status") == "complete":
            problem = reuse_problem(directory, finished, n_episodes)
            if problem is None:
                return RunOutcome(request.label, "skipped", "already complete", str(directory), n_episodes)
            recompute = problem

    directory.mkdir(parents=True, exist_ok=True)
    lock = acquire_lock(directory)
    try:
        return _perform(request, prepared, identity, directory, method, progress, recompute)
    finally:
        lock.release()


def identity_of(request: RunRequest, prepared: PreparedRun, method, code_sha256: str) -> dict:
    checkpoint = prepared.checkpoint
    read_ids = [image_id for spec in prepared.episodes for image_id in (*spec.query, *spec.support)]
    return run_identity(prepared.protocol, prepared.list_sha256, request.method, method.config,
                        checkpoint and checkpoint["sha256"], request.fold, request.shot, request.seed,
                        request.limit, data_fingerprint(read_ids, prepared.index.file_sha256), code_sha256,
                        train_seed=checkpoint.get("train_seed") if checkpoint else None,
                        weights=reads_identity(getattr(method, "read_files", [])),
                        environment=method_environment(method))


def records_sha256(directory: Path) -> str | None:
    path = Path(directory) / RECORDS
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


def reuse_problem(directory: Path, finished: dict, n_episodes: int) -> str | None:
    """Why a run that says it is complete cannot be reused as it is (None: it can): its records do
    not verify, or differ from the checksum run.json recorded, or code it loaded has changed since
    (the recorded closure re-hashed)."""
    if finished.get("n_episodes") != n_episodes:
        return f"{finished.get('n_episodes')} episodes recorded, {n_episodes} expected"
    problem = scan_records(directory).verify(n_episodes)
    if problem:
        return problem
    if finished.get("records_sha256") != records_sha256(directory):
        return "records differ from the checksum run.json recorded"
    if "code_closure" not in finished:
        return "run.json records no code closure"
    changed = closure_changes(finished["code_closure"])
    if changed:
        return f"code it loaded changed since: {', '.join(changed)}"
    return None


def encode_in_batches(method, cache: FeatureCache, encoder_key: tuple, load: ImageLoader,
                      episodes: list[EpisodeSpec], image_sha256: dict, request: RunRequest, deps=None) -> None:
    """Encode the run's images that no tier holds yet, `encode_batch` at a time (for accelerators,
    where one image at a time leaves the device idle). Batched convolutions may round differently
    from one-at-a-time ones, so on a GPU records are reproducible per (device, batch size)."""
    needed = list(dict.fromkeys(i for spec in episodes for i in (*spec.query, *spec.support)))
    missing = [i for i in needed if not cache.contains(encoder_key, image_sha256[i])]
    for start in range(0, len(missing), request.encode_batch):
        ids = missing[start:start + request.encode_batch]
        features = method.encode(torch.stack([load.image(i) for i in ids]).to(request.device))
        for image_id, value in zip(ids, features):
            cache.put(encoder_key, image_sha256[image_id], value[None], deps)


# Episodes predicted in one call hold at most this many bytes of query features: batching saves
# per-call overhead on small maps, while large ones (VGG16 at 417x417: 5.75 MB) go one at a time
# as views, with no copy into a batch.
PREDICT_GROUP_BYTES = 8 * 2**20


def predict_groups(chunk: list[EpisodeSpec], encoded) -> tuple[list[list[int]], Callable]:
    """Positions of the chunk's episodes, grouped for prediction calls by PREDICT_GROUP_BYTES, sized
    on the first query's features; and `encoded` that serves that first query from the features
    already computed (without a cache, sizing must not cost an extra encoder pass)."""
    first_id = chunk[0].query[0]
    probed = {first_id: encoded(first_id)}
    per_episode = probed[first_id].element_size() * probed[first_id].nelement() * len(chunk[0].query)
    size = max(1, min(len(chunk), PREDICT_GROUP_BYTES // max(1, per_episode)))
    groups = [list(range(start, min(start + size, len(chunk)))) for start in range(0, len(chunk), size)]
    return groups, (lambda image_id: probed.pop(image_id) if image_id in probed else encoded(image_id))


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


def _perform(request: RunRequest, prepared: PreparedRun, identity: dict, directory: Path, method, progress: Progress,
             recompute: str | None = None):
    """`recompute`: why a complete run cannot be reused. Damaged records resume from the last good
    record (`repaired`); anything else (code it loaded changed, records edited after the checksum)
    is computed again from the first episode (`recomputed`)."""
    protocol, episodes = prepared.protocol, prepared.episodes
    previous = {} if request.force else (read_run_json(directory) or {})
    scan = scan_records(directory)
    structural = recompute is not None and scan.verify(len(episodes)) is not None
    from_scratch = request.force or (recompute is not None and not structural)
    keep = 0 if from_scratch else matching_prefix(scan.records, episodes)
    repaired = list(previous.get("repaired", []))
    recomputed = list(previous.get("recomputed", []))
    if recompute is not None and not structural:
        recomputed.append({"because": recompute, "when": datetime.now(timezone.utc).isoformat()})
        previous = {key: value for key, value in previous.items() if key in ("started",)}
    if previous.get("status") == "complete" and (keep < len(scan.records) or scan.verify(len(episodes))):
        # A run once complete whose records were damaged since: recompute from the last good record.
        repaired.append({"at": keep, "problem": scan.verify(len(episodes)) or "records differ from the episode list",
                         "when": datetime.now(timezone.utc).isoformat()})
    truncate_records(directory, scan.ends[keep - 1] if keep else 0)
    if from_scratch:
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
        "data_split": protocol.split,
        # The fold's classes: a table cell averaged over fewer (a --limit run) says so.
        "fold_classes": dataset_for(protocol, prepared.tree).fold_test_classes(request.fold),
        "code_files": list(code_files), "code_fingerprint_from": code_how,
        "method_origin": prepared.entry.origin, "plugins": list(request.plugins), "row_label": request.row_label,
        "checkpoint": checkpoint["path"] if checkpoint else None, "checkpoint_provenance": checkpoint,
        "checkpoint_other_shot": bool(checkpoint and checkpoint["kind"] == "fsseg-bench"
                                      and checkpoint.get("shot") != request.shot),
        "pretrained": method.pretrained, "card": run_card(method, protocol), "n_episodes": len(episodes),
        "feature_cache": request.use_cache and method.frozen_encoder,
        "started": previous.get("started", started), "resumed_at": [*previous.get("resumed_at", []), keep] if keep else [],
        "repaired": repaired, "recomputed": recomputed, "forced": request.force, "save_predictions": request.save_predictions,
        "feature_store": (str(feature_store_dir(request).resolve())
                          if request.use_cache and method.frozen_encoder and request.feature_store_gib > 0 else None),
        "encode_batch": request.encode_batch,
        # The protocol's bytes kept beside the runs: a copied results folder needs no TOML.
        "protocol_copy": keep_protocol_copy(Path(request.results_dir), protocol),
    }
    write_run_json(directory, run_info)
    done = keep

    load = _image_loader(prepared.tree, protocol, prepared.index)
    cache = feature_cache(request) if request.use_cache and method.frozen_encoder else None
    passes_before = cache.encoder_passes if cache is not None else 0
    uncached_passes = 0
    image_sha256 = {image_id: files[0] for image_id, files in prepared.index.file_sha256.items()}
    encoder_key = encoder_key_of(identity, protocol, request.device)
    deps = lambda: loaded_closure(prepared.entry.factory)  # noqa: E731 (the store records what encoding loaded)
    damaged_before = cache.damaged if cache is not None else 0
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
            return cache.features(encoder_key, image_sha256[image_id], compute, deps).to(request.device)
        nonlocal uncached_passes
        uncached_passes += 1
        return compute()

    # A query-only second encoder (`encode_query`, e.g. GF-SAM's SAM embedding): cached per image
    # under its own key, computed only for images that are some episode's query.
    has_query_encoder = callable(getattr(method, "encode_query", None))
    query_key = (*encoder_key, "query-encoder")
    query_passes = 0

    def encoded_query(image_id: str) -> torch.Tensor:
        base = encoded(image_id)
        if not has_query_encoder:
            return base

        def compute() -> torch.Tensor:
            nonlocal query_passes
            query_passes += 1
            return method.encode_query(load.image(image_id, keep=cache is None)[None].to(request.device))

        extra = cache.features(query_key, image_sha256[image_id], compute, deps) if cache is not None else compute()
        return torch.cat([base, extra.to(base.device)], dim=1)

    statistic_key = (*encoder_key, "support-statistic", protocol.support_ignore, protocol.label_resize)

    def statistic(image_id: str, class_id: int, mask: torch.Tensor) -> torch.Tensor:
        compute = lambda: method.support_statistic(encoded(image_id), mask)
        if cache is not None:
            return cache.statistic((*statistic_key, class_id, image_sha256[image_id]), compute)
        return compute()

    remaining = episodes[done:]
    if cache is not None and request.encode_batch > 1:
        with torch.no_grad():
            encode_in_batches(method, cache, encoder_key, load, remaining, image_sha256, request, deps)
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
                    groups, query_features = predict_groups(chunk, encoded_query)
                    for group in groups:
                        members = [visible[j] for j in group]
                        query = batch_of([torch.cat([query_features(i) for i in chunk[j].query]) for j in group])
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
    passes = (cache.encoder_passes - passes_before - query_passes) if cache is not None else uncached_passes
    if has_query_encoder:
        run_info["query_encoder_passes"] = query_passes + previous.get("query_encoder_passes", 0)
    run_info.update(status="complete", finished=datetime.now(timezone.utc).isoformat(),
                    wall_seconds=round(wall + previous.get("wall_seconds", 0.0), 3),
                    encoder_passes=passes + previous.get("encoder_passes", 0),
                    records_sha256=records_sha256(directory), code_closure=loaded_closure(prepared.entry.factory))
    write_run_json(directory, run_info)
    damaged = (cache.damaged - damaged_before) if cache is not None else 0
    notes = tuple(f"feature store folder emptied: {what}" for what in cache.store.invalidated) \
        if cache is not None and cache.store is not None else ()
    if notes:
        cache.store.invalidated.clear()
    return RunOutcome(request.label, "complete", "", str(directory), len(episodes), seconds=round(wall, 3),
                      store_repairs=damaged, warnings=notes)


def encoder_key_of(identity: dict, protocol, device: str) -> tuple:
    """What determines a frozen encoder's features besides the image: the method, its full config
    (seeded init), its code, its weights and checkpoint by content, the environment it reads, the
    preprocessing settings (the preprocessing code is in the code fingerprint) and the device."""
    return (identity["method"], json.dumps(identity["method_config"], sort_keys=True, default=str),
            identity["code_sha256"], identity["checkpoint_sha256"],
            json.dumps(identity.get("weights_sha256", [])), json.dumps(identity.get("environment", {}), sort_keys=True),
            tuple(protocol.image_size), protocol.resize, protocol.image_resize, protocol.image_padding, device)
