"""Issue 10: each codebase's episodes, preprocessing and scoring, exactly.

The expected episodes here are derived independently of the samplers: from the generators' raw
draws (`getrandbits` for Python's `random`, `permutation` for numpy's legacy RandomState), stepped
by hand in the order each original test loop makes its calls.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from fsseg_bench import stats
from fsseg_bench.data.source import episode_list_for
from fsseg_bench.data.voc import load_class_index, locate_voc
from fsseg_bench.episode_import import import_episodes
from fsseg_bench.episodes import sample_episodes
from fsseg_bench.errors import InputError
from fsseg_bench.preprocess import pfenet_content_size, resize_image, resize_label
from fsseg_bench.protocol import load_protocol, parse_protocol
from fsseg_bench.resample import cv2_bilinear, cv2_nearest, pil_nearest, torch_nearest
from fsseg_bench.scoring import scoring_label, scoring_prediction
from fsseg_bench.preprocess import PreparedLabel

from helpers import block_mask, write_voc_tree

# --- a hand-checkable tree: twelve 20x24 images of fold 0 (classes 1..5) ------------------------

ORIGINAL_MASKS = {
    "img00": {1: (2, 8, 2, 9), 4: (12, 18, 12, 20)},
    "img01": {1: (3, 9, 3, 11), 5: (12, 17, 12, 18)},
    "img02": {1: (2, 10, 2, 12), 3: (15, 16, 15, 17)},   # class 3: 2 px only
    "img03": {1: (4, 12, 4, 14)},
    "img04": {1: (1, 6, 1, 8)},
    "img05": {2: (2, 9, 2, 10)},
    "img06": {2: (3, 12, 3, 15)},
    "img07": {2: (5, 14, 5, 16)},
    "img08": {3: (2, 10, 2, 12)},
    "img09": {3: (4, 12, 2, 14), 5: (14, 18, 14, 22)},
    "img10": {4: (2, 9, 2, 10)},
    "img11": {4: (3, 10, 3, 11), 5: (12, 18, 12, 20)},
}


@pytest.fixture
def original_tree(tmp_path):
    masks = {image_id: block_mask(20, 24, blocks) for image_id, blocks in ORIGINAL_MASKS.items()}
    ids = list(masks)
    write_voc_tree(tmp_path / "data", masks, {"val": ids, "trainaug": ids, "train": ids})
    return tmp_path / "data"


@pytest.fixture
def index(original_tree, tmp_path):
    return load_class_index(locate_voc(original_tree), "val", tmp_path / "cache")


def _randbelow(rng: random.Random, n: int) -> int:
    bits = n.bit_length()
    value = rng.getrandbits(bits)
    while value >= n:
        value = rng.getrandbits(bits)
    return value


def _sample_positions(rng: random.Random, n: int, k: int) -> list[int]:
    """CPython's `sample(range(n), k)` for small n: a partial Fisher-Yates over a pool."""
    pool, picked = list(range(n)), []
    for i in range(k):
        j = _randbelow(rng, n - i)
        picked.append(pool[j])
        pool[j] = pool[n - i - 1]
    return picked


# --- PANet -------------------------------------------------------------------------------------

PANET_LISTS = {1: ["img03", "img00", "img04", "img02", "img01"], 2: ["img07", "img05", "img06"],
               3: ["img09", "img02", "img08"], 4: ["img11", "img10", "img00"], 5: ["img09", "img01", "img11"]}


