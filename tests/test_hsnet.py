"""HSNet: the center-pivot 4D convolution, the correlation and the K-shot vote on hand-computed
cases; its checkpoint layout; training on the stand-in."""

import itertools

import numpy as np
import pytest
import torch

from fsseg_bench.errors import InputError
from fsseg_bench.registry import create_method, load_methods

load_methods([])


def _module():
    """The loaded methods/hsnet.py (built-in plugins are loaded by path, not imported by name)."""
    import sys

    return sys.modules[type(create_method("hsnet", backbone="smallcnn")).__module__]


HS = _module()


def dense_4d_conv(x: np.ndarray, kernel: np.ndarray, bias: float, support_stride: int) -> np.ndarray:
    """A literal 4D convolution of one channel [ha,wa,hb,wb] with a k^4 kernel, zero padding k//2,
    stride 1 over the query dims and `support_stride` over the support dims (slow loops)."""
    k = kernel.shape[0]
    p = k // 2
    ha, wa, hb, wb = x.shape
    out_hb, out_wb = len(range(0, hb, support_stride)), len(range(0, wb, support_stride))
    padded = np.pad(x, p)
    out = np.full((ha, wa, out_hb, out_wb), bias, dtype=np.float64)
    for a, b, c, d in itertools.product(range(ha), range(wa), range(out_hb), range(out_wb)):
        window = padded[a:a + k, b:b + k, c * support_stride:c * support_stride + k, d * support_stride:d * support_stride + k]
        out[a, b, c, d] += (window * kernel).sum()
    return out


@pytest.mark.parametrize("kernel_size,stride", [(3, 1), (3, 2), (5, 4)])
def test_center_pivot_conv4d_is_a_4d_conv_with_a_center_pivot_kernel(kernel_size, stride):
    """The 4D kernel that is zero off its two center-pivot planes: K1 over the query dims where the
    support offset is the centre, K2 over the support dims where the query offset is the centre
    (the centre itself gets K1 + K2)."""
    torch.manual_seed(0)
    conv = HS.CenterPivotConv4d(1, 1, kernel_size, stride).double()
    x = torch.randn(1, 1, 5, 4, 7, 6, dtype=torch.float64)
    k1 = conv.conv1.weight.detach()[0, 0].numpy()
    k2 = conv.conv2.weight.detach()[0, 0].numpy()
    c = kernel_size // 2
    kernel = np.zeros((kernel_size,) * 4)
    kernel[:, :, c, c] += k1
    kernel[c, c, :, :] += k2
    expected = dense_4d_conv(x[0, 0].numpy(), kernel, float((conv.conv1.bias + conv.conv2.bias).detach()), stride)
    got = conv(x)[0, 0].detach().numpy()
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)


def test_center_pivot_conv4d_by_hand():
    """1 channel, 3x3 kernels of ones, no bias, a single 1 at query (1,1), support (1,1) of a
    3x3x3x3 tensor: the query branch spreads it over the 3x3 query neighbourhood at support
    (1,1); the support branch over the 3x3 support neighbourhood at query (1,1)."""
    conv = HS.CenterPivotConv4d(1, 1, 3, 1)
    with torch.no_grad():
        for branch in (conv.conv1, conv.conv2):
            branch.weight.fill_(1.0)
            branch.bias.zero_()
    x = torch.zeros(1, 1, 3, 3, 3, 3)
    x[0, 0, 1, 1, 1, 1] = 1.0
    y = conv(x)[0, 0]
    expected = torch.zeros(3, 3, 3, 3)
    expected[:, :, 1, 1] += 1  # query branch
    expected[1, 1, :, :] += 1  # support branch
    assert torch.equal(y, expected)


