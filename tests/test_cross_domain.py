"""Issue 24: the dataset seam, PATNet's cross-domain layouts (readers, preparation, stand-ins), its
exact episodes, source-domain training on every class, and the cross-domain table."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from fsseg_bench.cli import main
from fsseg_bench.errors import InputError

PROTOCOLS = Path(__file__).resolve().parents[1] / "protocols"


def _mask(path: Path, values: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(values.astype(np.uint8), mode="L").save(path)


def _jpg(path: Path, side: int = 8) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((side, side, 3), 90, np.uint8)).save(path)


def test_every_dataset_is_a_registry_entry_and_every_builtin_protocol_names_one():
    from fsseg_bench.data.registry import dataset_entry, dataset_names, standin_layouts
    from fsseg_bench.protocol import list_protocols, load_protocol

    assert set(dataset_names()) >= {"pascal-voc", "synthetic5i", "coco", "fss1000", "deepglobe", "isic", "chestxray"}
    assert set(standin_layouts()) == {"voc", "coco", "fss1000", "deepglobe", "isic", "chestxray"}
    for name in list_protocols():
        assert load_protocol(name).dataset in dataset_names(), name
    assert dataset_entry("deepglobe").folds == 1 and dataset_entry("coco").folds == 4
    with pytest.raises(InputError, match="dataset 'imagenet': expected one of pascal-voc"):
        dataset_entry("imagenet")


def test_the_deepglobe_reader_on_a_hand_made_tree(tmp_path):
    from fsseg_bench.data.deepglobe import locate_deepglobe

    root = tmp_path / "Deepglobe"
    for c in range(1, 7):
        (root / str(c) / "test" / "origin").mkdir(parents=True)
        (root / str(c) / "test" / "groundtruth").mkdir(parents=True)
    # PATNet's listing: sorted, kept when the name's part after the first dot is "jpg".
    for name in ("b_sat_01.jpg", "a_sat_10.jpg"):
        _jpg(root / "2" / "test" / "origin" / name)
    for name in ("c.jpeg", "notes"):
        (root / "2" / "test" / "origin" / name).write_bytes(b"not listed")
    _mask(root / "2" / "test" / "groundtruth" / "a_sat_10.png", np.array([[127, 128], [255, 0]]))
    tree = locate_deepglobe(tmp_path)  # the parent of Deepglobe/ is accepted
    assert tree.class_pool(2) == ["2/a_sat_10", "2/b_sat_01"] and tree.class_pool(1) == []
    assert tree.split_ids("test") == ["2/a_sat_10", "2/b_sat_01"]
    label = tree.read_label("2/a_sat_10")
    np.testing.assert_array_equal(label, [[0, 1], [1, 0]])  # binarised at 128, as PATNet
    assert tree.class_pixels("2/a_sat_10", label) == {2: 2} and tree.label_value(2) == 1
    assert tree.image_path("2/a_sat_10") == root / "2" / "test" / "origin" / "a_sat_10.jpg"
    (root / "5" / "test" / "groundtruth").rmdir()
    with pytest.raises(InputError, match="no groundtruth/ folder beside origin/"):
        locate_deepglobe(root)
    with pytest.raises(InputError, match="expected PATNet's Deepglobe layout"):
        locate_deepglobe(tmp_path / "Deepglobe" / "1")


def test_the_isic_and_chest_readers_on_hand_made_trees(tmp_path):
    from fsseg_bench.data.chestxray import locate_chestxray
    from fsseg_bench.data.isic import INPUT_DIR, MASK_DIR, locate_isic

    isic = tmp_path / "ISIC"
    for c, stems in ((1, ["ISIC_0000003", "ISIC_0000001"]), (2, ["ISIC_0000002"]), (3, [])):
        (isic / INPUT_DIR / str(c)).mkdir(parents=True)
        for stem in stems:
            _jpg(isic / INPUT_DIR / str(c) / f"{stem}.jpg")
            _mask(isic / MASK_DIR / f"{stem}_segmentation.png", np.full((8, 8), 255))
    tree = locate_isic(tmp_path)
    assert tree.split_ids("test") == ["1/ISIC_0000001", "1/ISIC_0000003", "2/ISIC_0000002"]
    assert tree.mask_path("2/ISIC_0000002") == isic / MASK_DIR / "ISIC_0000002_segmentation.png"
    assert tree.class_pixels("2/ISIC_0000002", tree.read_label("2/ISIC_0000002")) == {2: 64}
    (isic / INPUT_DIR / "3").rmdir()
    with pytest.raises(InputError, match="no class folder 3/"):
        locate_isic(isic)

    chest = tmp_path / "LungSegmentation"
    for name in ("CHNCXR_0002_1", "CHNCXR_0001_0"):
        _mask(chest / "masks" / f"{name}_mask.png", np.eye(4) * 255)
        _mask(chest / "CXR_png" / f"{name}.png", np.full((4, 4), 100))
    tree = locate_chestxray(chest)
    assert tree.split_ids("test") == ["CHNCXR_0001_0", "CHNCXR_0002_1"]
    assert tree.image_path("CHNCXR_0001_0") == chest / "CXR_png" / "CHNCXR_0001_0.png"
    _mask(chest / "masks" / "MCUCXR_0001_0.png", np.eye(4) * 255)  # Montgomery's name, as downloaded
    with pytest.raises(InputError, match="MCUCXR_0001_0.png: mask name without '_mask'"):
        tree.split_ids("test")


def _patnet_draws(pool_paths: list[str], n_classes: int, pools: dict, shot: int, episodes: int):
    """PATNet's sample_episode re-stated with its own call, np.random.choice on the list of paths."""
    np.random.seed(0)
    out = []
    for idx in range(episodes):
        paths = pools[idx % n_classes]
        query = np.random.choice(paths, 1, replace=False)[0]
        supports = []
        while True:
            support = np.random.choice(paths, 1, replace=False)[0]
            if query != support:
                supports.append(support)
            if len(supports) == shot:
                break
        out.append((idx % n_classes, query, supports))
    return out


