"""Protocol files: the built-in ones load and say what the papers do."""

from pathlib import Path

import pytest

from fsseg_bench.errors import InputError
from fsseg_bench.protocol import list_protocols, load_protocol


def test_builtin_protocols_load():
    assert list_protocols() == ["chestxray-patnet", "coco20i-gfsam", "coco20i-hsnet", "coco20i-panet", "coco20i-pfenet",
                                "deepglobe-patnet", "fss1000-gfsam", "fss1000-hsnet", "fss1000-patnet", "isic-patnet",
                                "pascal-patnet-source", "pascal5i-gfsam", "pascal5i-hsnet", "pascal5i-hsnet-fsseg",
                                "pascal5i-panet", "pascal5i-panet-fsseg", "pascal5i-pfenet", "pascal5i-pfenet-fsseg",
                                "synthetic5i"]
    for name in list_protocols():
        protocol = load_protocol(name)
        assert protocol.name == name and len(protocol.file_sha256) == 64


def test_paper_conventions():
    panet = load_protocol("pascal5i-panet-fsseg")
    assert (panet.split, panet.query_sampling, panet.episodes, panet.seeds) == (
        "trainaug", "class-uniform", 1000, (1234, 1235, 1236, 1237, 1238))
    assert panet.image_size == (417, 417) and panet.support_ignore == "background"
    assert panet.training.lr_milestones == (10000, 20000) and panet.training.episodes == 30000
    hsnet = load_protocol("pascal5i-hsnet-fsseg")
    assert (hsnet.split, hsnet.query_sampling, hsnet.seeds, hsnet.image_size) == ("val", "cycle-pairs", (0,), (400, 400))
    pfenet = load_protocol("pascal5i-pfenet-fsseg")
    assert (pfenet.query_sampling, pfenet.episodes, pfenet.seeds, pfenet.min_fg_pixels) == ("walk-images", 5000, (321,), 2048)
    assert (pfenet.score_at, pfenet.resize) == ("original", "longer-side-pad")


def test_protocol_by_path(tmp_path):
    source = load_protocol("synthetic5i")
    copy = tmp_path / "mine.toml"
    copy.write_bytes(open(source.path, "rb").read())
    mine = load_protocol(copy)
    assert mine.file_sha256 == source.file_sha256 and mine.path == str(copy)


def test_benchmark_protocols_beyond_pascal():
    hsnet, panet, pfenet = (load_protocol(f"coco20i-{n}") for n in ("hsnet", "panet", "pfenet"))
    assert (hsnet.dataset, hsnet.split_scheme, hsnet.episodes, hsnet.seeds, hsnet.image_size) == (
        "coco", "interleaved", 1000, (0,), (400, 400))
    assert (panet.split_scheme, panet.episodes, panet.seeds, panet.image_size) == (
        "contiguous", 1000, (1234, 1235, 1236, 1237, 1238), (417, 417))
    assert (pfenet.episodes, pfenet.image_size, pfenet.score_at, pfenet.split) == (20000, (641, 641), "original-square", "val2014")
    fss = load_protocol("fss1000-hsnet")
    assert (fss.dataset, fss.folds, fss.episodes, fss.split, fss.train_split) == ("fss1000", (0,), 2400, "test", "trn")


def test_folds_are_checked_against_the_dataset(tmp_path):
    text = (Path(load_protocol("fss1000-hsnet").path).read_text()).replace("folds = [0]", "folds = [0, 1]")
    (tmp_path / "bad.toml").write_text(text)
    with pytest.raises(InputError, match="folds"):
        load_protocol(tmp_path / "bad.toml")
    text = (Path(load_protocol("coco20i-hsnet").path).read_text()).replace('split_scheme = "interleaved"',
                                                                          'split_scheme = "random"')
    (tmp_path / "scheme.toml").write_text(text)
    with pytest.raises(InputError, match=r"split_scheme.*interleaved \| contiguous"):
        load_protocol(tmp_path / "scheme.toml")
