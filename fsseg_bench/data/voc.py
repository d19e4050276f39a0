"""The VOC-format reader: one code path for real PASCAL VOC (+SBD) and for the synthetic stand-in.

Layout: `VOC2012/JPEGImages/<id>.jpg`, `VOC2012/SegmentationClassAug/<id>.png` (falling back to
`SegmentationClass/`), `VOC2012/ImageSets/Segmentation/<split>.txt`. Masks hold a class index per
pixel (0 background, 1..20 classes, 255 void), as a palette or a grayscale PNG.

Every layout's tree (`VocTree` here, `coco.CocoTree`, `fss.FssTree`) offers the same few methods:
`image_path`, `mask_path`, `split_ids(split)`, `split_source(split)` (the bytes a split's
membership is read from), `read_label(id)` (uint8 class indices, 255 void), `label_value(class)`
(the value a class takes in labels) and `class_pixels(id, label)`; `identity` names the tree in
cache keys. The class index below and everything after it read trees only through them.
"""

from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..classes import NUM_CLASSES
from ..contenthash import stat_key
from ..errors import InputError
from ..textfiles import read_utf8

IGNORE = 255
MASK_DIRS = ("SegmentationClassAug", "SegmentationClass")
CLASS_INDEX_VERSION = 4  # 2: content sha256 of every image and mask; 3: any layout's tree; 4: stat keys


@dataclass(frozen=True)
class VocTree:
    """A located `VOC2012` folder and the mask folder it uses."""

    root: Path
    mask_dir: str

    def image_path(self, image_id: str) -> Path:
        return self.root / "JPEGImages" / f"{image_id}.jpg"

    def mask_path(self, image_id: str) -> Path:
        return self.root / self.mask_dir / f"{image_id}.png"

    def list_path(self, split: str) -> Path:
        return self.root / "ImageSets" / "Segmentation" / f"{split}.txt"

    num_classes = NUM_CLASSES

    @property
    def identity(self) -> str:
        return f"{self.root.resolve()}|{self.mask_dir}"

    def split_ids(self, split: str) -> list[str]:
        return read_list_file(self.list_path(split), split)

    def split_source(self, split: str) -> bytes:
        return self.list_path(split).read_bytes()

    def read_label(self, image_id: str) -> np.ndarray:
        return read_mask(self.mask_path(image_id))

    def label_value(self, class_id: int) -> int:
        return class_id

    def class_pixels(self, image_id: str, label: np.ndarray) -> dict[int, int]:
        return class_pixels_by_value(label, self.num_classes)


def class_pixels_by_value(label: np.ndarray, num_classes: int) -> dict[int, int]:
    """{class: pixels} of a class-index label (classes 1..num_classes)."""
    counts = np.bincount(label.ravel(), minlength=256)
    return {c: int(counts[c]) for c in range(1, num_classes + 1) if counts[c]}


def locate_voc(data_root: str | Path) -> VocTree:
    """Accept the VOC2012 folder itself or an ancestor holding `VOCdevkit/VOC2012` or `VOC2012`."""
    data_root = Path(data_root)
    if not data_root.exists():
        raise InputError(f"{data_root}: data root not found (expected a VOC2012 folder or one holding VOCdevkit/VOC2012)")
    for candidate in (data_root, data_root / "VOC2012", data_root / "VOCdevkit" / "VOC2012"):
        if (candidate / "JPEGImages").is_dir():
            for mask_dir in MASK_DIRS:
                if (candidate / mask_dir).is_dir():
                    return VocTree(candidate, mask_dir)
            raise InputError(f"{candidate}: no SegmentationClassAug/ or SegmentationClass/ folder of masks")
    raise InputError(f"{data_root}: no JPEGImages/ in it, in VOC2012/ or in VOCdevkit/VOC2012/")


def read_split(tree, split: str) -> list[str]:
    """A split's image ids, from any layout's tree."""
    return tree.split_ids(split)


