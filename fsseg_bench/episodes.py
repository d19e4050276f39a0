"""Episode lists: sampling by a protocol's `query_sampling` mode, JSONL files, sha256.

An episode list is the unit of comparability: two runs are comparable only when their lists
have the same sha256. Samplers (`fsseg_bench.sampling`) use only local random generators seeded
from the protocol's seed, and the JSONL bytes are canonical, so the same inputs give
byte-identical files on any machine.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

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


def sample_episodes(index: ClassIndex, fold: int, shot: int, seed: int, n_episodes: int,
                    query_sampling: str, min_fg_pixels: int = 0, tree=None,
                    original_lists: str | Path | None = None) -> list[EpisodeSpec]:
    """A 1-way, `shot`-shot, 1-query episode list drawn by the sampler named `query_sampling`
    (see `fsseg_bench.sampling`)."""
    return draw_episodes(index, fold, shot, seed, n_episodes, query_sampling, min_fg_pixels, tree,
                         original_lists).episodes


def draw_episodes(index: ClassIndex, fold: int, shot: int, seed: int, n_episodes: int, query_sampling: str,
                  min_fg_pixels: int = 0, tree=None, original_lists: str | Path | None = None, dataset=None):
    """-> `SampledEpisodes`: the episodes, what their pools were read from, and a note for the user."""
    from .sampling import SamplingInput, sample

    from .datasets import PASCAL_VOC

    inputs = SamplingInput(index=index, tree=tree, fold=fold, shot=shot, seed=seed, n_episodes=n_episodes,
                           min_fg_pixels=min_fg_pixels,
                           original_lists=Path(original_lists) if original_lists else None,
                           dataset=dataset or PASCAL_VOC)
    return sample(query_sampling, inputs)


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


def read_episode_list(path: str | Path, num_classes: int | None = None) -> tuple[list[EpisodeSpec], str]:
    """The list's episodes and the file's sha256; class ids must be 1..num_classes (the dataset's;
    any positive id when not given: the cell's own check names the fold's classes)."""
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
        top = num_classes if num_classes is not None else float("inf")
        if not 1 <= episode.class_id <= top or not episode.query or not episode.support:
            classes = f"1..{num_classes}" if num_classes is not None else "a positive integer"
            raise InputError(f"{path}:{number}: class_id must be {classes} and query/support non-empty")
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
                          n_episodes: int | None = None, tree=None,
                          original_lists: str | Path | None = None) -> list[EpisodeSpec]:
    return generate_episodes(protocol, index, fold, shot, seed, n_episodes, tree, original_lists).episodes


def generate_episodes(protocol: Protocol, index: ClassIndex, fold: int, shot: int, seed: int,
                      n_episodes: int | None = None, tree=None, original_lists: str | Path | None = None,
                      dataset=None):
    """The protocol's episodes for one (fold, shot, seed), checked; -> `SampledEpisodes`."""
    if dataset is None:
        from .data.source import dataset_for

        dataset = dataset_for(protocol, tree)
    drawn = draw_episodes(index, fold, shot, seed, n_episodes or protocol.episodes, protocol.query_sampling,
                          protocol.min_fg_pixels, tree, original_lists, dataset)
    check_episode_list(drawn.episodes, f"protocol {protocol.name!r} {episode_key(fold, shot, seed)}")
    return drawn