def _write_panet_lists(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for class_id, ids in PANET_LISTS.items():
        (folder / f"class{class_id}.txt").write_text("".join(f"{i}\n" for i in ids))


def _panet_by_hand(seed: int, shot: int, n: int) -> list[tuple]:
    rng = random.Random(seed)
    rng.random()  # choices(range(1), k=1): one random() call
    episodes = []
    for _ in range(n):
        class_id = [1, 2, 3, 4, 5][_sample_positions(rng, 5, 1)[0]]
        pool = PANET_LISTS[class_id]
        picked = _sample_positions(rng, len(pool), shot + 1)
        episodes.append((class_id, pool[picked[-1]], tuple(pool[j] for j in picked[:-1])))
    return episodes


def test_panet_original_repeats_panets_random_calls_on_its_class_lists(original_tree, index):
    tree = locate_voc(original_tree)
    _write_panet_lists(tree.root / "ImageSets" / "Segmentation" / "val")  # where PANet's script writes them
    for seed, shot in ((1234, 1), (1237, 2)):
        got = sample_episodes(index, 0, shot, seed, 40, "panet-original", tree=tree)
        assert [(e.class_id, e.query[0], e.support) for e in got] == _panet_by_hand(seed, shot, 40)
    # The same seed for every fold and shot: the first class draw does not depend on the shot.
    one, two = (sample_episodes(index, 0, k, 1234, 5, "panet-original", tree=tree) for k in (1, 2))
    assert one[0].class_id == two[0].class_id


def test_panet_original_without_class_lists_says_its_episodes_are_not_panets(index, original_tree):
    from fsseg_bench.episodes import draw_episodes

    drawn = draw_episodes(index, 0, 1, 1234, 30, "panet-original", tree=locate_voc(original_tree))
    assert drawn.source["derived"] is True and "NOT PANet's episodes" in drawn.note
    # Pools in split order, any pixel: class 3 holds img02 (2 px), img08, img09.
    assert {e.query[0] for e in drawn.episodes if e.class_id == 3} <= {"img02", "img08", "img09"}


# --- HSNet -------------------------------------------------------------------------------------

HSNET_PAIRS = [("img00", 1), ("img00", 4), ("img01", 1), ("img01", 5), ("img02", 1), ("img03", 1), ("img04", 1),
               ("img05", 2), ("img06", 2), ("img07", 2), ("img08", 3), ("img09", 3), ("img09", 5),
               ("img10", 4), ("img11", 4), ("img11", 5)]


def _write_pairs(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "fold0.txt").write_text("".join(f"{i}__{c:02d}\n" for i, c in HSNET_PAIRS))
    return folder


def _hsnet_by_hand(shot: int, n: int) -> list[tuple]:
    state = np.random.RandomState(0)
    pools: dict[int, list[str]] = {}
    for image_id, class_id in HSNET_PAIRS:
        pools.setdefault(class_id, []).append(image_id)
    episodes = []
    for i in range(n):
        query, class_id = HSNET_PAIRS[i % len(HSNET_PAIRS)]
        supports = []
        while len(supports) < shot:
            drawn = pools[class_id][state.permutation(len(pools[class_id]))[0]]  # choice(.., 1, replace=False)
            if drawn != query:
                supports.append(drawn)
        episodes.append((class_id, query, tuple(supports)))
    return episodes


def test_hsnet_original_follows_its_pair_files_and_keeps_repeated_supports(index, tmp_path):
    pairs = _write_pairs(tmp_path / "hsnet" / "data" / "splits" / "pascal" / "val")
    for shot in (1, 5):
        got = sample_episodes(index, 0, shot, 0, 50, "hsnet-original", original_lists=pairs)
        assert [(e.class_id, e.query[0], e.support) for e in got] == _hsnet_by_hand(shot, 50)
    five = sample_episodes(index, 0, 5, 0, 50, "hsnet-original", original_lists=tmp_path / "hsnet")  # repo root works
    assert sum(len(set(e.support)) < 5 for e in five) > 0, "HSNet's 5-shot supports can repeat"
    assert all(e.query[0] not in e.support for e in five)


def test_hsnet_original_derives_sorted_pairs_without_files_and_says_so(index):
    from fsseg_bench.episodes import draw_episodes

    drawn = draw_episodes(index, 0, 1, 0, 17, "hsnet-original")
    assert drawn.note and "NOT HSNet's episodes" in drawn.note
    # Derived pairs: every (image, fold class present) sorted, so img02's 2-px class 3 is a pair too.
    assert [(e.query[0], e.class_id) for e in drawn.episodes][:6] == [
        ("img00", 1), ("img00", 4), ("img01", 1), ("img01", 5), ("img02", 1), ("img02", 3)]


def test_hsnet_pair_file_errors_name_the_line(index, tmp_path):
    folder = tmp_path / "pairs"
    folder.mkdir()
    (folder / "fold0.txt").write_text("img00__01\nimg05__07\n")
    with pytest.raises(InputError, match=r"fold0.txt:2: class 7 is not a test class of fold 0"):
        sample_episodes(index, 0, 1, 0, 5, "hsnet-original", original_lists=folder)
    (folder / "fold0.txt").write_text("img00__01\nnope__02\n")
    with pytest.raises(InputError, match=r"entry 2 names image id 'nope', which is not in split 'val'"):
        sample_episodes(index, 0, 1, 0, 5, "hsnet-original", original_lists=folder)
    (folder / "fold0.txt").write_text("img03__01\n")  # the class's only image is the query: HSNet would hang
    with pytest.raises(InputError, match=r"only image of its pool is the query 'img03'"):
        sample_episodes(index, 0, 1, 0, 5, "hsnet-original", original_lists=folder)


# --- PFENet ------------------------------------------------------------------------------------

def _pfenet_by_hand(pixels: dict, walk: list[str], shot: int, n: int, threshold: int) -> list[tuple]:
    classes = [1, 2, 3, 4, 5]
    pools = {c: [i for i in walk if pixels[i].get(c, 0) >= threshold] for c in classes}
    items = [i for i in walk if any(pixels[i].get(c, 0) >= threshold for c in classes)]
    torch.manual_seed(321)
    episodes = []
    for _ in range(20):
        if len(episodes) >= n:
            break
        base = int(torch.empty((), dtype=torch.int64).random_().item())
        workers = [random.Random(base + k) for k in range(8)]
        for position, query in enumerate(items):
            if len(episodes) == n:
                break
            rng = workers[position % 8]
            present = [c for c in classes if pixels[query].get(c, 0) > 0]
            class_id = present[_randbelow(rng, len(present))]
            pool, chosen = pools[class_id], []
            for _ in range(shot):
                _randbelow(rng, len(pool))  # the discarded first draw
                while True:
                    position_in_pool = _randbelow(rng, len(pool))
                    if pool[position_in_pool] != query and position_in_pool not in chosen:
                        break
                chosen.append(position_in_pool)
            episodes.append((class_id, query, tuple(pool[p] for p in chosen)))
    return episodes


def test_pfenet_original_deals_items_to_eight_seeded_workers(index):
    walk = list(index.ids)
    for shot in (1,):  # (class 3 has two images of >= 20 px: no two distinct supports beside a query)
        got = sample_episodes(index, 0, shot, 321, 200, "pfenet-original", min_fg_pixels=20)
        assert [(e.class_id, e.query[0], e.support) for e in got] == _pfenet_by_hand(index.pixels, walk, shot, 200, 20)
        assert all(len(set(e.support)) == shot and e.query[0] not in e.support for e in got)


def test_pfenet_draws_the_class_among_all_present_and_stops_after_twenty_passes(index):
    from fsseg_bench.episodes import draw_episodes

    drawn = draw_episodes(index, 0, 1, 321, 5001, "pfenet-original", min_fg_pixels=20)
    # 12 images hold a fold class with >= 20 px; PFENet's loop makes at most 20 passes.
    assert len(drawn.episodes) == 240 and "20 passes" in drawn.note
    # img02 holds class 1 (80 px) and class 3 (2 px): class 3 is drawn for it too, supports from
    # class 3's >= 20 px pool.
    classes_of_img02 = Counter(e.class_id for e in drawn.episodes if e.query[0] == "img02")
    assert set(classes_of_img02) == {1, 3} and min(classes_of_img02.values()) >= 4
    assert all(set(e.support) <= {"img08", "img09"} for e in drawn.episodes if e.class_id == 3)


@pytest.fixture(scope="module")
def pfenet_tree(tmp_path_factory):
    """260 64x64 images whose objects pass PFENet's 2048-px filter (and one 30-px object that does
    not): 5001 episodes need more than 250 images within PFENet's 20 passes."""
    root = tmp_path_factory.mktemp("pfenet")
    masks = {}
    for k in range(260):
        class_id = 1 + k % 5
        blocks = {class_id: (4, 54, 4, 54)}
        if class_id == 1:
            blocks[2] = (58, 63, 56, 62)  # 30 px of class 2 beside the 2500 px of class 1
        masks[f"v{k:03d}"] = block_mask(64, 64, blocks, border=False)
    write_voc_tree(root, masks, {"val": list(masks), "trainaug": list(masks)})
    return root


def test_pascal5i_pfenet_scores_5001_episodes(pfenet_tree, tmp_path):
    protocol = load_protocol("pascal5i-pfenet")
    resolved = episode_list_for(protocol, locate_voc(pfenet_tree), 0, 1, 321, tmp_path / "results")
    assert protocol.episodes == 5001 and len(resolved.episodes) == 5001
    assert resolved.source["sampler"] == "pfenet-original" and resolved.source["derived"] is True
    # Images of class 1 (2500 px) also hold 30 px of class 2: for them class 2 is drawn about as
    # often as class 1 (its supports come from class 2's >= 2048 px pool).
    drawn = Counter(e.class_id for e in resolved.episodes if int(e.query[0][1:]) % 5 == 0)
    assert set(drawn) == {1, 2} and abs(drawn[1] - drawn[2]) < 0.1 * sum(drawn.values()), drawn
    assert all(int(s[1:]) % 5 == 1 for e in resolved.episodes if e.class_id == 2 for s in e.support)


# --- protocols, runs and custom lists ------------------------------------------------------------

def test_builtin_original_protocols_and_their_fsseg_variants():
    panet, hsnet, pfenet = (load_protocol(f"pascal5i-{n}") for n in ("panet", "hsnet", "pfenet"))
    assert (panet.query_sampling, panet.miou_metric, panet.seeds) == ("panet-original", "miou_panet_metric",
                                                                       (1234, 1235, 1236, 1237, 1238))
    assert (hsnet.query_sampling, hsnet.label_resize, hsnet.seeds) == ("hsnet-original", "torch-nearest", (0,))
    assert (pfenet.query_sampling, pfenet.resize, pfenet.image_resize, pfenet.label_resize, pfenet.image_padding,
            pfenet.score_at) == ("pfenet-original", "longer-side-pad-floor8", "cv2-bilinear", "cv2-nearest",
                                 "black", "original-square")
    for name, sampling in (("panet", "class-uniform"), ("hsnet", "cycle-pairs"), ("pfenet", "walk-images")):
        assert load_protocol(f"pascal5i-{name}-fsseg").query_sampling == sampling


def test_original_square_scoring_needs_a_padded_square_input():
    base = {"name": "x", "dataset": "pascal-voc", "split": "val", "train_split": "val", "folds": [0], "shots": [1],
            "episodes": 1, "seeds": [0], "query_sampling": "class-uniform", "image_size": [8, 8]}
    with pytest.raises(InputError, match="'original-square' only with a longer-side-pad resize"):
        parse_protocol({**base, "score_at": "original-square"}, "x.toml")
    assert parse_protocol({**base, "score_at": "original-square", "resize": "longer-side-pad-floor8"}).score_at


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "fsseg_bench", *map(str, args)], capture_output=True, text=True)


