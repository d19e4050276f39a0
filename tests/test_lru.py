"""The byte-bounded LRU behind the image and feature caches."""

import torch

from fsseg_bench.lru import LRUCache


def test_evicts_least_recently_used_beyond_the_byte_cap():
    cache = LRUCache(max_bytes=3 * 400)  # three 100-float tensors
    computed = []

    def make(key):
        computed.append(key)
        return torch.zeros(100)

    for key in ("a", "b", "c"):
        cache.get_or_compute(key, lambda k=key: make(k))
    cache.get_or_compute("a", lambda: make("a"))  # hit: "a" becomes the most recent
    cache.get_or_compute("d", lambda: make("d"))  # evicts "b", the least recently used
    assert computed == ["a", "b", "c", "d"] and (cache.hits, cache.misses) == (1, 4)
    assert len(cache) == 3 and cache.bytes == 1200
    cache.get_or_compute("b", lambda: make("b"))
    assert computed[-1] == "b"  # it had been evicted
    cache.get_or_compute("a", lambda: make("a"))
    assert computed[-1] == "b" and cache.hits == 2  # "a" survived: it was used recently


def test_zero_cap_caches_nothing_and_oversized_values_pass_through():
    cache = LRUCache(0)
    assert cache.get_or_compute("x", lambda: torch.ones(3)).sum() == 3 and len(cache) == 0
    small = LRUCache(100)
    small.get_or_compute("big", lambda: torch.zeros(1000))
    assert len(small) == 0 and small.bytes == 0
