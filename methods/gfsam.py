"""GF-SAM (Zhang et al., NeurIPS 2024, "Bridge the Points: Graph-based Few-shot Segment Anything
Semantically"; ANDYZAQ/GF-SAM), training-free, as its evaluation computes it.

Written from the paper and the behaviour of its `matcher/GFSAM.py`; `tests/equivalence/gfsam_masks.py`
runs that code beside this one on the same episodes and weights and compares the masks.

One query, K supports, all at the protocol's input (GF-SAM: 1024 x 1024, stretched):
1. Matching features: the DINOv2 tokens *before* the final norm, at `encoder_size` (518: the image
   resized bilinearly by torchvision's tensor `Resize`, which in GF-SAM's pinned torchvision 0.14
   does not antialias; `encoder_antialias` for newer torchvisions' default), ImageNet-normalised;
   each image's tokens L2-normalised over the *token* axis (GF-SAM's `F.normalize(dim=1)`, kept).
2. SAM's embedding of the query as GF-SAM feeds it: the [0,1] image times 255, truncated to uint8.
3. Priors per support (then averaged over supports): the cosine of every query token with every
   support token, weighted by the support mask (bilinear, align_corners=True, to the token grid);
   `max` over support tokens and `mean` over them divided by the mask's area fraction. Positive
   priors from the mask, negative from its complement.
4. Points: the min-max normalised product of the positive mean and max priors, zeroed where the
   normalised negative mean prior is higher; the top min(int(sum), 128) tokens (at least 1 when the
   sum is positive), ordered by (x, y), scaled to SAM's input frame and truncated to integers.
5. One SAM mask per point (single-mask output, batches of 64 points).
6. Graph: mask i -> point j when mask i (nearest-resized to the grid) covers point j; weakly
   connected components are the clusters.
7. Per cluster, masks in decreasing order of their mean of (mean-prior^2 - half-range x negative
   mean prior) grow a region while they add more positive than negative area (positive: mean^2 >
   negative x half-range); the cluster's score is the last mask's positive minus negative area.
8. Point consistency: each point's affinity to each cluster (the mean prior of the query to the
   cluster's union, divided by the distance to the cluster's nearest point, torch.cdist's) picks a
   cluster; clusters where fewer than half their points pick them drop all; a point kept by both
   tests is selected (1), by one of them a candidate (2).
9. The prediction is the union of the selected points' masks; if empty, the candidate with the
   highest cluster score alone.
An all-zero support set (all shots together) gets a 14 x 14 square at the centre of every mask.

Options: `backbone` (default `dinov2_vitl14`, GF-SAM's; any registered ViT), `weights`, `sam`
(default `sam_vit_h`, GF-SAM's), `sam_weights`, `encoder_size` (518), `encoder_antialias` (false),
`max_points` (128), `seed` (random inits only). The runner encodes each distinct image once with
DINOv2 and each distinct query image once with SAM (`encode_query`), both cached; GF-SAM's own
loop encodes every episode's images again. The prediction is a binary mask at the input resolution (score 1 or 0).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy.sparse import csgraph

from fsseg_bench.backbones import build_backbone
from fsseg_bench.cards import MethodCard
from fsseg_bench.errors import InputError
from fsseg_bench.method import Method
from fsseg_bench.packing import PackedEncoders, pack
from fsseg_bench.preprocess import IMAGENET_MEAN, IMAGENET_STD
from fsseg_bench.registry import register_method

SAM_POINT_BATCH = 64     # GF-SAM prompts SAM 64 points at a time
COSINE_EPS = 1e-7


# -- inputs -------------------------------------------------------------------------------------------
def unit_images(normalised: torch.Tensor) -> torch.Tensor:
    """The harness's ImageNet-normalised input -> the [0,1] image torchvision's ToTensor gave GF-SAM.
    The 8-bit pixels are recovered by rounding (the normalisation's float error is < 1e-4 of a level),
    then divided by 255 as ToTensor does, so the values are bitwise GF-SAM's."""
    mean = torch.as_tensor(IMAGENET_MEAN)[:, None, None]
    std = torch.as_tensor(IMAGENET_STD)[:, None, None]
    pixels = torch.round((normalised.float() * std + mean) * 255).clamp(0, 255)
    return pixels.to(torch.uint8).float().div(255)


def sam_pixels(unit: torch.Tensor) -> torch.Tensor:
    """GF-SAM's `img.mul(255).byte()` (a truncation; in float32 every level's x/255*255 is x again, so
    nothing is lost, which the tests check)."""
    return unit.mul(255).to(torch.uint8)


def encoder_resize(unit: torch.Tensor, size: int, antialias: bool, patch: int = 1) -> torch.Tensor:
    """torchvision's `Resize(size)` on a tensor: the shorter side to `size`, the longer int(size * long
    / short); bilinear, align_corners False; then ImageNet's normalisation. Sides are floored to a
    multiple of `patch` (the patch embedding needs it; GF-SAM's square 518 is one: 37 x 14)."""
    height, width = unit.shape[-2:]
    short, long = min(height, width), max(height, width)
    other = int(size * long / short)
    target = (size, other) if height <= width else (other, size)
    target = (max(patch, target[0] - target[0] % patch), max(patch, target[1] - target[1] % patch))
    if target != (height, width):
        unit = F.interpolate(unit, size=target, mode="bilinear", align_corners=False, antialias=antialias)
    mean = torch.as_tensor(IMAGENET_MEAN)[:, None, None]
    std = torch.as_tensor(IMAGENET_STD)[:, None, None]
    return (unit - mean) / std


# -- the pieces, as small functions ---------------------------------------------------------------------
def pairwise_cosine(query_tokens: torch.Tensor, support_tokens: torch.Tensor) -> torch.Tensor:
    """[1,N,C] query, [1,M,C] support -> [1,M,N] cosine of every support token with every query token."""
    query = query_tokens.permute(0, 2, 1)
    support_norm = torch.norm(support_tokens, 2, 2, True)
    query_norm = torch.norm(query, 2, 1, True)
    return torch.bmm(support_tokens, query) / (torch.bmm(support_norm, query_norm) + COSINE_EPS)


def masked_priors(similarities: list[torch.Tensor], masks: torch.Tensor,
                  grid: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per support s (similarities[s] [1,M,N], masks [S,1,H,W]) the mask-weighted max and mean over
    support tokens -> each averaged over supports, [1,*grid]."""
    tokens = grid[0] * grid[1]
    maxima, means = [], []
    for similarity, mask in zip(similarities, masks):
        weights = F.interpolate(mask[None], size=grid, mode="bilinear", align_corners=True)
        weights = weights.flatten(2).transpose(-1, -2)  # [1, M, 1]
        weighted = similarity * weights
        means.append(weighted.mean(1).view(1, 1, *grid) / (weights.sum() / tokens + COSINE_EPS))
        maxima.append(weighted.max(1)[0].view(1, 1, *grid))
    return torch.cat(maxima, 1).mean(1), torch.cat(means, 1).mean(1)


def min_max(values: torch.Tensor) -> torch.Tensor:
    return (values - values.min()) / (values.max() - values.min() + 1e-6)


def point_map(max_prior: torch.Tensor, mean_prior: torch.Tensor, negative_mean: torch.Tensor) -> torch.Tensor:
    """Where points may be: the normalised product of the positive priors, 0 where the normalised
    negative mean prior is higher."""
    crossed = min_max(mean_prior * max_prior)
    return crossed * ~(min_max(negative_mean) > crossed)


def select_points(candidates: torch.Tensor, max_points: int) -> tuple[np.ndarray, np.ndarray]:
    """-> (hot [g,g] 0/1 of the chosen tokens, their (x, y) grid coordinates ordered by x then y)."""
    total = candidates.sum()
    count = min(int(total), max_points)
    if count == 0 and total > 0:
        count = 1
    flat = candidates.flatten(0)
    hot = torch.zeros_like(flat)
    hot[flat.topk(count)[1]] = 1
    hot = hot.view(candidates.shape[-2:]).cpu().numpy()
    return hot, np.argwhere(hot.T > 0)


def prompt_coordinates(points_xy: np.ndarray, grid: tuple[int, int], sam_side: int) -> torch.Tensor:
    """Grid (x, y) -> SAM's input frame as segment_anything's `apply_coords` scales them (the grid taken
    as an image of its own size), truncated to int as GF-SAM's `torch.as_tensor(..., dtype=int)` does."""
    grid_h, grid_w = grid
    scale = sam_side * 1.0 / max(grid_h, grid_w)
    new_h, new_w = int(grid_h * scale + 0.5), int(grid_w * scale + 0.5)
    coords = points_xy.astype(float)
    coords[..., 0] = coords[..., 0] * (new_w / grid_w)
    coords[..., 1] = coords[..., 1] * (new_h / grid_h)
    return torch.as_tensor(coords, dtype=torch.int)


def mask_clusters(masks: torch.Tensor, points_xy: np.ndarray, hot: np.ndarray) -> tuple[int, np.ndarray]:
    """Masks [P,1,H,W] bool; edge i -> j when mask i covers point j on the grid (nearest); the weakly
    connected components."""
    grid_h, grid_w = hot.shape
    covered = F.interpolate(masks.float(), size=(grid_h, grid_w), mode="nearest").squeeze(1)
    covered = (covered * torch.as_tensor(hot > 0, dtype=torch.float)[None]).flatten(1)
    index = torch.as_tensor(points_xy[:, 1] * grid_w + points_xy[:, 0], dtype=torch.long)
    adjacency = covered[:, index].numpy()
    return csgraph.connected_components(adjacency, directed=True, connection="weak", return_labels=True)


def grow_clusters(grid_masks: torch.Tensor, labels: torch.Tensor, clusters: int, positive: torch.Tensor,
                  negative: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """grid_masks [P,1,g,g] (bilinear); per cluster, masks by decreasing mean of positive-negative join
    the region while they add more positive than negative area. -> (foreground 0/1 per mask, each
    mask's cluster score: the last mask's positive minus negative area)."""
    foreground = torch.zeros_like(labels)
    scores = torch.zeros_like(labels, dtype=torch.float)
    region_positive = (positive > negative).float()
    for cluster in range(clusters):
        members = torch.where(labels == cluster)[0]
        member_masks = grid_masks[members]
        mean_margin = (member_masks * (positive - negative).unsqueeze(0)).sum(dim=(-1, -2, -3))
        mean_margin = mean_margin / (member_masks.sum(dim=(-1, -2, -3)) + 1e-6)
        region = torch.zeros_like(region_positive)
        for order in mean_margin.argsort(descending=True):
            added = member_masks[order] * (1 - region)
            gain, loss = (region_positive * added).sum(), ((1 - region_positive) * added).sum()
            if gain > loss:
                region += added
                foreground[members[order]] = 1
        scores[members] = gain - loss
    return foreground, scores


def consistent_points(query_tokens: torch.Tensor, self_similarity: torch.Tensor, masks: torch.Tensor,
                      labels: torch.Tensor, clusters: int, foreground: torch.Tensor, points_xy: torch.Tensor,
                      grid: tuple[int, int]) -> torch.Tensor:
    """Per point: 1 selected, 2 candidate, 0 dropped (step 8 of the module's description)."""
    affinities = []
    for cluster in range(clusters):
        members = torch.where(labels == cluster)[0]
        union = (masks[members].sum(dim=0) > 0).float()
        union = F.interpolate(union.unsqueeze(0), size=grid, mode="bilinear", align_corners=False).squeeze(0)
        affinities.append(masked_priors([self_similarity], union.unsqueeze(0), grid)[1])
    affinities = torch.cat(affinities, dim=0)[:, points_xy[:, 1], points_xy[:, 0]]  # [clusters, points]
    distances = torch.cdist(points_xy.float(), points_xy.float())
    nearest = torch.stack([distances[:, torch.where(labels == c)[0]].min(dim=1)[0] for c in range(clusters)])
    nearest[nearest == 0] = 1
    best = (affinities / nearest).max(dim=0)[1]
    agrees = torch.where(best == labels, 1, 0)
    for cluster in range(clusters):
        members = torch.where(labels == cluster)[0]
        kept = agrees[members].sum()
        if kept < len(members) - kept:
            agrees[members] = 0
    verdict = ((agrees + foreground) > 0).long() * 2
    verdict[(agrees * foreground) > 0] = 1
    return verdict


def merge_masks(masks: torch.Tensor, verdict: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
    """The union of the selected points' masks; if empty, the best-scoring candidate's mask."""
    chosen = masks[verdict == 1]
    prediction = (chosen.sum(dim=0) > 0).float() if len(chosen) else torch.zeros(masks.shape[1:])
    if prediction.sum() == 0:
        scores = scores.clone()
        scores[verdict != 2] = 0
        prediction = masks[scores.max(dim=0)[1]].float()
    return prediction


def support_masks_or_centre(masks: torch.Tensor) -> torch.Tensor:
    """[S,H,W] {0,1,255} -> float [S,1,H,W], 1 = the class; all empty -> GF-SAM's centre square."""
    binary = (masks == 1).float()
    if binary.sum() == 0:
        height, width = binary.shape[-2:]
        binary[..., height // 2 - 7:height // 2 + 7, width // 2 - 7:width // 2 + 7] = 1
    return binary[:, None]


@register_method("gf-sam", description="training-free: GF-SAM (NeurIPS 2024), DINOv2 point selection, SAM masks, graph clustering and merging")
class GFSAM(PackedEncoders, Method):
    frozen_encoder = True
    card = MethodCard(notes="training-free; DINOv2-L and SAM-H by default")

    def __init__(self, backbone: str = "dinov2_vitl14", weights: str | None = None, sam: str = "sam_vit_h",
                 sam_weights: str | None = None, encoder_size: int = 518, encoder_antialias: bool = False,
                 max_points: int = 128, seed: int = 0):
        super().__init__(backbone=backbone, weights=None if weights is None else str(weights), sam=sam,
                         sam_weights=None if sam_weights is None else str(sam_weights), encoder_size=int(encoder_size),
                         encoder_antialias=bool(encoder_antialias), max_points=int(max_points), seed=seed)
        matching = build_backbone(backbone, weights, seed)
        prompted = build_backbone(sam, sam_weights, seed)
        self.matcher, self.sam = matching.module.eval(), prompted.module.eval()
        if not hasattr(self.matcher, "model") or not hasattr(self.sam, "sam"):
            raise InputError(f"gf-sam: backbone must be a ViT ({backbone!r} is not) and sam a SAM ({sam!r})")
        self.matcher.model.norm = torch.nn.Identity()  # GF-SAM matches the tokens before the final norm
        self.encoder_size, self.encoder_antialias, self.max_points = int(encoder_size), bool(encoder_antialias), int(max_points)
        self.pretrained = matching.pretrained and prompted.pretrained
        self.pretraining = tuple(b.pretraining for b in (matching, prompted) if b.pretrained and b.pretraining)

    # -- encoders ----------------------------------------------------------------------------------
    def matching_tokens(self, unit: torch.Tensor) -> torch.Tensor:
        """[1,3,H,W] in [0,1] -> [1,N,C] pre-norm patch tokens, normalised over tokens (GF-SAM's dim=1)."""
        vit = self.matcher.model
        tokens = vit.forward_features(encoder_resize(unit, self.encoder_size, self.encoder_antialias, self.matcher.patch))
        return F.normalize(tokens[:, vit.num_prefix_tokens:], dim=1, p=2)

    def token_grid(self, image_size) -> tuple[int, int]:
        """The (rows, columns) of the matching tokens for an input of `image_size`."""
        resized = encoder_resize(torch.zeros(1, 3, *image_size), self.encoder_size, False, self.matcher.patch).shape[-2:]
        return resized[0] // self.matcher.patch, resized[1] // self.matcher.patch

    def sam_embedding(self, unit: torch.Tensor) -> torch.Tensor:
        """SamPredictor.set_image on GF-SAM's uint8 query: resize the longer side to SAM's input (PIL,
        as segment_anything's ResizeLongestSide; a no-op at 1024), normalise and pad as `Sam.preprocess`."""
        pixels = sam_pixels(unit)
        side = self.sam.side
        if max(pixels.shape[-2:]) != side:
            from torchvision.transforms.functional import resize, to_pil_image
            size = self.sam.input_size(*pixels.shape[-2:])
            pixels = torch.as_tensor(np.array(resize(to_pil_image(pixels[0]), size))).permute(2, 0, 1)[None]
        return self.sam.sam.image_encoder(self.sam.sam.preprocess(pixels))

    def encoder_parts(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Every image's matching tokens (supports and queries), image by image as GF-SAM encodes."""
        return [torch.cat([self.matching_tokens(unit_images(image[None])) for image in images])]

    def encode_query(self, images: torch.Tensor) -> torch.Tensor:
        """SAM's embedding, for queries only (GF-SAM prompts SAM on the query alone); the runner
        caches it per image beside the tokens and hands it over after them."""
        return pack([torch.cat([self.sam_embedding(unit_images(image[None])) for image in images])])


    # -- prediction --------------------------------------------------------------------------------
    def predict_from_features(self, episode, support_features, query_features):
        (support_tokens,) = self.unpack(support_features, episode.image_size)
        (query_tokens,), query_embeddings = self.unpack_query(query_features, episode.image_size,
                                                               self.sam.embedding_shape)
        masks = support_masks_or_centre(episode.support_masks)
        predictions = []
        for tokens, embedding in zip(query_tokens, query_embeddings):
            prediction = self.segment(tokens[None], embedding[None], support_tokens, masks, episode.image_size)
            predictions.append(torch.stack([1 - prediction, prediction]))
        return torch.stack(predictions)

    def segment(self, query_tokens, query_embedding, support_tokens, support_masks, image_size) -> torch.Tensor:
        """One query -> its binary mask [H,W] (float 0/1)."""
        grid = self.token_grid(image_size)
        similarities = [pairwise_cosine(query_tokens, support[None]) for support in support_tokens]
        negative_max, negative_mean = masked_priors(similarities, 1 - support_masks, grid)
        positive_max, positive_mean = masked_priors(similarities, support_masks, grid)
        half_range = (positive_mean.max() + positive_mean.min()) / 2
        hot, points_xy = select_points(point_map(positive_max, positive_mean, negative_mean), self.max_points)
        if len(points_xy) == 0:
            return torch.zeros(image_size)
        masks = self.sam_masks(query_embedding, prompt_coordinates(points_xy, grid, self.sam.side), image_size)
        clusters, labels = mask_clusters(masks, points_xy, hot)
        labels = torch.as_tensor(labels, dtype=torch.long)
        grid_masks = F.interpolate(masks.float(), size=grid, mode="bilinear", align_corners=False)
        foreground, scores = grow_clusters(grid_masks, labels, clusters, positive_mean * positive_mean,
                                           negative_mean * half_range)
        verdict = consistent_points(query_tokens, pairwise_cosine(query_tokens, query_tokens), masks, labels,
                                    clusters, foreground, torch.as_tensor(points_xy, dtype=torch.long), grid)
        return merge_masks(masks, verdict, scores)[0]

    def sam_masks(self, embedding: torch.Tensor, coordinates: torch.Tensor, image_size) -> torch.Tensor:
        """One single-output SAM mask per point (SamPredictor.predict_torch on the cached embedding) -> [P,1,H,W] bool."""
        sam = self.sam.sam
        input_size = self.sam.input_size(*image_size)
        masks = []
        for start in range(0, len(coordinates), SAM_POINT_BATCH):
            points = coordinates[start:start + SAM_POINT_BATCH]
            labels = torch.ones(len(points), 1, dtype=torch.int)
            sparse, dense = sam.prompt_encoder(points=(points[:, None, :], labels), boxes=None, masks=None)
            low_res, _ = sam.mask_decoder(image_embeddings=embedding, image_pe=sam.prompt_encoder.get_dense_pe(),
                                          sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense,
                                          multimask_output=False)
            masks.append(sam.postprocess_masks(low_res, input_size, tuple(image_size)) > sam.mask_threshold)
        return torch.cat(masks)
