"""The `Episode`: what a method receives (1-way, K-shot, Q queries), already preprocessed."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

FOREGROUND, BACKGROUND, IGNORE = 1, 0, 255


@dataclass(frozen=True)
class Episode:
    """Tensors at the protocol's input resolution [H, W].

    support_images [S,3,H,W] float32, ImageNet-normalised
    support_masks  [S,H,W] int64 in {0, 1, 255}: 1 = the episode's class, 255 = ignore (only
                   when the protocol's `support_ignore` is "ignore"; by default void counts as 0)
    query_images   [Q,3,H,W] float32
    query_masks    [Q,H,W] int64 in {0, 1, 255}, or None: the runner withholds them from `predict`
    """

    class_id: int
    support_images: torch.Tensor
    support_masks: torch.Tensor
    query_images: torch.Tensor
    query_masks: torch.Tensor | None
    support_ids: tuple[str, ...] = ()
    query_ids: tuple[str, ...] = ()

    @property
    def shots(self) -> int:
        return self.support_images.shape[0]

    @property
    def image_size(self) -> tuple[int, int]:
        return tuple(self.query_images.shape[-2:])

    def to(self, device: torch.device | str) -> "Episode":
        move = (lambda t: None if t is None else t.to(device))
        return dataclasses.replace(
            self, support_images=move(self.support_images), support_masks=move(self.support_masks),
            query_images=move(self.query_images), query_masks=move(self.query_masks))


def binary_mask(label: torch.Tensor, class_id: int, void_as_background: bool) -> torch.Tensor:
    """Class-index label [..,H,W] -> {0,1,255} int64 for one class; 255 kept unless void counts as background."""
    mask = (label == class_id).long()
    if not void_as_background:
        mask.masked_fill_(label == IGNORE, IGNORE)
    return mask
