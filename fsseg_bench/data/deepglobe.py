"""Deepglobe land cover as PATNet reads it (slei109/PATNet `data/deepglobe.py`): one code path for
the prepared real data (`fsseg-bench prepare-deepglobe`) and the stand-in `synth --layout deepglobe`.

Layout under `Deepglobe/`: for each class folder `1`..`6`, images `<c>/test/origin/<stem>.jpg`
and their binary masks `<c>/test/groundtruth/<stem>.png` (grey >= 128 is the class). A crop that
holds several classes sits in several class folders, each with that class's mask, so image ids
are `<c>/<stem>`. The only split is `test`; its images are each folder's jpgs in PATNet's order
(sorted, kept when the name's part after its first dot is `jpg`).

Class folders follow PATNet's preprocessing (`data/preprocess.py`, step 3), which compares
OpenCV's BGR pixels with the DeepGlobe colours written as RGB: folder 1 holds agriculture
(yellow), 2 urban (cyan), 3 rangeland, 4 forest, 5 water, 6 barren.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError
from .binary import ClassByFolder, listing_source, patnet_listing

DEEPGLOBE_CLASSES = ("agriculture", "urban", "rangeland", "forest", "water", "barren")
SPLIT = "test"


@dataclass(frozen=True)
class DeepglobeTree(ClassByFolder):
    root: Path  # the Deepglobe folder
    num_classes: int = len(DEEPGLOBE_CLASSES)

    @property
    def identity(self) -> str:
        return f"deepglobe|{self.root.resolve()}"

    def image_path(self, image_id: str) -> Path:
        folder, stem = image_id.split("/", 1)
        return self.root / folder / "test" / "origin" / f"{stem}.jpg"

    def mask_path(self, image_id: str) -> Path:
        folder, stem = image_id.split("/", 1)
        return self.root / folder / "test" / "groundtruth" / f"{stem}.png"

    def class_of(self, image_id: str) -> int:
        return int(image_id.split("/", 1)[0])

    def class_pool(self, class_id: int) -> list[str]:
        """PATNet's pool of a class: the folder's jpgs in its order (sorted paths)."""
        return [f"{class_id}/{path.name.split('.')[0]}"
                for path in patnet_listing(self.root / str(class_id) / "test" / "origin", "jpg")]

    def split_ids(self, split: str) -> list[str]:
        if split != SPLIT:
            raise InputError(f"{self.root}: Deepglobe has one split, {SPLIT!r} (PATNet's); got {split!r}")
        return [image_id for c in range(1, self.num_classes + 1) for image_id in self.class_pool(c)]

    def split_source(self, split: str) -> bytes:
        return listing_source(self.split_ids(split))


def locate_deepglobe(data_root: str | Path) -> DeepglobeTree:
    """Accept the Deepglobe folder or one holding it."""
    data_root = Path(data_root)
    if not data_root.exists():
        raise InputError(f"{data_root}: data root not found (expected PATNet's Deepglobe folder)")
    for candidate in (data_root, data_root / "Deepglobe"):
        if all((candidate / str(c) / "test" / "origin").is_dir() for c in range(1, 7)):
            for c in range(1, 7):
                if not (candidate / str(c) / "test" / "groundtruth").is_dir():
                    raise InputError(f"{candidate / str(c) / 'test'}: no groundtruth/ folder beside origin/")
            return DeepglobeTree(candidate)
    raise InputError(f"{data_root}: expected PATNet's Deepglobe layout, <1..6>/test/origin/*.jpg with "
                     f"<1..6>/test/groundtruth/*.png, in it or in Deepglobe/ (fsseg-bench prepare-deepglobe writes it)")


def _register() -> None:
    from .registry import DatasetEntry, register_dataset

    def definition(protocol, tree):
        from ..datasets import single_fold_dataset
        return single_fold_dataset("deepglobe", DEEPGLOBE_CLASSES)

    def standin(root, seed: int = 0, images: int | None = None) -> Path:
        from .patnet_standins import DeepglobeStandIn, write_deepglobe_standin
        return write_deepglobe_standin(root, DeepglobeStandIn(seed=seed, **({"tiles": images} if images else {})))

    register_dataset(DatasetEntry("deepglobe", "Deepglobe (PATNet's crops)", 1, locate_deepglobe, definition,
                                  layout="deepglobe", write_standin=standin))


_register()
