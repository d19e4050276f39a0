"""The synthetic5i stand-in: VOC formats, determinism, and the committed episode lists."""

from pathlib import Path

import numpy as np
from PIL import Image

from fsseg_bench.data.synthetic import SyntheticConfig, class_family, render_image, write_synthetic_tree
from fsseg_bench.data.voc import load_class_index, locate_voc
from fsseg_bench.episodes import committed_episode_path, episodes_to_bytes, generate_episode_list, sha256_bytes
from fsseg_bench.protocol import load_protocol


def test_tree_is_in_voc_formats(synthetic_root):
    tree = locate_voc(synthetic_root)
    assert tree.root == Path(synthetic_root) / "VOCdevkit" / "VOC2012"
    first = (tree.root / "ImageSets/Segmentation/train.txt").read_text().split()[0]
    with Image.open(tree.image_path(first)) as img:
        assert img.format == "JPEG" and img.mode == "RGB"
    with Image.open(tree.mask_path(first)) as mask:
        assert mask.format == "PNG" and mask.mode == "P"
        values = set(np.unique(np.array(mask)))
    assert 255 in values and values <= set(range(21)) | {255}


def test_classes_are_distinct_families_and_images_hold_several():
    families = [class_family(c) for c in range(1, 21)]
    assert len(set(families)) == 20
    # every fold's novel classes reuse shapes and textures seen among its base classes
    for fold in range(4):
        novel = [families[c - 1] for c in range(5 * fold + 1, 5 * fold + 6)]
        base = [families[c - 1] for c in range(1, 21) if not 5 * fold < c <= 5 * fold + 5]
        assert {f[0] for f in novel} <= {f[0] for f in base}
        assert {f[1] for f in novel} <= {f[1] for f in base}
    config = SyntheticConfig()
    n_classes = [len(set(np.unique(render_image(config, n)[1])) - {0, 255}) for n in range(60)]
    assert min(n_classes) >= 1 and max(n_classes) == 3 and np.mean(n_classes) > 1.5


def test_render_is_deterministic_and_seed_dependent():
    a, b = render_image(SyntheticConfig(seed=0), 5), render_image(SyntheticConfig(seed=0), 5)
    c = render_image(SyntheticConfig(seed=1), 5)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[1], c[1])


def test_void_band_is_one_to_three_pixels_wide():
    from scipy import ndimage
    for number in range(20):
        _, label = render_image(SyntheticConfig(), number)
        void = label == 255
        assert void.sum() > 0
        # A band at most 3 px wide vanishes under two 3x3 erosions (bar where two objects' bands meet).
        survivors = ndimage.binary_erosion(void, structure=np.ones((3, 3)), iterations=2)
        assert survivors.sum() <= 0.05 * void.sum()
        # And every object pixel has void within 3 px: the band follows the borders.
        objects = (label > 0) & (label < 255)
        assert (objects & ~ndimage.binary_dilation(void, iterations=200)).sum() == 0


def test_committed_episode_lists_regenerate_byte_identically(synthetic_root, tmp_path):
    protocol = load_protocol("synthetic5i")
    index = load_class_index(locate_voc(synthetic_root), protocol.split, tmp_path)
    count = 0
    for fold in protocol.folds:
        for shot in protocol.shots:
            for seed in protocol.seeds:
                data = episodes_to_bytes(generate_episode_list(protocol, index, fold, shot, seed))
                path = committed_episode_path(protocol, fold, shot, seed)
                assert path.read_bytes() == data, path
                assert protocol.pinned_sha256(fold, shot, seed) == sha256_bytes(data)
                count += 1
    assert count == 40


def test_write_is_idempotent(tmp_path):
    config = SyntheticConfig(n_train=4, n_val=3)
    voc = write_synthetic_tree(tmp_path, config)
    mtime = (voc / "JPEGImages" / "syn_000000.jpg").stat().st_mtime_ns
    write_synthetic_tree(tmp_path, config)
    assert (voc / "JPEGImages" / "syn_000000.jpg").stat().st_mtime_ns == mtime
    assert (voc / "ImageSets/Segmentation/val.txt").read_text().split() == ["syn_000004", "syn_000005", "syn_000006"]
