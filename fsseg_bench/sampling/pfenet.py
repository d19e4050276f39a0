"""PFENet's test episodes, exactly (Tian et al., TPAMI 2020; dvlab-research/PFENet `test.py`,
`util/dataset.py`).

PFENet walks its list `lists/pascal/val.txt` in order, keeping the images that hold a fold class
with >= 2*32*32 pixels (the protocol's `min_fg_pixels`); a class's support pool is the kept images
with >= that many pixels of it. Each item draws, with Python's `random`:

1. the class: `randint(1, n)` among ALL fold classes present in the query at any size (sorted);
2. each support: one `randint` draw that is always discarded (the loop starts from the query),
   then draws until the image is neither the query nor already chosen.

The draws run inside 8 DataLoader workers. `validate` calls `torch.manual_seed(321)`; every pass
over the loader draws a base seed from torch's generator (`torch.empty((), dtype=torch.int64)
.random_()`), worker k seeds `random` with base + k, and items are dealt to the workers round
robin, so worker k draws for items k, k+8, ... of that pass in order. The loop makes at most 20
passes and scores 5001 episodes (its stop test is off by one), which `pascal5i-pfenet` asks for.

Verified on torch 2.14 (the base-seed draw is torch's CPU Mersenne Twister, unchanged since 1.x).
"""

from __future__ import annotations

import random
from pathlib import Path

import torch

from ..episodes import EpisodeSpec
from ..errors import InputError
from . import SampledEpisodes, SamplingInput, register_sampler
from .original_lists import check_ids_in_split, file_record, find_list, read_lines

NAME = "pfenet-original"
LOADER_WORKERS = 8   # PFENet's config: workers: 8
MAX_PASSES = 20      # PFENet's validate: for e in range(20)


def read_data_list(path: Path, index) -> list[str]:
    """Image ids of PFENet's list (`JPEGImages/<id>.jpg SegmentationClassAug/<id>.png` per line) or
    of a plain id list, in file order."""
    ids = []
    for number, line in enumerate(read_lines(path), start=1):
        if not line.strip():
            continue
        first = line.strip().split(" ")[0]
        image_id = Path(first).stem if "/" in first or first.endswith(".jpg") else first
        if not image_id:
            raise InputError(f"{path}:{number}: {line!r}: expected 'JPEGImages/<id>.jpg SegmentationClassAug/<id>.png'")
        ids.append(image_id)
    check_ids_in_split(ids, index, path)
    return ids


def walk_list(inputs: SamplingInput) -> tuple[list[str], dict, str | None]:
    path = find_list(inputs.original_lists, ["val.txt", "lists/pascal/val.txt"])
    if path is not None:
        return read_data_list(path, inputs.index), {"sampler": NAME, "lists": [file_record(path)], "derived": False}, None
    # PFENet's lists/pascal/val.txt holds VOC val in the order of VOC's own val.txt, so the split
    # list gives the same walk when the split is VOC val.
    note = (f"PFENet's val list not given: walking split {inputs.index.split!r} in list order (the same order "
            f"as PFENet's lists/pascal/val.txt for VOC val)")
    return list(inputs.index.ids), {"sampler": NAME, "lists": [], "derived": True}, note


def base_seeds(seed: int):
    """The base seed of each pass over PFENet's DataLoader, after `torch.manual_seed(seed)`."""
    generator = torch.Generator().manual_seed(seed)
    while True:
        yield int(torch.empty((), dtype=torch.int64).random_(generator=generator).item())


def _draw(rng: random.Random, inputs: SamplingInput, index: int, query: str, present: list[int],
          pools: dict[int, list[str]]) -> EpisodeSpec:
    class_id = present[rng.randint(1, len(present)) - 1]
    pool = pools[class_id]
    if sum(image_id != query for image_id in pool) < inputs.shot:  # PFENet would loop forever here
        raise InputError(f"class {class_id} ({inputs.dataset.class_name(class_id)}): {len(pool)} images with >= "
                         f"{inputs.min_fg_pixels} pixels of it for query {query!r}; expected at least "
                         f"{inputs.shot} others to draw distinct supports from")
    chosen: list[int] = []
    for _ in range(inputs.shot):
        position = rng.randint(1, len(pool)) - 1  # drawn and discarded, as PFENet's loop does
        drawn = query
        while drawn == query or position in chosen:
            position = rng.randint(1, len(pool)) - 1
            drawn = pool[position]
        chosen.append(position)
    return EpisodeSpec(index, class_id, (query,), tuple(pool[p] for p in chosen))


@register_sampler(NAME, reads_original_lists=True)
def pfenet_original(inputs: SamplingInput) -> SampledEpisodes:
    index = inputs.index
    walk, source, note = walk_list(inputs)
    classes = inputs.dataset.fold_test_classes(inputs.fold)
    threshold = max(1, inputs.min_fg_pixels)
    pools = {c: [i for i in walk if index.pixels[i].get(c, 0) >= threshold] for c in classes}
    items = [i for i in walk if any(index.pixels[i].get(c, 0) >= threshold for c in classes)]
    if not items:
        raise InputError(f"split {index.split!r}: no image holds a class of fold {inputs.fold} with >= "
                         f"{threshold} pixels; PFENet's walk would be empty")
    present = {i: [c for c in classes if index.pixels[i].get(c, 0) > 0] for i in items}
    episodes: list[EpisodeSpec] = []
    seeds = base_seeds(inputs.seed)
    for _ in range(MAX_PASSES):
        if len(episodes) >= inputs.n_episodes:
            break
        base = next(seeds)
        workers = [random.Random(base + k) for k in range(LOADER_WORKERS)]
        for position, query in enumerate(items[:inputs.n_episodes - len(episodes)]):
            episodes.append(_draw(workers[position % LOADER_WORKERS], inputs, len(episodes), query, present[query],
                                  pools))
    if len(episodes) < inputs.n_episodes:
        capped = (f"PFENet's loop stops after {MAX_PASSES} passes over its {len(items)} images: "
                  f"{len(episodes)} episodes, not {inputs.n_episodes}")
        note = f"{note}; {capped}" if note else capped
    return SampledEpisodes(episodes, source, note)
