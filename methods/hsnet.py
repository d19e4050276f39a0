"""HSNet (Min, Kang & Cho, ICCV 2021): hypercorrelation squeeze networks, as its published code
computes them. Written from the paper and the code's documented behaviour; checked against that
code run locally with shared random weights (see the README).

- A frozen ImageNet pyramid (`fsseg_bench.pyramids`: VGG16, ResNet-50/101, or the stand-in's small
  CNN) gives many layers of query and support features. Support features are multiplied by the
  support mask, resized bilinearly (align_corners=True) to each layer's size.
- Per layer, the 4D correlation: cosine similarity (norms + 1e-5) of every query position with
  every support position, clamped at 0; stacked by scale into three groups.
- The learner squeezes each group with center-pivot 4D convolutions (`CenterPivotConv4d`: a 2D
  conv over the query dimensions at every kept support position, plus a strided 2D conv over the
  support dimensions at every query position), GroupNorm(4) and ReLU; mixes coarse into fine
  (query dimensions resized bilinearly, align_corners=True), averages over the support positions,
  and a 2D decoder gives 2-channel logits, upsampled bilinearly (align_corners=True) to the image.
- K shots: one 1-shot prediction per support; the argmax masks are summed and divided by the
  larger of their maximum and 1; pixels >= 0.5 are foreground (HSNet's vote).
- Training: Adam, lr 1e-3, cross-entropy on the query with 255 counted as background (HSNet's
  loaders binarise the mask); the pyramid stays frozen and in eval mode.

The module layout is HSNet's (`backbone.*` and `hpn_learner.*`), so its released checkpoints
(DataParallel `module.` prefix or not) load as they are.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from fsseg_bench.checkpoints import read_checkpoint
from fsseg_bench.episode import Episode
from fsseg_bench.errors import InputError
from fsseg_bench.method import Method
from fsseg_bench.pyramids import build_pyramid, load_pyramid_weights
from fsseg_bench.cards import BASE_CLASSES, MethodCard
from fsseg_bench.packing import PackedEncoders
from fsseg_bench.registry import register_method

COSINE_EPS = 1e-5
VOTE_THRESHOLD = 0.5


# --- the 4D correlation --------------------------------------------------------------------------

def layer_correlation(query: torch.Tensor, support: torch.Tensor) -> torch.Tensor:
    """[B,C,ha,wa] x [B,C,hb,wb] -> [B,ha,wa,hb,wb]: cosine similarity of every pair of positions,
    negative values set to 0."""
    b, c, ha, wa = query.shape
    hb, wb = support.shape[-2:]
    q = query.flatten(2)
    s = support.flatten(2)
    q = q / (q.norm(dim=1, keepdim=True) + COSINE_EPS)
    s = s / (s.norm(dim=1, keepdim=True) + COSINE_EPS)
    return torch.einsum("bcq,bcs->bqs", q, s).view(b, ha, wa, hb, wb).clamp(min=0)


def hypercorrelation(query_feats: list[torch.Tensor], support_feats: list[torch.Tensor],
                     group_sizes: tuple[int, ...]) -> list[torch.Tensor]:
    """Per-layer correlations stacked by scale: [B, layers of the group, ha, wa, hb, wb], coarsest
    group first (the learner's order)."""
    corrs = [layer_correlation(q, s) for q, s in zip(query_feats, support_feats)]
    groups, start = [], 0
    for size in group_sizes:
        groups.append(torch.stack(corrs[start:start + size], dim=1))
        start += size
    return groups[::-1]


def mask_features(features: list[torch.Tensor], mask: torch.Tensor) -> list[torch.Tensor]:
    """Each layer times the binary mask [B,H,W] resized bilinearly (align_corners=True) to it."""
    return [f * F.interpolate(mask[:, None].float(), f.shape[-2:], mode="bilinear", align_corners=True)
            for f in features]


# --- center-pivot 4D convolution and the learner ---------------------------------------------

class CenterPivotConv4d(nn.Module):
    """A 4D convolution over [B,C,ha,wa,hb,wb] restricted to the kernel's two center-pivot planes:
    `conv1` (k x k over the query dimensions, stride 1) at every support position the support
    stride keeps (0, s, 2s, ...), plus `conv2` (k x k over the support dimensions, stride s) at every
    query position; the two are summed. Padding k // 2 keeps the sizes aligned."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, support_stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel, stride=1, padding=kernel // 2)
        self.conv2 = nn.Conv2d(in_channels, out_channels, kernel, stride=support_stride, padding=kernel // 2)
        self.support_stride = support_stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, ha, wa, hb, wb = x.shape
        s = self.support_stride
        pivots = x[..., ::s, ::s]
        kept_h, kept_w = pivots.shape[-2:]
        over_query = self.conv1(pivots.permute(0, 4, 5, 1, 2, 3).reshape(-1, c, ha, wa))
        out, oha, owa = over_query.shape[-3:]
        over_query = over_query.view(b, kept_h, kept_w, out, oha, owa).permute(0, 3, 4, 5, 1, 2)
        over_support = self.conv2(x.permute(0, 2, 3, 1, 4, 5).reshape(-1, c, hb, wb))
        ohb, owb = over_support.shape[-2:]
        over_support = over_support.view(b, ha, wa, out, ohb, owb).permute(0, 3, 1, 2, 4, 5)
        return over_query + over_support


def squeeze_block(in_channels: int, out_channels, kernels, support_strides, groups: int = 4) -> nn.Sequential:
    layers = []
    for out, kernel, stride in zip(out_channels, kernels, support_strides):
        layers += [CenterPivotConv4d(in_channels, out, kernel, stride), nn.GroupNorm(groups, out), nn.ReLU(inplace=True)]
        in_channels = out
    return nn.Sequential(*layers)


def resize_query_dims(x: torch.Tensor, size) -> torch.Tensor:
    """Bilinear (align_corners=True) over the query dimensions of [B,C,ha,wa,hb,wb]."""
    b, c, ha, wa, hb, wb = x.shape
    flat = x.permute(0, 4, 5, 1, 2, 3).reshape(b * hb * wb, c, ha, wa)
    flat = F.interpolate(flat, size, mode="bilinear", align_corners=True)
    return flat.view(b, hb, wb, c, *size).permute(0, 3, 4, 5, 1, 2)


class HPNLearner(nn.Module):
    """The squeeze (per scale), mix (coarse to fine) and decode network. `in_channels`: the
    number of layers of each group, coarsest first."""

    def __init__(self, in_channels: tuple[int, int, int]):
        super().__init__()
        c1, c2, c3 = 16, 64, 128
        self.encoder_layer4 = squeeze_block(in_channels[0], [c1, c2, c3], [3, 3, 3], [2, 2, 2])
        self.encoder_layer3 = squeeze_block(in_channels[1], [c1, c2, c3], [5, 3, 3], [4, 2, 2])
        self.encoder_layer2 = squeeze_block(in_channels[2], [c1, c2, c3], [5, 5, 3], [4, 4, 2])
        self.encoder_layer4to3 = squeeze_block(c3, [c3, c3, c3], [3, 3, 3], [1, 1, 1])
        self.encoder_layer3to2 = squeeze_block(c3, [c3, c3, c3], [3, 3, 3], [1, 1, 1])
        self.decoder1 = nn.Sequential(nn.Conv2d(c3, c3, 3, padding=1), nn.ReLU(),
                                      nn.Conv2d(c3, c2, 3, padding=1), nn.ReLU())
        self.decoder2 = nn.Sequential(nn.Conv2d(c2, c2, 3, padding=1), nn.ReLU(),
                                      nn.Conv2d(c2, 2, 3, padding=1))

    def forward(self, groups: list[torch.Tensor]) -> torch.Tensor:
        sqz4 = self.encoder_layer4(groups[0])
        sqz3 = self.encoder_layer3(groups[1])
        sqz2 = self.encoder_layer2(groups[2])
        mix43 = self.encoder_layer4to3(resize_query_dims(sqz4, sqz3.shape[2:4]) + sqz3)
        mix = self.encoder_layer3to2(resize_query_dims(mix43, sqz2.shape[2:4]) + sqz2)
        encoded = mix.flatten(4).mean(dim=-1)  # over the support positions
        decoded = self.decoder1(encoded)
        # HSNet doubles the width on both sides (its inputs are square).
        decoded = F.interpolate(decoded, (2 * decoded.shape[-1],) * 2, mode="bilinear", align_corners=True)
        return self.decoder2(decoded)


# --- votes -------------------------------------------------------------------------------------

def vote(masks: torch.Tensor) -> torch.Tensor:
    """K per-support argmax masks [K,Q,H,W] -> HSNet's K-shot mask [Q,H,W] in {0,1}: the votes
    divided by the larger of their maximum (per query) and 1, thresholded at 0.5."""
    votes = masks.sum(dim=0).float()
    top = votes.flatten(1).max(dim=1).values.clamp(min=1)
    return (votes / top[:, None, None] >= VOTE_THRESHOLD).long()


# --- the method --------------------------------------------------------------------------------

class HSNet(PackedEncoders, Method):
    trainable = True
    card = MethodCard(training=BASE_CLASSES)
    frozen_encoder = True  # the pyramid: each image encoded once, its layers packed into one tensor

    def __init__(self, backbone: str = "vgg16", weights: str | None = None, seed: int = 0):
        super().__init__(backbone=backbone, weights=None if weights is None else str(weights), seed=seed)
        pyramid = build_pyramid(backbone, weights, seed)
        self.model = nn.Module()
        self.model.backbone = pyramid.module.eval()
        for parameter in self.model.backbone.parameters():
            parameter.requires_grad_(False)
        self.group_sizes = pyramid.group_sizes
        self.initialise(seed)
        self.pretrained = pyramid.pretrained
        self.pretraining = (pyramid.pretraining,) if pyramid.pretrained and pyramid.pretraining else ()

    def initialise(self, seed: int) -> None:
        """(Re)draw the learner's initial weights (torch's default inits) from `seed`: the `seed`
        option at construction, the training seed when `train` starts a model."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.model.hpn_learner = HPNLearner(tuple(reversed(self.group_sizes)))

    # -- features: the pyramid's layers packed per image, for the runner's feature cache ---------
    def layers(self, images: torch.Tensor) -> list[torch.Tensor]:
        with torch.no_grad():
            return self.model.backbone(images)

    encoder_parts = layers  # PackedEncoders: `encode` packs every tapped layer, `unpack` gives them back

    # -- prediction ---------------------------------------------------------------------------
    def logits(self, query_layers, support_layers, support_mask, image_size) -> torch.Tensor:
        """1-shot logits [Q,2,H,W]: every query against one support (layers [1,...] broadcast)."""
        q = query_layers[0].shape[0]
        support_layers = mask_features([s.expand(q, *s.shape[1:]) for s in support_layers],
                                       (support_mask == 1).expand(q, *support_mask.shape[-2:]))
        with torch.no_grad():
            groups = hypercorrelation(query_layers, support_layers, self.group_sizes)
        logits = self.model.hpn_learner(groups)
        return F.interpolate(logits, tuple(image_size), mode="bilinear", align_corners=True)

    def predict_from_features(self, episode: Episode, support_features, query_features) -> torch.Tensor:
        size = episode.image_size
        queries = self.unpack(query_features, size)
        supports = self.unpack(support_features, size)
        per_support = [self.logits(queries, [layer[[k]] for layer in supports], episode.support_masks[[k]], size)
                       for k in range(episode.shots)]
        if episode.shots == 1:
            return per_support[0]
        mask = vote(torch.stack([logits.argmax(dim=1) for logits in per_support]))
        return torch.stack([1 - mask, mask], dim=1).float()

    # -- training -----------------------------------------------------------------------------
    def training_losses(self, episode: Episode) -> dict[str, torch.Tensor]:
        """Cross-entropy of each support's 1-shot logits on the query (255 counted as background,
        as HSNet's binarised masks do), averaged over supports (HSNet trains at 1 shot)."""
        size = episode.image_size
        queries = self.layers(episode.query_images)
        supports = self.layers(episode.support_images)
        target = (episode.query_masks == 1).long()
        losses = [F.cross_entropy(self.logits(queries, [layer[[k]] for layer in supports],
                                              episode.support_masks[[k]], size), target)
                  for k in range(episode.shots)]
        total = torch.stack(losses).mean()
        return {"query": total, "total": total}

    def training_optimizer(self, schedule):
        """HSNet's: Adam at lr 1e-3 on the learner, no decay (the protocol's episode count)."""
        optimizer = torch.optim.Adam(self.model.hpn_learner.parameters(), lr=1e-3)
        return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)

    def train(self) -> "HSNet":
        self.model.hpn_learner.train()
        self.model.backbone.eval()  # frozen, BatchNorm statistics included
        return self

    # -- parameters and checkpoints -----------------------------------------------------------
    def parameters(self):
        return self.model.hpn_learner.parameters()

    def state_dict(self):
        return self.model.state_dict()

    def load_state_dict(self, state_dict):
        self.model.load_state_dict(state_dict)

    def load_checkpoint(self, path: str | Path) -> None:
        """Our checkpoints, or HSNet's released ones (`module.backbone.*`, `module.hpn_learner.*`;
        the backbone's classifier keys, which HSNet keeps, are ignored)."""
        state, meta = read_checkpoint(path)  # strips a DataParallel `module.` prefix
        if meta is not None and meta["config"].get("backbone") != self.config["backbone"]:
            raise InputError(f"{path}: checkpoint backbone {meta['config'].get('backbone')!r} != "
                             f"method backbone {self.config['backbone']!r}")
        learner = {k.removeprefix("hpn_learner."): v for k, v in state.items() if k.startswith("hpn_learner.")}
        backbone = {k: v for k, v in state.items() if k.startswith("backbone.")}
        if not learner:
            raise InputError(f"{path}: no hpn_learner.* tensors: not an HSNet checkpoint (keys look like "
                             f"{next(iter(state), '<none>')!r})")
        load_pyramid_weights(self.model.hpn_learner, learner, f"{path} (hpn_learner)")
        if backbone:
            load_pyramid_weights(self.model.backbone, backbone, f"{path} (backbone)")
            # A checkpoint's backbone is the one it was trained with: ours say whether it was
            # pretrained; HSNet's released ones carry ImageNet weights.
            self.pretrained = bool(meta.get("pretrained")) if meta is not None else True


@register_method("hsnet", trainable=True,
                 description="HSNet (ICCV 2021): 4D hypercorrelation squeeze network on a frozen pyramid; K-shot by vote")
def hsnet(backbone: str = "vgg16", weights: str | None = None, seed: int = 0):
    return HSNet(backbone=backbone, weights=weights, seed=seed)
