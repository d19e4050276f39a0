"""The feature cache: a frozen encoder's output per (encoder, preprocessing, image), in two tiers,
and prototype methods' per-(image, class) support statistics beside it.

- Features: an in-memory LRU (`--cache-mib`, per worker) in front of the disk feature store
  (`feature_store.py`), in front of the encoder. With the store, each distinct image is encoded at
  most once per encoder and preprocessing, whatever the pool size, across runs, workers and
  commands; memory stays bounded by the LRU's cap.
- Statistics: their own LRU (`--statistics-mib`), so the small statistics (4 KB for PANet) are
  never evicted by the large feature maps (5.75 MB for VGG16 at 417x417).

Keys hold the encoder's identity and the image's content sha256, so features are never reused
across checkpoints, code, input sizes or edited images. `encoder_passes` counts real encodes.
"""

from __future__ import annotations

from typing import Callable

import torch

from ..lru import LRUCache
from .feature_store import FeatureStore


class FeatureCache:
    def __init__(self, cache_mib: float, store: FeatureStore | None = None, statistics_mib: float = 64.0):
        self.lru = LRUCache(int(cache_mib * 2**20))
        self.statistics = LRUCache(int(statistics_mib * 2**20))
        self.store = store
        self.encoder_passes = 0
        self.shapes: dict[tuple, tuple] = {}  # per encoder: the shape its features have (a stored one must match)

    def _stored(self, encoder_key: tuple, image_sha256: str) -> torch.Tensor | None:
        stored = self.store.get(encoder_key, image_sha256)
        if stored is None:
            return None
        expected = self.shapes.setdefault(encoder_key, tuple(stored.shape))
        if tuple(stored.shape) != expected:  # a well-formed entry of the wrong shape: damaged all the same
            self.store.damaged += 1
            self.store.path(encoder_key, image_sha256).unlink(missing_ok=True)
            return None
        return stored

    def features(self, encoder_key: tuple, image_sha256: str, encode: Callable[[], torch.Tensor],
                 deps: Callable[[], list[dict]] | None = None) -> torch.Tensor:
        """`deps`: the project modules loaded now, recorded beside the store's entries."""
        def compute() -> torch.Tensor:
            if self.store is not None:
                stored = self._stored(encoder_key, image_sha256)
                if stored is not None:
                    return stored
            value = encode()
            self.encoder_passes += 1
            self.shapes.setdefault(encoder_key, tuple(value.shape))
            if self.store is not None:
                self.store.put(encoder_key, image_sha256, value, deps)
            return value

        return self.lru.get_or_compute((encoder_key, image_sha256), compute)

    def contains(self, encoder_key: tuple, image_sha256: str) -> bool:
        return ((encoder_key, image_sha256) in self.lru
                or (self.store is not None and self.store.path(encoder_key, image_sha256).is_file()))

    def put(self, encoder_key: tuple, image_sha256: str, value: torch.Tensor,
            deps: Callable[[], list[dict]] | None = None) -> None:
        """Features encoded elsewhere (a batched pass): into both tiers."""
        self.encoder_passes += 1
        self.shapes.setdefault(encoder_key, tuple(value.shape))
        if self.store is not None:
            self.store.put(encoder_key, image_sha256, value, deps)
        self.lru.get_or_compute((encoder_key, image_sha256), lambda: value)

    def statistic(self, key: tuple, compute: Callable[[], torch.Tensor]) -> torch.Tensor:
        return self.statistics.get_or_compute(key, compute)

    @property
    def damaged(self) -> int:
        return self.store.damaged if self.store is not None else 0
