"""PANet: hand-computed cases, an independent re-implementation of the paper's forward pass,
weight loading in both layouts, and training."""

import math

import pytest
import torch
import torch.nn.functional as F

from fsseg_bench import registry
from fsseg_bench.episode import Episode
from fsseg_bench.prototypes import cosine_scores, masked_average_pool, masked_average_pool_reference

registry.load_methods()
panet_module = __import__(registry.get_entry("panet").factory.__module__, fromlist=["x"])
panet_prototypes = panet_module.panet_prototypes
panet_scores = panet_module.panet_scores
alignment_loss = panet_module.alignment_loss


# --- hand-computed cases ----------------------------------------------------------------------

def test_map_without_upsampling():
    features = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    mask = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    assert masked_average_pool(features, mask).item() == pytest.approx(5 / (2 + 1e-5), abs=1e-6)


def test_map_with_bilinear_upsampling_by_hand():
    # 2x2 -> 4x4, align_corners=False: the top-left 2x2 of the upsampled map is
    # [[1, 1.25], [1.5, 1.75]] (sum 5.5), so pooling under it gives 5.5 / (4 + 1e-5).
    features = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    mask = torch.zeros(1, 4, 4)
    mask[0, :2, :2] = 1
    expected = 5.5 / (4 + 1e-5)
    assert masked_average_pool(features, mask).item() == pytest.approx(expected, abs=1e-6)
    assert masked_average_pool_reference(features, mask).item() == pytest.approx(expected, abs=1e-6)


def test_map_shortcut_equals_literal_definition_on_random_inputs():
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(3, 16, 7, 9, generator=generator)
    masks = (torch.rand(3, 53, 67, generator=generator) > 0.6).float()
    fast, slow = masked_average_pool(features, masks), masked_average_pool_reference(features, masks)
    assert torch.allclose(fast, slow, atol=1e-5, rtol=1e-5)


def test_prototypes_average_over_shots():
    # Two shots with constant features: fg of shot 0 is (1, 0), of shot 1 is (3, 2) -> mean (2, 1);
    # bg is (0, 4) and (2, 0) -> (1, 2). MAP of a constant map is the constant (x n/(n+1e-5)).
    features = torch.zeros(2, 2, 2, 2)
    masks = torch.zeros(2, 4, 4, dtype=torch.long)
    masks[:, :2] = 1
    features[0, :, 0] = torch.tensor([1.0, 0.0])[:, None]
    features[0, :, 1] = torch.tensor([0.0, 4.0])[:, None]
    features[1, :, 0] = torch.tensor([3.0, 2.0])[:, None]
    features[1, :, 1] = torch.tensor([2.0, 0.0])[:, None]
    # Rows of the 4x4 mask near the feature-row boundary mix both rows after upsampling: use a
    # mask at feature resolution so the case stays exact by hand.
    masks = torch.tensor([[[1, 1], [0, 0]], [[1, 1], [0, 0]]])
    prototypes = panet_prototypes(features, masks)
    scale = 2 / (2 + 1e-5)
    assert torch.allclose(prototypes[1], torch.tensor([2.0, 1.0]) * scale, atol=1e-6)
    assert torch.allclose(prototypes[0], torch.tensor([1.0, 2.0]) * scale, atol=1e-6)


def test_cosine_scores_times_twenty():
    features = torch.tensor([1.0, 0.0]).view(1, 2, 1, 1)
    prototypes = torch.tensor([[0.0, 1.0], [1.0, 1.0]])
    scores = cosine_scores(features, prototypes)
    assert scores.shape == (1, 2, 1, 1)
    assert scores[0, 0].item() == pytest.approx(0.0, abs=1e-6)
    assert scores[0, 1].item() == pytest.approx(20 / math.sqrt(2), abs=1e-5)


def test_alignment_loss_by_hand():
    # Query cells (1,0) and (0,1), predicted fg and bg: query prototypes fg=(1,0), bg=(0,1).
    # Support cells (1,1) labelled fg -> logits (20/sqrt2, 20/sqrt2), CE = log 2;
    #               (0,1) labelled bg -> logits (20, 0), CE = log(1 + e^-20).
    query = torch.tensor([[1.0, 0.0], [0.0, 1.0]]).T.reshape(1, 2, 1, 2)
    scores = torch.tensor([[[[0.0, 5.0]], [[5.0, 0.0]]]])  # [1,2,1,2]: cell 0 fg, cell 1 bg
    support = torch.tensor([[1.0, 1.0], [0.0, 1.0]]).T.reshape(1, 2, 1, 2)
    masks = torch.tensor([[[1, 0]]])
    expected = (math.log(2) + math.log1p(math.exp(-20))) / 2
    assert alignment_loss(query, scores, support, masks).item() == pytest.approx(expected, abs=1e-5)


