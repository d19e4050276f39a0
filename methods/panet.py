"""PANet (Wang et al., ICCV 2019): prototype alignment network, as the paper's code computes it.

Registry entries: `panet` (with the prototype-alignment regularisation, PAR), `panet-noalign`
(without), and `panet-init` (ImageNet features, no episodic training). One implementation.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from fsseg_bench.backbones import build_backbone
from fsseg_bench.checkpoints import load_matching, read_checkpoint
from fsseg_bench.episode import IGNORE, Episode
from fsseg_bench.errors import InputError
from fsseg_bench.method import Method
from fsseg_bench.prototypes import (COSINE_SCALE, MAP_EPS, clamped_norm, cosine_scores,
                                    pooling_weights, upsample_scores)
from fsseg_bench.cards import BASE_CLASSES, MethodCard
from fsseg_bench.registry import register_method

def panet_prototypes(support_features: torch.Tensor, support_masks: torch.Tensor) -> torch.Tensor:
    """[2, C]: background then foreground prototype of a 1-way episode.

    Foreground: mean over shots of each shot's masked average; background: the same over the
    background masks (then over ways, a no-op for one way). Pixels marked 255 are in neither.
    """
    return support_pooling(support_features, support_masks).sum(dim=0) / support_features.shape[0]


def support_pooling(support_features: torch.Tensor, support_masks: torch.Tensor) -> torch.Tensor:
    """Each shot's background and foreground masked average, [..., S, C, h, w] & [..., S, H, W] -> [..., S, 2, C]."""
    masks = torch.stack([support_masks == 0, support_masks == 1], dim=-3).to(support_features.dtype)  # [...,S,2,H,W]
    weights = pooling_weights(masks, support_features.shape[-2:])  # [...,S,2,h,w]
    pooled = torch.einsum("...chw,...khw->...kc", support_features, weights)
    return pooled / (masks.sum(dim=(-2, -1))[..., None] + MAP_EPS)


def scores_from_pooled(pooled: torch.Tensor, query_features: torch.Tensor, scale=COSINE_SCALE) -> torch.Tensor:
    """Per-shot pools [B,S,2,C] -> prototypes (mean over shots) -> cosine scores [B,Q,2,h,w]."""
    prototypes = pooled.sum(dim=1) / pooled.shape[1]  # [B,2,C]
    unit = prototypes / clamped_norm(prototypes, 2)
    norms = clamped_norm(query_features, 2)  # [B,Q,1,h,w]
    return torch.einsum("bqchw,bpc->bqphw", query_features, unit) / (norms / scale)


def panet_scores_batch(support_features, support_masks, query_features, scale=COSINE_SCALE) -> torch.Tensor:
    """`panet_scores` for B episodes at once: [B,S,C,h,w], [B,S,H,W], [B,Q,C,h,w] -> [B,Q,2,h,w]."""
    return scores_from_pooled(support_pooling(support_features, support_masks), query_features, scale)


def panet_scores(support_features, support_masks, query_features, scale=COSINE_SCALE) -> torch.Tensor:
    """Feature-resolution scores [Q, 2, h, w] (cosine x scale, channel 0 background)."""
    return cosine_scores(query_features, panet_prototypes(support_features, support_masks), scale)


def alignment_loss(query_features, query_scores, support_features, support_masks, scale=COSINE_SCALE):
    """PAR: prototypes from the query's own predicted masks segment the supports.

    Query prototypes pool the query features under the argmax of the feature-resolution scores
    (no upsampling, pooled over all queries); a way with no predicted foreground pixel is skipped.
    Each support is scored against them, upsampled to the mask size and compared with its label by
    cross-entropy (255 ignored); the per-shot losses are divided by shots (and ways).
    """
    predicted = query_scores.argmax(dim=1)  # [Q, h, w]
    if not (predicted == 1).any():
        return query_features.new_zeros(())
    masks = torch.stack([predicted == 0, predicted == 1], dim=1).float()[:, :, None]  # [Q,2,1,h,w]
    pooled = (query_features[:, None] * masks).sum(dim=(0, 3, 4)) / (masks.sum(dim=(0, 3, 4)) + 1e-5)
    shots = support_features.shape[0]
    loss = query_features.new_zeros(())
    for shot in range(shots):
        scores = cosine_scores(support_features[[shot]], pooled, scale)
        scores = upsample_scores(scores, support_masks.shape[-2:])
        loss = loss + F.cross_entropy(scores, support_masks[[shot]], ignore_index=IGNORE) / shots
    return loss