def test_correlation_by_hand():
    query = torch.tensor([[3.0, 0.0], [4.0, -1.0]])[None, :, None, :]    # C=2, 1x2 positions: (3,4), (0,-1)
    support = torch.tensor([[1.0, -3.0], [0.0, -4.0]])[None, :, None, :]  # (1,0), (-3,-4)
    corr = HS.layer_correlation(query, support)[0, 0, :, 0, :]  # [query position, support position]
    eps = HS.COSINE_EPS
    expected = torch.tensor([[3 / (5 + eps) / (1 + eps), 0.0],                     # cos((3,4),(-3,-4)) = -1 -> 0
                             [0.0, 4 / (1 + eps) / (5 + eps)]])                   # cos((0,-1),(-3,-4)) = 0.8
    assert torch.allclose(corr, expected, atol=1e-7)
    groups = HS.hypercorrelation([query, query, query], [support, support, support], (2, 1))
    assert [tuple(g.shape) for g in groups] == [(1, 1, 1, 2, 1, 2), (1, 2, 1, 2, 1, 2)]  # coarsest group first


def test_vote_by_hand():
    # 3 supports, 2 queries of 1x4 pixels.
    masks = torch.tensor([[[[0, 1, 1, 1]], [[0, 0, 0, 0]]],
                          [[[0, 0, 1, 1]], [[0, 0, 1, 0]]],
                          [[[0, 0, 0, 1]], [[0, 0, 0, 0]]]])
    # Query 0: votes 0,1,2,3 / max 3 -> 0, .33, .67, 1 -> 0,0,1,1. Query 1: votes 0,0,1,0 / max 1 -> 0,0,1,0.
    assert HS.vote(masks).tolist() == [[[0, 0, 1, 1]], [[0, 0, 1, 0]]]
    # No vote anywhere: divided by 1, all background.
    assert HS.vote(torch.zeros(2, 1, 1, 3, dtype=torch.long)).tolist() == [[[0, 0, 0]]]


def test_k_shot_prediction_is_the_vote_of_1_shot_predictions():
    from tests.test_conformance import tiny_episode

    method = create_method("hsnet", backbone="smallcnn").eval()
    with torch.no_grad():  # sharper logits, no bias: about 2/3 foreground per support, not all the same pixels
        method.model.hpn_learner.decoder2[2].weight.mul_(10)
        method.model.hpn_learner.decoder2[2].bias.zero_()
    episode = tiny_episode(shots=3, queries=2)
    scores = method.predict(episode)
    singles = []
    for k in range(3):
        one = tiny_episode(shots=3, queries=2)
        one = type(one)(one.class_id, one.support_images[[k]], one.support_masks[[k]], one.query_images, None)
        singles.append(method.predict(one).argmax(dim=1))
    expected = HS.vote(torch.stack(singles))
    assert torch.equal(scores.argmax(dim=1), expected) and 0 < expected.float().mean() < 1
    assert not all(torch.equal(singles[0], other) for other in singles[1:])  # the vote has something to decide


def test_learner_key_layout_is_hsnets():
    method = create_method("hsnet", backbone="smallcnn")
    keys = {k: tuple(v.shape) for k, v in method.state_dict().items() if k.startswith("hpn_learner.")}
    expected = {}
    for block, inch, kernels in (("encoder_layer4", 1, (3, 3, 3)), ("encoder_layer3", 2, (5, 3, 3)),
                                 ("encoder_layer2", 2, (5, 5, 3)), ("encoder_layer4to3", 128, (3, 3, 3)),
                                 ("encoder_layer3to2", 128, (3, 3, 3))):
        outs = (16, 64, 128) if block[-1].isdigit() and "to" not in block else (128, 128, 128)
        for i, (out, k) in enumerate(zip(outs, kernels)):
            for conv in ("conv1", "conv2"):
                expected[f"hpn_learner.{block}.{3 * i}.{conv}.weight"] = (out, inch, k, k)
                expected[f"hpn_learner.{block}.{3 * i}.{conv}.bias"] = (out,)
            expected[f"hpn_learner.{block}.{3 * i + 1}.weight"] = (out,)
            expected[f"hpn_learner.{block}.{3 * i + 1}.bias"] = (out,)
            inch = out
    for name, shape in (("decoder1.0", (128, 128)), ("decoder1.2", (64, 128)), ("decoder2.0", (64, 64)),
                        ("decoder2.2", (2, 64))):
        expected[f"hpn_learner.{name}.weight"] = (*shape, 3, 3)
        expected[f"hpn_learner.{name}.bias"] = (shape[0],)
    assert keys == expected


