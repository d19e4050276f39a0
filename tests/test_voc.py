"""The VOC-format reader and its class-presence index cache."""

import os

import numpy as np
import pytest
from PIL import Image

from fsseg_bench.data.png import write_mask_png
from fsseg_bench.data.voc import load_class_index, locate_voc, read_mask, read_pair, read_split
from fsseg_bench.errors import InputError

EXPECTED_PIXELS = {
    "img_a": {1: 40, 2: 24}, "img_b": {1: 100}, "img_c": {3: 30, 7: 80}, "img_d": {2: 60},
    "img_e": {1: 9, 3: 60}, "img_f": {4: 36, 5: 20}, "img_g": {4: 50}, "img_h": {5: 25, 7: 80},
    "img_i": {7: 36},
}


def test_locate_accepts_voc2012_or_ancestors(tiny_voc):
    voc = tiny_voc / "VOCdevkit" / "VOC2012"
    for root in (tiny_voc, tiny_voc / "VOCdevkit", voc):
        tree = locate_voc(root)
        assert tree.root == voc and tree.mask_dir == "SegmentationClassAug"


def test_falls_back_to_segmentation_class(tiny_voc):
    voc = tiny_voc / "VOCdevkit" / "VOC2012"
    (voc / "SegmentationClassAug").rename(voc / "SegmentationClass")
    assert locate_voc(tiny_voc).mask_dir == "SegmentationClass"


def test_palette_and_grayscale_masks_read_as_class_indices(tiny_voc):
    tree = locate_voc(tiny_voc)
    with Image.open(tree.mask_path("img_a")) as img:
        assert img.mode == "P"
    with Image.open(tree.mask_path("img_b")) as img:
        assert img.mode == "L"
    for image_id in ("img_a", "img_b"):
        image, mask = read_pair(tree, image_id)
        assert image.shape == (20, 24, 3) and image.dtype == np.uint8
        assert mask.shape == (20, 24)
    mask_b = read_mask(tree.mask_path("img_b"))
    assert (mask_b[5:15, 5:15] == 1).all() and mask_b[4, 5] == 255 and mask_b[0, 0] == 0
    assert set(np.unique(read_mask(tree.mask_path("img_a")))) == {0, 1, 2, 255}


def test_class_index_counts_match_hand_counts(tiny_voc, tmp_path):
    tree = locate_voc(tiny_voc)
    index = load_class_index(tree, "val", tmp_path / "cache")
    assert index.ids == tuple(EXPECTED_PIXELS)
    assert index.pixels == EXPECTED_PIXELS
    assert index.images_with(1) == ["img_a", "img_b", "img_e"]
    assert index.images_with(1, min_pixels=20) == ["img_a", "img_b"]
    assert index.classes_of("img_e", min_pixels=10) == [3]


def test_cache_skips_second_scan_and_a_changed_mask_invalidates_it(tiny_voc, tmp_path):
    tree = locate_voc(tiny_voc)
    cache = tmp_path / "cache"
    first = load_class_index(tree, "val", cache)
    second = load_class_index(tree, "val", cache)
    assert not first.from_cache and second.from_cache
    assert second.pixels == first.pixels and second.fingerprint == first.fingerprint

    mask = read_mask(tree.mask_path("img_i"))
    mask[0:2, 0:3] = 6  # 6 new pixels of class 6
    write_mask_png(tree.mask_path("img_i"), mask)
    stat = tree.mask_path("img_i").stat()
    os.utime(tree.mask_path("img_i"), ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    third = load_class_index(tree, "val", cache)
    assert not third.from_cache
    assert third.pixels["img_i"] == {6: 6, 7: 36}
    assert load_class_index(tree, "val", cache).from_cache


def test_split_lists(tiny_voc):
    tree = locate_voc(tiny_voc)
    assert read_split(tree, "train")[:2] == ["img_a", "img_b"]
    with pytest.raises(InputError, match="trainaug.txt: image list for split 'trainaug' not found"):
        read_split(tree, "trainaug")
