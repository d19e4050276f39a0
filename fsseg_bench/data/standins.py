"""Stand-ins for the other benchmarks, in their exact on-disk layouts (`fsseg-bench synth`).

The same appearance families as `synthetic5i` (shape, texture, hue; clutter and distractors), so
every reader, protocol and metric path runs end to end on data the tests and CI can write:

- `coco`: HSNet's COCO-20i layout, `COCO2014/{train2014,val2014}/COCO_<split>_<12 digits>.jpg` and
  `COCO2014/annotations/<split>/<same>.png` (class 1..80, 0 background, 255 void borders);
  80 classes: 20 shape-texture pairs in 4 hue bands.
- `fss1000`: FSS-1000's layout, `FSS-1000/<class>/<k>.jpg` + `<k>.png` (0/255 grayscale masks,
  one object of the folder's class per image), 10 images per class, with HSNet-style class
  split files `splits/fss/{trn,val,test}.txt`.

Each writer is idempotent: a complete tree written with the same settings is left as it is.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from .manifest import manifest_matches, write_manifest
from .png import write_mask_png
from .synthetic import SyntheticConfig, family_for, render_image, synthetic_class_name



@dataclass(frozen=True)
class CocoStandIn:
    seed: int = 0
    n_train: int = 800        # 1-3 objects an image: about 20 images per class and split, enough for 5 shots
    n_val: int = 800
    min_side: int = 80
    max_side: int = 112
    num_classes: int = 80


@dataclass(frozen=True)
class FssStandIn:
    seed: int = 0
    classes: int = 36          # FSS-1000's 520 / 240 / 240 (trn / val / test) scaled down
    val_classes: int = 6
    test_classes: int = 10
    images_per_class: int = 10
    side: int = 96


def _complete(manifest_path: Path, manifest: dict) -> bool:
    return manifest_matches(manifest_path, manifest)


def write_coco_standin(root: str | Path, config: CocoStandIn = CocoStandIn()) -> Path:
    """Write `root/COCO2014` and return it."""
    coco = Path(root) / "COCO2014"
    manifest_path = coco / "standin.json"
    manifest = {"generator": "coco-standin", **asdict(config)}
    if _complete(manifest_path, manifest):
        return coco
    for split in ("train2014", "val2014"):
        (coco / split).mkdir(parents=True, exist_ok=True)
        (coco / "annotations" / split).mkdir(parents=True, exist_ok=True)
    for (split, number), (image, label) in coco_scene_images(config, with_keys=True):
        stem = f"COCO_{split}_{number:012d}"
        Image.fromarray(image).save(coco / split / f"{stem}.jpg", quality=92)
        write_mask_png(coco / "annotations" / split / f"{stem}.png", label)
    write_manifest(manifest_path, manifest)
    return coco


def coco_scene_images(config: CocoStandIn = CocoStandIn(), with_keys: bool = False):
    """Every (image, label) the COCO stand-in writes, in order (with `with_keys`: ((split, number), pair))."""
    family = family_for(config.num_classes)
    scene = SyntheticConfig(seed=config.seed, min_side=config.min_side, max_side=config.max_side)
    numbers = {"train2014": range(0, config.n_train), "val2014": range(config.n_train, config.n_train + config.n_val)}
    for split, split_numbers in numbers.items():
        for number in split_numbers:
            pair = render_image(scene, number, family, config.num_classes)
            yield ((split, number), pair) if with_keys else pair


def fss_class_name(class_number: int, classes: int) -> str:
    """`<shape>_<texture>_h<hue>` folder names (FSS-1000's are lowercase words with underscores)."""
    return synthetic_class_name(class_number, family_for(classes)).replace("-", "_")


def fss_scene_images(config: FssStandIn = FssStandIn(), with_keys: bool = False):
    """Every (image, label) the FSS-1000 stand-in writes, in order (with `with_keys`: ((class, k), pair))."""
    family = family_for(config.classes)
    scene = SyntheticConfig(seed=config.seed, min_side=config.side, max_side=config.side)
    for class_number in range(1, config.classes + 1):
        for k in range(1, config.images_per_class + 1):
            pair = render_image(scene, class_number * 1000 + k, family, config.classes, only_class=class_number)
            yield ((class_number, k), pair) if with_keys else pair


def write_fss_standin(root: str | Path, config: FssStandIn = FssStandIn()) -> Path:
    """Write `root/FSS-1000` and `root/splits/fss/*.txt`; return the FSS-1000 folder."""
    root = Path(root)
    fss = root / "FSS-1000"
    manifest_path = fss / "standin.json"
    manifest = {"generator": "fss1000-standin", **asdict(config)}
    if _complete(manifest_path, manifest):
        return fss
    names = [fss_class_name(c, config.classes) for c in range(1, config.classes + 1)]
    for (class_number, k), (image, label) in fss_scene_images(config, with_keys=True):
        name = names[class_number - 1]
        (fss / name).mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(fss / name / f"{k}.jpg", quality=92)
        # FSS-1000's masks: 0 / 255 grayscale, no void band.
        mask = np.where(label == class_number, 255, 0).astype(np.uint8)
        Image.fromarray(mask, mode="L").save(fss / name / f"{k}.png")
    rng = np.random.default_rng(config.seed)
    order = [names[i] for i in rng.permutation(len(names))]
    n_test, n_val = config.test_classes, config.val_classes
    splits = {"test": sorted(order[:n_test]), "val": sorted(order[n_test:n_test + n_val]),
              "trn": sorted(order[n_test + n_val:])}
    (root / "splits" / "fss").mkdir(parents=True, exist_ok=True)
    for split, members in splits.items():
        (root / "splits" / "fss" / f"{split}.txt").write_text("\n".join(members) + "\n")
    write_manifest(manifest_path, manifest)
    return fss
