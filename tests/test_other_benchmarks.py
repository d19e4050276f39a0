"""COCO-20i and FSS-1000: fold splits by hand, readers on their stand-ins (and on hand-made bad
files), prepare-coco on a tiny instances file, valid episode lists, and run + table end to end."""

import json
import pickle

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from fsseg_bench.cli import main
from fsseg_bench.data.coco import hsnet_fold_lists, locate_coco, read_class_lists
from fsseg_bench.data.fss import locate_fss
from fsseg_bench.data.source import class_index, dataset_for, episode_list_for
from fsseg_bench.data.standins import CocoStandIn, FssStandIn, write_coco_standin, write_fss_standin
from fsseg_bench.datasets import coco_dataset
from fsseg_bench.errors import InputError
from fsseg_bench.protocol import load_protocol

SMALL_COCO = CocoStandIn(n_train=120, n_val=480, min_side=64, max_side=80)
SMALL_FSS = FssStandIn(classes=12, val_classes=2, test_classes=3, side=64)


@pytest.fixture(scope="module")
def coco_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("coco")
    write_coco_standin(root, SMALL_COCO)
    return root


@pytest.fixture(scope="module")
def fss_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("fss")
    write_fss_standin(root, SMALL_FSS)
    return root


def test_interleaved_and_contiguous_folds_by_hand():
    interleaved, contiguous = coco_dataset("interleaved"), coco_dataset("contiguous")
    assert interleaved.fold_test_classes(0) == [1, 5, 9, 13, 17, 21, 25, 29, 33, 37, 41, 45, 49, 53, 57, 61, 65, 69, 73, 77]
    assert interleaved.fold_test_classes(3) == list(range(4, 81, 4))
    assert contiguous.fold_test_classes(1) == list(range(21, 41))
    for dataset in (interleaved, contiguous):
        folds = [set(dataset.fold_test_classes(f)) for f in range(4)]
        assert set().union(*folds) == set(range(1, 81)) and sum(map(len, folds)) == 80
        assert set(dataset.fold_train_classes(2)) == set(range(1, 81)) - folds[2]
    assert interleaved.class_name(1) == "person" and interleaved.class_name(80) == "toothbrush"
    with pytest.raises(ValueError, match="split_scheme"):
        coco_dataset("random")


def test_coco_reader_on_its_stand_in(coco_root):
    tree = locate_coco(coco_root)
    assert tree == locate_coco(coco_root / "COCO2014")
    ids = tree.split_ids("val2014")
    assert len(ids) == 480 and ids[0] == "COCO_val2014_000000000120"
    assert tree.image_path(ids[0]) == coco_root / "COCO2014" / "val2014" / f"{ids[0]}.jpg"
    assert tree.mask_path(ids[0]) == coco_root / "COCO2014" / "annotations" / "val2014" / f"{ids[0]}.png"
    values = set(np.unique(np.concatenate([tree.read_label(i).ravel() for i in ids[:40]])))
    assert values <= set(range(81)) | {255} and max(values - {255}) > 20  # COCO's class ids, beyond VOC's 20
    with pytest.raises(InputError, match="no image folder for split 'test2014'"):
        tree.split_ids("test2014")


def test_coco_masks_grayscale_palette_and_bad_values(tmp_path):
    root = tmp_path / "COCO2014"
    for sub in ("val2014", "annotations/val2014"):
        (root / sub).mkdir(parents=True)
    label = np.zeros((6, 7), dtype=np.uint8)
    label[1:3, 2:5] = 80
    label[4, :] = 255
    Image.fromarray(np.zeros((6, 7, 3), np.uint8)).save(root / "val2014" / "COCO_val2014_000000000001.jpg")
    Image.fromarray(label, mode="L").save(root / "annotations" / "val2014" / "COCO_val2014_000000000001.png")
    tree = locate_coco(tmp_path)
    assert np.array_equal(tree.read_label("COCO_val2014_000000000001"), label)  # grayscale read as is
    label[0, 0] = 81
    Image.fromarray(label, mode="L").save(root / "annotations" / "val2014" / "COCO_val2014_000000000001.png")
    with pytest.raises(InputError, match=r"COCO_val2014_000000000001\.png: mask value 81 outside 0\.\.80 and 255"):
        tree.read_label("COCO_val2014_000000000001")
    Image.fromarray(np.zeros((6, 7, 3), np.uint8)).save(root / "val2014" / "COCO_val2014_000000000002.jpg")
    with pytest.raises(InputError, match=r"COCO_val2014_000000000002\.png: mask not found"):
        tree.read_label("COCO_val2014_000000000002")
    with pytest.raises(InputError, match="no annotations/"):
        locate_coco(root / "val2014")


