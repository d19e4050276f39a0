"""PANet's test episodes, exactly (Wang et al., ICCV 2019; kaixin96/PANet `test.py`).

For each run PANet seeds Python's `random` with the run's seed (1234 + run, the same for every
fold and shot) and builds its episode list when it builds the dataset:

1. one `choices(range(n_ways), k=n_queries)` call (the query count per way; 1-way, 1 query);
2. per episode, `sample(range(n_classes), n_ways)` picks the class (the fold's classes, sorted),
   then `sample(range(len(pool)), shots + 1)` picks the images; the last one is the query.

The pools are PANet's class lists `ImageSets/Segmentation/<split>/class{c}.txt` (written by its
helper script in the order `os.listdir` returned the mask files, an image counted when it holds
any pixel of the class). Without them the pools are built from the split list, in list order,
which gives episodes of the same distribution but NOT PANet's: the run says so.

Python's `random.seed(int)`, `choices` and `sample` are unchanged since Python 3.6 (PANet's).
"""

from __future__ import annotations

import random
from pathlib import Path

from ..episodes import EpisodeSpec
from ..errors import InputError
from . import SampledEpisodes, SamplingInput, register_sampler
from .original_lists import check_ids_in_split, file_record, find_list, read_lines

NAME = "panet-original"


def class_list_path(inputs: SamplingInput, class_id: int):
    """PANet's class list: under --original-lists when given, else where PANet's script writes it."""
    if inputs.original_lists is not None:
        return find_list(inputs.original_lists, [f"class{class_id}.txt"])
    if inputs.tree is None:
        return None
    candidate = inputs.tree.root / "ImageSets" / "Segmentation" / inputs.index.split / f"class{class_id}.txt"
    return candidate if candidate.is_file() else None


def class_pools(inputs: SamplingInput) -> tuple[dict[int, list[str]], dict, str | None]:
    """{class: ids in PANet's order}, the source record and a note when the lists were derived."""
    classes = inputs.dataset.fold_test_classes(inputs.fold)
    paths = {c: class_list_path(inputs, c) for c in classes}
    if all(path is not None for path in paths.values()):
        pools = {}
        for c, path in paths.items():
            ids = [line.strip() for line in read_lines(path) if line.strip()]
            check_ids_in_split(ids, inputs.index, path)
            pools[c] = ids
        return pools, {"sampler": NAME, "lists": [file_record(p) for p in paths.values()], "derived": False}, None
    missing = [c for c, path in paths.items() if path is None]
    where = (inputs.tree.root if inputs.tree else Path("VOC2012")) / "ImageSets" / "Segmentation" / inputs.index.split
    note = (f"PANet's class lists ({where}/class{{c}}.txt; missing for classes "
            f"{', '.join(map(str, missing))}) not found: pools built from split {inputs.index.split!r} in list "
            f"order, so the episodes follow PANet's sampling but are NOT PANet's episodes (its lists are in "
            f"directory-listing order); pass --original-lists DIR with PANet's class{{c}}.txt files")
    pools = {c: inputs.index.images_with(c, 0) for c in classes}
    return pools, {"sampler": NAME, "lists": [], "derived": True}, note


@register_sampler(NAME, reads_original_lists=True)
def panet_original(inputs: SamplingInput) -> SampledEpisodes:
    pools, source, note = class_pools(inputs)
    classes = sorted(pools)
    for c in classes:
        if len(pools[c]) < inputs.shot + 1:  # PANet's `sample` would raise here
            raise InputError(f"class {c} ({inputs.dataset.class_name(c)}): {len(pools[c])} images in PANet's pool; expected at "
                             f"least shots + 1 = {inputs.shot + 1}")
    rng = random.Random(inputs.seed)
    rng.choices(range(1), k=1)  # the query count per way, drawn once when PANet builds its dataset
    episodes = []
    for i in range(inputs.n_episodes):
        (class_position,) = rng.sample(range(len(classes)), 1)
        class_id = classes[class_position]
        pool = pools[class_id]
        picked = rng.sample(range(len(pool)), inputs.shot + 1)
        episodes.append(EpisodeSpec(i, class_id, (pool[picked[-1]],), tuple(pool[j] for j in picked[:-1])))
    return SampledEpisodes(episodes, source, note)
