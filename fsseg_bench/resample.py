"""Resampling kernels as each codebase's library computes them, so preprocessing can match the
original bit for bit (or to float rounding): PIL (PANet, HSNet images, the harness), torch's
`F.interpolate(mode="nearest")` (HSNet's labels) and OpenCV's INTER_LINEAR / INTER_NEAREST
(PFENet: on float32 images; `cv2-bilinear-u8` for codebases that resize 8-bit images). OpenCV
is not a dependency: its kernels are re-derived here from its code's arithmetic, checked against
hand-computed cases and, where `opencv-python-headless` is installed (the `test` extra), against
OpenCV itself on hundreds of random sizes (tests/test_resample.py).

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
    float32 image (PFENet converts to float32 before resizing): no antialiasing, half-pixel
    centres, a horizontal pass then a vertical one, each `a + (b - a) * t` with one rounding
    (a fused multiply-add, as OpenCV's SIMD code on x86-64 computes it). Equal to OpenCV 5.0 bit
    for bit on every size PFENet resizes to (tests/test_codebase_scores.py); on sources narrower than
    ~30 px OpenCV's border columns differ by one float32 ulp in some rows (not reproduced). An
    exact 2x shrink in both directions is OpenCV's INTER_AREA fast path (the mean of each 2x2
    block), as OpenCV does."""
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
        x0, x1, tx = _cv2_linear_taps(width, out_w, clamp_weights=True)
        y0, y1, ty = _cv2_linear_taps(height, out_h, clamp_weights=False)
        rows = _lerp(src[:, x0], src[:, x1], tx[None, :, None])
        result = _lerp(rows[y0], rows[y1], ty[:, None, None])
    return result[:, :, 0] if squeeze else result


def _lerp(a: np.ndarray, b: np.ndarray, t: np.ndarray) -> np.ndarray:
    """float32 a + (b - a) * t with the multiply-add rounded once: (b - a) * t is exact in float64
    (two 24-bit mantissas), so only the sum rounds (a double rounding through float64 is possible
    but needs the sum to land within 2^-29 of a float32 tie)."""
    difference = (b - a).astype(np.float32)
    return (difference.astype(np.float64) * t.astype(np.float64) + a.astype(np.float64)).astype(np.float32)


def _cv2_linear_taps(n_in: int, n_out: int, clamp_weights: bool):
    """Source indices and the float32 weight of the second tap, for one axis. The sampling
    position (i + 0.5) * (n_in / n_out) - 0.5 is computed in double precision; x taps are clamped
    at the borders by a weight of 0, y taps keep their weights and clamp the row index instead."""
    position = (np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5
    first = np.floor(position).astype(np.int64)
    fraction = (position - first).astype(np.float32)
    if clamp_weights:
        low, high = first < 0, first >= n_in - 1
        fraction[low | high] = 0
        first[low] = 0
        first[high] = n_in - 1
    second = np.clip(first + 1, 0, n_in - 1)
    first = np.clip(first, 0, n_in - 1)
    return first, second, fraction


INTER_RESIZE_COEF_SCALE = 2048  # OpenCV's 11-bit fixed-point weights for 8-bit images


def cv2_bilinear_u8(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """uint8 [H,W,C] -> uint8 [h,w,C] as OpenCV's INTER_LINEAR on an 8-bit image, bit for bit: the
    weights rounded to 11-bit fixed point, the horizontal pass in exact integers, the vertical pass
    as OpenCV's SIMD kernel computes it (each row >> 4, a signed 16x16 high multiply by the
    weight, the two added, then (sum + 2) >> 2 saturated to 0..255). An exact 2x shrink is
    INTER_AREA's (sum of the 2x2 block + 2) >> 2."""
    src = np.asarray(image)
    if src.dtype != np.uint8:
        raise ValueError(f"cv2_bilinear_u8: expected a uint8 image, got {src.dtype}")
    squeeze = src.ndim == 2
    if squeeze:
        src = src[:, :, None]
    (height, width), (out_h, out_w) = src.shape[:2], tuple(size)
    values = src.astype(np.int64)
    if (out_h, out_w) == (height, width):
        result = values
    elif height == 2 * out_h and width == 2 * out_w:
        result = (values[0::2, 0::2] + values[0::2, 1::2] + values[1::2, 0::2] + values[1::2, 1::2] + 2) >> 2
    else:
        x0, x1, tx = _cv2_linear_taps_f32(width, out_w, clamp_weights=True)
        y0, y1, ty = _cv2_linear_taps_f32(height, out_h, clamp_weights=False)
        ax0, ax1 = _fixed_point(np.float32(1) - tx), _fixed_point(tx)
        by0, by1 = _fixed_point(np.float32(1) - ty), _fixed_point(ty)
        rows = values[:, x0] * ax0[None, :, None] + values[:, x1] * ax1[None, :, None]
        top = np.clip(rows[y0] >> 4, -32768, 32767)
        bottom = np.clip(rows[y1] >> 4, -32768, 32767)
        total = ((top * by0[:, None, None]) >> 16) + ((bottom * by1[:, None, None]) >> 16)
        result = (total + 2) >> 2
    result = np.clip(result, 0, 255).astype(np.uint8)
    return result[:, :, 0] if squeeze else result


def _fixed_point(weights: np.ndarray) -> np.ndarray:
    """saturate_cast<short>(w * 2048): round half to even, as cvRound does."""
    return np.rint(weights.astype(np.float32) * np.float32(INTER_RESIZE_COEF_SCALE)).astype(np.int64)


def _cv2_linear_taps_f32(n_in: int, n_out: int, clamp_weights: bool):
    """The 8-bit path's taps: the position is rounded to float32 before its floor is taken, and the
    fraction is taken in float32 (`fx = (float)(...); sx = cvFloor(fx); fx -= sx`)."""
    position = ((np.arange(n_out) + 0.5) * (1.0 / (n_out / n_in)) - 0.5).astype(np.float32)
    first = np.floor(position).astype(np.int64)
    fraction = (position - first.astype(np.float32)).astype(np.float32)
    if clamp_weights:
        low, high = first < 0, first >= n_in - 1
        fraction[low | high] = 0
        first[low] = 0
        first[high] = n_in - 1
    second = np.clip(first + 1, 0, n_in - 1)
    first = np.clip(first, 0, n_in - 1)
    return first, second, fraction


IMAGE_RESIZERS = {"pil-bilinear": pil_bilinear, "cv2-bilinear": cv2_bilinear, "cv2-bilinear-u8": cv2_bilinear_u8}
LABEL_RESIZERS = {"pil-nearest": pil_nearest, "torch-nearest": torch_nearest, "cv2-nearest": cv2_nearest}
