"""Chest X-ray lung masks as PATNet reads them (slei109/PATNet `data/lung.py`): one code path for
the prepared real data (`fsseg-bench prepare-chestxray`) and the stand-in `synth --layout chestxray`.

Layout under `LungSegmentation/`: images `CXR_png/<name>.png`, masks `masks/<name>_mask.png`
(grey >= 128 is lung). One class. PATNet's pool is the masks folder (sorted, kept when the name's
part after its first dot is `png`), and the image is the mask's name without `_mask`. Montgomery's
masks in the public download lack the suffix: PATNet's code would look for an image that does not
exist, so a mask without it is an error naming it (`prepare-chestxray --montgomery include` renames
them, `exclude` leaves them out; its recipe records which).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError
from .binary import ClassByFolder, listing_source, patnet_listing

CHEST_CLASSES = ("lung",)
SUFFIX = "_mask"
SPLIT = "test"


@dataclass(frozen=True)
class ChestXrayTree(ClassByFolder):
    root: Path  # the LungSegmentation folder
    num_classes: int = 1

    @property
    def identity(self) -> str:
        return f"chestxray|{self.root.resolve()}"

    def image_path(self, image_id: str) -> Path:
        return self.root / "CXR_png" / f"{image_id}.png"

    def mask_path(self, image_id: str) -> Path:
        return self.root / "masks" / f"{image_id}{SUFFIX}.png"

    def class_of(self, image_id: str) -> int:
        return 1

    def class_pool(self, class_id: int) -> list[str]:
        ids = []
        for path in patnet_listing(self.root / "masks", "png"):
            if not path.name.endswith(f"{SUFFIX}.png"):
                raise InputError(f"{path}: mask name without {SUFFIX!r}; PATNet pairs masks/<name>{SUFFIX}.png with "
                                 f"CXR_png/<name>.png (prepare-chestxray --montgomery include|exclude)")
            ids.append(path.name[:-len(f"{SUFFIX}.png")])
        return ids

    def split_ids(self, split: str) -> list[str]:
        if split != SPLIT:
            raise InputError(f"{self.root}: the chest X-ray set has one split, {SPLIT!r} (PATNet's); got {split!r}")
        return self.class_pool(1)

    def split_source(self, split: str) -> bytes:
        return listing_source(self.split_ids(split))


def locate_chestxray(data_root: str | Path) -> ChestXrayTree:
    data_root = Path(data_root)
    if not data_root.exists():
        raise InputError(f"{data_root}: data root not found (expected PATNet's LungSegmentation folder)")
    for candidate in (data_root, data_root / "LungSegmentation"):
        if (candidate / "CXR_png").is_dir() or (candidate / "masks").is_dir():
            for folder in ("CXR_png", "masks"):
                if not (candidate / folder).is_dir():
                    raise InputError(f"{candidate}: no {folder}/ folder (PATNet's layout: CXR_png/ and masks/)")
            return ChestXrayTree(candidate)
    raise InputError(f"{data_root}: expected PATNet's LungSegmentation layout, CXR_png/<name>.png and "
                     f"masks/<name>_mask.png, in it or in LungSegmentation/")


def _register() -> None:
    from .registry import DatasetEntry, register_dataset

    def definition(protocol, tree):
        from ..datasets import single_fold_dataset
        return single_fold_dataset("chestxray", CHEST_CLASSES)

    def standin(root, seed: int = 0, images: int | None = None) -> Path:
        from .patnet_standins import ChestStandIn, write_chest_standin
        return write_chest_standin(root, ChestStandIn(seed=seed, **({"images": images} if images else {})))

    register_dataset(DatasetEntry("chestxray", "Chest X-ray (PATNet's LungSegmentation)", 1, locate_chestxray,
                                  definition, layout="chestxray", write_standin=standin))


_register()
