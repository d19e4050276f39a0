"""Builders of tiny on-disk trees in the exact VOC / SBD formats, for tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.io
from PIL import Image

from fsseg_bench.data.png import write_mask_png


def block_mask(height: int, width: int, blocks: dict[int, tuple[int, int, int, int]], border: bool = True) -> np.ndarray:
    """A mask with rectangular objects {class: (y0, y1, x0, x1)} and an optional 1-px 255 ring around each."""
    mask = np.zeros((height, width), dtype=np.uint8)
    for class_id, (y0, y1, x0, x1) in blocks.items():
        if border:
            mask[max(y0 - 1, 0):y1 + 1, max(x0 - 1, 0):x1 + 1] = 255
        mask[y0:y1, x0:x1] = class_id
    return mask


def write_voc_tree(root: Path, masks: dict[str, np.ndarray], splits: dict[str, list[str]],
                   grayscale: set[str] = frozenset(), mask_dir: str = "SegmentationClassAug",
                   nested: bool = True, seed: int = 0) -> Path:
    """Write JPEGs (random pixels), masks (palette PNG, or grayscale for ids in `grayscale`) and lists.

    Returns the VOC2012 folder.
    """
    voc = Path(root) / "VOCdevkit" / "VOC2012" if nested else Path(root)
    for sub in ("JPEGImages", mask_dir, "ImageSets/Segmentation"):
        (voc / sub).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for image_id, mask in masks.items():
        pixels = rng.integers(0, 256, size=(*mask.shape, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(voc / "JPEGImages" / f"{image_id}.jpg", quality=90)
        if image_id in grayscale:
            Image.fromarray(mask, mode="L").save(voc / mask_dir / f"{image_id}.png")
        else:
            write_mask_png(voc / mask_dir / f"{image_id}.png", mask)
    for split, ids in splits.items():
        (voc / "ImageSets" / "Segmentation" / f"{split}.txt").write_text("\n".join(ids) + "\n")
    return voc


def write_sbd_tree(root: Path, masks: dict[str, np.ndarray], train: list[str], val: list[str]) -> Path:
    """SBD layout: dataset/cls/<id>.mat with struct GTcls.Segmentation, dataset/{train,val}.txt."""
    dataset = Path(root) / "benchmark_RELEASE" / "dataset"
    (dataset / "cls").mkdir(parents=True, exist_ok=True)
    for image_id, mask in masks.items():
        gtcls = {"Segmentation": mask.astype(np.uint8), "Boundaries": np.zeros((20, 1), dtype=object),
                 "CategoriesPresent": np.unique(mask[(mask > 0) & (mask < 255)]).astype(np.uint8)}
        scipy.io.savemat(dataset / "cls" / f"{image_id}.mat", {"GTcls": gtcls})
    (dataset / "train.txt").write_text("\n".join(train) + "\n")
    (dataset / "val.txt").write_text("\n".join(val) + "\n")
    return dataset


def tiny_fold0_tree(root: Path) -> Path:
    """Nine 20x24 images with hand-placed fold-0 classes (1..5) and a base class (7); pixel counts:

    img_a: 1=40, 2=24   img_b: 1=100         img_c: 3=30, 7=80
    img_d: 2=60         img_e: 1=9, 3=60     img_f: 4=36, 5=20
    img_g: 4=50         img_h: 5=25, 7=80    img_i: 7=36
    Every object has a 1-px 255 ring. img_b and img_d are grayscale PNGs, the rest palette PNGs.
    """
    masks = {
        "img_a": block_mask(20, 24, {1: (2, 7, 2, 10), 2: (12, 16, 12, 18)}),
        "img_b": block_mask(20, 24, {1: (5, 15, 5, 15)}),
        "img_c": block_mask(20, 24, {3: (2, 7, 2, 8), 7: (10, 18, 10, 20)}),
        "img_d": block_mask(20, 24, {2: (4, 10, 4, 14)}),
        "img_e": block_mask(20, 24, {1: (1, 4, 1, 4), 3: (10, 16, 10, 20)}),
        "img_f": block_mask(20, 24, {4: (2, 8, 2, 8), 5: (12, 16, 12, 17)}),
        "img_g": block_mask(20, 24, {4: (5, 10, 5, 15)}),
        "img_h": block_mask(20, 24, {5: (3, 8, 3, 8), 7: (10, 18, 10, 20)}),
        "img_i": block_mask(20, 24, {7: (3, 9, 3, 9)}),
    }
    ids = list(masks)
    return write_voc_tree(root, masks, {"val": ids, "train": ids}, grayscale={"img_b", "img_d"})


# A protocol over `tiny_fold0_tree`: fold 0, 1 shot, 16x16 inputs.
TINY_PROTOCOL = """
name = "tiny"
dataset = "pascal-voc"
split = "val"
train_split = "train"
folds = [0]
shots = [1]
episodes = 6
seeds = [5]
query_sampling = "class-uniform"
image_size = [16, 16]
score_at = "resized"
"""


def write_plugin(tmp_path_factory, name: str, source: str):
    """A plugin file holding `source`, in its own temporary folder."""
    path = tmp_path_factory.mktemp("plugin") / name
    path.write_text(source)
    return path


def run_args(root, results, *extra) -> list[str]:
    """`fsseg-bench run` arguments on the synthetic5i tree at `root`, quiet."""
    return ["run", "--protocol", "synthetic5i", "--data-root", str(root), "--results", str(results), "--quiet", *extra]


def records_of(results) -> dict[str, list[dict]]:
    """Every run's records under a results folder, keyed by '<method>/<run folder>', without the
    per-episode timing: what must be equal between two ways of computing the same runs."""
    import json

    out = {}
    for path in sorted(Path(results).glob("runs/*/*/*/records.jsonl")):
        rows = [json.loads(line) for line in path.read_text().splitlines()]
        out[f"{path.parent.parent.name}/{path.parent.name}"] = [{k: v for k, v in r.items() if k != "seconds"}
                                                                 for r in rows]
    return out
