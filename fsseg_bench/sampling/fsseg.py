"""The harness's own samplers: one local numpy Generator seeded from (seed, fold, shot).

They follow each codebase's *convention* (which images are queries, how the class is chosen) but
draw their own episodes, and always draw distinct supports:

- class-uniform (PANet's convention): class drawn uniformly, then shot+1 distinct images of it;
  the last is the query.
- cycle-pairs (HSNet's): episode i takes the (image, class) pair i mod n of the fold, in list
  order; supports drawn at random among the other images of the class.
- walk-images (PFENet's): episode i takes image i mod n among those holding a test class; the
  class is drawn among the test classes present; supports as above.
"""

from __future__ import annotations

import numpy as np

from ..episodes import EpisodeSpec
from ..errors import InputError
from . import SampledEpisodes, SamplingInput, register_sampler


def episode_rng(seed: int, fold: int, shot: int) -> np.random.Generator:
    return np.random.default_rng([seed, fold, shot])


def class_pools(inputs: SamplingInput) -> dict[int, list[str]]:
    index, shot, min_fg_pixels = inputs.index, inputs.shot, inputs.min_fg_pixels
    pools = {}
    for class_id in inputs.dataset.fold_test_classes(inputs.fold):
        pool = index.images_with(class_id, min_fg_pixels)
        if len(pool) < shot + 1:
            raise InputError(
                f"class {class_id} ({inputs.dataset.class_name(class_id)}): {len(pool)} images in split {index.split!r} with "
                f">= {max(1, min_fg_pixels)} pixels of it; expected at least shots + 1 = {shot + 1}"
            )
        pools[class_id] = pool
    return pools


def _supports(rng: np.random.Generator, pool: list[str], query: str, shot: int) -> tuple[str, ...]:
    candidates = [image_id for image_id in pool if image_id != query]
    picked = rng.choice(len(candidates), size=shot, replace=False)
    return tuple(candidates[i] for i in picked)


def _source(name: str) -> dict:
    return {"sampler": name, "lists": [], "derived": False}


@register_sampler("class-uniform")
def class_uniform(inputs: SamplingInput) -> SampledEpisodes:
    pools = class_pools(inputs)
    classes = sorted(pools)
    rng = episode_rng(inputs.seed, inputs.fold, inputs.shot)
    episodes = []
    for i in range(inputs.n_episodes):
        class_id = classes[int(rng.integers(len(classes)))]
        pool = pools[class_id]
        picked = rng.choice(len(pool), size=inputs.shot + 1, replace=False)
        episodes.append(EpisodeSpec(i, class_id, (pool[picked[-1]],), tuple(pool[j] for j in picked[:-1])))
    return SampledEpisodes(episodes, _source("class-uniform"))


def _walk(inputs: SamplingInput, name: str, pools: dict[int, list[str]], items: list[tuple[str, object]],
          class_of) -> SampledEpisodes:
    """Episode i takes item i mod n, (query, what its class is chosen from); supports at random."""
    rng = episode_rng(inputs.seed, inputs.fold, inputs.shot)
    episodes = []
    for i in range(inputs.n_episodes):
        query, choices = items[i % len(items)]
        class_id = class_of(rng, choices)
        episodes.append(EpisodeSpec(i, class_id, (query,), _supports(rng, pools[class_id], query, inputs.shot)))
    return SampledEpisodes(episodes, _source(name))


def _present(inputs: SamplingInput, image_id: str, pools: dict) -> list[int]:
    return [c for c in inputs.index.classes_of(image_id, inputs.min_fg_pixels) if c in pools]


@register_sampler("cycle-pairs")
def cycle_pairs(inputs: SamplingInput) -> SampledEpisodes:
    pools = class_pools(inputs)
    pairs = [(image_id, c) for image_id in inputs.index.ids for c in _present(inputs, image_id, pools)]
    return _walk(inputs, "cycle-pairs", pools, pairs, lambda rng, class_id: class_id)


@register_sampler("walk-images")
def walk_images(inputs: SamplingInput) -> SampledEpisodes:
    pools = class_pools(inputs)
    walk = [(image_id, present) for image_id in inputs.index.ids if (present := _present(inputs, image_id, pools))]
    return _walk(inputs, "walk-images", pools, walk, lambda rng, present: present[int(rng.integers(len(present)))])