@pytest.mark.parametrize("shot", [1, 5])
def test_patnet_episodes_are_its_draws(tmp_path, shot):
    from fsseg_bench.data.patnet_standins import IsicStandIn, write_isic_standin
    from fsseg_bench.data.source import episode_list_for, resolve_tree
    from fsseg_bench.protocol import load_protocol

    root = tmp_path / "data"
    write_isic_standin(root, IsicStandIn(per_class=4))  # small pools: supports repeat at 5 shots
    protocol = load_protocol("isic-patnet")
    tree = resolve_tree(protocol, root, tmp_path / "results")
    folder = root / "ISIC" / "ISIC2018_Task1-2_Training_Input"
    pools = {k: sorted(str(p) for p in (folder / str(k + 1)).glob("*.jpg")) for k in range(3)}
    expected = _patnet_draws([], 3, pools, shot, 600)
    episodes = episode_list_for(protocol, tree, 0, shot, 0, tmp_path / "results").episodes
    assert len(episodes) == 600
    to_id = lambda path: f"{Path(path).parent.name}/{Path(path).stem}"  # noqa: E731
    for episode, (class_index, query, supports) in zip(episodes, expected):
        assert episode.class_id == class_index + 1 and episode.query == (to_id(query),)
        assert list(episode.support) == [to_id(s) for s in supports]
    if shot == 5:
        assert any(len(set(e.support)) < 5 for e in episodes)  # repeats, as PATNet draws them


