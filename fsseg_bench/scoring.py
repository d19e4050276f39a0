"""Scoring: a method's scores and a query's label -> the per-episode counts records hold.

At the protocol's scoring resolution (`score_at`): the resized label, the original one, or PFENet's
square of the original's longer side; ties of the two scores go to background; 255 (the protocol's
`ignore_index`) is left out of every count. On the record path, so its code is in every run's identity.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .metrics import episode_counts
from .preprocess import PreparedLabel
from .prototypes import upsample_scores


def scoring_label(prepared: PreparedLabel, label_value: int, protocol) -> np.ndarray:
    """The query's binary label {0, 1, ignore} at the protocol's scoring resolution: the resized
    label, the original one, or (PFENet) the original padded with ignore to a square of its longer side.

    The label's void pixels (`ignore_index`) are left out of every count when `query_ignore` is
    "ignore", and count as background when it is "background" (HSNet on COCO-20i). Padding added
    by the resize is never scored, whatever the void rule."""
    if protocol.score_at == "resized":
        label, padding = prepared.label.numpy(), _padding_mask(prepared.label.shape, prepared.content_size)
    elif protocol.score_at == "original":
        label, padding = prepared.original_label, None
    else:  # original-square
        side = max(prepared.original_label.shape)
        label = np.full((side, side), protocol.ignore_index, dtype=np.uint8)
        label[:prepared.original_label.shape[0], :prepared.original_label.shape[1]] = prepared.original_label
        padding = _padding_mask((side, side), prepared.original_label.shape)
    binary = (label == label_value).astype(np.uint8)
    if getattr(protocol, "query_ignore", "ignore") == "ignore":
        binary[label == protocol.ignore_index] = protocol.ignore_index
    if padding is not None:
        binary[padding] = protocol.ignore_index
    return binary


def _padding_mask(shape, content) -> np.ndarray | None:
    """True outside the content rectangle (None when there is no padding)."""
    if tuple(content) == tuple(shape[:2]):
        return None
    mask = np.ones(shape[:2], dtype=bool)
    mask[:content[0], :content[1]] = False
    return mask


def scoring_prediction(scores: torch.Tensor, prepared: PreparedLabel, protocol) -> torch.Tensor:
    """The binary prediction at the scoring resolution: `original` crops the padding and resizes
    back; `original-square` (PFENet) upsamples the whole padded input, align_corners=True, to a
    square of the original's longer side."""
    if protocol.score_at == "original":
        h, w = prepared.content_size
        scores = upsample_scores(scores[None, :, :h, :w], prepared.original_label.shape)[0]
    elif protocol.score_at == "original-square":
        side = max(prepared.original_label.shape)
        scores = F.interpolate(scores[None], size=(side, side), mode="bilinear", align_corners=True)[0]
    return predicted_mask(scores)


def score_batch(predictions: list[torch.Tensor], labels: list[np.ndarray], ignore_index: int) -> np.ndarray:
    """Counts [N, 6] for a batch of queries: one bincount when they share a size."""
    if len({label.shape for label in labels}) == 1:
        return episode_counts(torch.stack(predictions), np.stack(labels), ignore_index)
    return np.concatenate([episode_counts(p[None], l[None], ignore_index) for p, l in zip(predictions, labels)])


def predicted_mask(scores: torch.Tensor) -> torch.Tensor:
    """argmax over (background, foreground) for [2,H,W] scores; ties go to background, as argmax's
    first-index rule does. A comparison is ~50x cheaper than argmax over a size-2 dimension."""
    return (scores[1] > scores[0]).long()