def test_hsnet_class_lists_are_read_without_running_code(tmp_path):
    folder = tmp_path / "splits" / "coco" / "val"
    folder.mkdir(parents=True)
    with open(folder / "fold0.pkl", "wb") as handle:
        pickle.dump({0: ["COCO_val2014_000000000001.jpg"], 4: ["COCO_val2014_000000000002.jpg"]}, handle)
    assert read_class_lists(folder / "fold0.pkl") == {1: ["COCO_val2014_000000000001"], 5: ["COCO_val2014_000000000002"]}
    assert hsnet_fold_lists(tmp_path / "COCO2014", "val2014") == {"COCO_val2014_000000000001", "COCO_val2014_000000000002"}
    with open(folder / "fold1.pkl", "wb") as handle:
        pickle.dump({0: [pd.Timestamp(0)]}, handle)  # a class reference: refused, not imported
    with pytest.raises(InputError, match=r"fold1\.pkl: pickle refers to .*only dicts, lists"):
        read_class_lists(folder / "fold1.pkl")


def test_prepare_coco_writes_the_hand_computed_mask(tmp_path):
    pytest.importorskip("pycocotools")
    (tmp_path / "annotations").mkdir()
    # COCO's category ids have gaps (1..90); class ids are their ranks: id 3 -> class 3, id 90 -> 80.
    categories = [{"id": i, "name": f"c{i}"} for i in range(1, 91) if i not in {12, 26, 29, 30, 45, 66, 68, 69, 71, 83}]
    image = {"id": 7, "file_name": "COCO_val2014_000000000007.jpg", "height": 5, "width": 6}
    annotations = [
        # A large rectangle (class 3) and a small one on it (class 80): pixel centres (x+.5, y+.5) inside.
        {"id": 1, "image_id": 7, "category_id": 3, "iscrowd": 0, "area": 24.0,
         "segmentation": [[0, 0, 6, 0, 6, 4, 0, 4]]},
        {"id": 2, "image_id": 7, "category_id": 90, "iscrowd": 0, "area": 6.0,
         "segmentation": [[1, 1, 4, 1, 4, 3, 1, 3]]},
        # A crowd region (uncompressed RLE, column-major): the last row, void where unclaimed.
        {"id": 3, "image_id": 7, "category_id": 3, "iscrowd": 1, "area": 6.0,
         "segmentation": {"size": [5, 6], "counts": [4, 1, 4, 1, 4, 1, 4, 1, 4, 1, 4, 1]}},
    ]
    (tmp_path / "annotations" / "instances_val2014.json").write_text(
        json.dumps({"images": [image], "annotations": annotations, "categories": categories}))
    assert main(["prepare-coco", "--coco", str(tmp_path)]) == 0
    mask = np.array(Image.open(tmp_path / "annotations" / "val2014" / "COCO_val2014_000000000007.png"))
    expected = np.full((5, 6), 3, dtype=np.uint8)
    expected[1:3, 1:4] = 80   # the smaller instance on top
    expected[4, :] = 255      # crowd, unclaimed
    assert np.array_equal(mask, expected)


def test_fss_reader_on_its_stand_in(fss_root):
    tree = locate_fss(fss_root)
    assert tree.num_classes == 12
    test_classes = tree.split_classes("test")
    assert len(test_classes) == 3 and len(tree.split_classes("trn")) == 7
    ids = tree.split_ids("test")
    assert len(ids) == 30 and ids[:2] == [f"{test_classes[0]}/1", f"{test_classes[0]}/2"] and ids[9] == f"{test_classes[0]}/10"
    label = tree.read_label(ids[0])
    assert set(np.unique(label)) <= {0, 1} and label.any()
    class_id = tree.class_names.index(test_classes[0]) + 1
    assert tree.class_pixels(ids[0], label) == {class_id: int(label.sum())}
    assert tree.label_value(class_id) == 1


