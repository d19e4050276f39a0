"""Training-free methods on foundation models: two frozen encoders, both cached by the runner.

- dino-sam-point (PerSAM-style, Zhang et al. 2023, with DINOv2 for the matching as Matcher does):
  the support's foreground prototype is the masked mean of its matching encoder's features (all
  shots); the query position most like it (cosine) becomes SAM's positive point and the least
  like it its negative point; SAM's mask decoder gives three candidate masks and the one with the
  highest predicted IoU is the prediction (its logits are the foreground score, 0 the background's).

Options: `backbone`, the matching encoder (any registered backbone; `dinov2_vitl14` for Matcher's
and GF-SAM's choice; the protocol's default otherwise, as for `knn`), `weights` its weights,
`match_size` the square size it sees (518 for DINOv2 as GF-SAM; default: the protocol's input),
`sam` (default `sam_vit_b`, the smallest released) and `sam_weights`.

Each encoder runs once per image: `encode` gives the matching features (packed [N, D, 1, 1]) of
every image, `encode_query` SAM's embedding of the query images only; the runner caches both.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from fsseg_bench.backbones import build_backbone
from fsseg_bench.method import Method
from fsseg_bench.packing import PackedEncoders, pack
from fsseg_bench.registry import register_method


def grid_mask(masks: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """Support masks [S,H,W] in {0,1,255} -> foreground weights on the feature grid [S,h,w] (area
    fraction); a tiny object keeps its best-covered cell."""
    fg = F.interpolate((masks == 1).float()[:, None], size=grid, mode="area")[:, 0]
    if not (fg > 0.5).any():
        flat = fg.flatten()
        keep = torch.zeros_like(flat)
        keep[flat.argmax()] = 1.0
        return keep.view_as(fg)
    return (fg > 0.5).float()


@register_method("dino-sam-point", description="training-free: DINOv2 (or any backbone) matching picks SAM's point prompts (PerSAM-style)")
class DinoSamPoint(PackedEncoders, Method):
    frozen_encoder = True

    def __init__(self, backbone: str = "dinov2_vitl14", weights: str | None = None, match_size: int | None = None,
                 sam: str = "sam_vit_b", sam_weights: str | None = None, seed: int = 0):
        super().__init__(backbone=backbone, weights=None if weights is None else str(weights), match_size=match_size,
                         sam=sam, sam_weights=None if sam_weights is None else str(sam_weights), seed=seed)
        matching = build_backbone(backbone, weights, seed)
        prompted = build_backbone(sam, sam_weights, seed)
        self.matcher, self.sam = matching.module.eval(), prompted.module.eval()
        self.match_size = match_size
        self.pretrained = matching.pretrained and prompted.pretrained
        self.pretraining = tuple(b.pretraining for b in (matching, prompted) if b.pretrained and b.pretraining)

    # -- features: the matching features of every image, SAM's embedding of the queries --------------
    def encoder_parts(self, images: torch.Tensor) -> list[torch.Tensor]:
        seen = images
        if self.match_size:
            seen = F.interpolate(images, size=(self.match_size, self.match_size), mode="bilinear", align_corners=False)
        return [self.matcher(seen)]

    def encode_query(self, images: torch.Tensor) -> torch.Tensor:
        """SAM's embedding, for queries only (only they are prompted)."""
        return pack([self.sam(images)])

    # -- prediction --------------------------------------------------------------------------------
    def predict_from_features(self, episode, support_features, query_features):
        (support_tokens,) = self.unpack(support_features, episode.image_size)
        (query_tokens,), query_embeddings = self.unpack_query(query_features, episode.image_size,
                                                               self.sam.embedding_shape)
        weights = grid_mask(episode.support_masks, support_tokens.shape[-2:])[:, None]  # [S,1,h,w]
        prototype = F.normalize((support_tokens * weights).sum(dim=(0, 2, 3)) / weights.sum().clamp(min=1), dim=0)
        height, width = episode.image_size
        scores = []
        for tokens, embedding in zip(query_tokens, query_embeddings):
            similarity = torch.einsum("chw,c->hw", F.normalize(tokens, dim=0), prototype)
            points = torch.stack([self._point(similarity, similarity.argmax(), height, width),
                                  self._point(similarity, similarity.argmin(), height, width)])[None]
            logits = self._decode(embedding[None], points, torch.tensor([[1, 0]]), (height, width))
            scores.append(torch.stack([torch.zeros_like(logits), logits]))
        return torch.stack(scores)

    def _point(self, similarity: torch.Tensor, flat_index: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """A token's centre in SAM's input frame (x, y): the image resized to SAM's input size."""
        grid_h, grid_w = similarity.shape
        row, col = divmod(int(flat_index), grid_w)
        input_h, input_w = self.sam.input_size(height, width)
        return torch.tensor([(col + 0.5) / grid_w * input_w, (row + 0.5) / grid_h * input_h])

    def _decode(self, embedding: torch.Tensor, points: torch.Tensor, labels: torch.Tensor, size) -> torch.Tensor:
        sam = self.sam.sam
        sparse, dense = sam.prompt_encoder(points=(points.to(embedding), labels.to(embedding.device)), boxes=None,
                                           masks=None)
        masks, iou = sam.mask_decoder(image_embeddings=embedding, image_pe=sam.prompt_encoder.get_dense_pe(),
                                      sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense,
                                      multimask_output=True)
        best = int(iou[0].argmax())
        upscaled = sam.postprocess_masks(masks[:, best:best + 1], self.sam.input_size(*size), tuple(size))
        return upscaled[0, 0]
