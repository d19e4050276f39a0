"""Issue 23 (the backbone seam, method cards): registered backbones, ViT token maps, weights by
content from local files only, one-line errors for missing checkpoints, and method cards shown
beside the numbers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from fsseg_bench.backbones import backbone_names, build_backbone
from fsseg_bench.cli import main
from fsseg_bench.errors import InputError
from helpers import records_of, run_args


def test_every_family_is_registered_and_an_unknown_name_gets_a_suggestion():
    names = set(backbone_names())
    assert {"vgg16", "resnet50", "smallcnn", "vit-tiny14"} <= names
    for size in "sblg":
        assert {f"dinov2_vit{size}14", f"dinov2_vit{size}14_reg"} <= names
    assert {"dinov3_vits16", "dinov3_vitb16", "dinov3_vitl16"} <= names
    with pytest.raises(InputError, match="did you mean 'dinov2_vitb14'"):
        build_backbone("dinov2-vitb14")


def test_vit_token_maps_are_the_patch_tokens_on_the_grid():
    """The map is timm's final-norm patch tokens (class and register tokens dropped), reshaped to
    the patch grid; an input that is not a multiple of the patch is resized to the nearest one."""
    backbone = build_backbone("vit-tiny14", seed=3)
    model = backbone.module.eval()
    assert (backbone.channels, backbone.stride, backbone.pretrained) == (96, 14, False)
    images = torch.randn(2, 3, 56, 42, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        maps = model(images)
        tokens = model.model.forward_features(images)
    assert maps.shape == (2, 96, 4, 3)
    prefix = model.model.num_prefix_tokens
    assert torch.equal(maps[1, :, 2, 1], tokens[1, prefix + 2 * 3 + 1])  # row-major over the grid
    with torch.no_grad():
        odd = model(torch.randn(1, 3, 64, 64))
    assert odd.shape == (1, 96, 5, 5)  # 64 px -> 70 px, the nearest multiple of 14
    # Registers are dropped too: a DINOv2 with four of them still gives one token per patch.
    registers = build_backbone("dinov2_vits14_reg", weights="none", seed=0).module.eval()
    assert registers.model.num_prefix_tokens == 5
    with torch.no_grad():
        assert registers(torch.randn(1, 3, 28, 28)).shape == (1, 384, 2, 2)


def test_dinov2_weights_load_in_timms_and_metas_layouts(tmp_path):
    """A checkpoint saved in timm's layout and the same tensors in Meta's (register_tokens,
    mask_token) load to the same model; both are read by content and marked pretrained."""
    from fsseg_bench.contenthash import recording_reads

    source = build_backbone("dinov2_vits14_reg", weights="none", seed=1).module.eval()
    state = source.model.state_dict()
    timm_file, meta_file = tmp_path / "timm.pth", tmp_path / "dinov2_vits14_reg4_pretrain.pth"
    torch.save(state, timm_file)
    meta = {("register_tokens" if key == "reg_token" else key): value for key, value in state.items()}
    meta["mask_token"] = torch.zeros(1, 384)
    # Meta's position table has a class-token row that timm folds into the class token: zero here,
    # so that the fold leaves it unchanged.
    meta["pos_embed"] = torch.cat([torch.zeros(1, 1, 384), state["pos_embed"]], dim=1)
    torch.save(meta, meta_file)
    images = torch.randn(1, 3, 42, 42, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = source(images)
    for path in (timm_file, meta_file):
        with recording_reads() as reads:
            loaded = build_backbone("dinov2_vits14_reg", weights=path, seed=7)
        assert loaded.pretrained and loaded.pretraining == "LVD-142M"
        assert [(r["role"], Path(r["path"]).name) for r in reads] == [("weights", path.name)]
        with torch.no_grad():
            assert torch.equal(loaded.module.eval()(images), expected)
    wrong = tmp_path / "wrong.pth"
    torch.save({"patch_embed.proj.weight": torch.zeros(3, 3)}, wrong)
    with pytest.raises(InputError, match="not a checkpoint of this ViT"):
        build_backbone("dinov2_vits14", weights=wrong)


def test_cached_weights_are_found_and_their_licence_recorded(tmp_path, monkeypatch):
    """A timm safetensors file in the Hugging Face cache (HF_HOME) is used without --weights, and
    the licence its config.json states is recorded."""
    from safetensors.torch import save_file

    state = build_backbone("dinov2_vits14", weights="none", seed=2).module.model.state_dict()
    snapshot = tmp_path / "hf" / "hub" / "models--timm--vit_small_patch14_dinov2.lvd142m" / "snapshots" / "abc"
    snapshot.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in state.items()}, str(snapshot / "model.safetensors"))
    (snapshot / "config.json").write_text(json.dumps({"architecture": "vit_small_patch14_dinov2",
                                                      "pretrained_cfg": {"license": "apache-2.0"}}))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "torch"))
    found = build_backbone("dinov2_vits14")
    assert found.pretrained and found.weights_path == str(snapshot / "model.safetensors")
    assert found.licence == "apache-2.0"


def test_a_missing_gated_checkpoint_or_weights_file_is_one_line_before_any_run(synthetic_root, tmp_path, capsys,
                                                                               monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-hf"))
    results = tmp_path / "results"
    common = ["--method", "knn", "--fold", "0", "--shot", "1", "--seed", "1234", "--limit", "4"]
    assert main(run_args(synthetic_root, results, *common, "--option", "backbone=dinov3_vits16")) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "dinov3_vits16" in err and "gated" in err and "--weights PATH" in err
    assert main(run_args(synthetic_root, results, *common, "--option", "backbone=dinov2_vits14",
                         "--weights", str(tmp_path / "nowhere.pth"))) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nowhere.pth: weights file not found" in err
    assert not (results / "runs").exists() or not any((results / "runs").rglob("records*"))


def test_vit_features_through_the_cache_equal_the_uncached_path(synthetic_root, tmp_path):
    """Training-free baselines on a registered ViT: the runner's cached token maps (memory and
    disk store) give records bitwise equal to encoding every image in every episode."""
    common = ["--method", "knn", "panet-init", "--option", "backbone=vit-tiny14", "--fold", "0", "--shot", "1", "5",
              "--seed", "1234", "--limit", "3"]
    assert main(run_args(synthetic_root, tmp_path / "uncached", *common, "--no-cache")) == 0
    assert main(run_args(synthetic_root, tmp_path / "cached", *common)) == 0
    uncached = records_of(tmp_path / "uncached")
    assert len(uncached) == 4 and records_of(tmp_path / "cached") == uncached
    # Recomputed with every token map served by the disk store (a memory tier of a few KiB).
    assert main(run_args(synthetic_root, tmp_path / "cached", *common, "--force", "--cache-mib", "0.01")) == 0
    assert records_of(tmp_path / "cached") == uncached
    infos = [json.loads(p.read_text()) for p in (tmp_path / "cached" / "runs").rglob("run.json")]
    assert [i["encoder_passes"] for i in infos] == [0, 0, 0, 0]
    info = infos[0]
    assert info["method_config"]["backbone"] == "vit-tiny14" and info["pretrained"] is False
    assert info["card"]["pretraining"] == []  # a random init was pretrained on nothing


def test_method_cards_are_recorded_and_shown(synthetic_root, tmp_path, capsys):
    from fsseg_bench.cards import KNOWN_OVERLAPS, STANDIN_CORPUS, card_warnings

    results = tmp_path / "results"
    assert main(run_args(synthetic_root, results, "--method", "knn", "support-copy", "--fold", "0", "--shot", "1",
                         "--seed", "1234", "--limit", "4")) == 0
    cards = {json.loads(p.read_text())["method"]: json.loads(p.read_text())["card"]
             for p in (results / "runs").rglob("run.json")}
    assert cards["knn"] == {"pretraining": [STANDIN_CORPUS], "training": "none", "class_names": False,
                            "test_time_adaptation": False, "notes": ""}
    assert cards["support-copy"]["pretraining"] == []
    capsys.readouterr()
    assert main(["table", "--results", str(results), "--resamples", "50"]) == 0
    out = capsys.readouterr().out
    assert "Method cards:" in out and f"- knn: pretrained on {STANDIN_CORPUS}; not trained" in out
    assert "- ⚠ knn: " in out and "- ⚠ support-copy" not in out
    assert main(["table", "--results", str(results), "--resamples", "50", "--format", "csv"]) == 0
    csv = capsys.readouterr().out.splitlines()
    assert csv[0].endswith(",pretraining,training")
    assert any(line.startswith("synthetic5i,knn,") and line.endswith(f",{STANDIN_CORPUS},none") for line in csv)
    # What is known of the corpora, by dataset: ImageNet holds VOC's classes, not the stand-in's.
    imagenet = {"pretraining": ["ImageNet-1k"], "training": "none"}
    assert card_warnings(imagenet, "pascal-voc") == [f"ImageNet-1k: {KNOWN_OVERLAPS['ImageNet-1k']['pascal-voc'][1]}"]
    assert card_warnings(imagenet, "synthetic5i") == []
    assert card_warnings({"pretraining": [], "class_names": True}, "coco") == ["reads class names or text at test time"]


def test_trained_methods_declare_their_training():
    from fsseg_bench.cards import BASE_CLASSES, card_of
    from fsseg_bench.registry import create_method, load_methods

    load_methods()
    assert card_of(create_method("panet", backbone="smallcnn"))["training"] == BASE_CLASSES
    assert card_of(create_method("panet-init", backbone="smallcnn"))["training"] == "none"
    assert card_of(create_method("hsnet", backbone="smallcnn"))["training"] == BASE_CLASSES


def test_sam_embeddings_are_sams_own_preprocessing_and_encoder():
    """SamEmbeddings on ImageNet-normalised images equals segment-anything's own path on the same
    pixels (0..255): at the encoder's size, `Sam.preprocess` (normalise, pad) then `image_encoder`;
    otherwise the longer side resized as `ResizeLongestSide.get_preprocess_shape` says. (Its torch
    helper `apply_image_torch` reads the batch and channel counts as the size, so it is not used.)"""
    from segment_anything.utils.transforms import ResizeLongestSide

    backbone = build_backbone("sam-tiny", seed=4)
    module = backbone.module.eval()
    assert (backbone.channels, backbone.stride) == (256, 16)
    mean, std = torch.tensor([0.485, 0.456, 0.406])[:, None, None], torch.tensor([0.229, 0.224, 0.225])[:, None, None]
    generator = torch.Generator().manual_seed(2)
    square = torch.randint(0, 256, (2, 3, 128, 128), generator=generator).float()
    wide = torch.randint(0, 256, (1, 3, 60, 90), generator=generator).float()
    with torch.no_grad():
        ours = module((square / 255 - mean) / std)
        theirs = module.sam.image_encoder(module.sam.preprocess(square))
        assert ours.shape == (2, 256, 8, 8)
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)  # /255 first here: float rounding only
        size = ResizeLongestSide.get_preprocess_shape(60, 90, 128)
        assert module.input_size(60, 90) == size == (85, 128)
        resized = torch.nn.functional.interpolate(wide, size, mode="bilinear", align_corners=False, antialias=True)
        torch.testing.assert_close(module((wide / 255 - mean) / std),
                                   module.sam.image_encoder(module.sam.preprocess(resized)), rtol=1e-4, atol=1e-4)


def test_sam_weights_absent_are_said_once_and_a_missing_file_is_one_line(synthetic_root, tmp_path, capsys,
                                                                         monkeypatch):
    """No SAM file in the cache: a warning naming where to put it, and pretrained: false; a
    `sam_weights` path that does not exist: one line, exit 2, before any run."""
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    from fsseg_bench.backbones import build_backbone as build

    capsys.readouterr()
    absent = build("sam_vit_b", seed=0)
    assert absent.pretrained is False
    assert "sam_vit_b_01ec64.pth" in capsys.readouterr().err
    common = ["--method", "dino-sam-point", "--option", "backbone=vit-tiny14", "--fold", "0", "--shot", "1",
              "--seed", "1234", "--limit", "2"]
    assert main(run_args(synthetic_root, tmp_path / "r", *common, "--option",
                         f"sam_weights={tmp_path / 'sam_vit_b_01ec64.pth'}")) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("fsseg-bench: error")]
    assert len(errors) == 1 and "sam_vit_b_01ec64.pth: weights file not found" in errors[0]
    assert not (tmp_path / "r" / "runs").exists()


def test_two_encoders_through_the_cache_equal_the_uncached_path(synthetic_root, tmp_path):
    """dino-sam-point packs DINOv2 tokens and SAM's embedding per image: cached, disk-served and
    uncached records are equal bit for bit, and every image is encoded once."""
    common = ["--method", "dino-sam-point", "--option", "backbone=vit-tiny14", "--option", "sam=sam-tiny",
              "--option", "match_size=56", "--fold", "0", "--shot", "1", "5", "--seed", "1234", "--limit", "5"]
    assert main(run_args(synthetic_root, tmp_path / "uncached", *common, "--no-cache")) == 0
    assert main(run_args(synthetic_root, tmp_path / "cached", *common)) == 0
    uncached = records_of(tmp_path / "uncached")
    assert len(uncached) == 2 and records_of(tmp_path / "cached") == uncached
    assert main(run_args(synthetic_root, tmp_path / "cached", *common, "--force", "--cache-mib", "0.01")) == 0
    assert records_of(tmp_path / "cached") == uncached
    infos = [json.loads(p.read_text()) for p in (tmp_path / "cached" / "runs").rglob("run.json")]
    assert [i["encoder_passes"] for i in infos] == [0, 0]
    scored = [r for rows in uncached.values() for r in rows]
    assert any(r["fg_intersection"] > 0 for r in scored)  # SAM's decoder predicted something
