"""HSNet's FSS-1000 test episodes, exactly (juhongm999/hsnet `test.py`, `data/fss.py`).

HSNet seeds numpy's legacy global generator once (`np.random.seed(0)`) and walks its test split:
the class names of `splits/fss/test.txt`, sorted; within each class its `*.jpg` files sorted as
strings (`1.jpg, 10.jpg, 2.jpg, ...`). Episode i takes image i as the query (2400 episodes: each
test image once); each support is `np.random.choice(range(1, 11), 1, replace=False)`, the image
`<class>/<k>.jpg`, dropped when it is the query, until `shot` are kept (so supports can repeat).

The split file is the list; it is recorded with its sha256. A class folder whose images are not
named 1..10 cannot be drawn as HSNet draws: that is an error naming it.
"""

from __future__ import annotations

import numpy as np

from ..episodes import EpisodeSpec
from ..errors import InputError
from . import SampledEpisodes, SamplingInput, register_sampler
from .original_lists import file_record

NAME = "hsnet-fss-original"
IMAGES_PER_CLASS = 10  # FSS-1000's, and what HSNet's range(1, 11) assumes


def hsnet_order(inputs: SamplingInput) -> list[tuple[str, int]]:
    """(image id, class id) in HSNet's order: sorted class names, then file names sorted as strings."""
    tree, split = inputs.tree, inputs.index.split
    items = []
    for name in sorted(tree.split_classes(split)):
        stems = sorted(image_id.split("/", 1)[1] for image_id in inputs.index.ids if image_id.split("/", 1)[0] == name)
        expected = {str(k) for k in range(1, IMAGES_PER_CLASS + 1)}
        if set(stems) != expected:
            raise InputError(f"{tree.root / name}: images {sorted(set(stems) ^ expected)[:3]} differ from HSNet's "
                             f"1..{IMAGES_PER_CLASS}.jpg; expected FSS-1000's naming")
        for file_name in sorted(f"{stem}.jpg" for stem in stems):  # 1.jpg < 10.jpg < 2.jpg, as HSNet's sorted glob
            items.append((f"{name}/{file_name[:-len('.jpg')]}", tree.class_id(name)))
    return items


@register_sampler(NAME)
def hsnet_fss_original(inputs: SamplingInput) -> SampledEpisodes:
    if inputs.tree is None or not hasattr(inputs.tree, "split_classes"):
        raise InputError(f"query_sampling {NAME!r} reads FSS-1000's class folders and split files: expected "
                         f"dataset 'fss1000'")
    items = hsnet_order(inputs)
    rng = np.random.RandomState(inputs.seed)  # HSNet: utils.fix_randseed(0), numpy's legacy generator
    episodes = []
    for i in range(inputs.n_episodes):
        query, class_id = items[i % len(items)]
        folder = query.split("/", 1)[0]
        supports = []
        while len(supports) < inputs.shot:
            # choice(range(1, 11), 1, replace=False) draws a whole permutation of 10: the same calls as HSNet's.
            drawn = f"{folder}/{int(rng.choice(IMAGES_PER_CLASS, 1, replace=False)[0]) + 1}"
            if drawn != query:
                supports.append(drawn)
        episodes.append(EpisodeSpec(i, class_id, (query,), tuple(supports)))
    source = {"sampler": NAME, "lists": [file_record(inputs.tree.split_path(inputs.index.split))], "derived": False}
    return SampledEpisodes(episodes, source)
