"""Generated from list_methods(): every entry predicts the right shape and dtype on a tiny
episode, never reads query_masks, and is deterministic."""

import pytest
import torch

from fsseg_bench import registry
from fsseg_bench.episode import Episode


class Tripwire(torch.Tensor):
    """A tensor that fails the test if anything reads it."""

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        raise AssertionError(f"query_masks was read ({getattr(func, '__name__', func)})")


def tiny_episode(shots=2, queries=1, size=(40, 48)) -> Episode:
    generator = torch.Generator().manual_seed(3)
    masks = torch.zeros(shots, *size, dtype=torch.long)
    masks[:, 8:24, 10:30] = 1
    masks[:, 7, 10:30] = 255
    tripwire = torch.zeros(queries, *size, dtype=torch.long).as_subclass(Tripwire)
    return Episode(class_id=3,
                   support_images=torch.randn(shots, 3, *size, generator=generator),
                   support_masks=masks,
                   query_images=torch.randn(queries, 3, *size, generator=generator),
                   query_masks=tripwire,
                   support_ids=tuple(f"s{i}" for i in range(shots)), query_ids=("q",) * queries)


def build(name):
    accepted = registry.accepted_options(name)
    options = {"backbone": "smallcnn"} if "backbone" in accepted else {}
    if "sam" in accepted:  # no weights here: the test-size SAM and a test-size ViT to match with
        options.update(sam="sam-tiny", backbone="vit-tiny14")
    if "encoder_size" in accepted:
        options["encoder_size"] = 56
    return registry.create_method(name, **options).eval()


BUILTIN = [e.name for e in registry.list_methods() if e.origin.startswith("built-in")]


@pytest.mark.parametrize("name", BUILTIN)
def test_conformance(name):
    episode = tiny_episode()
    scores = build(name).predict(episode)
    assert scores.shape == (1, 2, 40, 48) and scores.dtype == torch.float32
    assert torch.isfinite(scores).all()
    again = build(name).predict(episode)
    assert torch.equal(scores, again), "two fresh instances must predict identically"
    many = build(name).predict(tiny_episode(shots=3, queries=2))
    assert many.shape == (2, 2, 40, 48)


def test_every_builtin_is_covered():
    assert {"panet", "panet-noalign", "panet-init", "hsnet", "linear-probe", "knn", "support-copy",
            "all-foreground"} <= set(BUILTIN)


def test_tripwire_works():
    with pytest.raises(AssertionError, match="query_masks was read"):
        (tiny_episode().query_masks == 1).sum()


def test_frozen_encoder_path_equals_predict():
    episode = tiny_episode()
    for name in BUILTIN:
        method = build(name)
        if not method.frozen_encoder:
            continue
        with torch.no_grad():
            direct = method.predict(episode)
            cached = method.predict_from_features(episode, method.encode_each(episode.support_images),
                                                  method.query_features(episode.query_images))
        assert torch.equal(direct, cached), name


def test_support_statistics_path_equals_predict():
    episode = tiny_episode(shots=3, queries=2)
    checked = 0
    for name in BUILTIN:
        method = build(name)
        if not method.support_statistics:
            continue
        with torch.no_grad():
            direct = method.predict(episode)
            features = method.encode_each(episode.support_images)
            stats = torch.stack([method.support_statistic(f[None], m) for f, m in zip(features, episode.support_masks)])
            query = method.encode_each(episode.query_images)
            via_stats = method.predict_from_statistics([episode], stats[None], query[None])[0]
        assert torch.allclose(direct, via_stats, atol=1e-5), name
        checked += 1
    assert checked >= 3  # panet, panet-noalign, panet-init