def test_prepare_deepglobe_by_hand(tmp_path):
    """A 60-px tile cut 6x6 into 10-px crops (100 pixels): crop (0,0) one colour (dropped); (0,1)
    yellow left half, cyan right half (kept: folder 1 agriculture, folder 2 urban, as PATNet's BGR
    comparison files them); (0,2) green with 4 blue pixels (4% <= 4.8%: dropped); (0,3) green with 5
    blue (5%: kept, folders 4 and 5); every other crop one colour."""
    source = tmp_path / "download"
    source.mkdir()
    mask = np.zeros((60, 60, 3), np.uint8)
    mask[:, :] = (0, 255, 0)
    mask[0:10, 0:10] = (255, 255, 255)
    mask[0:10, 10:15] = (255, 255, 0)
    mask[0:10, 15:20] = (0, 255, 255)
    mask[0, 20:24] = (0, 0, 255)
    mask[0, 30:35] = (0, 0, 255)
    Image.fromarray(mask).save(source / "104_mask.png")
    image = np.random.default_rng(0).integers(0, 255, (60, 60, 3)).astype(np.uint8)
    Image.fromarray(image).save(source / "104_sat.jpg", quality=100)
    assert main(["prepare-deepglobe", "--source", str(source), "--out", str(tmp_path / "out")]) == 0
    root = tmp_path / "out" / "Deepglobe"
    listing = {c: sorted(p.name for p in (root / str(c) / "test" / "origin").iterdir()) for c in range(1, 7)}
    assert listing == {1: ["104_sat_01.jpg"], 2: ["104_sat_01.jpg"], 3: [], 4: ["104_sat_03.jpg"],
                       5: ["104_sat_03.jpg"], 6: []}
    agriculture = np.array(Image.open(root / "1" / "test" / "groundtruth" / "104_sat_01.png"))
    assert (agriculture[:, :5] == 255).all() and (agriculture[:, 5:] == 0).all()
    water = np.array(Image.open(root / "5" / "test" / "groundtruth" / "104_sat_03.png"))
    assert water.sum() == 5 * 255 and (water[0, :5] == 255).all()
    recipe = json.loads((root / "recipe.json").read_text())
    assert (recipe["tiles"], recipe["crops"], recipe["crops_kept"], recipe["crop_class_pairs"]) == (1, 36, 2, 4)
    crop = np.array(Image.open(root / "4" / "test" / "origin" / "104_sat_03.jpg"))
    assert crop.shape == (10, 10, 3)


def test_prepare_isic_and_chestxray_by_hand(tmp_path, capsys):
    images, masks = tmp_path / "in", tmp_path / "gt"
    for stem in ("ISIC_0000000", "ISIC_0000001", "ISIC_0000004"):
        _jpg(images / f"{stem}.jpg", 16)
        _mask(masks / f"{stem}_segmentation.png", np.full((16, 16), 255))
    table = tmp_path / "class_id.csv"
    table.write_text("ID,Class\nISIC_0000000,nevus\nISIC_0000001,nevus\nISIC_0000004,melanoma\n")
    assert main(["prepare-isic", "--images", str(images), "--masks", str(masks), "--classes", str(table),
                 "--out", str(tmp_path / "o1")]) == 0
    base = tmp_path / "o1" / "ISIC" / "ISIC2018_Task1-2_Training_Input"
    assert sorted(p.name for p in (base / "1").iterdir()) == ["ISIC_0000000.jpg", "ISIC_0000001.jpg"]
    assert [p.name for p in (base / "2").iterdir()] == ["ISIC_0000004.jpg"] and not any((base / "3").iterdir())
    # ISIC 2017's one-hot table, and the recorded 512-style resize (here 8).
    table2 = tmp_path / "gt2017.csv"
    table2.write_text("image_id,melanoma,seborrheic_keratosis\nISIC_0000000,0.0,1.0\nISIC_0000001,0.0,0.0\n"
                      "ISIC_0000004,1.0,0.0\n")
    assert main(["prepare-isic", "--images", str(images), "--masks", str(masks), "--classes", str(table2),
                 "--out", str(tmp_path / "o2"), "--resize", "8"]) == 0
    out = tmp_path / "o2" / "ISIC"
    assert (out / "ISIC2018_Task1-2_Training_Input" / "3" / "ISIC_0000000.jpg").is_file()
    assert Image.open(out / "ISIC2018_Task1_Training_GroundTruth" / "ISIC_0000000_segmentation.png").size == (8, 8)
    assert json.loads((out / "recipe.json").read_text())["resize"] == 8
    table.write_text("ID,Class\nISIC_0000000,basal_cell\n")
    capsys.readouterr()
    assert main(["prepare-isic", "--images", str(images), "--masks", str(masks), "--classes", str(table),
                 "--out", str(tmp_path / "o3")]) == 2
    assert "class 'basal_cell'" in capsys.readouterr().err

    source = tmp_path / "chest"
    for name, mask_name in (("CHNCXR_0001_0", "CHNCXR_0001_0_mask.png"), ("MCUCXR_0001_0", "MCUCXR_0001_0.png")):
        _mask(source / "CXR_png" / f"{name}.png", np.full((4, 4), 90))
        _mask(source / "masks" / mask_name, np.eye(4) * 255)
    for choice, expected in (("include", ["CHNCXR_0001_0_mask.png", "MCUCXR_0001_0_mask.png"]),
                             ("exclude", ["CHNCXR_0001_0_mask.png"])):
        assert main(["prepare-chestxray", "--source", str(source), "--out", str(tmp_path / choice),
                     "--montgomery", choice]) == 0
        folder = tmp_path / choice / "LungSegmentation"
        assert sorted(p.name for p in (folder / "masks").iterdir()) == expected
        recipe = json.loads((folder / "recipe.json").read_text())
        assert recipe["montgomery"] == choice and recipe["shenzhen_style"] == 1


