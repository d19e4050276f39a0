"""Writing class-index masks as palette PNGs with the standard VOC colour map."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image


def voc_palette() -> list[int]:
    """The 256-entry VOC colour map: the bits of the class index spread over R, G and B."""
    palette = []
    for index in range(256):
        r = g = b = 0
        value = index
        for shift in range(7, -1, -1):
            r |= ((value >> 0) & 1) << shift
            g |= ((value >> 1) & 1) << shift
            b |= ((value >> 2) & 1) << shift
            value >>= 3
        palette.extend((r, g, b))
    return palette


_PALETTE = voc_palette()


def write_mask_png(path: str | Path, mask: np.ndarray) -> None:
    """Write a uint8 class-index mask as a palette ('P' mode) PNG, atomically."""
    path = Path(path)
    image = Image.fromarray(np.asarray(mask, dtype=np.uint8), mode="P")
    image.putpalette(_PALETTE)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    image.save(tmp, format="PNG")
    os.replace(tmp, path)