def test_alignment_loss_skips_a_way_with_no_predicted_foreground():
    query = torch.randn(1, 4, 3, 3)
    scores = torch.zeros(1, 2, 3, 3)
    scores[:, 0] = 1.0  # background wins everywhere
    loss = alignment_loss(query, scores, torch.randn(2, 4, 3, 3), torch.ones(2, 12, 12, dtype=torch.long))
    assert loss.item() == 0.0


# --- an independent re-implementation of the paper's forward pass -----------------------------

def paper_forward(support_features, fore, back, query_features, image_size, align):
    """Written from the paper's description, way x shot lists and per-prototype loops, literal upsampling."""
    n_shots = support_features.shape[0]

    def get_features(fts, mask):
        fts = F.interpolate(fts, size=mask.shape[-2:], mode="bilinear", align_corners=False)
        return (fts * mask[None]).sum(dim=(2, 3)) / (mask[None].sum(dim=(2, 3)) + 1e-5)

    def dist(fts, prototype):
        return F.cosine_similarity(fts, prototype[..., None, None], dim=1) * 20

    fg = [get_features(support_features[[s]], fore[[s]]) for s in range(n_shots)]
    bg = [get_features(support_features[[s]], back[[s]]) for s in range(n_shots)]
    fg_proto = sum(fg) / n_shots
    bg_proto = sum(bg) / n_shots / 1
    pred = torch.stack([dist(query_features, bg_proto), dist(query_features, fg_proto)], dim=1)
    output = F.interpolate(pred, size=image_size, mode="bilinear", align_corners=False)
    if not align:
        return output, None
    argmax = pred.argmax(dim=1, keepdim=True)
    binary = [argmax == i for i in range(2)]
    if binary[1].sum() == 0:
        return output, torch.tensor(0.0)
    stacked = torch.stack(binary, dim=1).float()
    protos = (query_features.unsqueeze(1) * stacked).sum(dim=(0, 3, 4)) / (stacked.sum(dim=(0, 3, 4)) + 1e-5)
    loss = 0
    for s in range(n_shots):
        supp = torch.stack([dist(support_features[[s]], protos[[0]]), dist(support_features[[s]], protos[[1]])], dim=1)
        supp = F.interpolate(supp, size=fore.shape[-2:], mode="bilinear", align_corners=False)
        label = torch.full_like(fore[s], 255).long()
        label[fore[s] == 1] = 1
        label[back[s] == 1] = 0
        loss = loss + F.cross_entropy(supp, label[None], ignore_index=255) / n_shots
    return output, loss


@pytest.mark.parametrize("shots,void_as_background", [(1, True), (5, True), (3, False)])
def test_scores_and_par_equal_the_paper_computation(shots, void_as_background):
    generator = torch.Generator().manual_seed(shots)
    size, fsize = (45, 53), (6, 7)
    support = torch.randn(shots, 32, *fsize, generator=generator)
    query = torch.randn(1, 32, *fsize, generator=generator)
    labels = torch.zeros(shots, *size, dtype=torch.long)
    labels[:, 10:30, 12:40] = 1
    labels[:, 9, 12:40] = 255
    masks = labels.clone()
    if void_as_background:
        masks[masks == 255] = 0
    fore, back = (masks == 1).float(), (masks == 0).float()
    # Make the query resemble the foreground so PAR has predicted foreground pixels.
    query[:, :, 2:5, 2:5] += 3 * panet_prototypes(support, masks)[1][None, :, None, None]
    expected, expected_par = paper_forward(support, fore, back, query, size, align=True)
    low = panet_scores(support, masks, query)
    ours = F.interpolate(low, size=size, mode="bilinear", align_corners=False)
    assert torch.allclose(ours, expected, atol=1e-4)
    assert (expected_par > 0).item()
    assert alignment_loss(query, low, support, masks).item() == pytest.approx(expected_par.item(), abs=1e-4)


def test_training_losses_total_is_query_ce_plus_par():
    method = registry.create_method("panet", backbone="smallcnn")
    generator = torch.Generator().manual_seed(1)
    masks = torch.zeros(2, 32, 32, dtype=torch.long)
    masks[:, 8:20, 8:20] = 1
    episode = Episode(3, torch.randn(2, 3, 32, 32, generator=generator), masks,
                      torch.randn(1, 3, 32, 32, generator=generator), masks[:1].clone())
    losses = method.training_losses(episode)
    assert set(losses) == {"query", "align", "total"}
    assert losses["total"].item() == pytest.approx(losses["query"].item() + losses["align"].item(), rel=1e-6)
    noalign = registry.create_method("panet-noalign", backbone="smallcnn").training_losses(episode)
    assert set(noalign) == {"query", "total"} and noalign["total"].item() == pytest.approx(losses["query"].item(), rel=1e-5)


