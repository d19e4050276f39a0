"""`prepare-deepglobe`, `prepare-isic`, `prepare-chestxray`: the public downloads -> the layouts
PATNet's loaders read (`deepglobe.py`, `isic.py`, `chestxray.py`), each writing `recipe.json`
beside the data with the choices made and the counts it yielded.

- **Deepglobe** (PATNet `data/preprocess.py`, whose three steps are commented-out scripts): every
  `<id>_sat.jpg` tile and its `<id>_mask.png` are cut into a 6x6 grid (row and column bounds
  `int(k * side / 6)`); a crop is kept when its mask has more than one colour and its least
  frequent colour covers more than 4.8% of it (PATNet divides by 166464 = 408², the crop area of a
  2448-px tile; here by the crop's own area, the same number there); each kept crop goes into the
  folder of every class whose colour it holds, with that class's binary mask. PATNet's step 3
  compares OpenCV's BGR pixels with the colours written in RGB, so its folder 1 holds agriculture
  (RGB yellow), 2 urban (cyan), 3 rangeland (magenta), 4 forest, 5 water, 6 barren; this recipe
  writes the same folders. Crops are named `<id>_sat_<row><col>` (images JPEG, quality 95, by PIL:
  the bytes differ from OpenCV's encoder, the pixels barely). The paper reports 5,666 crops; users
  running the script report 9,175 (PATNet #17, #33): the recipe counts both the distinct crops kept
  and the (crop, class) pairs written, one of which may be what each number counts.
- **ISIC**: task 1 images and masks sorted into class folders by a class table: PATNet's
  `data/isic/class_id.csv` (`ID,Class`: nevus, melanoma, seborrheic_keratosis) or ISIC 2017's
  part 3 ground truth (`image_id,melanoma,seborrheic_keratosis`, one-hot; neither is nevus);
  folders 1 nevus, 2 melanoma, 3 seborrheic keratosis. `--resize N` (recorded) resizes both to
  N x N (images bilinear, masks nearest), as a later split script of the benchmark's users did.
- **Chest X-ray**: `CXR_png/` and `masks/` of the public lung-mask download; Shenzhen masks are
  `<name>_mask.png`, Montgomery's `<name>.png`: `--montgomery include` renames those to
  `<name>_mask.png` (PATNet's loader pairs by that suffix), `exclude` leaves them out (recorded).
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import InputError
from ..textfiles import read_utf8

GRID = 6
KEEP_FRACTION = 0.048
# PATNet's step 3 `labelset`, compared with OpenCV's BGR pixels: folder k+1 holds BGR labelset[k].
PATNET_LABELSET_BGR = ((0, 255, 255), (255, 255, 0), (255, 0, 255), (0, 255, 0), (255, 0, 0), (255, 255, 255))


def _open_rgb(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as img:
            return np.array(img.convert("RGB"))
    except (OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"{path}: unreadable image ({exc})") from None


def _save_binary(path: Path, mask: np.ndarray) -> None:
    Image.fromarray(np.where(mask, 255, 0).astype(np.uint8), mode="L").save(path)


def _write_recipe(folder: Path, recipe: dict) -> None:
    (folder / "recipe.json").write_text(json.dumps(recipe, indent=1, sort_keys=True) + "\n")


def grid_bounds(side: int, grid: int = GRID) -> list[tuple[int, int]]:
    return [(int(k * side / grid), int((k + 1) * side / grid)) for k in range(grid)]


def keep_crop(mask_crop: np.ndarray, keep: float = KEEP_FRACTION) -> bool:
    """PATNet's step 2: more than one colour, and the rarest covers more than `keep` of the crop."""
    _, counts = np.unique(mask_crop.reshape(-1, mask_crop.shape[-1]), axis=0, return_counts=True)
    return len(counts) > 1 and counts.min() / mask_crop.shape[0] / mask_crop.shape[1] > keep