def test_fss_missing_files_give_one_line_errors(tmp_path):
    write_fss_standin(tmp_path, SMALL_FSS)
    tree = locate_fss(tmp_path)
    name = tree.split_classes("test")[0]
    (tmp_path / "FSS-1000" / name / "3.png").unlink()
    with pytest.raises(InputError, match=rf"{name}/3\.png: mask not found"):
        tree.read_label(f"{name}/3")
    (tmp_path / "splits" / "fss" / "test.txt").write_text("no_such_class\n")
    with pytest.raises(InputError, match="class folder of 'no_such_class'"):
        locate_fss(tmp_path).split_ids("test")


@pytest.mark.parametrize("protocol_name,root_fixture,folds", [
    ("coco20i-hsnet", "coco_root", (0, 3)), ("coco20i-panet", "coco_root", (0, 3)),
    ("fss1000-hsnet", "fss_root", (0,))])
def test_episode_lists_are_valid_for_each_dataset(request, tmp_path, protocol_name, root_fixture, folds):
    from fsseg_bench.data.source import resolve_tree

    protocol = load_protocol(protocol_name)
    tree = resolve_tree(protocol, request.getfixturevalue(root_fixture), tmp_path)
    dataset = dataset_for(protocol, tree)
    index = class_index(tree, protocol.split, tmp_path)
    for fold in folds:
        episodes = episode_list_for(protocol, tree, fold, 2, protocol.seeds[0], tmp_path).episodes
        assert len(episodes) == protocol.episodes
        # Every test class of the fold is drawn (20 for COCO-20i; FSS-1000: the test split's).
        assert {spec.class_id for spec in episodes} == set(dataset.fold_test_classes(fold))
        for spec in episodes[:300]:
            images = (*spec.query, *spec.support)
            assert spec.query[0] not in spec.support
            if not protocol.query_sampling.endswith("-original"):  # HSNet's own draws can repeat a support
                assert len(set(images)) == 3
            assert all(spec.class_id in index.pixels[i] for i in images)


def _run_and_table(protocol, root, results, capsys, methods=("knn", "all-foreground")):
    assert main(["run", "--protocol", protocol, "--data-root", str(root), "--results", str(results),
                 "--method", *methods, "--fold", "0", "--shot", "1", "--limit", "12", "--workers", "1",
                 "--option", "backbone=smallcnn", "--quiet"]) == 0
    capsys.readouterr()
    assert main(["table", "--results", str(results), "--format", "csv", "--resamples", "100"]) == 0
    return pd.read_csv(__import__("io").StringIO(capsys.readouterr().out), dtype={"fold": str})


def test_run_and_table_on_the_coco_stand_in(coco_root, tmp_path, capsys):
    table = _run_and_table("coco20i-hsnet", coco_root, tmp_path, capsys)
    miou = table[(table.metric == "miou") & (table.fold == "0")].groupby("method")["value"].first()
    assert set(miou.index) == {"knn", "all-foreground"} and (miou > 0).all()
    run = json.loads(next((tmp_path / "runs" / "coco20i-hsnet" / "knn").glob("*/run.json")).read_text())
    assert run["data_split"] == "val2014" and run["n_episodes"] == 12


def test_run_and_table_on_the_fss_stand_in(fss_root, tmp_path, capsys):
    table = _run_and_table("fss1000-hsnet", fss_root, tmp_path, capsys)
    miou = table[(table.metric == "miou") & (table.fold == "0")].groupby("method")["value"].first()
    assert set(miou.index) == {"knn", "all-foreground"} and (miou > 0).all()
    records = [json.loads(line) for line in next((tmp_path / "runs" / "fss1000-hsnet" / "knn").glob("*/records.jsonl"))
               .read_text().splitlines()]
    # HSNet's FSS-1000 episodes: each test image the query once, classes sorted, file names sorted as strings.
    tree = locate_fss(fss_root)
    first, second = sorted(tree.split_classes("test"))[:2]
    order = ["1", "10", "2", "3", "4", "5", "6", "7", "8", "9"]
    assert [r["query"][0] for r in records] == [f"{first}/{k}" for k in order] + [f"{second}/1", f"{second}/10"]
    assert all(s.split("/")[0] == r["query"][0].split("/")[0] and s != r["query"][0] for r in records for s in r["support"])
    # Class names come from the data; the qualitative figure reads the FSS layout's binary masks.
    from fsseg_bench.api import class_names_of, load_results

    names = class_names_of(load_results(tmp_path, "fss1000-hsnet"))
    assert names[records[0]["class_id"]] == first
    assert main(["plot", "qualitative", "--results", str(tmp_path), "--out", str(tmp_path / "figures")]) == 0
    assert (tmp_path / "figures" / "qualitative-1shot.png").is_file()


