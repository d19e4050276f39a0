"""Training-free baselines: what a few-shot method has to beat.

- linear-probe: logistic regression on support pixel features, fitted per episode
- knn: nearest-neighbour matching of query pixels to support pixels on frozen features
- support-copy: the support mask pasted onto the query (a lower bound: no image is looked at)
- all-foreground: every pixel foreground (the floor)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from fsseg_bench.backbones import build_backbone
from fsseg_bench.method import Method
from fsseg_bench.prototypes import upsample_scores
from fsseg_bench.registry import register_method


def feature_labels(masks: torch.Tensor, feature_size) -> torch.Tensor:
    """Support masks [S,H,W] in {0,1,255} -> labels at feature resolution [S,h,w] in {0,1,255}.

    A cell is foreground (background) when more than half of its area is; otherwise ignored.
    """
    fg = F.interpolate((masks == 1).float()[:, None], size=tuple(feature_size), mode="area")[:, 0]
    bg = F.interpolate((masks == 0).float()[:, None], size=tuple(feature_size), mode="area")[:, 0]
    labels = torch.full(fg.shape, 255, dtype=torch.long, device=masks.device)
    labels[bg > 0.5] = 0
    labels[fg > 0.5] = 1
    if not (labels == 1).any():  # a tiny object: keep its best-covered cell
        flat = fg.flatten()
        labels.view(-1)[flat.argmax()] = 1
    return labels


def pixel_features(features: torch.Tensor) -> torch.Tensor:
    """[N,C,h,w] -> [N*h*w, C], L2-normalised per pixel."""
    return F.normalize(features.permute(0, 2, 3, 1).reshape(-1, features.shape[1]), dim=1)


class FrozenFeatureMethod(Method):
    frozen_encoder = True

    def __init__(self, backbone: str, weights, seed: int, **config):
        super().__init__(backbone=backbone, weights=None if weights is None else str(weights), seed=seed, **config)
        built = build_backbone(backbone, weights, seed)
        self.encoder = built.module.eval()
        self.pretrained = built.pretrained
        self.pretraining = (built.pretraining,) if built.pretrained and built.pretraining else ()

    def encode(self, images):
        return self.encoder(images)


@register_method("linear-probe", description="logistic regression on support pixel features, fitted per episode")
class LinearProbe(FrozenFeatureMethod):
    def __init__(self, backbone: str = "vgg16", weights: str | None = None, seed: int = 0,
                 steps: int = 50, l2: float = 1e-3):
        super().__init__(backbone, weights, seed, steps=steps, l2=l2)
        self.steps, self.l2 = steps, l2

    def predict_from_features(self, episode, support_features, query_features):
        labels = feature_labels(episode.support_masks, support_features.shape[-2:]).flatten()
        x = pixel_features(support_features)[labels != 255]
        w = self._fit(x, labels[labels != 255].float())
        q, _, h, wd = query_features.shape
        logits = (pixel_features(query_features) @ w[:-1] + w[-1]).reshape(q, h, wd)
        scores = torch.stack([torch.zeros_like(logits), logits], dim=1)
        return upsample_scores(scores, episode.image_size)

    def _fit(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        # Class-balanced logistic regression, fitted by a fixed number of L-BFGS steps from zero:
        # deterministic, and small objects are not swamped by background.
        n_fg = y.sum().clamp(min=1)
        weights = torch.where(y > 0, 0.5 / n_fg, 0.5 / (len(y) - y.sum()).clamp(min=1))
        w = torch.zeros(x.shape[1] + 1, dtype=x.dtype, device=x.device, requires_grad=True)
        optimizer = torch.optim.LBFGS([w], lr=1.0, max_iter=self.steps, line_search_fn="strong_wolfe")

        def closure():
            optimizer.zero_grad()
            logits = x @ w[:-1] + w[-1]
            loss = (weights * F.binary_cross_entropy_with_logits(logits, y, reduction="none")).sum()
            loss = loss + self.l2 * (w[:-1] ** 2).sum()
            loss.backward()
            return loss

        with torch.enable_grad():
            optimizer.step(closure)
        return w.detach()


@register_method("knn", description="k-nearest-neighbour matching of query pixels to support pixels (cosine)")
class KNN(FrozenFeatureMethod):
    def __init__(self, backbone: str = "vgg16", weights: str | None = None, seed: int = 0, k: int = 5):
        super().__init__(backbone, weights, seed, k=k)
        self.k = k

    def predict_from_features(self, episode, support_features, query_features):
        labels = feature_labels(episode.support_masks, support_features.shape[-2:]).flatten()
        support = pixel_features(support_features)
        query = pixel_features(query_features)
        similarity = query @ support.T  # [Qhw, Shw]
        per_class = []
        for value in (0, 1):
            columns = similarity[:, labels == value]
            if columns.shape[1] == 0:
                per_class.append(torch.full((query.shape[0],), -1.0, device=query.device))
                continue
            k = min(self.k, columns.shape[1])
            per_class.append(columns.topk(k, dim=1).values.mean(dim=1))
        q, _, h, w = query_features.shape
        scores = torch.stack(per_class, dim=1).reshape(q, h, w, 2).permute(0, 3, 1, 2)
        return upsample_scores(scores, episode.image_size)


@register_method("support-copy", description="the support masks' mean pasted onto the query (lower bound)")
class SupportCopy(Method):
    def predict(self, episode):
        foreground = (episode.support_masks == 1).float().mean(dim=0)
        scores = torch.stack([1.0 - foreground, foreground])
        return scores[None].expand(episode.query_images.shape[0], -1, -1, -1).clone()


@register_method("all-foreground", description="every pixel foreground (the floor)")
class AllForeground(Method):
    def predict(self, episode):
        q = episode.query_images.shape[0]
        height, width = episode.image_size
        scores = torch.zeros(q, 2, height, width, device=episode.query_images.device)
        scores[:, 1] = 1.0
        return scores
