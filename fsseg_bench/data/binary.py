"""What PATNet's cross-domain layouts share: one binary mask per image (grey >= 128 is the object),
and each image's class given by where it sits, not by its pixels. Readers (`deepglobe.py`,
`isic.py`, `chestxray.py`) give paths and pools; this module reads masks and counts pixels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import InputError

THRESHOLD = 128  # PATNet's read_mask: mask < 128 -> 0, >= 128 -> 1


def read_binary_mask(path: Path) -> np.ndarray:
    """uint8 [H, W]: 1 where the mask's grey value is >= 128, else 0 (any PNG mode, as PATNet's
    `Image.open(...).convert('L')`)."""
    if not path.is_file():
        raise InputError(f"{path}: mask not found")
    try:
        with Image.open(path) as img:
            gray = np.array(img.convert("L"), dtype=np.uint8)
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"{path}: unreadable or corrupt mask ({exc})") from None
    return (gray >= THRESHOLD).astype(np.uint8)


def patnet_listing(folder: Path, extension: str) -> list[Path]:
    """A folder's files as PATNet lists them: sorted paths, kept when the name's part after its first
    dot is the extension (`basename.split('.')[1] == 'jpg'`; a name without a dot is left out)."""
    if not folder.is_dir():
        raise InputError(f"{folder}: folder not found")
    files = []
    for path in sorted(str(p) for p in folder.iterdir()):
        parts = Path(path).name.split(".")
        if len(parts) > 1 and parts[1] == extension:
            files.append(Path(path))
    return files


def listing_source(ids: list[str]) -> bytes:
    """What a folder-listed split's membership is read from: its ids, one a line."""
    return ("\n".join(ids) + "\n").encode()


class ClassByFolder:
    """Tree mix-in: labels are binary masks; an image's class is `class_of(image_id)`."""

    def read_label(self, image_id: str) -> np.ndarray:
        return read_binary_mask(self.mask_path(image_id))

    def label_value(self, class_id: int) -> int:
        return 1

    def class_pixels(self, image_id: str, label: np.ndarray) -> dict[int, int]:
        count = int((label == 1).sum())
        return {self.class_of(image_id): count} if count else {}