def test_cross_domain_runs_and_table_on_the_stand_ins(tmp_path, capsys):
    """knn and all-foreground on the four stand-ins through PATNet's protocols; the table's cells
    are each protocol's own table values, and the mean's interval combines theirs."""
    results = tmp_path / "results"
    layouts = {"deepglobe": "deepglobe-patnet", "isic": "isic-patnet", "chestxray": "chestxray-patnet",
               "fss1000": "fss1000-patnet"}
    for layout, protocol in layouts.items():
        assert main(["synth", "--layout", layout, "--root", str(tmp_path / layout)]) == 0
        assert main(["run", "--protocol", protocol, "--data-root", str(tmp_path / layout), "--results", str(results),
                     "--method", "knn", "all-foreground", "--shot", "1", "--limit", "5", "--quiet",
                     "--option", "backbone=vit-tiny14"]) == 0  # 29x29 tokens at 400 px: quick on a CPU
    capsys.readouterr()
    assert main(["cross-domain", "--results", str(results), "--format", "csv", "--resamples", "100"]) == 0
    cells = pd.read_csv(__import__("io").StringIO(capsys.readouterr().out))
    assert len(cells) == 2 * 4
    for protocol in layouts.values():
        assert main(["table", "--results", str(results), "--protocol", protocol, "--format", "csv",
                     "--resamples", "100"]) == 0
        table = pd.read_csv(__import__("io").StringIO(capsys.readouterr().out), dtype={"fold": str})
        for method in ("knn", "all-foreground"):
            primary = table[(table.method == method) & (table.metric == "miou") & (table.fold == "0")]
            cell = cells[(cells.method == method) & (cells.protocol == protocol)].iloc[0]
            assert cell.value in set(primary.value) and cell.ci_method in set(primary.ci_method)
    assert main(["cross-domain", "--results", str(results), "--resamples", "100"]) == 0
    text = capsys.readouterr().out
    knn = cells[cells.method == "knn"]
    half = np.sqrt((((knn.ci_high - knn.ci_low) / 2) ** 2).sum()) / 4
    assert f"{knn.value.mean():.1f} ± {half:.1f}" in text.splitlines()[2]
    assert text.splitlines()[0].startswith("| Method | 1-shot deepglobe-patnet | 1-shot isic-patnet")