# --- weights ----------------------------------------------------------------------------------

def test_official_snapshot_layout_loads(tmp_path):
    method = registry.create_method("panet", backbone="vgg16")
    generator = torch.Generator().manual_seed(0)
    snapshot = {f"module.{k}": torch.randn(v.shape, generator=generator) for k, v in method.state_dict().items()}
    assert "module.encoder.backbone.features.0.0.weight" in snapshot
    assert "module.encoder.backbone.features.8.4.weight" in snapshot and len(snapshot) == 26
    torch.save(snapshot, tmp_path / "snapshot.pth")
    method.load_checkpoint(tmp_path / "snapshot.pth")
    loaded = method.state_dict()
    for key, value in snapshot.items():
        assert torch.equal(loaded[key.removeprefix("module.")], value)


def test_torchvision_vgg16_initialises_the_encoder(tmp_path, capsys):
    import torchvision

    vgg = torchvision.models.vgg16(weights=None).state_dict()
    torch.save(vgg, tmp_path / "vgg16-test.pth")
    method = registry.create_method("panet", backbone="vgg16", weights=str(tmp_path / "vgg16-test.pth"))
    assert method.pretrained is True
    convs = [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28]
    ours = [m for m in method.model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(ours) == 13
    for conv, index in zip(ours, convs):
        assert torch.equal(conv.weight, vgg[f"features.{index}.weight"])
        assert torch.equal(conv.bias, vgg[f"features.{index}.bias"])
    assert ours[-1].dilation == (2, 2)


def test_without_weights_it_says_so():
    from fsseg_bench.console import collected

    with collected() as warnings:
        method = registry.create_method("panet", backbone="smallcnn", weights="none")
        registry.create_method("panet", backbone="vgg16")
    assert method.pretrained is False
    # The small CNN's warning names the choice (its shipped weights exist); VGG16's says how to pass them.
    assert any("'smallcnn' without its stand-in pretraining (weights=none)" in w and "--weights" not in w
               for w in warnings)
    with collected() as quiet:
        assert registry.create_method("panet", backbone="smallcnn").pretrained is True
    assert not quiet
    assert any("'vgg16'" in w and "RANDOMLY initialised" in w and "--weights PATH" in w for w in warnings)


def test_vgg16_encoder_geometry():
    method = registry.create_method("panet-init", backbone="vgg16")
    with torch.no_grad():
        features = method.encode(torch.zeros(1, 3, 65, 81))
    assert features.shape == (1, 512, 9, 11)  # output stride 8 (ceil through the padded pools)


def test_resnet50_backbone_layers_2_and_3_and_weight_loading(tmp_path):
    import timm

    from fsseg_bench.backbones import build_backbone

    random_init = build_backbone("resnet50")
    assert random_init.pretrained is False and (random_init.channels, random_init.stride) == (1536, 8)
    with torch.no_grad():
        features = random_init.module.eval()(torch.zeros(1, 3, 64, 80))
    assert features.shape == (1, 1536, 8, 10)
    # A full ResNet-50 state dict (torchvision/timm key layout, fc included) initialises it.
    reference = timm.create_model("resnet50", pretrained=False).state_dict()
    torch.save(reference, tmp_path / "resnet50-test.pth")
    loaded = build_backbone("resnet50", weights=tmp_path / "resnet50-test.pth")
    assert loaded.pretrained is True
    ours = loaded.module.body.state_dict()
    assert torch.equal(ours["layer3.5.conv3.weight"], reference["layer3.5.conv3.weight"])
    assert torch.equal(ours["conv1.weight"], reference["conv1.weight"])
    assert not any(key.startswith(("layer4", "fc")) for key in ours)


def test_bad_weights_file_is_one_line_error(tmp_path):
    from fsseg_bench.backbones import build_backbone
    from fsseg_bench.errors import InputError

    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="junk.pth: unreadable weights file"):
        build_backbone("vgg16", weights=tmp_path / "junk.pth")
    torch.save({"features.0.weight": torch.zeros(3)}, tmp_path / "small.pth")
    with pytest.raises(InputError, match="expected at least 26 VGG16 conv tensors"):
        build_backbone("vgg16", weights=tmp_path / "small.pth")
