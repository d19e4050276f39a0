"""One run: episodes -> method -> per-episode records, resumable and checked at every step."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..checkpoints import file_sha256
from ..data.png import write_mask_png
from ..data.source import episode_list_for, resolve_tree
from ..episode import binary_mask
from ..errors import InputError
from ..metrics import COUNT_COLUMNS, episode_counts
from ..preprocess import ImageLoader, PreparedImage, build_episode
from ..prototypes import upsample_scores
from ..protocol import load_protocol
from ..registry import accepted_options, create_method, get_entry, load_methods
from ..training import final_checkpoint
from .features import FeatureCache
from .plan import RunRequest, run_dir, run_id, run_identity
from .provenance import software
from .store import (RunLocked, RecordWriter, acquire_lock, read_records, read_run_json, release_lock,
                    write_run_json)

Progress = Callable[[str, str, int], None]  # (event, run label, number)


@dataclass(frozen=True)
class RunOutcome:
    label: str
    status: str  # "complete" | "skipped" | "locked" | "failed"
    message: str = ""
    run_dir: str | None = None
    episodes: int = 0


class RunFailure(Exception):
    pass


# Per-process state, kept across the runs a worker performs: decoded images and encoder features.
_IMAGE_LOADERS: dict[tuple, ImageLoader] = {}
_FEATURE_CACHES: dict[float, FeatureCache] = {}


def _image_loader(tree, protocol) -> ImageLoader:
    key = (str(tree.root), protocol.file_sha256)
    if key not in _IMAGE_LOADERS:
        _IMAGE_LOADERS.clear()
        _IMAGE_LOADERS[key] = ImageLoader(tree, protocol)
    return _IMAGE_LOADERS[key]


def feature_cache(cache_mib: float) -> FeatureCache:
    if cache_mib not in _FEATURE_CACHES:
        _FEATURE_CACHES.clear()
        _FEATURE_CACHES[cache_mib] = FeatureCache(cache_mib)
    return _FEATURE_CACHES[cache_mib]


def resolve_checkpoint(request: RunRequest, protocol, trainable: bool) -> Path | None:
    if request.checkpoint:
        return Path(request.checkpoint)
    if not trainable:
        return None
    exact = final_checkpoint(Path(request.results_dir), protocol, request.method, request.fold, request.shot)
    if exact.is_file():
        return exact
    # A model trained at another shot of the same fold (the demo trains 1-shot models only).
    for shot in sorted(protocol.shots):
        other = final_checkpoint(Path(request.results_dir), protocol, request.method, request.fold, shot)
        if other.is_file():
            return other
    raise InputError(f"no checkpoint for {request.label}: run `fsseg-bench train --method {request.method} "
                     f"--fold {request.fold} --shot {request.shot}` first or pass --checkpoint {request.method}=PATH")


def sample_indices(n_episodes: int, count: int) -> set[int]:
    """Evenly spaced episodes whose predictions are saved for qualitative plots."""
    if count <= 0 or n_episodes == 0:
        return set()
    return {int(i) for i in np.linspace(0, n_episodes - 1, min(count, n_episodes)).round()}


def score_query(scores: torch.Tensor, prepared: PreparedImage, class_id: int, protocol) -> tuple[np.ndarray, np.ndarray]:
    """(counts [6], binary prediction) at the protocol's scoring resolution."""
    if protocol.score_at == "original":
        h, w = prepared.content_size
        scores = upsample_scores(scores[None, :, :h, :w], prepared.original_label.shape)[0]
        label = binary_mask(torch.from_numpy(prepared.original_label).long(), class_id, void_as_background=False)
    else:
        label = binary_mask(prepared.label.long(), class_id, void_as_background=False)
    prediction = scores.argmax(dim=0)
    return episode_counts(prediction[None], label[None], protocol.ignore_index)[0], prediction


def check_scores(scores, expected_shape, label: str, index: int) -> None:
    if not isinstance(scores, torch.Tensor):
        raise RunFailure(f"{label} episode {index}: predict returned {type(scores).__name__}, expected a Tensor")
    if tuple(scores.shape) != expected_shape:
        raise RunFailure(f"{label} episode {index}: predict returned shape {tuple(scores.shape)}, expected {expected_shape}")
    if not torch.isfinite(scores).all():
        raise RunFailure(f"{label} episode {index}: predict returned NaN or infinite scores")


def run_one(request: RunRequest, progress: Progress | None = None) -> RunOutcome:
    """Perform (or resume, or skip) one run. Never raises for a failing method: returns a failed outcome."""
    try:
        return _run_one(request, progress or (lambda *a: None))
    except RunLocked as exc:
        return RunOutcome(request.label, "locked", f"{request.label}: being written by {exc}; skipped")
    except (RunFailure, InputError) as exc:
        return RunOutcome(request.label, "failed", str(exc) if str(exc).startswith(request.label) else f"{request.label}: {exc}")
    except Exception as exc:  # a method that raises fails its run, not the whole invocation
        return RunOutcome(request.label, "failed", f"{request.label}: {type(exc).__name__}: {exc}")


