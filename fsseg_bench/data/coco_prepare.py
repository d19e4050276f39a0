"""`fsseg-bench prepare-coco`: HSNet-layout class-index masks from the official COCO 2014 instances.

Reads `<coco>/annotations/instances_<split>.json` (split `train2014`, `val2014`) and writes
`<coco>/annotations/<split>/<stem>.png` beside it: class-index PNGs, 0 background, 1..80 the
categories in ascending COCO category id (the order every COCO-20i codebase numbers them in), so
`<coco>` becomes the `COCO2014/` folder the `coco` reader expects.

Masks are decoded by pycocotools (the optional extra `.[coco]`): polygons, uncompressed and
compressed RLE exactly as COCO's official API rasterises them. Re-deriving its polygon rasteriser
bit for bit would be a second, unofficial implementation of a file format; the decoder earns its
place.

Overlaps: instances are painted largest first, so a smaller instance lying on a larger one (a cup
on a table) keeps its pixels. Crowd annotations (`iscrowd = 1`) are painted last as 255 (void)
wherever no instance claimed the pixel: they mark many objects of one class whose extents are
unknown, so they are neither the class nor background. HSNet's distributed masks come without the
script that made them; this rule is ours and is recorded in `prepare-coco.json`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..textfiles import read_utf8
from .png import write_mask_png

VOID = 255
RULE = "non-crowd instances largest first (smaller on top); crowd regions 255 where unclaimed"


def _mask_api():
    try:
        from pycocotools import mask as mask_api
    except ImportError:
        raise InputError("prepare-coco decodes COCO's polygons and RLE with pycocotools: "
                         "pip install 'fsseg-bench[coco]' (or pip install pycocotools)") from None
    return mask_api


def category_order(categories: list[dict]) -> dict[int, int]:
    """COCO category id -> class id 1..80, by ascending category id."""
    ids = sorted(int(c["id"]) for c in categories)
    return {category: position + 1 for position, category in enumerate(ids)}


def instance_mask(annotation: dict, height: int, width: int, mask_api) -> np.ndarray:
    segmentation = annotation["segmentation"]
    if isinstance(segmentation, list):  # polygons
        rle = mask_api.merge(mask_api.frPyObjects(segmentation, height, width))
    elif isinstance(segmentation.get("counts"), list):  # uncompressed RLE
        rle = mask_api.frPyObjects(segmentation, height, width)
    else:  # compressed RLE
        rle = segmentation
    return mask_api.decode(rle).astype(bool)


def class_mask(image: dict, annotations: list[dict], classes: dict[int, int], mask_api) -> np.ndarray:
    height, width = int(image["height"]), int(image["width"])
    label = np.zeros((height, width), dtype=np.uint8)
    claimed = np.zeros((height, width), dtype=bool)
    instances = sorted((a for a in annotations if not a.get("iscrowd")), key=lambda a: -float(a.get("area", 0)))
    for annotation in instances:
        region = instance_mask(annotation, height, width, mask_api)
        label[region] = classes[int(annotation["category_id"])]
        claimed |= region
    for annotation in (a for a in annotations if a.get("iscrowd")):
        region = instance_mask(annotation, height, width, mask_api) & ~claimed
        label[region] = VOID
    return label


def prepare_coco(coco_dir: str | Path, splits=("train2014", "val2014"), progress=None) -> dict:
    """Write the masks of every image of each split that has an instances file; returns counts."""
    coco_dir = Path(coco_dir)
    mask_api = _mask_api()
    written = {}
    found = [s for s in splits if (coco_dir / "annotations" / f"instances_{s}.json").is_file()]
    if not found:
        raise InputError(f"{coco_dir / 'annotations'}: no instances_<split>.json for "
                         f"{', '.join(splits)} (expected the official COCO 2014 annotations)")
    for split in found:
        path = coco_dir / "annotations" / f"instances_{split}.json"
        try:
            data = json.loads(read_utf8(path, "COCO instances file"))
            images, annotations, categories = data["images"], data["annotations"], data["categories"]
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise InputError(f"{path}: not a COCO instances file ({type(exc).__name__}: {exc})") from None
        classes = category_order(categories)
        if len(classes) != 80:
            raise InputError(f"{path}: {len(classes)} categories; expected COCO's 80")
        by_image: dict[int, list[dict]] = {}
        for annotation in annotations:
            by_image.setdefault(int(annotation["image_id"]), []).append(annotation)
        out = coco_dir / "annotations" / split
        out.mkdir(parents=True, exist_ok=True)
        for number, image in enumerate(images):
            label = class_mask(image, by_image.get(int(image["id"]), []), classes, mask_api)
            write_mask_png(out / f"{Path(image['file_name']).stem}.png", label)
            if progress:
                progress(split, number + 1, len(images))
        written[split] = len(images)
    (coco_dir / "annotations" / "prepare-coco.json").write_text(json.dumps(
        {"rule": RULE, "class_order": "ascending COCO category id -> 1..80", "images": written}, indent=1))
    return written
