"""Episode lists: sampling by a protocol's `query_sampling` mode, JSONL files, sha256.

An episode list is the unit of comparability: two runs are comparable only when their lists
have the same sha256. Sampling uses one local `numpy.random.Generator` seeded from
(protocol seed, fold, shot), and the JSONL bytes are canonical, so the same inputs give
byte-identical files on any machine.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .classes import class_name, fold_test_classes
from .data.voc import ClassIndex
from .errors import InputError
from .paths import EPISODES_DIR
from .protocol import Protocol, episode_key


@dataclass(frozen=True)
class EpisodeSpec:
    """One line of an episode list: which images make the episode (1-way)."""

    index: int
    class_id: int
    query: tuple[str, ...]
    support: tuple[str, ...]

    def to_json(self) -> str:
        return json.dumps({"index": self.index, "class_id": self.class_id,
                           "query": list(self.query), "support": list(self.support)}, separators=(",", ":"))


def episode_rng(seed: int, fold: int, shot: int) -> np.random.Generator:
    return np.random.default_rng([seed, fold, shot])


def _class_pools(index: ClassIndex, fold: int, shot: int, min_fg_pixels: int) -> dict[int, list[str]]:
    pools = {}
    for class_id in fold_test_classes(fold):
        pool = index.images_with(class_id, min_fg_pixels)
        if len(pool) < shot + 1:
            raise InputError(
                f"class {class_id} ({class_name(class_id)}): {len(pool)} images in split {index.split!r} with "
                f">= {max(1, min_fg_pixels)} pixels of it; expected at least shots + 1 = {shot + 1}"
            )
        pools[class_id] = pool
    return pools


def _supports(rng: np.random.Generator, pool: list[str], query: str, shot: int) -> tuple[str, ...]:
    candidates = [image_id for image_id in pool if image_id != query]
    picked = rng.choice(len(candidates), size=shot, replace=False)
    return tuple(candidates[i] for i in picked)


def sample_episodes(index: ClassIndex, fold: int, shot: int, seed: int, n_episodes: int,
                    query_sampling: str, min_fg_pixels: int = 0) -> list[EpisodeSpec]:
    """Sample a 1-way, `shot`-shot, 1-query episode list following one codebase's convention.

    - class-uniform (PANet): class drawn uniformly, then shot+1 distinct images of it; the last
      is the query.
    - cycle-pairs (HSNet): episode i takes the (image, class) pair i mod n of the fold, in list
      order; supports drawn at random among the other images of the class.
    - walk-images (PFENet): episode i takes image i mod n among those holding a test class; the
      class is drawn among the test classes present; supports as above.
    """
    pools = _class_pools(index, fold, shot, min_fg_pixels)
    classes = sorted(pools)
    rng = episode_rng(seed, fold, shot)
    episodes = []
    if query_sampling == "class-uniform":
        for i in range(n_episodes):
            class_id = classes[int(rng.integers(len(classes)))]
            pool = pools[class_id]
            picked = rng.choice(len(pool), size=shot + 1, replace=False)
            episodes.append(EpisodeSpec(i, class_id, (pool[picked[-1]],), tuple(pool[j] for j in picked[:-1])))
    elif query_sampling == "cycle-pairs":
        pairs = [(image_id, c) for image_id in index.ids
                 for c in index.classes_of(image_id, min_fg_pixels) if c in pools]
        for i in range(n_episodes):
            query, class_id = pairs[i % len(pairs)]
            episodes.append(EpisodeSpec(i, class_id, (query,), _supports(rng, pools[class_id], query, shot)))
    elif query_sampling == "walk-images":
        walk = [(image_id, present) for image_id in index.ids
                if (present := [c for c in index.classes_of(image_id, min_fg_pixels) if c in pools])]
        for i in range(n_episodes):
            query, present = walk[i % len(walk)]
            class_id = present[int(rng.integers(len(present)))]
            episodes.append(EpisodeSpec(i, class_id, (query,), _supports(rng, pools[class_id], query, shot)))
    else:
        raise InputError(f"query_sampling {query_sampling!r}: expected class-uniform | cycle-pairs | walk-images")
    return episodes


# --- files ------------------------------------------------------------------------------------

def episodes_to_bytes(episodes: list[EpisodeSpec]) -> bytes:
    return "".join(e.to_json() + "\n" for e in episodes).encode("utf-8")


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_episode_list(path: str | Path, episodes: list[EpisodeSpec]) -> str:
    """Write atomically; return the file's sha256."""
    path = Path(path)
    data = episodes_to_bytes(episodes)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return sha256_bytes(data)


def read_episode_list(path: str | Path) -> tuple[list[EpisodeSpec], str]:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: episode list not found")
    data = path.read_bytes()
    episodes = []
    for number, line in enumerate(data.decode("utf-8").splitlines(), start=1):
        try:
            raw = json.loads(line)
            episode = EpisodeSpec(int(raw["index"]), int(raw["class_id"]), tuple(raw["query"]), tuple(raw["support"]))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError):
            raise InputError(f"{path}:{number}: expected a JSON object with index, class_id, query, support") from None
        if not 1 <= episode.class_id <= 20 or not episode.query or not episode.support:
            raise InputError(f"{path}:{number}: class_id must be 1..20 and query/support non-empty")
        episodes.append(episode)
    check_episode_list(episodes, str(path))
    return episodes, sha256_bytes(data)


def check_episode_list(episodes: list[EpisodeSpec], source: str) -> None:
    """Refuse a list a run could not score honestly: empty, indexes other than 0..n-1 in order,
    or a query that is also one of its supports."""
    if not episodes:
        raise InputError(f"{source}: episode list has no episodes; expected at least one")
    for position, episode in enumerate(episodes):
        if episode.index != position:
            seen = {e.index for e in episodes[:position]}
            what = "a duplicate" if episode.index in seen else "out of order or with a gap"
            raise InputError(f"{source}: episode at line {position + 1} has index {episode.index} ({what}); "
                             f"expected indexes 0..{len(episodes) - 1} in order")
        shared = set(episode.query) & set(episode.support)
        if shared:
            raise InputError(f"{source}: episode {episode.index}: query {sorted(shared)[0]!r} is also one of its "
                             f"supports; expected distinct images")


def check_pin(protocol: Protocol, fold: int, shot: int, seed: int, sha256: str, source: str) -> None:
    pinned = protocol.pinned_sha256(fold, shot, seed)
    if pinned is not None and pinned != sha256:
        raise InputError(
            f"{source}: episode list sha256 {sha256[:16]}... differs from the sha256 pinned by protocol "
            f"{protocol.name!r} for {episode_key(fold, shot, seed)} ({pinned[:16]}...)"
        )


def committed_episode_path(protocol: Protocol, fold: int, shot: int, seed: int) -> Path:
    return EPISODES_DIR / protocol.name / f"{episode_key(fold, shot, seed)}.jsonl"


def generate_episode_list(protocol: Protocol, index: ClassIndex, fold: int, shot: int, seed: int,
                          n_episodes: int | None = None) -> list[EpisodeSpec]:
    episodes = sample_episodes(index, fold, shot, seed, n_episodes or protocol.episodes,
                               protocol.query_sampling, protocol.min_fg_pixels)
    check_episode_list(episodes, f"protocol {protocol.name!r} {episode_key(fold, shot, seed)}")
    return episodes
