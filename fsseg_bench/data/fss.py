"""The FSS-1000 reader: one code path for the real dataset and the stand-in `synth --layout fss1000`
writes.

Layout: `<root>/<class>/<k>.jpg` with its mask `<k>.png` (any mode; converted to grayscale and
binarised at 128, as HSNet's loader does), 10 images per class. HSNet's class split files
`splits/fss/{trn,val,test}.txt` (one class name per line) sit in `<root>/` or beside it; a
protocol's `split`/`train_split` name them (`test`, `trn`). Classes are numbered 1..N by their
position in the sorted union of the three files, so ids do not depend on which split is read.
Image ids are `<class>/<k>`; a label is 1 where the mask is on, and the image's class is its
folder's (`label_value`, `class_pixels`), so labels stay 8-bit with FSS-1000's 1000 classes.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from ..errors import InputError
from ..textfiles import read_utf8
from .binary import ClassByFolder

SPLIT_FILES = ("trn", "val", "test")


@dataclass(frozen=True)
class FssTree(ClassByFolder):
    root: Path        # the folder holding the class folders
    splits_dir: Path  # the folder holding trn.txt, val.txt, test.txt

    @property
    def identity(self) -> str:
        return f"fss1000|{self.root.resolve()}"

    def split_path(self, split: str) -> Path:
        return self.splits_dir / f"{split}.txt"

    def split_classes(self, split: str) -> list[str]:
        path = self.split_path(split)
        names = [line.strip() for line in read_utf8(path, f"FSS-1000 class list for split {split!r}").splitlines()
                 if line.strip()]
        if not names:
            raise InputError(f"{path}: class list is empty")
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise InputError(f"{path}: class {duplicates[0]!r} listed twice; expected each class once")
        return names

    @cached_property
    def class_names(self) -> tuple[str, ...]:
        names = set()
        for split in SPLIT_FILES:
            if self.split_path(split).is_file():
                names.update(self.split_classes(split))
        return tuple(sorted(names))

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def class_id(self, name: str) -> int:
        try:
            return self.class_names.index(name) + 1
        except ValueError:
            raise InputError(f"{self.splits_dir}: class {name!r} is in no split file") from None

    def image_path(self, image_id: str) -> Path:
        return self.root / f"{image_id}.jpg"

    def mask_path(self, image_id: str) -> Path:
        return self.root / f"{image_id}.png"

    def split_ids(self, split: str) -> list[str]:
        ids = []
        for name in self.split_classes(split):
            folder = self.root / name
            if not folder.is_dir():
                raise InputError(f"{folder}: class folder of {name!r} (listed in {self.split_path(split)}) not found")
            stems = sorted((p.stem for p in folder.glob("*.jpg")), key=lambda s: (len(s), s))
            if not stems:
                raise InputError(f"{folder}: no .jpg images for class {name!r}")
            ids += [f"{name}/{stem}" for stem in stems]
        return ids

    def split_source(self, split: str) -> bytes:
        return self.split_path(split).read_bytes()

    def class_of(self, image_id: str) -> int:
        """Every FSS-1000 image holds one class, its folder's (labels: 1 where the mask is >= 128, read
        by `ClassByFolder`), so labels stay 8-bit with 1000 classes."""
        return self.class_id(image_id.split("/", 1)[0])


def locate_fss(data_root: str | Path) -> FssTree:
    """Accept the folder of class folders (FSS-1000/ or fewshot_data/) or one holding it; the split
    files in `splits/fss/` under the root, beside it, or one level up."""
    data_root = Path(data_root)
    if not data_root.exists():
        raise InputError(f"{data_root}: data root not found (expected FSS-1000's folder of class folders)")
    candidates = [data_root, data_root / "FSS-1000", data_root / "fewshot_data"]
    root = next((c for c in candidates if c.is_dir() and _looks_like_classes(c)), None)
    if root is None:
        raise InputError(f"{data_root}: no class folders with <k>.jpg and <k>.png in it, in FSS-1000/ or in fewshot_data/")
    for base in (root, root.parent, data_root, data_root.parent):
        splits = base / "splits" / "fss"
        if (splits / "test.txt").is_file():
            return FssTree(root, splits)
    raise InputError(f"{root}: no splits/fss/test.txt in it, beside it or above it (HSNet's class split files "
                     f"trn.txt, val.txt, test.txt)")


def _looks_like_classes(folder: Path) -> bool:
    for sub in folder.iterdir():
        if sub.is_dir() and sub.name != "splits" and any(sub.glob("*.jpg")):
            return True
    return False


def _register() -> None:
    from .registry import DatasetEntry, register_dataset

    def standin(root, seed: int = 0, images: int | None = None) -> Path:
        from .standins import FssStandIn, write_fss_standin
        return write_fss_standin(root, FssStandIn(seed=seed))

    def definition(protocol, tree):
        from ..datasets import fss1000_dataset
        return fss1000_dataset(tree.class_names, tuple(tree.split_classes(protocol.split)))

    register_dataset(DatasetEntry("fss1000", "FSS-1000", 1, locate_fss, definition, layout="fss1000",
                                  write_standin=standin, classes_from_data=True))


_register()