def class_masks(mask_crop: np.ndarray) -> dict[int, np.ndarray]:
    """PATNet's step 3: {folder: binary mask} for every labelset colour present (matched in BGR)."""
    bgr = mask_crop[..., ::-1]
    out = {}
    for k, colour in enumerate(PATNET_LABELSET_BGR):
        hit = (bgr == np.array(colour, np.uint8)).all(axis=-1)
        if hit.any():
            out[k + 1] = hit
    return out


def prepare_deepglobe(source: str | Path, out: str | Path) -> dict:
    source, folder = Path(source), Path(out) / "Deepglobe"
    tiles = sorted(source.glob("*_sat.jpg")) if source.is_dir() else []
    if not tiles:
        raise InputError(f"{source}: no <id>_sat.jpg tiles (expected DeepGlobe land cover's train folder with "
                         f"<id>_sat.jpg and <id>_mask.png)")
    for c in range(1, GRID + 1):
        for sub in ("origin", "groundtruth"):
            (folder / str(c) / "test" / sub).mkdir(parents=True, exist_ok=True)
    crops = kept = pairs = 0
    per_class = {c: 0 for c in range(1, 7)}
    for tile in tiles:
        mask_path = tile.with_name(tile.name[:-len("_sat.jpg")] + "_mask.png")
        if not mask_path.is_file():
            raise InputError(f"{mask_path}: mask of {tile.name} not found")
        image, mask = _open_rgb(tile), _open_rgb(mask_path)
        if image.shape != mask.shape:
            raise InputError(f"{mask_path}: {mask.shape[1]}x{mask.shape[0]}, its tile {image.shape[1]}x{image.shape[0]}")
        for i, (top, bottom) in enumerate(grid_bounds(image.shape[0])):
            for j, (left, right) in enumerate(grid_bounds(image.shape[1])):
                crops += 1
                mask_crop = mask[top:bottom, left:right]
                if not keep_crop(mask_crop):
                    continue
                kept += 1
                stem = f"{tile.stem}_{i}{j}"
                for c, binary in class_masks(mask_crop).items():
                    Image.fromarray(image[top:bottom, left:right]).save(
                        folder / str(c) / "test" / "origin" / f"{stem}.jpg", quality=95)
                    _save_binary(folder / str(c) / "test" / "groundtruth" / f"{stem}.png", binary)
                    pairs += 1
                    per_class[c] += 1
    counts = {"tiles": len(tiles), "crops": crops, "crops_kept": kept, "crop_class_pairs": pairs,
              "per_class_folder": per_class}
    _write_recipe(folder, {"recipe": "PATNet data/preprocess.py steps 1-3", "grid": GRID, "keep_fraction": KEEP_FRACTION,
                           "folders": {"1": "agriculture", "2": "urban", "3": "rangeland", "4": "forest", "5": "water",
                                       "6": "barren"}, "source": str(source.resolve()), **counts})
    return counts


ISIC_FOLDERS = {"nevus": 1, "melanoma": 2, "seborrheic_keratosis": 3}


def isic_classes(path: Path) -> dict[str, str]:
    """{image id: class name} from PATNet's class_id.csv or ISIC 2017's part 3 ground truth."""
    rows = list(csv.reader(read_utf8(path, "ISIC class table").splitlines()))
    if not rows:
        raise InputError(f"{path}: empty class table")
    header = [h.strip() for h in rows[0]]
    out = {}
    for number, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        if header[:2] == ["ID", "Class"]:
            image_id, name = row[0].strip(), row[1].strip()
        elif header[:3] == ["image_id", "melanoma", "seborrheic_keratosis"]:
            image_id = row[0].strip()
            flags = [float(v) for v in row[1:3]]
            name = "melanoma" if flags[0] == 1 else "seborrheic_keratosis" if flags[1] == 1 else "nevus"
        else:
            raise InputError(f"{path}: header {','.join(header)!r}; expected 'ID,Class' (PATNet's class_id.csv) or "
                             f"'image_id,melanoma,seborrheic_keratosis' (ISIC 2017 part 3)")
        if name not in ISIC_FOLDERS:
            raise InputError(f"{path}:{number}: class {name!r}; expected one of {', '.join(ISIC_FOLDERS)}")
        out[image_id] = name
    return out


