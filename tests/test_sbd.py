"""prepare-sbd on a small SBD-format tree written with scipy.io.savemat."""

import numpy as np
import pytest

from fsseg_bench.cli import main
from fsseg_bench.data.sbd import prepare_sbd, read_sbd_mask
from fsseg_bench.data.voc import locate_voc, read_mask, read_split
from fsseg_bench.errors import InputError
from helpers import block_mask, write_sbd_tree, write_voc_tree


@pytest.fixture
def voc_and_sbd(tmp_path):
    # VOC: train = v1, v2; val = v3, v4 (own masks with 255 rings) in SegmentationClass.
    voc_masks = {f"v{i}": block_mask(16, 20, {i: (2, 8, 2, 8)}) for i in range(1, 5)}
    voc = write_voc_tree(tmp_path / "voc", voc_masks, {"train": ["v1", "v2"], "val": ["v3", "v4"]},
                         mask_dir="SegmentationClass")
    # SBD: train = s1, s2, v1 (overlaps VOC train), val = s3, v3 (overlaps VOC val).
    sbd_masks = {i: block_mask(16, 20, {c: (1, 9, 1, 9)}, border=False)
                 for c, i in enumerate(["s1", "s2", "s3", "v1", "v3"], start=10)}
    sbd = write_sbd_tree(tmp_path / "sbd", sbd_masks, train=["s1", "s2", "v1"], val=["s3", "v3"])
    # SBD's images live in VOC's JPEGImages on the real data; put them there.
    write_voc_tree(tmp_path / "voc", {i: sbd_masks[i] for i in ("s1", "s2", "s3")}, {}, mask_dir="unused")
    return voc, sbd, sbd_masks


def test_read_sbd_mask_roundtrip(voc_and_sbd):
    _, sbd, masks = voc_and_sbd
    assert np.array_equal(read_sbd_mask(sbd / "cls" / "s2.mat"), masks["s2"])


def test_prepare_sbd_builds_trainaug_and_masks(voc_and_sbd):
    voc, sbd, sbd_masks = voc_and_sbd
    report = prepare_sbd(voc.parent.parent, sbd.parent)
    tree = locate_voc(voc)
    assert tree.mask_dir == "SegmentationClassAug"
    # VOC train + SBD train + SBD val - VOC val = {v1, v2, s1, s2, s3}
    assert read_split(tree, "trainaug") == ["s1", "s2", "s3", "v1", "v2"]
    assert (report.sbd_converted, report.voc_copied, report.unchanged, report.trainaug_images) == (3, 4, 0, 5)
    for image_id in ("s1", "s2", "s3"):
        assert np.array_equal(read_mask(tree.mask_path(image_id)), sbd_masks[image_id])
    # VOC's own masks win where SBD has one too, byte for byte.
    for image_id in ("v1", "v3"):
        assert tree.mask_path(image_id).read_bytes() == (voc / "SegmentationClass" / f"{image_id}.png").read_bytes()


def test_prepare_sbd_is_idempotent(voc_and_sbd, capsys):
    voc, sbd, _ = voc_and_sbd
    assert main(["prepare-sbd", "--voc", str(voc), "--sbd", str(sbd.parent.parent)]) == 0
    first_list = (voc / "ImageSets/Segmentation/trainaug.txt").read_bytes()
    assert main(["prepare-sbd", "--voc", str(voc), "--sbd", str(sbd)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "3 converted from SBD, 4 copied from VOC, 0 already up to date; trainaug.txt: 5 images" in out[0]
    assert "0 converted from SBD, 0 copied from VOC, 7 already up to date; trainaug.txt: 5 images" in out[1]
    assert (voc / "ImageSets/Segmentation/trainaug.txt").read_bytes() == first_list


def test_missing_mat_file_is_named(voc_and_sbd):
    voc, sbd, _ = voc_and_sbd
    (sbd / "cls" / "s2.mat").unlink()
    with pytest.raises(InputError, match=r"cls/s2.mat: SBD .mat file not found"):
        prepare_sbd(voc, sbd)


def test_mat_without_gtcls_is_named(voc_and_sbd):
    import scipy.io
    voc, sbd, _ = voc_and_sbd
    scipy.io.savemat(sbd / "cls" / "s1.mat", {"other": np.zeros((2, 2))})
    with pytest.raises(InputError, match=r"s1.mat: expected a struct GTcls with a field Segmentation"):
        prepare_sbd(voc, sbd)
