"""From a protocol to the data it reads: its dataset's tree (through the dataset registry,
`data/registry.py`), its class index and its episode lists."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ..datasets import PASCAL_VOC, Dataset
from ..episodes import (EpisodeSpec, check_pin, committed_episode_path, episodes_to_bytes, generate_episodes,
                        read_episode_list, sha256_bytes, write_episode_list)
from ..errors import InputError
from ..paths import DATA_ENV_VAR, default_data_root
from ..protocol import Protocol, episode_key
from .registry import dataset_entry
from .voc import (ClassIndex, class_index_cache_path, load_class_index, read_split, save_class_index,
                  split_fingerprint)


def synthetic_default_root(results_dir: Path) -> Path:
    return Path(results_dir) / "data" / "synthetic5i"


def locate_tree(dataset: str, root: str | Path):
    """The tree of a dataset's layout under `root` (each reader accepts its folder or a parent)."""
    return dataset_entry(dataset).locate(Path(root))


def resolve_tree(protocol: Protocol, data_root: str | Path | None, results_dir: Path):
    """`--data-root`, else $FSSEG_BENCH_DATA (real data only); a dataset with a default tree (the
    synthetic stand-in) writes it once under the results folder."""
    entry = dataset_entry(protocol.dataset)
    root = Path(data_root) if data_root else (default_data_root() if entry.default_tree is None else None)
    if root is None:
        if entry.default_tree is None:
            raise InputError(f"protocol {protocol.name!r} reads {entry.title}: pass --data-root DIR or set {DATA_ENV_VAR}")
        root = entry.default_tree(results_dir)
    return entry.locate(root)


def dataset_for(protocol: Protocol, tree=None) -> Dataset:
    """The protocol's dataset definition. A dataset whose classes are its data's (FSS-1000's split
    files) needs the tree."""
    entry = dataset_entry(protocol.dataset)
    if entry.classes_from_data and tree is None:
        raise InputError(f"protocol {protocol.name!r}: {entry.title}'s classes come from its data; pass --data-root")
    return entry.definition(protocol, tree)


def cache_dir(results_dir: Path) -> Path:
    return Path(results_dir) / "cache"


_INDEXES: dict[tuple[str, str, str], ClassIndex] = {}
_UNSAVED: set[tuple[str, str, str]] = set()  # indexes scanned while writes were deferred
_CHECKED: set | None = None  # inside `one_look_at_the_data`: splits already checked against the files
_WRITES_DEFERRED = False     # inside `one_look_at_the_data(write=False)`: nothing is written


@contextmanager
def one_look_at_the_data(write: bool = True):
    """Within this block each split is checked against its files once (e.g. while every request of
    a command is checked up front), not once per call. With `write=False` nothing is written (no
    class-index cache, no episode list): the up-front check of a command, so that bad input found
    anywhere in it leaves the results folder as it was."""
    global _CHECKED, _WRITES_DEFERRED
    outer, _CHECKED = _CHECKED, set() if _CHECKED is None else _CHECKED
    outer_deferred, _WRITES_DEFERRED = _WRITES_DEFERRED, _WRITES_DEFERRED or not write
    try:
        yield
    finally:
        _CHECKED, _WRITES_DEFERRED = outer, outer_deferred


def writes_deferred() -> bool:
    return _WRITES_DEFERRED


def class_index(tree, split: str, results_dir: Path) -> ClassIndex:
    """The split's class index, memoised in this process but re-checked against the files (one stat
    per file) on every call: a notebook, or a dask worker that outlives a command, never reads an
    index of data that has changed since."""
    key = (tree.identity, split, str(results_dir))
    memo = _INDEXES.get(key)
    if memo is None or _CHECKED is None or key not in _CHECKED:
        if memo is None or memo.fingerprint != split_fingerprint(tree, split, read_split(tree, split)):
            _INDEXES[key] = load_class_index(tree, split, cache_dir(results_dir), persist=not _WRITES_DEFERRED)
            if _WRITES_DEFERRED and not _INDEXES[key].from_cache:
                _UNSAVED.add(key)
            else:
                _UNSAVED.discard(key)
        if _CHECKED is not None:
            _CHECKED.add(key)
    if key in _UNSAVED and not _WRITES_DEFERRED:
        save_class_index(_INDEXES[key], tree, class_index_cache_path(cache_dir(results_dir), tree, split))
        _UNSAVED.discard(key)
    return _INDEXES[key]


def generated_episode_path(results_dir: Path, protocol: Protocol, fold: int, shot: int, seed: int) -> Path:
    return Path(results_dir) / "episodes" / protocol.name / f"{episode_key(fold, shot, seed)}.jsonl"