def _run_one(request: RunRequest, progress: Progress) -> RunOutcome:
    torch.set_num_threads(max(1, request.threads))
    load_methods(list(request.plugins))
    protocol = load_protocol(request.protocol_path)
    results_dir = Path(request.results_dir)
    tree = resolve_tree(protocol, request.data_root, results_dir)
    episodes, list_sha256, list_path = episode_list_for(protocol, tree, request.fold, request.shot, request.seed, results_dir)
    if request.limit is not None:
        episodes = episodes[:request.limit]

    entry = get_entry(request.method)
    options = dict(request.options)
    if "backbone" in accepted_options(request.method) and "backbone" not in options:
        options["backbone"] = protocol.backbone
    checkpoint = resolve_checkpoint(request, protocol, entry.trainable)
    method = create_method(request.method, **options)
    identity = run_identity(protocol, list_sha256, request.method, method.config,
                            file_sha256(checkpoint) if checkpoint else None, request.fold, request.shot,
                            request.seed, request.limit)
    directory = run_dir(results_dir, identity)
    finished = read_run_json(directory)
    if finished and finished.get("status") == "complete" and finished.get("n_episodes") == len(episodes):
        return RunOutcome(request.label, "skipped", "already complete", str(directory), len(episodes))

    directory.mkdir(parents=True, exist_ok=True)
    lock = acquire_lock(directory)
    try:
        return _perform(request, protocol, tree, episodes, list_path, identity, directory, method, checkpoint, progress)
    finally:
        release_lock(lock)


def _perform(request, protocol, tree, episodes, list_path, identity, directory, method, checkpoint, progress):
    if checkpoint:
        method.load_checkpoint(checkpoint)
    method.eval()
    method.to(request.device)
    done = read_records(directory, repair=True)
    started = datetime.now(timezone.utc).isoformat()
    previous = read_run_json(directory) or {}
    run_info = {
        "run_id": run_id(identity), **identity, "status": "running", "software": software(),
        "device": request.device, "threads": request.threads, "protocol_path": protocol.path,
        "episode_list_path": str(list_path), "data_root": str(tree.root), "checkpoint": str(checkpoint) if checkpoint else None,
        "pretrained": method.pretrained, "n_episodes": len(episodes), "feature_cache": request.use_cache and method.frozen_encoder,
        "started": previous.get("started", started), "resumed_at": [*previous.get("resumed_at", []), len(done)] if done else [],
        "save_predictions": request.save_predictions,
    }
    write_run_json(directory, run_info)

    load = _image_loader(tree, protocol)
    cache = feature_cache(request.cache_mib) if request.use_cache and method.frozen_encoder else None
    encoder_key = (method.encoder_sha256(), tuple(protocol.image_size), protocol.resize, request.device) if cache else None
    to_save = sample_indices(len(episodes), request.save_predictions)
    (directory / "predictions").mkdir(exist_ok=True)
    writer = RecordWriter(directory)
    progress("start", request.label, len(episodes))
    progress("advance", request.label, len(done))
    began = time.perf_counter()
    try:
        for spec in episodes[len(done):]:
            tick = time.perf_counter()
            episode, queries = build_episode(spec, load, protocol)
            visible = episode.without_query_masks().to(request.device)
            with torch.no_grad():
                if cache is not None:
                    support = torch.cat([cache.features(encoder_key, i, lambda x=x: method.encode(x[None].to(request.device)))
                                         for i, x in zip(spec.support, episode.support_images)])
                    query = torch.cat([cache.features(encoder_key, i, lambda x=x: method.encode(x[None].to(request.device)))
                                       for i, x in zip(spec.query, episode.query_images)])
                    scores = method.predict_from_features(visible, support, query)
                else:
                    scores = method.predict(visible)
            check_scores(scores, (len(spec.query), 2, *protocol.image_size), request.label, spec.index)
            counts, prediction = score_query(scores[0].cpu(), queries[0], spec.class_id, protocol)
            record = {"index": spec.index, "class_id": spec.class_id, "query": list(spec.query), "support": list(spec.support)}
            record.update({name: int(value) for name, value in zip(COUNT_COLUMNS, counts)})
            record["seconds"] = round(time.perf_counter() - tick, 6)
            if spec.index in to_save:
                write_mask_png(directory / "predictions" / f"{spec.index:05d}.png", prediction.numpy().astype(np.uint8))
            writer.append(record)
            progress("advance", request.label, 1)
    finally:
        writer.close()
        progress("end", request.label, 0)
    wall = time.perf_counter() - began
    run_info.update(status="complete", finished=datetime.now(timezone.utc).isoformat(),
                    wall_seconds=round(wall + previous.get("wall_seconds", 0.0), 3))
    write_run_json(directory, run_info)
    return RunOutcome(request.label, "complete", "", str(directory), len(episodes))