def test_pascal5i_hsnet_run_uses_hsnets_episodes_and_records_the_pair_file(original_tree, tmp_path):
    pairs = _write_pairs(tmp_path / "pairs")
    results = tmp_path / "results"
    result = _cli("run", "--protocol", "pascal5i-hsnet", "--data-root", original_tree, "--results", results,
                  "--method", "support-copy", "--fold", "0", "--shot", "5", "--limit", "20", "--quiet",
                  "--pairs-dir", pairs)
    assert result.returncode == 0, result.stderr
    (run_json,) = (results / "runs" / "pascal5i-hsnet" / "support-copy").glob("*/run.json")
    info = json.loads(run_json.read_text())
    assert info["episode_source"]["sampler"] == "hsnet-original" and info["episode_source"]["derived"] is False
    assert info["episode_source"]["lists"][0]["sha256"] == __import__("hashlib").sha256(
        (pairs / "fold0.txt").read_bytes()).hexdigest()
    records = [json.loads(line) for line in (run_json.parent / "records.jsonl").read_text().splitlines()]
    assert [(r["class_id"], r["query"][0], tuple(r["support"])) for r in records] == _hsnet_by_hand(5, 20)
    # The run points at an immutable copy of its list, named by its sha256.
    frozen = Path(info["episode_list_path"])
    assert frozen.name == info["episode_list_sha256"] + ".jsonl"
    assert __import__("hashlib").sha256(frozen.read_bytes()).hexdigest() == info["episode_list_sha256"]
    # Without the pair files the run warns once that the episodes are not HSNet's.
    result = _cli("run", "--protocol", "pascal5i-hsnet", "--data-root", original_tree, "--results", results,
                  "--method", "support-copy", "--fold", "0", "--shot", "1", "--limit", "3", "--quiet")
    assert result.returncode == 0 and result.stderr.count("NOT HSNet's episodes") == 1


