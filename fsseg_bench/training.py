"""Episodic training on a fold's base classes, with checkpoints and exact resume.

Episode i of a training run is drawn from its own generator seeded by (training seed, fold, shot,
i), flips included, so a run resumed from a checkpoint at iteration n continues with exactly the
episodes an uninterrupted run would have seen.

The training seed (`train --seed`, default the schedule's `seed`) is the training lottery: it
draws the episodes and flips, and the initial weights of what a method initialises at random
when it defines `initialise(seed)` (HSNet's learner). PANet's encoder starts from ImageNet weights
(on the stand-in, from its `seed` option), as in the paper.
Each training seed has its own checkpoint folder, and runs on it are keyed by it, so tables can
show the spread over trained models apart from the spread over episodes.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from .console import interactive, rate_text

from . import __version__
from .checkpoints import file_sha256, read_checkpoint, save_checkpoint, tensors_sha256
from .contenthash import reads_identity, recording_reads
from .method import method_environment
from .fingerprints import closure_changes, code_fingerprint, data_fingerprint, loaded_closure, source_sha256
from .data.source import class_index, dataset_for, resolve_tree
from .datasets import Dataset
from .episodes import EpisodeSpec
from .errors import InputError, TrainingDiverged
from .preprocess import ImageLoader, build_episode
from .protocol import Protocol
from .registry import create_method, get_entry

@dataclass(frozen=True)
class TrainResult:
    checkpoint: Path
    iterations: int
    resumed_from: int
    seconds: float
    episodes_per_second: float
    first_losses: list[float]
    last_losses: list[float]


def checkpoint_dir(results_dir: Path, protocol: Protocol, method: str, fold: int, shot: int,
                   train_seed: int | None = None) -> Path:
    """`fold{f}-shot{k}` for the schedule's seed (the layout before training seeds existed), else
    `fold{f}-shot{k}-train{seed}`."""
    suffix = "" if train_seed is None or train_seed == protocol.training.seed else f"-train{train_seed}"
    return Path(results_dir) / "checkpoints" / protocol.name / method / f"fold{fold}-shot{shot}{suffix}"


def final_checkpoint(results_dir: Path, protocol: Protocol, method: str, fold: int, shot: int,
                     train_seed: int | None = None) -> Path:
    return checkpoint_dir(results_dir, protocol, method, fold, shot, train_seed) / "final.pt"


def schedule_optimizer(parameters, schedule):
    """The protocol's schedule: SGD with momentum and weight decay, lr steps at the milestones. A
    method whose paper trains otherwise defines `training_optimizer(schedule)` (HSNet: Adam)."""
    optimizer = torch.optim.SGD(parameters, lr=schedule.lr, momentum=schedule.momentum,
                                weight_decay=schedule.weight_decay)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=list(schedule.lr_milestones),
                                                     gamma=schedule.lr_gamma)
    return optimizer, scheduler


def training_pools(protocol: Protocol, index, fold: int, shot: int, dataset: Dataset | None = None) -> dict[int, list[str]]:
    """Base-class image pools (every class's with the schedule's `classes = "all"`). Novel-class pixels of kept images are background in 1-way binary
    masks anyway (PANet's relabelling); with `novel_in_training = "drop"` such images are dropped."""
    dataset = dataset or dataset_for(protocol)
    # `classes = "all"`: a cross-domain source trains on every class (nothing of it is tested).
    every = protocol.training.classes == "all"
    novel = set() if every else set(dataset.fold_test_classes(fold))
    classes = range(1, dataset.num_classes + 1) if every else dataset.fold_train_classes(fold)
    pools = {}
    for class_id in classes:
        pool = index.images_with(class_id, protocol.min_fg_pixels)
        if protocol.novel_in_training == "drop":
            pool = [i for i in pool if not novel & set(index.pixels[i])]
        if len(pool) >= shot + 1:
            pools[class_id] = pool
    if not pools:
        raise InputError(f"split {index.split!r}: no base class of fold {fold} has {shot + 1} images to train on")
    return pools


def training_episode(pools: dict[int, list[str]], seed: int, fold: int, shot: int, iteration: int,
                     flip: bool) -> tuple[EpisodeSpec, tuple[bool, ...] | None]:
    rng = np.random.default_rng([seed, fold, shot, iteration])
    classes = sorted(pools)
    class_id = classes[int(rng.integers(len(classes)))]
    pool = pools[class_id]
    picked = rng.choice(len(pool), size=shot + 1, replace=False)
    flips = tuple(bool(f) for f in rng.random(shot + 1) < 0.5) if flip else None
    return EpisodeSpec(iteration, class_id, (pool[picked[-1]],), tuple(pool[i] for i in picked[:-1])), flips


# What a checkpoint was trained from, by content: reuse (final.pt) and resume (last.pt) need all equal.
IDENTITY_KEYS = ("method", "config", "protocol", "protocol_sha256", "dataset", "fold", "shot", "total_iterations",
                 "train_seed", "data_sha256", "code_sha256", "weights_sha256", "environment")


def training_identity(protocol: Protocol, method_name: str, method, fold: int, shot: int, total: int, seed: int,
                      entry, index, pools: dict, reads: list) -> dict:
    """The training's identity: the method, its options and code (the method's fingerprint and this
    loop's own source), the weights it started from, the protocol's bytes, the training images and
    masks by content, fold, shot, schedule length and training seed."""
    code = hashlib.sha256(f"{code_fingerprint(entry.factory)[0]}|{source_sha256(__file__)}".encode()).hexdigest()
    pool_ids = [image_id for pool in pools.values() for image_id in pool]
    return {"method": method_name, "config": method.config, "protocol": protocol.name,
            "protocol_sha256": protocol.file_sha256, "dataset": protocol.dataset, "fold": fold, "shot": shot,
            "total_iterations": total, "train_seed": seed, "data_sha256": data_fingerprint(pool_ids, index.file_sha256),
            "code_sha256": code, "weights_sha256": reads_identity(reads), "environment": method_environment(method)}


def _identity_differs(saved: dict | None, identity: dict) -> str:
    """'' when a saved checkpoint was trained from this identity (and the code it loaded is
    unchanged), else the names of what differs."""
    if saved is None:
        return "provenance (a plain state dict)"
    differs = [key for key in IDENTITY_KEYS if saved.get(key) != identity.get(key)]
    if not differs and closure_changes(saved.get("code_closure")):
        differs = ["loaded code"]
    return ", ".join(differs)


def _set_aside(path: Path, why: str) -> None:
    """Keep a checkpoint that no longer matches (runs may point at it by sha256), out of the way."""
    from .console import warn

    aside = path.parent / "superseded" / f"{path.stem}-{file_sha256(path)[:12]}{path.suffix}"
    aside.parent.mkdir(exist_ok=True)
    os.replace(path, aside)
    companion = path.with_suffix(".json")
    if companion.is_file():
        os.replace(companion, aside.with_suffix(".json"))
    warn(f"{path}: {why} (the old file is kept as {aside})")


def train(protocol: Protocol, method_name: str, fold: int, shot: int, *, data_root=None,
          results_dir: Path = Path("results"), method_options: dict | None = None,
          iterations: int | None = None, device: str = "cpu", progress: bool = True,
          stop_after: int | None = None, train_seed: int | None = None) -> TrainResult:
    """Train (or resume training) one method on one fold with one training seed (default: the
    schedule's); returns the final checkpoint.

    `stop_after` ends the process's work after that many iterations without writing final.pt
    (used to test resuming).
    """
    entry = get_entry(method_name)
    if not entry.trainable:
        raise InputError(f"method {method_name!r} is not trainable")
    schedule = protocol.training
    total = iterations or schedule.episodes
    seed = schedule.seed if train_seed is None else train_seed
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise InputError(f"--seed {seed}: expected a training seed, an integer >= 0")
    options = {"backbone": protocol.backbone, **(method_options or {})}
    with recording_reads() as reads:
        method = create_method(method_name, **options)
    if hasattr(method, "initialise"):  # the training seed draws the randomly initialised trainable parts
        method.initialise(seed)
    method = method.to(device)
    tree = resolve_tree(protocol, data_root, results_dir)
    index = class_index(tree, protocol.train_split, results_dir)
    pools = training_pools(protocol, index, fold, shot, dataset_for(protocol, tree))
    load = ImageLoader(tree, protocol, file_sha256=index.file_sha256)

    optimizer, scheduler = (method.training_optimizer(schedule) if hasattr(method, "training_optimizer")
                            else schedule_optimizer(method.parameters(), schedule))
    out_dir = checkpoint_dir(results_dir, protocol, method_name, fold, shot, seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    last_path, final_path = out_dir / "last.pt", out_dir / "final.pt"
    identity = training_identity(protocol, method_name, method, fold, shot, total, seed, entry, index, pools, reads)

    if final_path.is_file():
        _, saved = read_checkpoint(final_path)
        differs = _identity_differs(saved, identity)
        if not differs:
            return TrainResult(final_path, total, total, 0.0, 0.0, saved["losses"][:20], saved["losses"][-20:])
        _set_aside(final_path, f"its {differs} differ from this training's; training a new checkpoint")

    start, losses = 0, []
    if last_path.is_file():
        _, saved = read_checkpoint(last_path)
        differs = _identity_differs(saved, identity)
        if differs:
            _set_aside(last_path, f"an unfinished checkpoint whose {differs} differ; not resumed, training from the start")
        else:
            method.load_state_dict(saved["state_dict"])
            optimizer.load_state_dict(saved["optimizer"])
            scheduler.load_state_dict(saved["scheduler"])
            start, losses = saved["iteration"], saved["losses"]

    def payload(iteration: int) -> dict:
        state = method.state_dict()
        return {"harness_version": __version__, **identity,
                "iteration": iteration, "state_dict": state, "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "losses": losses, "pretrained": method.pretrained,
                "state_sha256": tensors_sha256(state)}

    method.train()
    began = time.perf_counter()
    end = total if stop_after is None else min(total, start + stop_after)
    bars = progress and interactive()
    bar = tqdm(range(start, end), initial=start, total=total, disable=not bars,
               desc=f"train {method_name} fold {fold} shot {shot} seed {seed}", unit="ep", dynamic_ncols=True)
    # Off a terminal: one plain line per `checkpoint_every` episodes instead of a redrawn bar.
    line_every = schedule.checkpoint_every if progress and not bars else 0
    last_line = time.perf_counter()
    for iteration in bar:
        spec, flips = training_episode(pools, seed, fold, shot, iteration, schedule.flip)
        episode, _ = build_episode(spec, load, protocol, flips)
        values = method.training_losses(episode.to(device))
        if not torch.isfinite(values["total"]):
            # Saved so far: the last periodic checkpoint; a NaN model is never written as final.
            raise TrainingDiverged(f"{method_name} fold {fold} shot {shot} seed {seed}: the loss is "
                                   f"{values['total'].item()} at iteration {iteration} (episode {spec.query[0]} of "
                                   f"class {spec.class_id}); lower the schedule's lr or try another training seed, "
                                   f"and report it: a diverging seed is part of the method's variance")
        optimizer.zero_grad()
        values["total"].backward()
        optimizer.step()
        scheduler.step()
        losses.append(values["total"].item())
        if (iteration + 1) % 10 == 0:
            bar.set_postfix(loss=f"{np.mean(losses[-50:]):.3f}", lr=f"{scheduler.get_last_lr()[0]:.1e}")
        if (iteration + 1) % schedule.checkpoint_every == 0 and iteration + 1 < total:
            save_checkpoint(last_path, payload(iteration + 1))
        # Off a terminal: a line every `checkpoint_every` episodes or every 30 s, whichever comes first.
        if line_every and ((iteration + 1) % line_every == 0 or time.perf_counter() - last_line >= 30):
            last_line = time.perf_counter()
            rate = (iteration + 1 - start) / max(time.perf_counter() - began, 1e-9)
            left = (end - iteration - 1) / max(rate, 1e-9)
            print(f"train {method_name} fold {fold} shot {shot} seed {seed}: {iteration + 1}/{total} episodes, "
                  f"loss {np.mean(losses[-50:]):.3f}, lr {scheduler.get_last_lr()[0]:.1e}, {rate_text(rate)} "
                  f"episodes/s, about {left:.0f} s left", file=sys.stderr, flush=True)
    bar.close()
    seconds = time.perf_counter() - began
    done = end - start
    if end < total:
        save_checkpoint(last_path, payload(end))
        return TrainResult(last_path, end, start, seconds, done / max(seconds, 1e-9), losses[:20], losses[-20:])
    final = payload(total) | {"code_closure": loaded_closure(entry.factory)}
    save_checkpoint(final_path, final)
    (out_dir / "final.json").write_text(json.dumps(
        {k: v for k, v in final.items() if k not in ("state_dict", "optimizer", "scheduler", "losses", "code_closure")}
        | {"file_sha256": file_sha256(final_path), "seconds": seconds}, indent=1, default=str))
    last_path.unlink(missing_ok=True)
    return TrainResult(final_path, total, start, seconds, done / max(seconds, 1e-9), losses[:20], losses[-20:])