@pytest.mark.parametrize("backbone,group_sizes,first_key", [
    ("vgg16", (3, 3, 1), "backbone.features.0.weight"),
    ("resnet50", (4, 6, 3), "backbone.layer2.0.downsample.0.weight"),
])
def test_imagenet_backbones_have_torchvision_keys_and_hsnets_layers(backbone, group_sizes, first_key):
    method = create_method("hsnet", backbone=backbone)
    assert method.group_sizes == group_sizes and first_key in method.state_dict()
    assert method.model.hpn_learner.encoder_layer4[0].conv1.weight.shape[1] == group_sizes[-1]
    assert method.model.hpn_learner.encoder_layer2[0].conv1.weight.shape[1] == group_sizes[0]
    with torch.no_grad():
        layers = method.layers(torch.zeros(1, 3, 64, 64))
    assert len(layers) == sum(group_sizes)


def test_a_checkpoint_in_hsnets_layout_loads_and_predicts(tmp_path):
    from tests.test_conformance import tiny_episode

    source = create_method("hsnet", backbone="smallcnn", seed=5).eval()
    released = {f"module.{k}": v for k, v in source.state_dict().items()}  # DataParallel, as HSNet saves
    released["module.backbone.classifier.0.weight"] = torch.zeros(3)  # extra keys (VGG's head) are ignored
    path = tmp_path / "hsnet_released.pt"
    torch.save(released, path)
    loaded = create_method("hsnet", backbone="smallcnn", seed=6)
    loaded.load_checkpoint(path)
    loaded.eval()
    episode = tiny_episode(shots=1)
    assert torch.equal(loaded.predict(episode), source.predict(episode))
    assert not torch.equal(create_method("hsnet", backbone="smallcnn", seed=6).eval().predict(episode),
                           source.predict(episode))
    torch.save({"module.backbone.features.0.weight": torch.zeros(1)}, tmp_path / "not_hsnet.pt")
    with pytest.raises(InputError, match="no hpn_learner"):
        loaded.load_checkpoint(tmp_path / "not_hsnet.pt")


def test_training_moves_the_learner_only(synthetic_root, tmp_path):
    from fsseg_bench.protocol import load_protocol
    from fsseg_bench.checkpoints import read_checkpoint
    from fsseg_bench.training import train

    protocol = load_protocol("synthetic5i")
    before = create_method("hsnet", backbone="smallcnn")
    before.initialise(protocol.training.seed)
    result = train(protocol, "hsnet", 0, 1, data_root=synthetic_root, results_dir=tmp_path, iterations=6,
                   progress=False)
    state, meta = read_checkpoint(result.checkpoint)
    initial = before.state_dict()
    backbone = [k for k in state if k.startswith("backbone.")]
    learner = [k for k in state if k.startswith("hpn_learner.")]
    assert all(torch.equal(state[k], initial[k]) for k in backbone)  # frozen
    assert any(not torch.equal(state[k], initial[k]) for k in learner)
    assert meta["optimizer"]["param_groups"][0]["lr"] == 1e-3 and "betas" in meta["optimizer"]["param_groups"][0]
    other = train(protocol, "hsnet", 0, 1, data_root=synthetic_root, results_dir=tmp_path, iterations=6,
                  progress=False, train_seed=3)
    _, other_meta = read_checkpoint(other.checkpoint)
    assert other_meta["train_seed"] == 3 and other.checkpoint.parent.name == "fold0-shot1-train3"
    # Another training seed: another initial learner (and other episodes).
    reseeded = create_method("hsnet", backbone="smallcnn")
    reseeded.initialise(3)
    assert not torch.equal(reseeded.state_dict()["hpn_learner.decoder2.2.weight"],
                           initial["hpn_learner.decoder2.2.weight"])