def test_original_lists_refused_for_a_sampler_that_reads_none(original_tree, tmp_path):
    protocol = tmp_path / "own.toml"
    protocol.write_text('name = "own"\ndataset = "pascal-voc"\nsplit = "val"\ntrain_split = "val"\nfolds = [0]\n'
                        'shots = [1]\nepisodes = 4\nseeds = [0]\nquery_sampling = "class-uniform"\n'
                        'image_size = [16, 16]\nscore_at = "resized"\n')
    result = _cli("run", "--protocol", protocol, "--data-root", original_tree, "--results", tmp_path / "r",
                  "--method", "support-copy", "--original-lists", tmp_path)
    assert result.returncode == 2 and "reads no original lists" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_import_formats_give_the_same_pinned_list(tmp_path):
    episodes = [(1, "img00", ["img03"]), (3, "img08", ["img09"]), (5, "img01", ["img11"])]
    (tmp_path / "d.json").write_text(json.dumps({"episodes": [
        {"class_id": c - 1, "query_name": f"JPEGImages/{q}.jpg", "support_names": s} for c, q, s in episodes]}))
    (tmp_path / "d.tsv").write_text("class_id\tquery\tsupport\n" + "".join(
        f"{c}\t{q}\t{s[0]}.png\n" for c, q, s in episodes))
    from_json = import_episodes("json", tmp_path / "d.json", class_base=0)
    from_tsv = import_episodes("tsv", tmp_path / "d.tsv")
    assert from_json == from_tsv and [e.class_id for e in from_tsv] == [1, 3, 5]
    assert from_tsv[1].query == ("img08",) and from_tsv[2].support == ("img11",)
    (tmp_path / "bad.tsv").write_text("1\timg00\timg00\n")
    with pytest.raises(InputError, match="query 'img00' is also one of its supports"):
        import_episodes("tsv", tmp_path / "bad.tsv")
    (tmp_path / "bad.json").write_text(json.dumps([{"class": 21, "query": "a", "support": ["b"]}]))
    with pytest.raises(InputError, match=r"bad.json: episode 0: class 21 .* is not a class 1..20"):
        import_episodes("json", tmp_path / "bad.json")