def test_a_cross_domain_protocol_trains_every_class_of_its_source(synthetic_root, tmp_path, capsys):
    """`train --protocol <target>` trains under its train_protocol (here the stand-in with every class);
    `run` on the target uses that model and its card says where it was trained."""
    from fsseg_bench.data.source import class_index, dataset_for, resolve_tree
    from fsseg_bench.protocol import load_protocol
    from fsseg_bench.training import training_pools

    source = tmp_path / "synthetic-all.toml"
    source.write_text('extends = "synthetic5i"\nname = "synthetic-all"\nfolds = [0]\n[training]\nclasses = "all"\n'
                      'episodes = 4\ncheckpoint_every = 4\n')
    target = tmp_path / "isic-from-synthetic.toml"
    target.write_text('extends = "isic-patnet"\nname = "isic-from-synthetic"\ntrain_protocol = "synthetic-all.toml"\n'
                      'backbone = "smallcnn"\nimage_size = [64, 64]\n')
    loaded = load_protocol(str(source))
    tree = resolve_tree(loaded, synthetic_root, tmp_path / "r")
    index = class_index(tree, loaded.train_split, tmp_path / "r")
    assert sorted(training_pools(loaded, index, 0, 1, dataset_for(loaded, tree))) == list(range(1, 21))
    base = load_protocol("synthetic5i")
    assert sorted(training_pools(base, index, 0, 1, dataset_for(base, tree))) == list(range(6, 21))
    results = tmp_path / "results"
    assert main(["train", "--protocol", str(target), "--method", "panet", "--shot", "1", "--data-root",
                 str(synthetic_root), "--results", str(results), "--quiet"]) == 0
    assert "isic-from-synthetic trains under synthetic-all" in capsys.readouterr().err
    assert (results / "checkpoints" / "synthetic-all" / "panet" / "fold0-shot1" / "final.pt").is_file()
    assert main(["synth", "--layout", "isic", "--root", str(tmp_path / "isic")]) == 0
    assert main(["run", "--protocol", str(target), "--method", "panet", "--shot", "1", "--data-root",
                 str(tmp_path / "isic"), "--results", str(results), "--limit", "6", "--quiet"]) == 0
    info = json.loads(next((results / "runs" / "isic-from-synthetic").rglob("run.json")).read_text())
    assert info["card"]["training"] == "episodic, on every class of synthetic5i (protocol synthetic-all)"
    assert info["checkpoint_provenance"]["protocol"] == "synthetic-all"


def test_gfsams_flat_isic_layout_gives_the_same_episodes(tmp_path):
    """GF-SAM keeps ISIC's images flat and reads their classes from PATNet's class table: the same
    ids and episodes as PATNet's class folders; without the table it is one line saying where."""
    import shutil

    from fsseg_bench.data.isic import INPUT_DIR, locate_isic
    from fsseg_bench.data.patnet_standins import IsicStandIn, write_isic_standin
    from fsseg_bench.data.source import episode_list_for
    from fsseg_bench.protocol import load_protocol

    folders = write_isic_standin(tmp_path / "patnet", IsicStandIn(per_class=5))
    flat = tmp_path / "gfsam" / "ISIC"
    shutil.copytree(folders / "ISIC2018_Task1_Training_GroundTruth", flat / "ISIC2018_Task1_Training_GroundTruth")
    rows = ["ID,Class"]
    names = {1: "nevus", 2: "melanoma", 3: "seborrheic_keratosis"}
    for c in (1, 2, 3):
        for image in sorted((folders / INPUT_DIR / str(c)).glob("*.jpg")):
            (flat / INPUT_DIR).mkdir(parents=True, exist_ok=True)
            shutil.copyfile(image, flat / INPUT_DIR / image.name)
            rows.append(f"{image.stem},{names[c]}")
    with pytest.raises(InputError, match="need their class table at"):
        locate_isic(flat)
    (flat / "class_id.csv").write_text("\n".join(rows) + "\n")
    protocol = load_protocol("isic-patnet")
    trees = [locate_isic(folders), locate_isic(flat)]
    assert trees[1].split_ids("test") == trees[0].split_ids("test")
    assert trees[1].image_path("2/ISIC_0000005") == flat / INPUT_DIR / "ISIC_0000005.jpg"
    lists = [episode_list_for(protocol, tree, 0, 5, 0, tmp_path / f"r{i}").episodes for i, tree in enumerate(trees)]
    assert lists[0] == lists[1]
