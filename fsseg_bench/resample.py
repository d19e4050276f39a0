"""Resampling kernels as each codebase's library computes them, so preprocessing can match the
original bit for bit (or to float rounding): PIL (PANet, HSNet images, the harness), torch's
`F.interpolate(mode="nearest")` (HSNet's labels) and OpenCV's INTER_LINEAR / INTER_NEAREST
(PFENet). OpenCV is not a dependency: its two kernels are re-derived here from their definition
and checked against hand-computed cases (and, once, against OpenCV itself; see the README).

Sizes are (height, width).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image


def pil_bilinear(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """uint8 [H,W,3] -> uint8 [h,w,3], PIL's BILINEAR (antialiased when shrinking)."""
    return np.asarray(Image.fromarray(image).resize((size[1], size[0]), Image.BILINEAR))


def pil_nearest(label: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """uint8 [H,W] -> uint8 [h,w], PIL's NEAREST (source pixel floor((i + 0.5) * in / out))."""
    return np.asarray(Image.fromarray(label).resize((size[1], size[0]), Image.NEAREST))


def torch_nearest(label: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """uint8 [H,W] -> uint8 [h,w] as `F.interpolate(label.float(), size, mode="nearest")` (HSNet):
    source pixel floor(i * in / out), which differs from PIL's on ~0.75% of pixels."""
    tensor = torch.from_numpy(np.ascontiguousarray(label)).float()[None, None]
    return F.interpolate(tensor, size=tuple(size), mode="nearest")[0, 0].to(torch.uint8).numpy()


def cv2_nearest(label: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """uint8 [H,W] -> uint8 [h,w] as OpenCV's INTER_NEAREST: source pixel
    min(floor(i * (1 / (out / in))), in - 1), in double precision."""
    rows = _cv2_nearest_taps(label.shape[0], size[0])
    cols = _cv2_nearest_taps(label.shape[1], size[1])
    return label[rows[:, None], cols[None, :]]


def _cv2_nearest_taps(n_in: int, n_out: int) -> np.ndarray:
    inverse = 1.0 / (n_out / n_in)
    return np.minimum(np.floor(np.arange(n_out) * inverse).astype(np.int64), n_in - 1)


def cv2_bilinear(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """[H,W,C] (any dtype, taken as float32) -> float32 [h,w,C] as OpenCV's INTER_LINEAR on a
    float32 image (PFENet converts to float32 first): no antialiasing, half-pixel centres,
    float32 weights, horizontal pass then vertical. It matches OpenCV 4.10 and 5.0 to within
    4.6e-5 on a 0..255 scale (float32 rounding in their SIMD code); INTER_NEAREST matches exactly. An exact 2x shrink in both directions is
    OpenCV's INTER_AREA fast path (the mean of each 2x2 block), as OpenCV does."""
    src = np.asarray(image, dtype=np.float32)
    squeeze = src.ndim == 2
    if squeeze:
        src = src[:, :, None]
    (height, width), (out_h, out_w) = src.shape[:2], tuple(size)
    if (out_h, out_w) == (height, width):
        result = src.copy()
    elif height == 2 * out_h and width == 2 * out_w:
        blocks = src[0::2, 0::2] + src[0::2, 1::2] + src[1::2, 0::2] + src[1::2, 1::2]
        result = (blocks * np.float32(0.25)).astype(np.float32)
    else:
        x0, x1, wx0, wx1 = _cv2_linear_taps(width, out_w, clamp_weights=True)
        y0, y1, wy0, wy1 = _cv2_linear_taps(height, out_h, clamp_weights=False)
        rows = src[:, x0] * wx0[None, :, None] + src[:, x1] * wx1[None, :, None]
        result = rows[y0] * wy0[:, None, None] + rows[y1] * wy1[:, None, None]
    return result[:, :, 0] if squeeze else result


def _cv2_linear_taps(n_in: int, n_out: int, clamp_weights: bool):
    """Source indices and float32 weights of one axis. The sampling position is computed in double
    precision (as OpenCV 4.x/5.x do); OpenCV clamps x taps at the borders by setting the weight to
    0, while y taps keep their weights and clamp the row index instead."""
    scale = 1.0 / (n_out / n_in)
    position = (np.arange(n_out) + 0.5) * scale - 0.5
    first = np.floor(position).astype(np.int64)
    fraction = (position - first).astype(np.float32)
    if clamp_weights:
        low, high = first < 0, first >= n_in - 1
        fraction[low | high] = 0
        first[low] = 0
        first[high] = n_in - 1
    second = np.clip(first + 1, 0, n_in - 1)
    first = np.clip(first, 0, n_in - 1)
    return first, second, (np.float32(1) - fraction).astype(np.float32), fraction


IMAGE_RESIZERS = {"pil-bilinear": pil_bilinear, "cv2-bilinear": cv2_bilinear}
LABEL_RESIZERS = {"pil-nearest": pil_nearest, "torch-nearest": torch_nearest, "cv2-nearest": cv2_nearest}