def test_import_then_run_a_custom_list_marked_in_tables(original_tree, tmp_path):
    from fsseg_bench.results import load_results

    protocol = tmp_path / "own.toml"
    protocol.write_text('name = "own"\ndataset = "pascal-voc"\nsplit = "val"\ntrain_split = "val"\nfolds = [0]\n'
                        'shots = [1]\nepisodes = 4\nseeds = [0]\nquery_sampling = "class-uniform"\n'
                        'image_size = [16, 16]\nscore_at = "resized"\n')
    dump = tmp_path / "dump.tsv"
    dump.write_text("1\timg00\timg03\n2\timg05\timg06\n4\timg10\timg11\n")
    listed = tmp_path / "custom.jsonl"
    result = _cli("episodes", "--import", "tsv", dump, "--out", listed, "--protocol", protocol,
                  "--data-root", original_tree, "--results", tmp_path / "r", "--seed", "0")
    assert result.returncode == 0, result.stderr
    sha = __import__("hashlib").sha256(listed.read_bytes()).hexdigest()
    assert f'"fold0-shot1-seed0" = "{sha}"' in result.stdout
    results = tmp_path / "r"
    for extra in ([], ["--episode-list", listed]):
        result = _cli("run", "--protocol", protocol, "--data-root", original_tree, "--results", results,
                      "--method", "all-foreground", "--quiet", *extra)
        assert result.returncode == 0, result.stderr
    frame = load_results(results, "own")
    assert set(frame["method"]) == {"all-foreground", "all-foreground [custom episodes]"}
    custom = frame[frame["method"] == "all-foreground [custom episodes]"]
    assert list(custom["query"].map(tuple)) == [("img00",), ("img05",), ("img10",)]
    # A list whose shot does not fit is refused before any work.
    dump.write_text("1\timg00\timg03\timg04\n")
    assert _cli("episodes", "--import", "tsv", dump, "--out", listed).returncode == 0
    result = _cli("run", "--protocol", protocol, "--data-root", original_tree, "--results", results,
                  "--method", "all-foreground", "--episode-list", listed, "--shot", "1")
    assert result.returncode == 2 and "has 2 supports; expected --shot 1" in result.stderr