def read_list_file(path: Path, split: str) -> list[str]:
    text = read_utf8(path, f"image list for split {split!r}")
    ids, seen = [], {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        image_id = line.split()[0]
        if image_id in seen:
            # A duplicate would let an episode's query also be one of its supports.
            raise InputError(f"{path}:{number}: image id {image_id!r} listed twice (first on line {seen[image_id]}); "
                             f"expected each id once")
        seen[image_id] = number
        ids.append(image_id)
    if not ids:
        raise InputError(f"{path}: image list is empty")
    return ids


def read_mask(path: Path) -> np.ndarray:
    """Class-index mask as uint8 [H, W]; values checked to be 0..20 or 255."""
    return read_class_mask(path, NUM_CLASSES)


def read_class_mask(path: Path, num_classes: int) -> np.ndarray:
    """Class-index mask as uint8 [H, W]; values checked to be 0..num_classes or 255."""
    if not path.is_file():
        raise InputError(f"{path}: mask not found")
    try:
        with Image.open(path) as img:
            if img.format != "PNG":
                raise InputError(f"{path}: expected a PNG mask, found {img.format}")
            if img.mode not in ("P", "L"):
                raise InputError(f"{path}: expected a palette (P) or grayscale (L) PNG, found mode {img.mode}")
            mask = np.array(img, dtype=np.uint8)
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"{path}: unreadable or corrupt PNG ({exc})") from None
    check_mask_values(mask, path, num_classes)
    return mask


def check_mask_values(mask: np.ndarray, path: Path, num_classes: int = NUM_CLASSES) -> np.ndarray:
    """Raise unless every value is a class (0..num_classes) or void (255); return the value histogram."""
    counts = np.bincount(mask.ravel(), minlength=256)
    bad = np.flatnonzero(counts[num_classes + 1:IGNORE]) + num_classes + 1
    if bad.size:
        raise InputError(f"{path}: mask value {int(bad[0])} outside 0..{num_classes} and {IGNORE}")
    return counts


def read_image(path: Path) -> np.ndarray:
    """RGB uint8 [H, W, 3]."""
    if not path.is_file():
        raise InputError(f"{path}: image not found")
    try:
        with Image.open(path) as img:
            return np.array(img.convert("RGB"), dtype=np.uint8)
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"{path}: unreadable or corrupt image ({exc})") from None


def image_size(path: Path) -> tuple[int, int]:
    """(H, W) from the image header, without decoding the pixels."""
    if not path.is_file():
        raise InputError(f"{path}: image not found")
    try:
        with Image.open(path) as img:
            width, height = img.size
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"{path}: unreadable or corrupt image ({exc})") from None
    return height, width


def read_pair(tree, image_id: str) -> tuple[np.ndarray, np.ndarray]:
    """Image [H,W,3] and label [H,W], checked to have the same size."""
    image = read_image(tree.image_path(image_id))
    mask = tree.read_label(image_id)
    if image.shape[:2] != mask.shape:
        raise InputError(
            f"{tree.mask_path(image_id)}: mask size {mask.shape[1]}x{mask.shape[0]} != image size "
            f"{image.shape[1]}x{image.shape[0]} of {tree.image_path(image_id)}"
        )
    return image, mask


# --- class-presence index ---------------------------------------------------------------------

@dataclass(frozen=True)
class ClassIndex:
    """Which images of a split hold which class, and how many pixels of it (original resolution)."""

    split: str
    ids: tuple[str, ...]
    pixels: dict[str, dict[int, int]]
    fingerprint: str
    # id -> (image sha256, mask sha256) of the file contents: the data a run reads.
    file_sha256: dict[str, tuple[str, str]]
    from_cache: bool = False

    def images_with(self, class_id: int, min_pixels: int = 0) -> list[str]:
        """Ids holding `class_id` with at least `min_pixels` (and at least one) pixel, in list order."""
        threshold = max(1, min_pixels)
        return [i for i in self.ids if self.pixels[i].get(class_id, 0) >= threshold]

    def classes_of(self, image_id: str, min_pixels: int = 0) -> list[int]:
        threshold = max(1, min_pixels)
        return sorted(c for c, n in self.pixels[image_id].items() if n >= threshold)