class PANet(Method):
    """Prototype matching with cosine x 20 on a frozen-at-test encoder; PAR during training."""

    trainable = True
    frozen_encoder = True
    support_statistics = True  # a shot's contribution is its (bg, fg) masked average: cacheable per (image, class)

    def __init__(self, align: bool = True, backbone: str = "vgg16", weights: str | None = None,
                 align_weight: float = 1.0, scale: float = COSINE_SCALE, seed: int = 0):
        super().__init__(align=align, backbone=backbone, weights=None if weights is None else str(weights),
                         align_weight=align_weight, scale=scale, seed=seed)
        built = build_backbone(backbone, weights, seed)
        # Same module path as the paper's FewShotSeg: encoder.backbone.features.B.L.*
        self.model = nn.Module()
        self.model.encoder = nn.Sequential(OrderedDict([("backbone", built.module)]))
        self.pretrained = built.pretrained
        self.pretraining = (built.pretraining,) if built.pretrained and built.pretraining else ()
        self.card = MethodCard(training=BASE_CLASSES)  # panet-init: MethodCard(), set by its factory
        self.align, self.align_weight, self.scale = align, align_weight, scale

    @property
    def encoder(self) -> nn.Module:
        return self.model.encoder

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        return self.model.encoder(images)

    def predict_from_features(self, episode, support_features, query_features):
        scores = panet_scores(support_features, episode.support_masks, query_features, self.scale)
        return upsample_scores(scores, episode.image_size)

    def predict_batch_from_features(self, episodes, support_features, query_features):
        masks = torch.stack([e.support_masks for e in episodes])
        scores = panet_scores_batch(support_features, masks, query_features, self.scale)  # [B,Q,2,h,w]
        return self._upsample_batch(scores, episodes[0].image_size)

    def support_statistic(self, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return support_pooling(features, mask[None])[0]  # [2, C]

    def predict_from_statistics(self, episodes, statistics, query_features):
        scores = scores_from_pooled(statistics, query_features, self.scale)
        return self._upsample_batch(scores, episodes[0].image_size)

    @staticmethod
    def _upsample_batch(scores: torch.Tensor, size) -> torch.Tensor:
        b, q = scores.shape[:2]
        upsampled = upsample_scores(scores.flatten(0, 1), size)
        return upsampled.view(b, q, *upsampled.shape[1:])

    def training_losses(self, episode: Episode) -> dict[str, torch.Tensor]:
        shots = episode.shots
        features = self.encode(torch.cat([episode.support_images, episode.query_images]))
        support_features, query_features = features[:shots], features[shots:]
        scores = panet_scores(support_features, episode.support_masks, query_features, self.scale)
        query_loss = F.cross_entropy(upsample_scores(scores, episode.image_size), episode.query_masks,
                                     ignore_index=IGNORE)
        losses = {"query": query_loss}
        total = query_loss
        if self.align:
            losses["align"] = alignment_loss(query_features, scores, support_features, episode.support_masks, self.scale)
            total = total + self.align_weight * losses["align"]
        losses["total"] = total
        return losses

    # -- parameters and checkpoints ------------------------------------------------------------
    def parameters(self):
        return self.model.parameters()

    def state_dict(self):
        return self.model.state_dict()

    def load_state_dict(self, state_dict):
        self.model.load_state_dict(state_dict)

    def load_checkpoint(self, path: str | Path) -> None:
        """Our checkpoints, or the paper's released snapshots (`module.encoder.backbone.features.B.L.*`)."""
        state, meta = read_checkpoint(path)
        if meta is not None and meta["config"].get("backbone") != self.config["backbone"]:
            raise InputError(f"{path}: checkpoint backbone {meta['config'].get('backbone')!r} != "
                             f"method backbone {self.config['backbone']!r}")
        load_matching(self.model, state, str(path))


@register_method("panet", trainable=True, description="PANet with prototype alignment (PAR); trained episodically")
def panet(backbone: str = "vgg16", weights: str | None = None, seed: int = 0, align_weight: float = 1.0):
    return PANet(align=True, backbone=backbone, weights=weights, seed=seed, align_weight=align_weight)


@register_method("panet-noalign", trainable=True, description="PANet without the alignment loss (the paper's ablation)")
def panet_noalign(backbone: str = "vgg16", weights: str | None = None, seed: int = 0):
    return PANet(align=False, backbone=backbone, weights=weights, seed=seed)


@register_method("panet-init", trainable=False,
                 description="PANet's prototype matching on ImageNet features, no episodic training")
def panet_init(backbone: str = "vgg16", weights: str | None = None, seed: int = 0):
    method = PANet(align=False, backbone=backbone, weights=weights, seed=seed)
    method.trainable = False
    method.card = MethodCard()
    return method