# --- preprocessing: resampling kernels and PFENet's geometry -------------------------------------

def test_nearest_kernels_on_hand_computed_cases():
    row = np.arange(4, dtype=np.uint8)[None, :].repeat(2, axis=0)
    # 4 -> 3: torch picks floor(i * 4/3) = 0, 1, 2; PIL floor((i + .5) * 4/3) = 0, 2, 3.
    assert torch_nearest(row, (2, 3))[0].tolist() == [0, 1, 2]
    assert pil_nearest(row, (2, 3))[0].tolist() == [0, 2, 3]
    five = np.arange(5, dtype=np.uint8)[None, :]
    # OpenCV: floor(i * (1 / (3/5))) = floor(0, 1.67, 3.33) = 0, 1, 3; upsampling 2 -> 5: 0,0,0,1,1.
    assert cv2_nearest(five, (1, 3))[0].tolist() == [0, 1, 3]
    assert cv2_nearest(np.array([[7, 9]], np.uint8), (1, 5))[0].tolist() == [7, 7, 7, 9, 9]


def test_cv2_bilinear_on_hand_computed_cases():
    row = np.array([[0, 10, 20, 30]], dtype=np.float32)
    # 4 -> 3: positions (i + .5) * 4/3 - .5 = 1/6, 3/2, 17/6 -> 10/6, 15, 170/6.
    np.testing.assert_allclose(cv2_bilinear(row[:, :, None].repeat(1, 0), (1, 3))[0, :, 0], [10 / 6, 15, 170 / 6],
                               rtol=1e-6)
    # 2 -> 4 (upsampling): positions -.25, .25, .75, 1.25; the borders take the edge pixel.
    np.testing.assert_allclose(cv2_bilinear(np.array([[0, 8]], np.float32), (1, 4))[0], [0, 2, 6, 8])
    # An exact 2x shrink is OpenCV's INTER_AREA: the mean of each 2x2 block.
    block = np.array([[0, 4, 8, 12], [2, 6, 10, 14]], np.float32)
    np.testing.assert_allclose(cv2_bilinear(block, (1, 2)), [[3, 11]])
    # Rows: y taps clamp the index and keep the weights, so the first row is row 0 exactly.
    column = np.array([[0], [8]], np.float32)
    np.testing.assert_allclose(cv2_bilinear(column, (4, 1))[:, 0], [0, 2, 6, 8])


def test_pfenet_geometry_by_hand():
    # 375x500: w 473 -> 472; h int(375 * 473/500) = int(354.75) = 354 -> 352.
    assert pfenet_content_size((375, 500), 473) == (352, 472)
    assert pfenet_content_size((500, 333), 473) == (472, 312)   # int(315.02) = 315 -> 312
    assert pfenet_content_size((200, 100), 473) == (472, 232)   # upscaled too: int(236.5) = 236 -> 232
    image = np.full((10, 20, 3), 200, np.uint8)
    resized, content = resize_image(image, (20, 20), "longer-side-pad-floor8", "cv2-bilinear")
    assert content == (8, 16) and resized.dtype == np.float32
    assert (resized[:8, :16] == 200).all() and (resized[8:] == 0).all() and (resized[:, 16:] == 0).all()
    label = np.zeros((10, 20), np.uint8)
    label[:, 10:] = 3
    padded, _ = resize_label(label, (20, 20), "longer-side-pad-floor8", "cv2-nearest")
    assert (padded[8:] == 255).all() and (padded[:8, 16:] == 255).all()
    assert padded[0, :16].tolist() == [0] * 8 + [3] * 8