@dataclass(frozen=True)
class ResolvedEpisodes:
    """The episode list a run uses, where it came from, and a note for the user (or None)."""

    episodes: list[EpisodeSpec]
    sha256: str
    path: Path
    # kind: committed | generated | custom; for generated lists also the sampler's record of the
    # original lists it read (their sha256) and whether its pools had to be derived.
    source: dict
    note: str | None = None


def original_lists_path(protocol: Protocol, tree, override: str | Path | None) -> Path | None:
    """--original-lists, else the protocol's `original_lists` (relative paths from the VOC2012 folder)."""
    if override:
        return Path(override)
    if protocol.original_lists:
        path = Path(protocol.original_lists)
        return path if path.is_absolute() else tree.root / path
    return None


def episode_list_for(protocol: Protocol, tree, fold: int, shot: int, seed: int, results_dir: Path,
                     original_lists: str | Path | None = None,
                     episode_list: str | Path | None = None) -> ResolvedEpisodes:
    """A custom list when one is given, else the committed list when the protocol ships one, else one
    generated from the data by the protocol's sampler.

    A pinned sha256 is checked for the protocol's own lists, so a run never silently uses other episodes.
    """
    index = class_index(tree, protocol.split, results_dir)
    dataset = dataset_for(protocol, tree)
    if episode_list is not None:
        path = Path(episode_list)
        episodes, sha256 = read_episode_list(path, dataset.num_classes)
        check_custom_list(episodes, fold, shot, str(path), dataset)
        check_episode_ids(episodes, index, str(path))
        return ResolvedEpisodes(episodes, sha256, path, {"kind": "custom", "path": str(path.resolve())})
    committed = committed_episode_path(protocol, fold, shot, seed)
    if committed.is_file() and is_committed_protocol(protocol):
        episodes, sha256 = read_episode_list(committed, dataset.num_classes)
        check_pin(protocol, fold, shot, seed, sha256, str(committed))
        check_episode_ids(episodes, index, str(committed))
        return ResolvedEpisodes(episodes, sha256, committed, {"kind": "committed"})
    drawn = generate_episodes(protocol, index, fold, shot, seed, tree=tree,
                              original_lists=original_lists_path(protocol, tree, original_lists), dataset=dataset)
    path = generated_episode_path(results_dir, protocol, fold, shot, seed)
    data = episodes_to_bytes(drawn.episodes)
    sha256 = sha256_bytes(data)
    check_pin(protocol, fold, shot, seed, sha256, str(path))
    check_episode_ids(drawn.episodes, index, str(path))
    # `path` holds the latest list of this (fold, shot, seed); a run points at an immutable copy
    # named by its sha256, since other original lists (or another version of the protocol) give
    # another list under the same name.
    frozen = path.parent / "sha256" / f"{sha256}.jsonl"
    if not _WRITES_DEFERRED:
        write_episode_list(path, drawn.episodes)
        if not frozen.is_file():
            write_episode_list(frozen, drawn.episodes)
    return ResolvedEpisodes(drawn.episodes, sha256, frozen, {"kind": "generated", **drawn.source}, drawn.note)


def is_committed_protocol(protocol: Protocol) -> bool:
    """True when the protocol's bytes are the built-in file's of that name: committed episode lists
    belong to those bytes, not to the name (a user's file called "synthetic5i" draws its own)."""
    from ..protocol import builtin_protocol_sha256

    return builtin_protocol_sha256(protocol.name) == protocol.file_sha256


def check_custom_list(episodes: list[EpisodeSpec], fold: int, shot: int, source: str,
                      dataset: Dataset = PASCAL_VOC) -> None:
    """A custom list must fit the cell it is run as: the fold's test classes and `shot` supports."""
    classes = set(dataset.fold_test_classes(fold))
    for episode in episodes:
        if episode.class_id not in classes:
            raise InputError(f"{source}: episode {episode.index} has class {episode.class_id}, not a test class of "
                             f"fold {fold} ({', '.join(map(str, sorted(classes)))}); expected --fold to match the list")
        if len(episode.support) != shot:
            raise InputError(f"{source}: episode {episode.index} has {len(episode.support)} supports; expected "
                             f"--shot {shot} to match the list")


def check_episode_ids(episodes: list[EpisodeSpec], index: ClassIndex, source: str) -> None:
    """Every id an episode names must be in the split, and hold the episode's class."""
    for episode in episodes:
        for image_id in episode.query + episode.support:
            if image_id not in index.pixels:
                raise InputError(f"{source}: episode {episode.index} names image id {image_id!r}, "
                                 f"which is not in split {index.split!r} of the data tree")
        for image_id in episode.support:
            if index.pixels[image_id].get(episode.class_id, 0) == 0:
                raise InputError(f"{source}: episode {episode.index}: support {image_id!r} does not hold "
                                 f"class {episode.class_id}")
