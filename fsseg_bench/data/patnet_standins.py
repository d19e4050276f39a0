"""Stand-ins for PATNet's cross-domain test sets, in the exact layouts its loaders read (and
`prepare-*` write), so readers, samplers, protocols and the cross-domain table run end to end:

- `deepglobe`: satellite-like crops: smooth regions of six land classes (colour and texture per
  class), PATNet's keep rule applied (every class of a crop above 4.8% of it), each crop written
  into the folder of every class it holds with that class's binary mask;
- `isic`: dermoscopy-like images: skin background with vignetting, one lesion whose outline,
  colour and texture differ by diagnosis class (3 folders), masks `<id>_segmentation.png`;
- `chestxray`: grey chest-like radiographs: a bright body, dark lungs, ribs; masks of both lungs
  `<name>_mask.png`.

Masks are 0/255 grayscale PNGs, images JPEG (chest: PNG, as the real set). Each writer is seeded
and idempotent (a complete tree with the same settings is left as it is).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from .manifest import manifest_matches, write_manifest

KEEP_FRACTION = 0.048  # PATNet's preprocessing: a crop is kept when its smallest class covers more


@dataclass(frozen=True)
class DeepglobeStandIn:
    seed: int = 0
    tiles: int = 40    # crops drawn (before the keep rule)
    side: int = 64


@dataclass(frozen=True)
class IsicStandIn:
    seed: int = 0
    per_class: int = 14
    side: int = 80


@dataclass(frozen=True)
class ChestStandIn:
    seed: int = 0
    images: int = 24
    side: int = 80


LAND_COLOURS = np.array([[200, 180, 90], [150, 150, 160], [150, 170, 110], [40, 90, 45], [40, 70, 140],
                         [190, 170, 150]], float)  # agriculture, urban, rangeland, forest, water, barren


def _save_mask(path: Path, mask: np.ndarray) -> None:
    Image.fromarray(np.where(mask, 255, 0).astype(np.uint8), mode="L").save(path)


def land_cover_crop(rng: np.random.Generator, side: int) -> tuple[np.ndarray, np.ndarray]:
    """(RGB image, class map 1..6): 2-3 classes in smooth regions, each with its colour and texture."""
    classes = rng.choice(6, size=int(rng.integers(2, 4)), replace=False) + 1
    fields = np.stack([ndimage.gaussian_filter(rng.normal(size=(side, side)), side / 6) for _ in classes])
    labels = classes[fields.argmax(axis=0)]
    image = LAND_COLOURS[labels - 1].copy()
    grain = ndimage.gaussian_filter(rng.normal(size=(side, side)), 1.0)
    image += (8 + 6 * (labels == 4) + 10 * (labels == 2))[..., None] * grain[..., None] * 3
    image[labels == 2] += 30 * ((np.indices((side, side)).sum(axis=0) // 4) % 2)[labels == 2, None]  # urban grid
    return np.clip(image + rng.normal(0, 4, image.shape), 0, 255).astype(np.uint8), labels


def write_deepglobe_standin(root: str | Path, config: DeepglobeStandIn = DeepglobeStandIn()) -> Path:
    folder = Path(root) / "Deepglobe"
    manifest_path, manifest = folder / "standin.json", {"generator": "deepglobe-standin", **asdict(config)}
    if manifest_matches(manifest_path, manifest):
        return folder
    rng = np.random.default_rng([config.seed, 1])
    for c in range(1, 7):
        for sub in ("origin", "groundtruth"):
            (folder / str(c) / "test" / sub).mkdir(parents=True, exist_ok=True)
    for number in range(config.tiles):
        image, labels = land_cover_crop(rng, config.side)
        present, counts = np.unique(labels, return_counts=True)
        if counts.min() / labels.size <= KEEP_FRACTION:
            continue
        stem = f"{100000 + number}_sat_{number % 6}{number // 6 % 6}"
        for c in present:
            Image.fromarray(image).save(folder / str(c) / "test" / "origin" / f"{stem}.jpg", quality=95)
            _save_mask(folder / str(c) / "test" / "groundtruth" / f"{stem}.png", labels == c)
    write_manifest(manifest_path, manifest)
    return folder


def lesion_image(rng: np.random.Generator, side: int, diagnosis: int) -> tuple[np.ndarray, np.ndarray]:
    """(RGB image, lesion mask): 1 nevus (round, even brown), 2 melanoma (irregular, several
    colours), 3 seborrheic keratosis (waxy, textured)."""
    yy, xx = np.indices((side, side)) / side - 0.5
    centre = rng.uniform(-0.1, 0.1, 2)
    angle = np.arctan2(yy - centre[0], xx - centre[1])
    radius = np.hypot(yy - centre[0], xx - centre[1])
    rough = {1: 0.03, 2: 0.12, 3: 0.06}[diagnosis]
    bumps = sum(rng.uniform(0, rough) * np.cos(k * angle + rng.uniform(0, 6.3)) for k in (2, 3, 5, 7))
    mask = radius < rng.uniform(0.15, 0.3) * (1 + bumps)
    skin = np.array([225, 180, 160], float) * (1 - 0.6 * radius[..., None] ** 2)  # vignetting
    image = skin + rng.normal(0, 3, (side, side, 3))
    colour = {1: [120, 75, 50], 2: [70, 40, 35], 3: [150, 120, 80]}[diagnosis]
    lesion = np.array(colour, float) + rng.normal(0, 4, (side, side, 3))
    if diagnosis == 2:
        lesion += 40 * ndimage.gaussian_filter(rng.normal(size=(side, side)), 3)[..., None] * np.array([1, 0.2, 0.6])
    if diagnosis == 3:
        lesion += 25 * ((np.indices((side, side)).sum(axis=0) // 3) % 2)[..., None]
    image[mask] = lesion[mask]
    return np.clip(ndimage.gaussian_filter(image, (0.7, 0.7, 0)), 0, 255).astype(np.uint8), mask


def write_isic_standin(root: str | Path, config: IsicStandIn = IsicStandIn()) -> Path:
    from .isic import INPUT_DIR, MASK_DIR

    folder = Path(root) / "ISIC"
    manifest_path, manifest = folder / "standin.json", {"generator": "isic-standin", **asdict(config)}
    if manifest_matches(manifest_path, manifest):
        return folder
    rng = np.random.default_rng([config.seed, 2])
    (folder / MASK_DIR).mkdir(parents=True, exist_ok=True)
    number = 0
    for diagnosis in (1, 2, 3):
        (folder / INPUT_DIR / str(diagnosis)).mkdir(parents=True, exist_ok=True)
        for _ in range(config.per_class):
            image, mask = lesion_image(rng, config.side, diagnosis)
            stem = f"ISIC_{number:07d}"
            Image.fromarray(image).save(folder / INPUT_DIR / str(diagnosis) / f"{stem}.jpg", quality=95)
            _save_mask(folder / MASK_DIR / f"{stem}_segmentation.png", mask)
            number += 1
    write_manifest(manifest_path, manifest)
    return folder


def chest_image(rng: np.random.Generator, side: int) -> tuple[np.ndarray, np.ndarray]:
    """(grey image, both lungs' mask): a bright body, two dark lungs, ribs across them."""
    yy, xx = np.indices((side, side)) / side
    body = np.exp(-((xx - 0.5) / 0.42) ** 4 - ((yy - 0.55) / 0.6) ** 4)
    mask = np.zeros((side, side), bool)
    for sign in (-1, 1):
        cx, cy = 0.5 + sign * rng.uniform(0.17, 0.21), rng.uniform(0.45, 0.52)
        mask |= ((xx - cx) / rng.uniform(0.11, 0.14)) ** 2 + ((yy - cy) / rng.uniform(0.26, 0.32)) ** 2 < 1
    image = 60 + 150 * body - 90 * mask + 25 * mask * (np.sin(yy * side / 2.2) > 0.6)
    image = ndimage.gaussian_filter(image + rng.normal(0, 5, image.shape), 1.0)
    return np.clip(image, 0, 255).astype(np.uint8), mask


def write_chest_standin(root: str | Path, config: ChestStandIn = ChestStandIn()) -> Path:
    folder = Path(root) / "LungSegmentation"
    manifest_path, manifest = folder / "standin.json", {"generator": "chestxray-standin", **asdict(config)}
    if manifest_matches(manifest_path, manifest):
        return folder
    rng = np.random.default_rng([config.seed, 3])
    (folder / "CXR_png").mkdir(parents=True, exist_ok=True)
    (folder / "masks").mkdir(parents=True, exist_ok=True)
    for number in range(config.images):
        image, mask = chest_image(rng, config.side)
        name = f"CHNCXR_{number + 1:04d}_{number % 2}"
        Image.fromarray(image, mode="L").save(folder / "CXR_png" / f"{name}.png")
        _save_mask(folder / "masks" / f"{name}_mask.png", mask)
    write_manifest(manifest_path, manifest)
    return folder
