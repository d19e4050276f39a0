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
COSINE_EPS = 1e-8


@lru_cache(maxsize=256)
def interp_matrix(out_size: int, in_size: int, dtype=torch.float32, device="cpu") -> torch.Tensor:
    """A [out, in] with A @ x == 1-D bilinear upsampling of x (align_corners=False).

    Column k is the upsampling of the k-th basis vector, computed by torch itself so that the
    matrix matches F.interpolate(mode="bilinear", align_corners=False) exactly. Cached per
    (size, dtype, device): it is built once and reused by every episode.
    """
    basis = torch.eye(in_size, dtype=torch.float64)[None, None]  # [1,1,in,in]: rows are positions
    upsampled = F.interpolate(basis, size=(out_size, in_size), mode="bilinear", align_corners=False)
    return upsampled[0, 0].to(dtype=dtype, device=device)


def pooling_weights(masks: torch.Tensor, feature_size: tuple[int, int]) -> torch.Tensor:
    """Uᵀm: masks [..., H, W] pulled back to feature resolution [..., h, w] through the upsampling."""
    height, width = masks.shape[-2:]
    a_h = interp_matrix(height, int(feature_size[0]), masks.dtype, masks.device)  # [H,h]
    a_w = interp_matrix(width, int(feature_size[1]), masks.dtype, masks.device)  # [W,w]
    return a_h.T @ masks @ a_w


def masked_average_pool(features: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """PANet's getFeatures, batched: features [N,C,h,w], masks [..., N, H, W] (0/1) -> [..., N, C].

    Leading mask dimensions pool the same features under several masks (e.g. background and
    foreground) in one product.
    """
    masks = masks.to(features.dtype)
    weights = pooling_weights(masks, features.shape[-2:])
    pooled = torch.einsum("nchw,...nhw->...nc", features, weights)
    return pooled / (masks.sum(dim=(-2, -1))[..., None] + MAP_EPS)


def masked_average_pool_reference(features: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """The literal definition (upsample every channel, then average): slow, for tests and checks."""
    upsampled = F.interpolate(features, size=masks.shape[-2:], mode="bilinear", align_corners=False)
    m = masks.to(features.dtype)[:, None]
    return (upsampled * m).sum(dim=(2, 3)) / (m.sum(dim=(2, 3)) + MAP_EPS)


def cosine_scores(features: torch.Tensor, prototypes: torch.Tensor, scale: float = COSINE_SCALE) -> torch.Tensor:
    """Cosine similarity of every feature [N,C,h,w] with every prototype [P,C], times `scale` -> [N,P,h,w].

    A product of normalised vectors, as F.cosine_similarity computes it (norms clamped at 1e-8), in
    one einsum rather than one call per prototype.
    """
    unit_prototypes = prototypes / clamped_norm(prototypes, 1)
    feature_norm = clamped_norm(features, 1)  # [N,1,h,w]
    return torch.einsum("nchw,pc->nphw", features, unit_prototypes) / (feature_norm / scale)


def clamped_norm(x: torch.Tensor, dim: int, eps: float = COSINE_EPS) -> torch.Tensor:
    """max(L2 norm over `dim`, eps), kept, as F.cosine_similarity clamps it. Multiply-and-sum: 2.5x
    faster than torch.norm over the strided channel axis of [.., C, h, w] features. The clamp is
    applied to the squared norm, before the square root: the same values, but a zero vector (a
    prototype of an empty predicted mask) gets a finite gradient, as in torch's cosine_similarity,
    where clamping after the root gave 0 x inf = NaN and ended training."""
    return (x * x).sum(dim=dim, keepdim=True).clamp_min(eps * eps).sqrt()


def upsample_scores(scores: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return F.interpolate(scores, size=tuple(size), mode="bilinear", align_corners=False)
