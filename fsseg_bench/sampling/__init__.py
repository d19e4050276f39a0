"""Episode samplers: how a protocol's `query_sampling` turns a split into an episode list.

A sampler is a function `SamplingInput -> SampledEpisodes` registered under the name a protocol
file uses. The harness's own samplers (`class-uniform`, `cycle-pairs`, `walk-images`) draw from
one local numpy Generator; the `*-original` samplers repeat an original codebase's random-number
calls in the same order, from the lists that codebase reads, so they give its very episodes.
A new sampler is a new module here that calls `register_sampler`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..data.voc import ClassIndex
from ..datasets import PASCAL_VOC, Dataset
from ..errors import InputError


@dataclass(frozen=True)
class SamplingInput:
    index: ClassIndex             # class presence (pixels per class) of the protocol's split
    tree: object | None           # the data tree: where PANet's class lists live (None: derive pools)
    fold: int
    shot: int
    seed: int
    n_episodes: int
    min_fg_pixels: int = 0
    original_lists: Path | None = None  # a folder (or file) holding an original codebase's lists
    dataset: Dataset = PASCAL_VOC       # its classes and folds


@dataclass(frozen=True)
class SampledEpisodes:
    episodes: list
    # What the pools were read from, recorded in run.json: sampler, list files and their sha256,
    # and whether the pools had to be derived from the split (the originals' files were absent).
    source: dict = field(default_factory=dict)
    note: str | None = None       # told to the user once (e.g. "derived pools: not the original episodes")


Sampler = Callable[[SamplingInput], SampledEpisodes]
SAMPLERS: dict[str, Sampler] = {}
READS_ORIGINAL_LISTS: set[str] = set()


def register_sampler(name: str, reads_original_lists: bool = False) -> Callable[[Sampler], Sampler]:
    def decorate(function: Sampler) -> Sampler:
        SAMPLERS[name] = function
        if reads_original_lists:
            READS_ORIGINAL_LISTS.add(name)
        return function
    return decorate


def check_original_lists(query_sampling: str, given, protocol_name: str) -> None:
    """--original-lists only for a sampler that reads them (a flag silently ignored would mislead)."""
    if given and query_sampling not in READS_ORIGINAL_LISTS:
        raise InputError(f"--original-lists {given}: protocol {protocol_name!r} samples with {query_sampling!r}, "
                         f"which reads no original lists (those that do: {', '.join(sorted(READS_ORIGINAL_LISTS))})")


def sampler_names() -> tuple[str, ...]:
    return tuple(SAMPLERS)


def sample(query_sampling: str, inputs: SamplingInput) -> SampledEpisodes:
    sampler = SAMPLERS.get(query_sampling)
    if sampler is None:
        raise InputError(f"query_sampling {query_sampling!r}: expected one of {' | '.join(SAMPLERS)}")
    return sampler(inputs)


# The built-in samplers register themselves on import.
from . import fsseg, hsnet, hsnet_coco, hsnet_fss, panet, patnet, pfenet  # noqa: E402,F401
