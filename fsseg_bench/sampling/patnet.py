"""PATNet's cross-domain test episodes, exactly (Lei et al., ECCV 2022; slei109/PATNet `test.py`,
`data/deepglobe.py`, `data/isic.py`, `data/lung.py`).

PATNet seeds numpy's legacy global generator once (`utils.fix_randseed(0)`), then its test loader
(no workers, no shuffle) asks for episodes 0..599 in order. Episode i tests class `i % n` (the
dataset's classes in folder order); the query is `np.random.choice(pool, 1, replace=False)` over
that class's pool, then supports are drawn the same way, one at a time, a draw equal to the query
dropped, until `shot` are kept (supports can repeat). A pool is what the tree's `class_pool`
lists, in PATNet's order (sorted paths, filtered on the name's part after its first dot). Its
FSS-1000 episodes are HSNet's (`hsnet-fss-original`): one per test image.

`choice(pool, 1, replace=False)` draws a whole permutation of the pool: the calls here are the
same. The folder listings a run's episodes came from are recorded with their sha256.
"""

from __future__ import annotations

import hashlib

import numpy as np

from ..episodes import EpisodeSpec
from ..errors import InputError
from . import SampledEpisodes, SamplingInput, register_sampler

NAME = "patnet-original"


def _draw(rng: np.random.RandomState, pool: list[str]) -> str:
    return pool[int(rng.choice(len(pool), 1, replace=False)[0])]


@register_sampler(NAME)
def patnet_original(inputs: SamplingInput) -> SampledEpisodes:
    tree = inputs.tree
    if tree is None or not hasattr(tree, "class_pool"):
        raise InputError(f"query_sampling {NAME!r} reads PATNet's class folders: expected dataset deepglobe, isic "
                         f"or chestxray (FSS-1000: hsnet-fss-original, which PATNet's episodes equal)")
    classes = inputs.dataset.fold_test_classes(inputs.fold)
    pools = {c: tree.class_pool(c) for c in classes}
    for c, pool in pools.items():
        if len(pool) < 2:
            raise InputError(f"{tree.root}: class {c} ({inputs.dataset.class_name(c)}) has {len(pool)} image(s); "
                             f"PATNet draws supports other than the query, so it needs at least 2")
    rng = np.random.RandomState(inputs.seed)  # PATNet: utils.fix_randseed(0), numpy's legacy generator
    episodes = []
    for i in range(inputs.n_episodes):
        class_id = classes[i % len(classes)]
        pool = pools[class_id]
        query = _draw(rng, pool)
        supports = []
        while len(supports) < inputs.shot:
            drawn = _draw(rng, pool)
            if drawn != query:
                supports.append(drawn)
        episodes.append(EpisodeSpec(i, class_id, (query,), tuple(supports)))
    lists = [{"path": f"{tree.root.resolve()} class {c}", "sha256": hashlib.sha256(
        ("\n".join(pool) + "\n").encode()).hexdigest()} for c, pool in pools.items()]
    return SampledEpisodes(episodes, {"sampler": NAME, "lists": lists, "derived": False})