def test_synth_writes_each_layout(tmp_path, capsys):
    assert main(["synth", "--layout", "fss1000", "--root", str(tmp_path / "fss")]) == 0
    assert (tmp_path / "fss" / "splits" / "fss" / "test.txt").is_file()
    assert main(["synth", "--layout", "coco", "--root", str(tmp_path / "coco"), "--images", "20"]) == 0
    assert len(list((tmp_path / "coco" / "COCO2014" / "val2014").glob("*.jpg"))) == 20


def test_hsnet_coco_episodes_repeat_hsnets_draws(coco_root, tmp_path):
    """An independent re-statement of HSNet's data/coco.py draws (numpy's global legacy generator,
    np.random.choice over the class ids, then over the class's list in file order) against the
    sampler reading the same lists from a pickle in HSNet's format."""
    from fsseg_bench.data.source import resolve_tree

    protocol = load_protocol("coco20i-hsnet")
    tree = resolve_tree(protocol, coco_root, tmp_path)
    index = class_index(tree, protocol.split, tmp_path)
    shuffle = np.random.default_rng(1)
    lists = {}
    for class_id in range(1, 81):
        names = [f"val2014/{i}.jpg" for i in index.images_with(class_id)]
        lists[class_id - 1] = [names[j] for j in shuffle.permutation(len(names))]
    folder = tmp_path / "hsnet_lists"
    folder.mkdir()
    with open(folder / "fold2.pkl", "wb") as handle:
        pickle.dump(lists, handle)
    resolved = episode_list_for(protocol, tree, 2, 5, 0, tmp_path, original_lists=folder)
    assert resolved.source["derived"] is False and resolved.note is None
    np.random.seed(0)
    class_ids = [2 + 4 * v for v in range(20)]  # 0-based, as HSNet builds them
    for episode in resolved.episodes[:100]:
        class_sample = np.random.choice(class_ids, 1, replace=False)[0]
        query = np.random.choice(lists[class_sample], 1, replace=False)[0]
        supports = []
        while True:
            support = np.random.choice(lists[class_sample], 1, replace=False)[0]
            if support != query:
                supports.append(support)
            if len(supports) == 5:
                break
        stem = lambda name: name.split("/")[1][:-4]  # noqa: E731
        assert (episode.class_id, episode.query, episode.support) == (
            class_sample + 1, (stem(query),), tuple(stem(s) for s in supports))
    derived = episode_list_for(protocol, tree, 2, 1, 0, tmp_path / "derived")
    assert derived.source["derived"] is True and "NOT HSNet's episodes" in derived.note


def test_hsnet_fss_supports_repeat_hsnets_draws(fss_root, tmp_path):
    """HSNet's data/fss.py re-stated: np.random.seed(0), then per episode choice(range(1, 11)) until
    `shot` supports differ from the query (they may repeat)."""
    from fsseg_bench.data.source import resolve_tree

    protocol = load_protocol("fss1000-hsnet")
    tree = resolve_tree(protocol, fss_root, tmp_path)
    episodes = episode_list_for(protocol, tree, 0, 5, 0, tmp_path).episodes
    np.random.seed(0)
    for episode in episodes[:30]:
        folder, query = episode.query[0].split("/")
        supports = []
        while True:
            support = str(np.random.choice(range(1, 11), 1, replace=False)[0])
            if support != query:
                supports.append(f"{folder}/{support}")
            if len(supports) == 5:
                break
        assert episode.support == tuple(supports)
    assert any(len(set(e.support)) < 5 for e in episodes)  # repeats, as in HSNet's evaluation
