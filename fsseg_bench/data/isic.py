"""ISIC 2018 (task 1 lesion masks) as PATNet reads it (slei109/PATNet `data/isic.py`): one code path
for the prepared real data (`fsseg-bench prepare-isic`) and the stand-in `synth --layout isic`.

Layout under `ISIC/`: images `ISIC2018_Task1-2_Training_Input/<c>/<id>.jpg` in one folder per
diagnosis class (`1`, `2`, `3`), masks `ISIC2018_Task1_Training_GroundTruth/<id>_segmentation.png`
(grey >= 128 is the lesion). Image ids are `<c>/<id>`; the only split is `test`; pools are each
class folder's jpgs in PATNet's order. PATNet's code does not name its folders' classes; the
folders `prepare-isic` writes are 1 nevus, 2 melanoma, 3 seborrheic keratosis, the assignment
GF-SAM's loader states (`cls_dict`).

GF-SAM's layout is read too: the images flat in `ISIC2018_Task1-2_Training_Input/`, each one's
class from a class table (`ID,Class`; GF-SAM reads PATNet's `class_id.csv` from its own repository)
that must sit at `ISIC/class_id.csv`. Its pools are the same files in the same order (sorted, then
split by class), so both layouts give the same ids and the same episodes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError
from .binary import ClassByFolder, listing_source, patnet_listing

ISIC_CLASSES = ("nevus", "melanoma", "seborrheic_keratosis")
INPUT_DIR = "ISIC2018_Task1-2_Training_Input"
MASK_DIR = "ISIC2018_Task1_Training_GroundTruth"
SPLIT = "test"


@dataclass(frozen=True)
class IsicTree(ClassByFolder):
    root: Path  # the ISIC folder
    num_classes: int = len(ISIC_CLASSES)
    flat_classes: tuple = ()  # GF-SAM's flat layout: ((image stem, class folder), ...) from ISIC/class_id.csv

    @property
    def identity(self) -> str:
        return f"isic|{self.root.resolve()}"

    def image_path(self, image_id: str) -> Path:
        folder, stem = image_id.split("/", 1)
        return self.root / INPUT_DIR / (f"{stem}.jpg" if self.flat_classes else f"{folder}/{stem}.jpg")

    def mask_path(self, image_id: str) -> Path:
        return self.root / MASK_DIR / f"{image_id.split('/', 1)[1]}_segmentation.png"

    def class_of(self, image_id: str) -> int:
        return int(image_id.split("/", 1)[0])

    def class_pool(self, class_id: int) -> list[str]:
        if not self.flat_classes:
            return [f"{class_id}/{path.name.split('.')[0]}"
                    for path in patnet_listing(self.root / INPUT_DIR / str(class_id), "jpg")]
        table = dict(self.flat_classes)
        pool = []
        for path in patnet_listing(self.root / INPUT_DIR, "jpg"):
            stem = path.name.split(".")[0]
            if stem not in table:
                raise InputError(f"{self.root / 'class_id.csv'}: no class for {stem} (an image of {INPUT_DIR}/)")
            if table[stem] == class_id:
                pool.append(f"{class_id}/{stem}")
        return pool

    def split_ids(self, split: str) -> list[str]:
        if split != SPLIT:
            raise InputError(f"{self.root}: ISIC has one split, {SPLIT!r} (PATNet's); got {split!r}")
        return [image_id for c in range(1, self.num_classes + 1) for image_id in self.class_pool(c)]

    def split_source(self, split: str) -> bytes:
        return listing_source(self.split_ids(split))


def locate_isic(data_root: str | Path) -> IsicTree:
    data_root = Path(data_root)
    if not data_root.exists():
        raise InputError(f"{data_root}: data root not found (expected PATNet's ISIC folder)")
    for candidate in (data_root, data_root / "ISIC"):
        if (candidate / INPUT_DIR).is_dir():
            missing = [str(c) for c in range(1, 4) if not (candidate / INPUT_DIR / str(c)).is_dir()]
            if len(missing) == 3 and any((candidate / INPUT_DIR).glob("*.jpg")):  # GF-SAM's flat layout
                return IsicTree(candidate, flat_classes=_class_table(candidate))
            if missing:
                raise InputError(f"{candidate / INPUT_DIR}: no class folder {missing[0]}/ (expected 1/, 2/, 3/: "
                                 f"fsseg-bench prepare-isic sorts the images by class)")
            if not (candidate / MASK_DIR).is_dir():
                raise InputError(f"{candidate}: no {MASK_DIR}/ folder of masks beside {INPUT_DIR}/")
            return IsicTree(candidate)
    raise InputError(f"{data_root}: expected PATNet's ISIC layout, {INPUT_DIR}/<1..3>/*.jpg and "
                     f"{MASK_DIR}/<id>_segmentation.png, in it or in ISIC/")


def _class_table(root: Path) -> tuple:
    """GF-SAM's flat layout: ISIC/class_id.csv (`ID,Class`) -> ((stem, folder), ...)."""
    from .patnet_prepare import ISIC_FOLDERS, isic_classes

    path = root / "class_id.csv"
    if not path.is_file():
        raise InputError(f"{root / INPUT_DIR}: images without class folders (GF-SAM's layout) need their class table "
                         f"at {path} (PATNet's data/isic/class_id.csv), or `fsseg-bench prepare-isic` to sort them")
    return tuple(sorted((stem, ISIC_FOLDERS[name]) for stem, name in isic_classes(path).items()))


def _register() -> None:
    from .registry import DatasetEntry, register_dataset

    def definition(protocol, tree):
        from ..datasets import single_fold_dataset
        return single_fold_dataset("isic", ISIC_CLASSES)

    def standin(root, seed: int = 0, images: int | None = None) -> Path:
        from .patnet_standins import IsicStandIn, write_isic_standin
        return write_isic_standin(root, IsicStandIn(seed=seed, **({"per_class": images} if images else {})))

    register_dataset(DatasetEntry("isic", "ISIC 2018 (PATNet's layout)", 1, locate_isic, definition, layout="isic",
                                  write_standin=standin))


_register()