def prepare_isic(images: str | Path, masks: str | Path, classes: str | Path, out: str | Path,
                 resize: int | None = None) -> dict:
    from .isic import INPUT_DIR, MASK_DIR

    images, masks, folder = Path(images), Path(masks), Path(out) / "ISIC"
    table = isic_classes(Path(classes))
    files = sorted(images.glob("ISIC_*.jpg")) if images.is_dir() else []
    if not files:
        raise InputError(f"{images}: no ISIC_*.jpg images (expected ISIC2018_Task1-2_Training_Input)")
    (folder / MASK_DIR).mkdir(parents=True, exist_ok=True)
    for c in ISIC_FOLDERS.values():
        (folder / INPUT_DIR / str(c)).mkdir(parents=True, exist_ok=True)
    per_class = {name: 0 for name in ISIC_FOLDERS}
    for image in files:
        if image.stem not in table:
            raise InputError(f"{classes}: no class for {image.stem} (an image of {images})")
        mask = masks / f"{image.stem}_segmentation.png"
        if not mask.is_file():
            raise InputError(f"{mask}: mask of {image.name} not found")
        name = table[image.stem]
        target_image = folder / INPUT_DIR / str(ISIC_FOLDERS[name]) / image.name
        target_mask = folder / MASK_DIR / mask.name
        if resize:
            with Image.open(image) as img:
                img.convert("RGB").resize((resize, resize), Image.BILINEAR).save(target_image, quality=95)
            with Image.open(mask) as img:
                img.convert("L").resize((resize, resize), Image.NEAREST).save(target_mask)
        else:
            shutil.copyfile(image, target_image)
            shutil.copyfile(mask, target_mask)
        per_class[name] += 1
    counts = {"images": len(files), "per_class": per_class}
    _write_recipe(folder, {"recipe": "ISIC 2018 task 1 by diagnosis", "folders": {str(v): k for k, v in ISIC_FOLDERS.items()},
                           "resize": resize, "classes": str(Path(classes).resolve()), **counts})
    return counts


def prepare_chestxray(source: str | Path, out: str | Path, montgomery: str) -> dict:
    if montgomery not in ("include", "exclude"):
        raise InputError(f"--montgomery {montgomery!r}: expected include or exclude")
    source, folder = Path(source), Path(out) / "LungSegmentation"
    if not (source / "CXR_png").is_dir() or not (source / "masks").is_dir():
        raise InputError(f"{source}: expected the lung-mask download's CXR_png/ and masks/ folders")
    (folder / "CXR_png").mkdir(parents=True, exist_ok=True)
    (folder / "masks").mkdir(parents=True, exist_ok=True)
    counts = {"shenzhen_style": 0, "montgomery_renamed": 0, "montgomery_left_out": 0}
    for mask in sorted((source / "masks").glob("*.png")):
        suffixed = mask.stem.endswith("_mask")
        name = mask.stem[:-len("_mask")] if suffixed else mask.stem
        if not suffixed and montgomery == "exclude":
            counts["montgomery_left_out"] += 1
            continue
        image = source / "CXR_png" / f"{name}.png"
        if not image.is_file():
            raise InputError(f"{image}: image of mask {mask.name} not found")
        shutil.copyfile(image, folder / "CXR_png" / image.name)
        shutil.copyfile(mask, folder / "masks" / f"{name}_mask.png")
        counts["shenzhen_style" if suffixed else "montgomery_renamed"] += 1
    _write_recipe(folder, {"recipe": "lung masks paired as PATNet's loader pairs them", "montgomery": montgomery,
                           "source": str(source.resolve()), **counts})
    return counts
