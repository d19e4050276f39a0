"""HSNet's test episodes, exactly (Min et al., ICCV 2021; juhongm999/hsnet `test.py`, `data/pascal.py`).

HSNet seeds numpy's legacy global generator once (`np.random.seed(0)`) and reads its pair file
`data/splits/pascal/val/fold{f}.txt` (lines `<image id>__<class 01..20>`). Episode i takes pair
i mod n; its supports are drawn one at a time by `np.random.choice(pool, 1, replace=False)` over
the pair file's images of that class (file order), a draw equal to the query is dropped, until
`shot` are kept. Supports can therefore repeat at 5 shots, exactly as in HSNet's evaluation.

Without pair files, pairs are derived from the split: every (image, fold class present) pair,
sorted by (image, class) as HSNet's files are; HSNet's files were made from VOC val with its own
filtering, so the episodes are HSNet-like but not HSNet's: the run says so.

`numpy.random.RandomState` streams are frozen by numpy's compatibility policy (NEP 19).
"""

from __future__ import annotations

import numpy as np

from ..datasets import PASCAL_VOC, Dataset
from ..episodes import EpisodeSpec
from ..errors import InputError
from ..textfiles import read_utf8
from . import SampledEpisodes, SamplingInput, register_sampler
from .original_lists import check_ids_in_split, file_record, find_list

NAME = "hsnet-original"


def read_pair_file(path, fold: int, index, dataset: Dataset = PASCAL_VOC) -> list[tuple[str, int]]:
    """HSNet's reading: the text split at newlines with the last piece dropped (the empty one after
    the final newline), each line `<id>__<class>`."""
    text = read_utf8(path, "HSNet pair file")
    classes = set(dataset.fold_test_classes(fold))
    pairs = []
    for number, line in enumerate(text.split("\n")[:-1], start=1):
        image_id, separator, class_text = line.strip().partition("__")
        if not separator or not image_id or not class_text.isdigit():
            raise InputError(f"{path}:{number}: {line!r}: expected '<image id>__<class 01..20>'")
        if int(class_text) not in classes:
            raise InputError(f"{path}:{number}: class {int(class_text)} is not a test class of fold {fold} "
                             f"({', '.join(map(str, sorted(classes)))})")
        pairs.append((image_id, int(class_text)))
    if not pairs:
        raise InputError(f"{path}: no pairs in it")
    check_ids_in_split([image_id for image_id, _ in pairs], index, path)
    return pairs


def fold_pairs(inputs: SamplingInput) -> tuple[list[tuple[str, int]], dict, str | None]:
    fold = inputs.fold
    path = find_list(inputs.original_lists, [f"fold{fold}.txt", f"splits/pascal/val/fold{fold}.txt",
                                             f"data/splits/pascal/val/fold{fold}.txt"])
    if path is not None:
        pairs = read_pair_file(path, fold, inputs.index, inputs.dataset)
        return pairs, {"sampler": NAME, "lists": [file_record(path)], "derived": False}, None
    classes = set(inputs.dataset.fold_test_classes(fold))
    pairs = sorted((image_id, c) for image_id in inputs.index.ids
                   for c in inputs.index.classes_of(image_id, inputs.min_fg_pixels) if c in classes)
    note = (f"HSNet's pair files (data/splits/pascal/val/fold{fold}.txt) not given: pairs derived from split "
            f"{inputs.index.split!r} and sorted as HSNet's are, so the episodes follow HSNet's sampling but are NOT "
            f"HSNet's episodes; pass --original-lists DIR (HSNet's data/splits/pascal/val)")
    return pairs, {"sampler": NAME, "lists": [], "derived": True}, note


@register_sampler(NAME, reads_original_lists=True)
def hsnet_original(inputs: SamplingInput) -> SampledEpisodes:
    pairs, source, note = fold_pairs(inputs)
    pools: dict[int, list[str]] = {}
    for image_id, class_id in pairs:
        pools.setdefault(class_id, []).append(image_id)
    rng = np.random.RandomState(inputs.seed)  # HSNet: utils.fix_randseed(0), numpy's legacy generator
    episodes = []
    for i in range(inputs.n_episodes):
        query, class_id = pairs[i % len(pairs)]
        pool = pools[class_id]
        episodes.append(EpisodeSpec(i, class_id, (query,), hsnet_supports(rng, pool, query, inputs, class_id)))
    return SampledEpisodes(episodes, source, note)


def hsnet_supports(rng: np.random.RandomState, pool: list[str], query: str, inputs: SamplingInput,
                   class_id: int) -> tuple[str, ...]:
    """HSNet's support loop: `choice(pool, 1, replace=False)` (a whole permutation of the pool per
    draw, the same calls as HSNet's), a draw equal to the query dropped, until `shot` are kept."""
    if all(image_id == query for image_id in pool):  # HSNet would loop forever here
        raise InputError(f"class {class_id} ({inputs.dataset.class_name(class_id)}): the only image of its pool is the "
                         f"query {query!r}; expected at least one other image to draw supports from")
    supports = []
    while len(supports) < inputs.shot:
        drawn = pool[int(rng.choice(len(pool), 1, replace=False)[0])]
        if drawn != query:
            supports.append(drawn)
    return tuple(supports)
