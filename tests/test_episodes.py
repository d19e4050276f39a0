"""Episode sampling modes on a hand-checkable tree, determinism, files and pins."""

from collections import Counter

import pytest

from fsseg_bench.data.voc import load_class_index, locate_voc
from fsseg_bench.episodes import (EpisodeSpec, check_pin, read_episode_list, sample_episodes,
                                  write_episode_list)
from fsseg_bench.errors import InputError
from fsseg_bench.protocol import load_protocol


@pytest.fixture
def index(tiny_voc, tmp_path):
    return load_class_index(locate_voc(tiny_voc), "val", tmp_path / "cache")


def _check_supports(episodes, index, shot, min_pixels=1):
    for e in episodes:
        assert len(e.query) == 1 and len(e.support) == shot
        assert len(set(e.support)) == shot, "supports are distinct"
        assert e.query[0] not in e.support, "the query is never a support"
        for image_id in e.support + e.query:
            assert index.pixels[image_id].get(e.class_id, 0) >= min_pixels


def test_cycle_pairs_walks_image_class_pairs_in_list_order(index):
    episodes = sample_episodes(index, fold=0, shot=1, seed=0, n_episodes=13, query_sampling="cycle-pairs")
    # Pairs by hand: (image, class) in list order, classes ascending within an image.
    pairs = [("img_a", 1), ("img_a", 2), ("img_b", 1), ("img_c", 3), ("img_d", 2), ("img_e", 1),
             ("img_e", 3), ("img_f", 4), ("img_f", 5), ("img_g", 4), ("img_h", 5)]
    assert [(e.query[0], e.class_id) for e in episodes] == pairs + pairs[:2]
    _check_supports(episodes, index, 1)
    # The only other image of class 2 beside img_a is img_d, so the support is forced.
    assert episodes[1].support == ("img_d",) and episodes[4].support == ("img_a",)


def test_cycle_pairs_respects_min_fg_pixels(index):
    episodes = sample_episodes(index, 0, 1, 0, 10, "cycle-pairs", min_fg_pixels=20)
    # img_e's class 1 has 9 px, so (img_e, 1) drops out and class 1 supports never use img_e.
    assert ("img_e", 1) not in [(e.query[0], e.class_id) for e in episodes]
    assert len({(e.query[0], e.class_id) for e in episodes}) == 10
    _check_supports(episodes, index, 1, min_pixels=20)


def test_walk_images_visits_eligible_images_in_order(index):
    episodes = sample_episodes(index, 0, 1, 0, 10, "walk-images")
    eligible = ["img_a", "img_b", "img_c", "img_d", "img_e", "img_f", "img_g", "img_h"]  # img_i: class 7 only
    assert [e.query[0] for e in episodes] == eligible + eligible[:2]
    present = {"img_a": {1, 2}, "img_b": {1}, "img_c": {3}, "img_d": {2}, "img_e": {1, 3},
               "img_f": {4, 5}, "img_g": {4}, "img_h": {5}}
    assert all(e.class_id in present[e.query[0]] for e in episodes)
    _check_supports(episodes, index, 1)


def test_class_uniform_draws_classes_uniformly_with_valid_supports(index):
    episodes = sample_episodes(index, 0, 1, 7, 2000, "class-uniform")
    counts = Counter(e.class_id for e in episodes)
    assert set(counts) == {1, 2, 3, 4, 5}
    assert all(340 <= n <= 460 for n in counts.values()), counts  # 400 expected, sd ~18
    _check_supports(episodes, index, 1)
    # Class 1 has three images; each appears as query in about a third of its episodes.
    queries = Counter(e.query[0] for e in episodes if e.class_id == 1)
    assert set(queries) == {"img_a", "img_b", "img_e"}


def test_class_with_too_few_images_is_an_error(index):
    with pytest.raises(InputError, match=r"class 2 \(bicycle\): 2 images .* expected at least shots \+ 1 = 3"):
        sample_episodes(index, 0, 2, 0, 5, "class-uniform")


def test_same_inputs_same_bytes_and_seed_changes_them(index, tmp_path):
    a = write_episode_list(tmp_path / "a.jsonl", sample_episodes(index, 0, 1, 3, 50, "class-uniform"))
    b = write_episode_list(tmp_path / "b.jsonl", sample_episodes(index, 0, 1, 3, 50, "class-uniform"))
    c = write_episode_list(tmp_path / "c.jsonl", sample_episodes(index, 0, 1, 4, 50, "class-uniform"))
    assert a == b != c
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()
    episodes, sha = read_episode_list(tmp_path / "a.jsonl")
    assert sha == a and episodes == sample_episodes(index, 0, 1, 3, 50, "class-uniform")


def test_jsonl_line_format(tmp_path):
    write_episode_list(tmp_path / "e.jsonl", [EpisodeSpec(0, 3, ("q",), ("s1", "s2"))])
    assert (tmp_path / "e.jsonl").read_text() == '{"index":0,"class_id":3,"query":["q"],"support":["s1","s2"]}\n'


def test_pin_mismatch_is_an_error():
    protocol = load_protocol("synthetic5i")
    key_sha = protocol.pinned_sha256(0, 1, 1234)
    assert key_sha is not None
    check_pin(protocol, 0, 1, 1234, key_sha, "x")
    with pytest.raises(InputError, match="differs from the sha256 pinned by protocol 'synthetic5i' for fold0-shot1-seed1234"):
        check_pin(protocol, 0, 1, 1234, "0" * 64, "x.jsonl")
