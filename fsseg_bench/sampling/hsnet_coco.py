"""HSNet's COCO-20i test episodes, exactly (juhongm999/hsnet `test.py`, `data/coco.py`).

HSNet seeds numpy's legacy global generator once (`np.random.seed(0)`) and, ignoring the episode
index, draws each of its 1000 episodes the same way from its per-fold class lists
`data/splits/coco/val/fold{f}.pkl` ({class 0..79: image names}):

1. the class: `np.random.choice(class_ids, 1, replace=False)` over the fold's 20 test classes in
   ascending order (a whole permutation of 20 drawn each time);
2. the query: `np.random.choice(list, 1, replace=False)` over that class's list (file order);
3. supports one at a time the same way, a draw equal to the query dropped, until `shot` are kept
   (so 5-shot supports can repeat, as in HSNet).

The lists are read with `data.coco.read_class_lists` (a restricted unpickler: no code runs).
Without them, each class's list is derived from the split (the images holding it, sorted): the
episodes then follow HSNet's sampling but are not HSNet's, and the run says so.
"""

from __future__ import annotations

import numpy as np

from ..data.coco import read_class_lists
from ..episodes import EpisodeSpec
from ..errors import InputError
from . import SampledEpisodes, SamplingInput, register_sampler
from .hsnet import hsnet_supports
from .original_lists import check_ids_in_split, file_record, find_list

NAME = "hsnet-coco-original"


def class_lists(inputs: SamplingInput) -> tuple[dict[int, list[str]], dict, str | None]:
    fold = inputs.fold
    classes = inputs.dataset.fold_test_classes(fold)
    path = find_list(inputs.original_lists, [f"fold{fold}.pkl", f"val/fold{fold}.pkl", f"splits/coco/val/fold{fold}.pkl",
                                             f"data/splits/coco/val/fold{fold}.pkl"])
    if path is None and inputs.tree is not None:  # HSNet's lists beside COCO2014/, where the reader finds them
        beside = inputs.tree.root.parent / "splits" / "coco" / "val" / f"fold{fold}.pkl"
        path = beside if beside.is_file() else None
    if path is not None:
        lists = read_class_lists(path)
        missing = [c for c in classes if not lists.get(c)]
        if missing:
            raise InputError(f"{path}: no images for class {missing[0] - 1} (0-based) of fold {fold}; expected "
                             f"HSNet's list of fold {fold}")
        check_ids_in_split([i for c in classes for i in lists[c]], inputs.index, path)
        return {c: lists[c] for c in classes}, {"sampler": NAME, "lists": [file_record(path)], "derived": False}, None
    lists = {c: inputs.index.images_with(c, inputs.min_fg_pixels) for c in classes}
    note = (f"HSNet's class lists (data/splits/coco/val/fold{fold}.pkl) not given: lists derived from split "
            f"{inputs.index.split!r}, so the episodes follow HSNet's sampling but are NOT HSNet's episodes; pass "
            f"--original-lists DIR (HSNet's data/splits/coco/val) or put its splits/ folder beside COCO2014/")
    return lists, {"sampler": NAME, "lists": [], "derived": True}, note


@register_sampler(NAME, reads_original_lists=True)
def hsnet_coco_original(inputs: SamplingInput) -> SampledEpisodes:
    lists, source, note = class_lists(inputs)
    class_ids = sorted(lists)
    rng = np.random.RandomState(inputs.seed)  # HSNet: utils.fix_randseed(0), numpy's legacy generator
    episodes = []
    for i in range(inputs.n_episodes):
        # choice(x, 1, replace=False) draws a whole permutation of x: the same calls as HSNet's.
        class_id = class_ids[int(rng.choice(len(class_ids), 1, replace=False)[0])]
        pool = lists[class_id]
        query = pool[int(rng.choice(len(pool), 1, replace=False)[0])]
        episodes.append(EpisodeSpec(i, class_id, (query,), hsnet_supports(rng, pool, query, inputs, class_id)))
    return SampledEpisodes(episodes, source, note)