def split_fingerprint(tree, split: str, ids: list[str]) -> str:
    """sha256 of the split's source (list file) and of the stat key (device, inode, size, mtime_ns,
    ctime_ns) of every mask and image it names.

    Stat-based so that checking the cache costs a stat per file, not a decode. Any rewrite changes
    ctime (which no user call can set back), so a mask rewritten with the same size and a forged
    mtime still invalidates the index; a touch or a copy costs one rescan, whose content hashes
    are the same, so the run identity does not change.
    """
    digest = hashlib.sha256()
    digest.update(tree.split_source(split))
    digest.update(f"{tree.identity}|v{CLASS_INDEX_VERSION}\n".encode())
    for image_id in ids:
        for path in (tree.mask_path(image_id), tree.image_path(image_id)):
            kind = "mask" if path == tree.mask_path(image_id) else "image"
            try:
                key = stat_key(path)
            except FileNotFoundError:
                raise InputError(f"{path}: {kind} of image id {image_id!r} (in split {split!r}) not found") from None
            except OSError as exc:  # a symlink loop, a permission problem
                raise InputError(f"{path}: {kind} of image id {image_id!r} cannot be read ({exc.strerror})") from None
            digest.update(f"{image_id}|{'|'.join(map(str, key))}\n".encode())
    return digest.hexdigest()


def _file_sha256(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as exc:
        raise InputError(f"{path}: unreadable ({exc.strerror})") from None


def _scan_one(tree, image_id: str) -> tuple[dict[int, int], tuple[str, str]]:
    mask_path = tree.mask_path(image_id)
    mask = tree.read_label(image_id)
    height, width = image_size(tree.image_path(image_id))
    if (height, width) != mask.shape:
        raise InputError(
            f"{mask_path}: mask size {mask.shape[1]}x{mask.shape[0]} != image size {width}x{height} "
            f"of {tree.image_path(image_id)}"
        )
    hashes = (_file_sha256(tree.image_path(image_id)), _file_sha256(mask_path))
    return tree.class_pixels(image_id, mask), hashes


def class_index_cache_path(cache_dir: Path, tree, split: str) -> Path:
    key = hashlib.sha256(f"{tree.identity}|{split}".encode()).hexdigest()[:16]
    return Path(cache_dir) / f"class-index-{split}-{key}.json"


def load_class_index(tree, split: str, cache_dir: Path | None, workers: int = 4, persist: bool = True) -> ClassIndex:
    """Scan a split once; later calls read the cache while the fingerprint still matches.
    `persist=False` writes nothing (the up-front check of a command: bad input writes nothing)."""
    ids = read_split(tree, split)
    fingerprint = split_fingerprint(tree, split, ids)
    cache_path = class_index_cache_path(cache_dir, tree, split) if cache_dir is not None else None
    if cache_path is not None and cache_path.is_file():
        try:
            cached = json.loads(cache_path.read_text())
            if cached.get("fingerprint") == fingerprint and cached.get("version") == CLASS_INDEX_VERSION:
                pixels = {i: {int(c): n for c, n in cached["pixels"][i].items()} for i in ids}
                hashes = {i: tuple(cached["file_sha256"][i]) for i in ids}
                return ClassIndex(split, tuple(ids), pixels, fingerprint, hashes, from_cache=True)
        except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError):
            pass  # a damaged cache is just rebuilt
    # PIL releases the GIL while decoding, so a few threads speed up the one-off scan.
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        scanned = list(pool.map(lambda i: _scan_one(tree, i), ids))
    pixels = {image_id: counts for image_id, (counts, _) in zip(ids, scanned)}
    hashes = {image_id: files for image_id, (_, files) in zip(ids, scanned)}
    index = ClassIndex(split, tuple(ids), pixels, fingerprint, hashes, from_cache=False)
    if cache_path is not None and persist:
        save_class_index(index, tree, cache_path)
    return index


def save_class_index(index: ClassIndex, tree, cache_path: Path) -> None:
    """Atomic: a crash never leaves a torn cache; a full disk leaves no temporary file."""
    cache_path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"version": CLASS_INDEX_VERSION, "tree": tree.identity, "split": index.split,
               "fingerprint": index.fingerprint, "pixels": index.pixels, "file_sha256": index.file_sha256}
    tmp = cache_path.with_suffix(f".tmp{os.getpid()}")
    try:
        tmp.write_text(json.dumps(payload))
        os.replace(tmp, cache_path)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise


def _register() -> None:
    from ..datasets import PASCAL_VOC
    from .registry import DatasetEntry, register_dataset

    register_dataset(DatasetEntry("pascal-voc", "PASCAL VOC", 4, locate_voc, lambda protocol, tree: PASCAL_VOC))


_register()