def test_black_padding_is_zero_before_normalising():
    from fsseg_bench.preprocess import IMAGENET_MEAN, IMAGENET_STD, normalise

    image = np.zeros((4, 4, 3), np.float32)
    black = normalise(image, (2, 2), "black")
    mean = normalise(image, (2, 2), "mean")
    assert torch.allclose(black[:, 3, 3], torch.from_numpy(-IMAGENET_MEAN / IMAGENET_STD))
    assert (mean[:, 3, 3] == 0).all() and torch.equal(black[:, :2, :2], mean[:, :2, :2])


def test_original_square_scoring_by_hand():
    protocol = load_protocol("pascal5i-pfenet")
    original = np.array([[1, 1], [0, 255], [0, 1]], np.uint8)  # 3x2: longer side 3
    prepared = PreparedLabel(torch.zeros(4, 4, dtype=torch.uint8), original, (2, 2))
    label = scoring_label(prepared, 1, protocol)
    assert label.tolist() == [[1, 1, 255], [0, 255, 255], [0, 1, 255]]
    # Scores on a 2x2 input: foreground wins in the left column only; align_corners=True maps the
    # corners onto the corners, so the middle column of the 3x3 is the average (a tie -> background).
    scores = torch.tensor([[[0.0, 1.0], [0.0, 1.0]], [[1.0, 0.0], [1.0, 0.0]]])
    assert scoring_prediction(scores, prepared, protocol).tolist() == [[1, 0, 0]] * 3


# --- PANet's Metric ----------------------------------------------------------------------------

def _panet_metric_slow(episodes) -> float:
    """PANet's Metric.record / get_mIoU with pixel sets: per class, tp/fp/fn summed over the episodes
    whose label holds the class (others are NaN, skipped by nansum)."""
    sums: dict[int, list[int]] = {}
    for class_id, prediction, label in episodes:
        predicted = {tuple(p) for p in np.argwhere((prediction == 1) & (label != 255))}
        target = {tuple(p) for p in np.argwhere(label == 1)}
        if target:
            tp_fp_fn = sums.setdefault(class_id, [0, 0, 0])
            tp_fp_fn[0] += len(predicted & target)
            tp_fp_fn[1] += len(predicted - target)
            tp_fp_fn[2] += len(target - predicted)
    return float(np.mean([tp / (tp + fp + fn) for tp, fp, fn in sums.values()]))


def test_panet_metric_skips_queries_without_the_class_and_matches_a_slow_implementation():
    from fsseg_bench.metrics import COUNT_COLUMNS, episode_counts

    rng = np.random.default_rng(3)
    episodes = []
    for i in range(40):
        label = rng.choice([0, 1, 255], size=(6, 7), p=[0.5, 0.4, 0.1]).astype(np.uint8)
        if i % 5 == 0:
            label[label == 1] = 0  # a query without its class: PANet does not count it
        episodes.append((1 + i % 3, rng.integers(0, 2, size=(6, 7)), label))
    counts = episode_counts(np.stack([p for _, p, _ in episodes]), np.stack([l for _, _, l in episodes]))
    records = pd.DataFrame(counts, columns=COUNT_COLUMNS)
    records["class_id"] = [c for c, _, _ in episodes]
    records["seed"] = 0
    assert stats.observed(records, "miou_panet_metric") == pytest.approx(_panet_metric_slow(episodes), abs=1e-12)
    # Hand case: one class, two episodes: (tp 2, union 4) and a query without the class whose
    # 3 false positives count for the class-pooled mIoU only: 2/4 vs 2/7.
    hand = pd.DataFrame([[2, 4, 0, 0, 3, 3], [0, 3, 5, 8, 3, 0]], columns=COUNT_COLUMNS)
    hand["class_id"], hand["seed"] = 1, 0
    assert stats.observed(hand, "miou_panet_metric") == pytest.approx(0.5)
    assert stats.observed(hand, "miou") == pytest.approx(2 / 7)
