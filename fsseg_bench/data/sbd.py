"""`prepare-sbd`: build VOC's SegmentationClassAug and the 10,582-image `trainaug` list from SBD.

SBD stores each class map as the field `Segmentation` of a MATLAB struct `GTcls` in
`dataset/cls/<id>.mat`. VOC's own masks (with their 255 borders) win over SBD's where both exist.
trainaug = VOC train + SBD train + SBD val - VOC val.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.io

from ..errors import InputError
from .png import write_mask_png
from .voc import check_mask_values, locate_voc, read_split


@dataclass(frozen=True)
class SbdReport:
    sbd_converted: int
    voc_copied: int
    unchanged: int
    trainaug_images: int
    trainaug_path: Path

    def summary(self) -> str:
        return (f"SegmentationClassAug: {self.sbd_converted} converted from SBD, {self.voc_copied} copied from VOC, "
                f"{self.unchanged} already up to date; trainaug.txt: {self.trainaug_images} images -> {self.trainaug_path}")


def locate_sbd(sbd_root: str | Path) -> Path:
    """Accept `benchmark_RELEASE`, its `dataset/` folder, or any folder holding `cls/` and `train.txt`."""
    sbd_root = Path(sbd_root)
    for candidate in (sbd_root, sbd_root / "dataset", sbd_root / "benchmark_RELEASE" / "dataset"):
        if (candidate / "cls").is_dir() and (candidate / "train.txt").is_file():
            return candidate
    raise InputError(f"{sbd_root}: no SBD dataset here (expected cls/ and train.txt in it or in dataset/)")


def read_sbd_mask(path: Path) -> np.ndarray:
    if not path.is_file():
        raise InputError(f"{path}: SBD .mat file not found")
    try:
        mat = scipy.io.loadmat(path, squeeze_me=True, struct_as_record=False)
        segmentation = np.asarray(mat["GTcls"].Segmentation)
    except (KeyError, AttributeError) as exc:
        raise InputError(f"{path}: expected a struct GTcls with a field Segmentation ({exc})") from None
    except (ValueError, OSError, TypeError) as exc:
        raise InputError(f"{path}: unreadable .mat file ({exc})") from None
    if segmentation.ndim != 2 or segmentation.min(initial=0) < 0 or segmentation.max(initial=0) > 255:
        raise InputError(f"{path}: GTcls.Segmentation must be a 2-D class map with values 0..255")
    mask = segmentation.astype(np.uint8)
    check_mask_values(mask, path)
    return mask


def _read_ids(path: Path) -> list[str]:
    if not path.is_file():
        raise InputError(f"{path}: SBD image list not found")
    return [line.split()[0] for line in path.read_text().splitlines() if line.strip()]


def _up_to_date(dest: Path, source: Path) -> bool:
    return dest.is_file() and dest.stat().st_mtime_ns >= source.stat().st_mtime_ns


def prepare_sbd(voc_root: str | Path, sbd_root: str | Path) -> SbdReport:
    """Idempotent: masks newer than their source are left alone; the list is rewritten identically."""
    tree = locate_voc(voc_root)
    voc = tree.root
    voc_masks = voc / "SegmentationClass"
    if not voc_masks.is_dir():
        raise InputError(f"{voc_masks}: VOC's own SegmentationClass folder not found")
    sbd = locate_sbd(sbd_root)
    voc_train, voc_val = read_split(tree, "train"), read_split(tree, "val")
    sbd_train, sbd_val = _read_ids(sbd / "train.txt"), _read_ids(sbd / "val.txt")

    out_dir = voc / "SegmentationClassAug"
    out_dir.mkdir(exist_ok=True)
    voc_ids = set(voc_train) | set(voc_val)
    converted = copied = unchanged = 0
    for image_id in sorted(set(sbd_train) | set(sbd_val)):
        if image_id in voc_ids:
            continue  # VOC's own mask is copied below
        source, dest = sbd / "cls" / f"{image_id}.mat", out_dir / f"{image_id}.png"
        if source.is_file() and _up_to_date(dest, source):
            unchanged += 1
            continue
        write_mask_png(dest, read_sbd_mask(source))
        converted += 1
    for image_id in sorted(voc_ids):
        source, dest = voc_masks / f"{image_id}.png", out_dir / f"{image_id}.png"
        if not source.is_file():
            raise InputError(f"{source}: VOC mask of listed image {image_id!r} not found")
        if _up_to_date(dest, source) and dest.stat().st_size == source.stat().st_size:
            unchanged += 1
            continue
        shutil.copy2(source, dest)
        copied += 1

    trainaug = sorted((set(voc_train) | set(sbd_train) | set(sbd_val)) - set(voc_val))
    for image_id in trainaug:
        jpg = tree.image_path(image_id)
        if not jpg.is_file():
            sbd_jpg = sbd / "img" / f"{image_id}.jpg"
            if not sbd_jpg.is_file():
                raise InputError(f"{jpg}: image of trainaug id {image_id!r} not found (nor {sbd_jpg})")
            shutil.copy2(sbd_jpg, jpg)
    trainaug_path = tree.list_path("trainaug")
    trainaug_path.write_text("\n".join(trainaug) + "\n")
    return SbdReport(converted, copied, unchanged, len(trainaug), trainaug_path)
