"""The stand-in pretraining: shipped weights checked by sha256 on load, a recipe that converges and
repeats itself, and a corpus that shares no image with any stand-in split."""

from __future__ import annotations

import hashlib
import shutil

import numpy as np
import pytest
import torch

from fsseg_bench import pretrain
from fsseg_bench.backbones import build_backbone
from fsseg_bench.contenthash import file_sha256, recording_reads, reads_identity
from fsseg_bench.errors import InputError
from fsseg_bench.pyramids import build_pyramid


def test_shipped_weights_load_by_default_and_are_checked():
    for architecture in pretrain.STANDIN_WEIGHTS:
        path, expected = pretrain.standin_weights(architecture)
        assert path.is_file() and file_sha256(path) == expected
    with recording_reads() as reads:
        backbone = build_backbone("smallcnn")
        pyramid = build_pyramid("smallcnn")
    assert backbone.pretrained and pyramid.pretrained
    assert backbone.weights_path == str(pretrain.standin_weights("smallcnn")[0])
    # Loaded through the same path as real weights: the run's identity holds their sha256.
    shas = {sha for _, sha in reads_identity(reads)}
    assert {pretrain.standin_weights(a)[1] for a in pretrain.STANDIN_WEIGHTS} <= shas
    state = torch.load(pretrain.standin_weights("smallcnn")[0], weights_only=True)
    assert all(torch.equal(state[k], v) for k, v in backbone.module.state_dict().items())
    # `--weights none` is the seeded random init, recorded as not pretrained.
    assert not build_backbone("smallcnn", "none").pretrained and not build_pyramid("smallcnn", "none").pretrained


def test_an_edited_weights_file_is_refused(tmp_path, monkeypatch):
    name, expected = pretrain.STANDIN_WEIGHTS["smallcnn"]
    shutil.copy(pretrain.WEIGHTS_DIR / name, tmp_path / name)
    monkeypatch.setattr(pretrain, "WEIGHTS_DIR", tmp_path)
    assert build_backbone("smallcnn").pretrained
    state = torch.load(tmp_path / name, weights_only=True)
    first = next(iter(state))
    state[first] = state[first] + 1e-3
    torch.save(state, tmp_path / name)
    with pytest.raises(InputError, match=r"smallcnn-standin.pt: sha256 .* is not the shipped stand-in weights'"):
        build_backbone("smallcnn")


def test_a_short_recipe_converges_and_repeats_bit_for_bit():
    # 300 steps at 32 px on 800 corpus images (the shipped recipe: 2000 steps at 48 px on 6000).
    recipe = pretrain.PretrainRecipe(images=800, steps=300, batch=32, image_size=32)
    first = pretrain.pretrain(recipe, "smallcnn-pyramid")
    assert first.losses[-1] < first.losses[0] - 2.0  # from about ln 5 + ln 4 + ln 12 = 5.48
    shape, texture, hue = first.accuracy  # held out; chance 1/5, 1/4, 1/12
    assert texture > 1.5 / 4 and hue > 5 / 12, first.accuracy
    tiny = pretrain.PretrainRecipe(images=64, steps=4, batch=16, image_size=32)
    a, b = pretrain.pretrain(tiny), pretrain.pretrain(tiny)
    assert a.state.keys() == b.state.keys() and all(torch.equal(a.state[k], b.state[k]) for k in a.state)


def _hashes(arrays) -> set[str]:
    return {hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest() for array in arrays}


def test_no_pretraining_image_is_an_image_of_any_stand_in_split():
    from fsseg_bench.data.standins import CocoStandIn, FssStandIn, coco_scene_images, fss_scene_images
    from fsseg_bench.data.synthetic import SyntheticConfig, render_image

    corpus = _hashes(pretrain.corpus_image(n)[0] for n in range(pretrain.PretrainRecipe().images))
    assert len(corpus) == pretrain.PretrainRecipe().images  # every corpus image distinct
    voc_config = SyntheticConfig()
    voc = _hashes(render_image(voc_config, n)[0] for n in range(voc_config.n_train + voc_config.n_val))
    coco = _hashes(image for image, _ in coco_scene_images(CocoStandIn()))
    fss = _hashes(image for image, _ in fss_scene_images(FssStandIn()))
    assert len(voc) == 720 and coco and fss
    assert not corpus & (voc | coco | fss)


def test_corpus_attributes_cover_every_combination():
    seen = {pretrain.corpus_attributes(n) for n in range(pretrain.PretrainRecipe().images)}
    assert len(seen) == 5 * 4 * pretrain.HUE_BINS
