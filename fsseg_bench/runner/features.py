"""The feature cache: a frozen encoder's output per (encoder weights, preprocessing, image id).

Keys include the encoder's weights sha256 and the preprocessing, so features are never reused
across checkpoints or input sizes. Bounded by an LRU byte cap (`--cache-mib`).
"""

from __future__ import annotations

from typing import Callable

import torch

from ..lru import LRUCache


class FeatureCache:
    def __init__(self, cache_mib: float):
        self.lru = LRUCache(int(cache_mib * 2**20))

    def features(self, encoder_key: tuple, image_id: str, encode: Callable[[], torch.Tensor]) -> torch.Tensor:
        return self.lru.get_or_compute((encoder_key, image_id), encode)
