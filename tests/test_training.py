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
    assert meta["pretrained"] is True and len(meta["state_sha256"]) == 64
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


def test_a_zero_prototype_has_a_finite_gradient():
    """PAR pools a query prototype under an empty predicted mask (all pixels predicted foreground,
    say): the zero vector. Its cosine scores are 0 and its gradient finite, as with torch's
    cosine_similarity (clamping the norm after the square root gave NaN and killed training)."""
    from fsseg_bench.prototypes import cosine_scores

    features = torch.randn(1, 4, 3, 3, requires_grad=True)
    prototypes = torch.zeros(2, 4, requires_grad=True)
    scores = cosine_scores(features, prototypes)
    reference = torch.nn.functional.cosine_similarity(features[:, None], prototypes[None, :, :, None, None], dim=2) * 20
    assert torch.equal(scores, reference) and (scores == 0).all()
    scores.sum().backward()
    assert torch.isfinite(prototypes.grad).all() and torch.isfinite(features.grad).all()


def test_a_diverging_loss_stops_training_without_a_final_checkpoint(synthetic_root, tmp_path, tmp_path_factory, capsys):
    from tests.helpers import write_plugin

    plugin = write_plugin(tmp_path_factory, "diverges.py", '''
import torch
from fsseg_bench.method import Method
from fsseg_bench.registry import register_method

class Diverges(Method):
    trainable = True
    def __init__(self, backbone="smallcnn"):
        super().__init__(backbone=backbone)
        self.weight = torch.nn.Parameter(torch.ones(()))
        self.calls = 0
    def parameters(self):
        return [self.weight]
    def state_dict(self):
        return {"weight": self.weight.detach()}
    def training_losses(self, episode):
        self.calls += 1
        return {"total": self.weight * (float("nan") if self.calls == 3 else 1.0)}

@register_method("diverges", trainable=True, description="a loss that turns NaN at its third episode")
def diverges(backbone="smallcnn"):
    return Diverges(backbone)
''')
    code = main(["train", "--method", "diverges", "--plugin", str(plugin), "--fold", "0", "--shot", "1",
                 "--data-root", str(synthetic_root), "--results", str(tmp_path), "--iterations", "5", "--quiet"])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1
    assert "diverges fold 0 shot 1 seed 1234: the loss is nan at iteration 2" in err
    assert not list(tmp_path.glob("checkpoints/*/diverges/*/final.pt"))
