"""Prototype operations shared by prototype-based methods (PANet and relatives).

Masked average pooling as PANet's code defines it upsamples the features bilinearly
(align_corners=False) to the mask size and averages them under the mask. Bilinear upsampling is
linear and separable, up(F) = A_h F A_wᵀ, so  sum_p up(F)[c,p] m[p] = sum_q F[c,q] (A_hᵀ m A_w)[q]:
pooling the low-resolution features with the transposed-upsampled mask gives the same prototype
(to float rounding) without materialising C x H x W upsampled features.
"""

from __future__ import annotations

from functools import lru_cache

import torch
import torch.nn.functional as F

MAP_EPS = 1e-5  # PANet's denominator guard
COSINE_SCALE = 20.0


@lru_cache(maxsize=64)
def _interp_matrix_cpu(out_size: int, in_size: int) -> torch.Tensor:
    # Column k is the 1-D bilinear upsampling of the k-th basis vector, computed by torch itself
    # so that the matrix matches F.interpolate(mode="bilinear", align_corners=False) exactly.
    basis = torch.eye(in_size, dtype=torch.float64)[None, None]  # [1,1,in,in]: rows are positions
    upsampled = F.interpolate(basis, size=(out_size, in_size), mode="bilinear", align_corners=False)
    return upsampled[0, 0]  # [out, in]


def interp_matrix(out_size: int, in_size: int, dtype=torch.float32, device="cpu") -> torch.Tensor:
    """A [out, in] with A @ x == 1-D bilinear upsampling of x (align_corners=False)."""
    return _interp_matrix_cpu(out_size, in_size).to(dtype=dtype, device=device)


def pooling_weights(masks: torch.Tensor, feature_size: tuple[int, int]) -> torch.Tensor:
    """Uᵀm: the masks [N,H,W] pulled back to feature resolution [N,h,w] through the upsampling."""
    height, width = masks.shape[-2:]
    a_h = interp_matrix(height, feature_size[0], masks.dtype, masks.device)  # [H,h]
    a_w = interp_matrix(width, feature_size[1], masks.dtype, masks.device)  # [W,w]
    return a_h.T @ masks @ a_w


def masked_average_pool(features: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """PANet's getFeatures for a batch: features [N,C,h,w], masks [N,H,W] (0/1 float) -> [N,C]."""
    weights = pooling_weights(masks.to(features.dtype), features.shape[-2:])
    pooled = torch.einsum("nchw,nhw->nc", features, weights)
    return pooled / (masks.to(features.dtype).sum(dim=(1, 2))[:, None] + MAP_EPS)


def masked_average_pool_reference(features: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """The literal definition (upsample every channel, then average): slow, for tests and checks."""
    upsampled = F.interpolate(features, size=masks.shape[-2:], mode="bilinear", align_corners=False)
    m = masks.to(features.dtype)[:, None]
    return (upsampled * m).sum(dim=(2, 3)) / (m.sum(dim=(2, 3)) + MAP_EPS)


def cosine_scores(features: torch.Tensor, prototypes: torch.Tensor, scale: float = COSINE_SCALE) -> torch.Tensor:
    """Cosine similarity of every feature [N,C,h,w] with every prototype [P,C], times `scale` -> [N,P,h,w]."""
    return torch.stack([F.cosine_similarity(features, p[None, :, None, None], dim=1) for p in prototypes],
                       dim=1) * scale


def upsample_scores(scores: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return F.interpolate(scores, size=tuple(size), mode="bilinear", align_corners=False)
