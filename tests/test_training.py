"""Episodic training: the loss goes down, checkpoints carry their provenance, resume is exact."""

import json

import numpy as np
import pytest
import torch

from fsseg_bench.checkpoints import file_sha256, read_checkpoint
from fsseg_bench.cli import main
from fsseg_bench.errors import InputError
from fsseg_bench.protocol import load_protocol
from fsseg_bench.training import train, training_episode, training_pools
from fsseg_bench.data.source import class_index
from fsseg_bench.data.voc import load_class_index, locate_voc

PROTOCOL = load_protocol("synthetic5i")


def fixed_episode_loss(method, tree, fold):
    """Mean total loss on 12 fixed base-class episodes (iterations 10,000+ are never trained on)."""
    from fsseg_bench.preprocess import ImageLoader, build_episode

    pools = training_pools(PROTOCOL, load_class_index(tree, "train", None), fold, 1)
    load = ImageLoader(tree, PROTOCOL)
    values = []
    with torch.no_grad():
        for i in range(10_000, 10_012):
            spec, _ = training_episode(pools, 99, fold, 1, i, flip=False)
            values.append(method.training_losses(build_episode(spec, load, PROTOCOL)[0])["total"].item())
    return float(np.mean(values))


def test_short_training_lowers_the_loss(synthetic_root, tmp_path):
    from fsseg_bench.registry import create_method

    tree = locate_voc(synthetic_root)
    before = fixed_episode_loss(create_method("panet", backbone="smallcnn"), tree, 0)
    result = train(PROTOCOL, "panet", 0, 1, data_root=synthetic_root, results_dir=tmp_path,
                   iterations=80, progress=False)
    trained = create_method("panet", backbone="smallcnn")
    trained.load_checkpoint(result.checkpoint)
    after = fixed_episode_loss(trained, tree, 0)
    assert after < 0.85 * before, (before, after)
    state, meta = read_checkpoint(result.checkpoint)
    assert (meta["method"], meta["protocol"], meta["fold"], meta["shot"], meta["iteration"]) == ("panet", "synthetic5i", 0, 1, 80)
    assert meta["protocol_sha256"] == PROTOCOL.file_sha256 and meta["config"]["backbone"] == "smallcnn"
    assert meta["pretrained"] is False and len(meta["state_sha256"]) == 64
    sidecar = json.loads((result.checkpoint.parent / "final.json").read_text())
    assert sidecar["file_sha256"] == file_sha256(result.checkpoint)


def test_resume_after_interruption_is_exact(synthetic_root, tmp_path):
    straight = train(PROTOCOL, "panet-noalign", 1, 1, data_root=synthetic_root, results_dir=tmp_path / "a",
                     iterations=24, progress=False)
    partial = train(PROTOCOL, "panet-noalign", 1, 1, data_root=synthetic_root, results_dir=tmp_path / "b",
                    iterations=24, progress=False, stop_after=10)
    assert partial.checkpoint.name == "last.pt" and partial.iterations == 10
    resumed = train(PROTOCOL, "panet-noalign", 1, 1, data_root=synthetic_root, results_dir=tmp_path / "b",
                    iterations=24, progress=False)
    assert resumed.resumed_from == 10
    a, _ = read_checkpoint(straight.checkpoint)
    b, _ = read_checkpoint(resumed.checkpoint)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not (resumed.checkpoint.parent / "last.pt").exists()


def test_training_draws_base_classes_only(synthetic_root, tmp_path):
    index = class_index(locate_voc(synthetic_root), "train", tmp_path)
    pools = training_pools(PROTOCOL, index, 2, 1)
    assert set(pools) == set(range(1, 21)) - {11, 12, 13, 14, 15}
    specs = [training_episode(pools, 1234, 2, 1, i, True)[0] for i in range(300)]
    assert {s.class_id for s in specs} == set(pools)
    assert training_episode(pools, 1234, 2, 1, 7, True) == training_episode(pools, 1234, 2, 1, 7, True)


def test_drop_novel_images(synthetic_root, tmp_path):
    import dataclasses
    index = class_index(locate_voc(synthetic_root), "train", tmp_path)
    dropping = dataclasses.replace(PROTOCOL, novel_in_training="drop")
    for class_id, pool in training_pools(dropping, index, 0, 1).items():
        assert all(not {1, 2, 3, 4, 5} & set(index.pixels[i]) for i in pool)


def test_untrainable_method_is_refused(capsys, synthetic_root, tmp_path):
    code = main(["train", "--method", "knn", "--fold", "0", "--shot", "1", "--data-root", str(synthetic_root),
                 "--results", str(tmp_path), "--quiet"])
    assert code == 2 and "method 'knn' is not trainable" in capsys.readouterr().err
