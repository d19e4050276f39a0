"""The COCO-20i reader, in the layout HSNet's loader reads (and PFENet-style codebases can be
pointed at): one code path for real COCO 2014 and for the stand-in `synth --layout coco` writes.

Layout under `COCO2014/`: images `<split>/<stem>.jpg` (`split` is the image folder's name,
`train2014` or `val2014`), masks `annotations/<split>/<stem>.png` holding a class index per pixel
(0 background, 1..80 the COCO categories in their usual order, 255 void where a converter marks
it), palette or grayscale. Image ids are the file stems. A split's images are the jpgs of its
folder, or, when HSNet's per-fold class lists `splits/coco/<trn|val>/fold<f>.pkl` sit beside
`COCO2014/`, the images they name (read with a restricted unpickler: dicts, lists, strings and
integers only; no code runs).
"""

from __future__ import annotations

import io
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError
from .voc import class_pixels_by_value, read_class_mask

NUM_COCO_CLASSES = 80
HSNET_PICKLE_SPLITS = {"train2014": "trn", "val2014": "val"}


@dataclass(frozen=True)
class CocoTree:
    """A located `COCO2014` folder."""

    root: Path
    num_classes: int = NUM_COCO_CLASSES

    @property
    def identity(self) -> str:
        return f"coco|{self.root.resolve()}"

    def image_path(self, image_id: str) -> Path:
        return self.root / self._folder_of(image_id) / f"{image_id}.jpg"

    def mask_path(self, image_id: str) -> Path:
        return self.root / "annotations" / self._folder_of(image_id) / f"{image_id}.png"

    def _folder_of(self, image_id: str) -> str:
        # COCO's file names carry their folder (COCO_val2014_000000000139); others are looked up.
        for folder in self.image_folders():
            if f"_{folder}_" in image_id or (self.root / folder / f"{image_id}.jpg").is_file():
                return folder
        raise InputError(f"{self.root}: image {image_id!r} is in none of {', '.join(self.image_folders()) or 'no folders'}")

    def image_folders(self) -> list[str]:
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and p.name != "annotations")

    def split_ids(self, split: str) -> list[str]:
        folder = self.root / split
        if not folder.is_dir():
            raise InputError(f"{folder}: no image folder for split {split!r} (folders there: "
                             f"{', '.join(self.image_folders()) or 'none'})")
        listed = hsnet_fold_lists(self.root, split)
        ids = sorted(listed) if listed is not None else sorted(p.stem for p in folder.glob("*.jpg"))
        if not ids:
            raise InputError(f"{folder}: no .jpg images for split {split!r}")
        return ids

    def split_source(self, split: str) -> bytes:
        """What a split's membership is read from, for the class index's fingerprint."""
        return "\n".join(self.split_ids(split)).encode()

    def read_label(self, image_id: str) -> np.ndarray:
        return read_class_mask(self.mask_path(image_id), self.num_classes)

    def label_value(self, class_id: int) -> int:
        return class_id

    def class_pixels(self, image_id: str, label: np.ndarray) -> dict[int, int]:
        return class_pixels_by_value(label, self.num_classes)


def locate_coco(data_root: str | Path) -> CocoTree:
    """Accept `COCO2014/` itself or a folder holding it."""
    data_root = Path(data_root)
    if not data_root.exists():
        raise InputError(f"{data_root}: data root not found (expected a COCO2014 folder or one holding COCO2014/)")
    for candidate in (data_root, data_root / "COCO2014"):
        if (candidate / "annotations").is_dir():
            return CocoTree(candidate)
    raise InputError(f"{data_root}: no annotations/ in it or in COCO2014/ (expected HSNet's layout: "
                     f"COCO2014/<split>/*.jpg and COCO2014/annotations/<split>/*.png)")


class _ListsOnly(pickle.Unpickler):
    """Unpickles plain containers only: any class or function reference is refused."""

    def find_class(self, module, name):
        raise InputError(f"pickle refers to {module}.{name}: only dicts, lists, strings and numbers are read")


def read_class_lists(path: Path) -> dict[int, list[str]]:
    """HSNet's `fold<f>.pkl`: {class 0..79: [image file names]} -> {class id 1..80: [stems]}."""
    try:
        raw = _ListsOnly(io.BytesIO(Path(path).read_bytes())).load()
    except InputError as exc:
        raise InputError(f"{path}: {exc}") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as exc:
        raise InputError(f"{path}: not a readable pickle ({exc})") from None
    if not isinstance(raw, dict) or not all(isinstance(k, int) and isinstance(v, list) for k, v in raw.items()):
        raise InputError(f"{path}: expected a dict of class index -> list of image names")
    out = {}
    for class_index, names in raw.items():
        if not 0 <= class_index < NUM_COCO_CLASSES:
            raise InputError(f"{path}: class index {class_index} outside 0..{NUM_COCO_CLASSES - 1}")
        if not all(isinstance(n, str) for n in names):
            raise InputError(f"{path}: class {class_index}: expected image names (strings)")
        out[class_index + 1] = [Path(n).stem for n in names]
    return out


def hsnet_fold_lists(coco_root: Path, split: str) -> set[str] | None:
    """The images HSNet's fold lists name for a split (all folds), or None when there are none."""
    short = HSNET_PICKLE_SPLITS.get(split)
    if short is None:
        return None
    folder = coco_root.parent / "splits" / "coco" / short
    files = sorted(folder.glob("fold*.pkl")) if folder.is_dir() else []
    if not files:
        return None
    return {name for path in files for names in read_class_lists(path).values() for name in names}


def _register() -> None:
    from .registry import DatasetEntry, register_dataset

    def standin(root, seed: int = 0, images: int | None = None) -> Path:
        from .standins import CocoStandIn, write_coco_standin
        return write_coco_standin(root, CocoStandIn(seed=seed, **({"n_train": images, "n_val": images} if images else {})))

    def definition(protocol, tree):
        from ..datasets import coco_dataset
        return coco_dataset(protocol.split_scheme if protocol is not None else "interleaved")

    register_dataset(DatasetEntry("coco", "COCO 2014", 4, locate_coco, definition, layout="coco", write_standin=standin))


_register()
